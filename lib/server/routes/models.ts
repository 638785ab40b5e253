// GET /models/list: every configured model with its inference count and whether it is loaded (the original's
// {"models": [{"model_key", "num_inferences"}], "active_model": {"key"}}, with more per model).
// POST /prime {"model_key"}: loads a model in the background so the first request does not wait (202).
import express, { type Request, type Response } from 'express';
import { HttpError } from '../errors';
import type { Log } from '../log';
import type { ChatService } from '../service';

export function modelsRouter(service: ChatService, jsonBody: express.RequestHandler, log: Log): express.Router {
  const router = express.Router();

  router.get('/models/list', (_req: Request, res: Response) => {
    const status = new Map(service.registry.status().map((s) => [s.key, s]));
    const models = [...service.models.values()].map((m) => {
      const s = status.get(m.key);
      const loaded = s?.state === 'loaded';
      return {
        model_key: m.key,
        num_inferences: service.inferences(m.key),
        loaded,
        state: s?.state ?? 'unloaded',
        memory_bytes: s?.bytes ?? 0,
        in_flight: s?.leases ?? 0,
        queue_depth: service.queueDepth(m.key),
        loads: s?.loads ?? 0,
        prompt_format: m.promptFormat,
        sampling: { length: m.sampling.length, temperature: m.sampling.temperature, top_k: m.sampling.topK, top_p: m.sampling.topP, penalize: m.sampling.penalize },
      };
    });
    // The original had one model loaded at a time; its "active_model" is now the most recently used loaded one.
    const active = [...status.values()].filter((s) => s.state === 'loaded').sort((a, b) => (b.lastUsed ?? 0) - (a.lastUsed ?? 0))[0];
    res.json({
      models,
      active_model: { key: active?.key ?? null },
      memory: { budget_bytes: service.config.memoryBudgetBytes, reserved_bytes: service.registry.reservedBytes },
    });
  });

  router.post('/prime', jsonBody, (req: Request, res: Response) => {
    const body: unknown = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body: must be a JSON object such as {"model_key": "chatbot"}', { field: 'body' });
    const b = body as Record<string, unknown>;
    for (const key of Object.keys(b)) {
      // raw_text was the original's priming prompt; loading needs none.
      if (key !== 'model_key' && key !== 'raw_text') throw new HttpError(400, `${key}: unknown field (known: model_key)`, { field: key });
    }
    const key = b.model_key ?? service.defaultModelKey;
    if (typeof key !== 'string' || key === '') throw new HttpError(400, 'model_key: must be a non-empty string', { field: 'model_key' });
    service.model(key);
    const state = service.registry.status().find((s) => s.key === key)?.state;
    service.registry.prime(key).catch((err: Error) => log('warn', 'prime failed', { model: key, error: err.message }));
    res.status(202).json({ model_key: key, state: state === 'loaded' ? 'loaded' : 'loading' });
  });

  return router;
}
