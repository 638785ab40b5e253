// GET /models/list: every configured model with its inference count and whether it is loaded (docs/compatibility.md:
// {"models": [{"model_key", "num_inferences"}], "active_model": {"key"}}, with more per model: how it takes
// prompts and sanitizes replies, who it answers as, and which audiences it was trained on).
// POST /prime {"model_key"}: loads a model in the background so the first request does not wait (202); with no
// body, the default model. A model whose last load failed is tried again at once, the answer giving that failure.
import path from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { ModelConfig } from '../config';
import { HttpError } from '../errors';
import type { Log } from '../log';
import type { ChatService } from '../service';
import { isJsonObject } from '../../util/json_object';

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
        // Why a "failed" model did not load, and when a request tries it again (0: the next one).
        failure: s?.failure ? { error: s.failure.reason, retry_in_s: Math.ceil(s.failure.retryInMs / 1000) } : null,
        adapter: m.adapter && path.basename(m.adapter),
        // An adapter's base: the entry it shares, or the model's folder or name.
        base: m.adapter && (m.base ?? (m.restoreFrom === null ? m.modelName : path.basename(m.restoreFrom))),
        prompt_format: m.promptFormat,
        sanitizer: sanitizerName(m),
        audience: m.audience,
        audiences: m.audiences,
        sampling: { length: service.defaultLength(m.key), temperature: m.sampling.temperature, top_k: m.sampling.topK, top_p: m.sampling.topP, min_p: m.sampling.minP, penalize: m.sampling.penalize },
      };
    });
    // "active_model" names one model (docs/compatibility.md): the most recently used of those loaded.
    const active = [...status.values()].filter((s) => s.state === 'loaded' && service.models.has(s.key)).sort((a, b) => (b.lastUsed ?? 0) - (a.lastUsed ?? 0))[0];
    res.json({
      models,
      default_model: service.defaultModelKey,
      active_model: { key: active?.key ?? null },
      memory: { budget_bytes: service.registry.budgetBytes, reserved_bytes: service.registry.reservedBytes },
    });
  });

  // A POST with no body at all (`curl -X POST .../prime`) primes the default model.
  const optionalBody = (req: Request, res: Response, next: NextFunction): void => {
    const length = req.headers['content-length'];
    if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) next();
    else jsonBody(req, res, next);
  };

  router.post('/prime', optionalBody, (req: Request, res: Response) => {
    const body: unknown = req.body ?? {};
    if (!isJsonObject(body)) throw new HttpError(400, 'body: must be a JSON object such as {"model_key": "chatbot"}', { field: 'body' });
    const b = body as Record<string, unknown>;
    for (const key of Object.keys(b)) {
      // raw_text, the priming prompt older clients send (docs/compatibility.md), is ignored: loading needs none.
      if (key !== 'model_key' && key !== 'raw_text') throw new HttpError(400, `${key}: unknown field (known: model_key)`, { field: key });
    }
    const key = b.model_key ?? service.defaultModelKey;
    if (typeof key !== 'string' || key === '') throw new HttpError(400, 'model_key: must be a non-empty string', { field: 'model_key' });
    service.model(key);
    const status = service.registry.status().find((s) => s.key === key);
    const failure = status?.failure;
    if (failure && failure.retryInMs > 0) {
      const seconds = Math.ceil(failure.retryInMs / 1000);
      throw new HttpError(503, `model "${key}" failed to load (${failure.reason}); it is tried again in ${seconds} s, or at once after a reload (SIGHUP) once it is fixed`, {}, { 'Retry-After': String(seconds) });
    }
    service.registry.prime(key).catch((err: Error) => log('warn', 'prime failed', { model: key, error: err.message }));
    res.status(202).json({ model_key: key, state: status?.state === 'loaded' ? 'loaded' : 'loading', ...(status?.failure && { last_error: status.failure.reason }) });
  });

  return router;
}

// The sanitizer as the config names it; a module by its file name alone (answers name no path on the server).
function sanitizerName(m: ModelConfig): string {
  return path.isAbsolute(m.sanitizer) ? path.basename(m.sanitizer) : m.sanitizer;
}
