// OpenAI's fine-tuning jobs (lib/server/fine_tuning.ts), for its SDKs' `client.fineTuning.jobs`:
//   POST /v1/fine_tuning/jobs                    {model, training_file, validation_file, hyperparameters or method, suffix, seed, metadata}
//   GET  /v1/fine_tuning/jobs                    newest first (after, limit, metadata[key]=value)
//   GET  /v1/fine_tuning/jobs/<id>               its status, and its model once it has one
//   GET  /v1/fine_tuning/jobs/<id>/events        newest first (after, limit): progress and each step's losses
//   GET  /v1/fine_tuning/jobs/<id>/checkpoints   the checkpoints its run keeps (after, limit)
//   POST /v1/fine_tuning/jobs/<id>/cancel|pause|resume
//   DELETE /v1/models/<model>                    a fine-tuned model served no more
import express, { type Request, type Response } from 'express';
import { maxServedRank } from '../../engine/native';
import { HttpError } from '../errors';
import type { FineTuningJobs, Hyperparameters, JobRequest } from '../fine_tuning';
import { bad, checkKeys, objectBody, type Body } from './api_common';
import { cursorPage } from './pages';
import { isJsonObject } from '../../util/json_object';
import { quoted } from '../../util/quoted';

const JOB_FIELDS = ['model', 'training_file', 'validation_file', 'hyperparameters', 'method', 'suffix', 'seed', 'integrations', 'metadata'];
// OpenAI's three, and dixie's lora_rank: an adapter of that rank over the frozen model (0: every weight).
const HYPERPARAMETERS = ['batch_size', 'learning_rate_multiplier', 'n_epochs', 'lora_rank'];

const FINE_TUNING_OFF = 'fine-tuning is off on this server: start it with `bin/serve --fine_tuning DIR`, '
  + 'or give server_config.json "fine_tuning": {"dir": "..."} (the folder that keeps the uploaded files, the jobs and the batches)';

// The Files API's, the jobs' and the batches' paths, for a server with fine-tuning off: each answers 404 saying how to turn it on.
export function fineTuningOffRouter(): express.Router {
  const router = express.Router();
  router.all(['/v1/files', '/v1/files/*rest', '/v1/fine_tuning/*rest', '/v1/batches', '/v1/batches/*rest'], () => {
    throw new HttpError(404, FINE_TUNING_OFF);
  });
  return router;
}

export function fineTuningRouter(jobs: FineTuningJobs, jsonBody: express.RequestHandler): express.Router {
  const router = express.Router();

  router.post('/v1/fine_tuning/jobs', jsonBody, async (req: Request, res: Response) => {
    res.json(await jobs.create(jobRequest(objectBody(req))));
  });

  router.get('/v1/fine_tuning/jobs', (req: Request, res: Response) => {
    // OpenAI's filter by metadata, `metadata[key]=value`, arrives under those literal names (Express's simple query parser).
    const wanted = Object.entries(req.query).flatMap(([k, v]) => {
      const key = /^metadata\[(.+)\]$/.exec(k)?.[1];
      return key === undefined ? [] : [[key, String(v)] as const];
    });
    const matching = jobs.list().filter((job) => wanted.every(([k, v]) => job.metadata?.[k] === v));
    res.json(cursorPage(matching, req.query, 20));
  });

  router.get('/v1/fine_tuning/jobs/:id', (req: Request, res: Response) => {
    res.json(jobs.get(String(req.params.id)));
  });

  router.get('/v1/fine_tuning/jobs/:id/events', (req: Request, res: Response) => {
    res.json(cursorPage(jobs.events(String(req.params.id)), req.query, 20));
  });

  router.get('/v1/fine_tuning/jobs/:id/checkpoints', (req: Request, res: Response) => {
    res.json(cursorPage(jobs.checkpoints(String(req.params.id)), req.query, 10));
  });

  // The SDKs send these with an empty JSON body, or none.
  router.post('/v1/fine_tuning/jobs/:id/cancel', async (req: Request, res: Response) => {
    res.json(await jobs.cancel(String(req.params.id)));
  });
  router.post('/v1/fine_tuning/jobs/:id/pause', async (req: Request, res: Response) => {
    res.json(await jobs.pause(String(req.params.id)));
  });
  router.post('/v1/fine_tuning/jobs/:id/resume', async (req: Request, res: Response) => {
    res.json(await jobs.resume(String(req.params.id)));
  });

  router.delete('/v1/models/:model', async (req: Request, res: Response) => {
    const model = String(req.params.model);
    await jobs.deleteModel(model);
    res.json({ id: model, object: 'model', deleted: true });
  });

  return router;
}

function jobRequest(body: Body): JobRequest {
  checkKeys(body, JOB_FIELDS);
  const model = body.model;
  if (typeof model !== 'string' || model === '') bad('model', 'must be the name of a served model, such as one /v1/models lists');
  const trainingFile = body.training_file;
  if (typeof trainingFile !== 'string' || trainingFile === '') bad('training_file', 'must be the id of a file uploaded with purpose "fine-tune"');
  const validationFile = body.validation_file ?? null;
  if (validationFile !== null && (typeof validationFile !== 'string' || validationFile === '')) bad('validation_file', 'must be the id of a file uploaded with purpose "fine-tune", or null');
  const suffix = body.suffix ?? null;
  // It becomes part of the model's name.
  if (suffix !== null && (typeof suffix !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(suffix))) bad('suffix', 'must be up to 64 letters, digits, ".", "_" or "-"');
  const seed = body.seed ?? null;
  if (seed !== null && !(typeof seed === 'number' && Number.isInteger(seed) && seed >= 0 && seed <= 2147483647)) bad('seed', 'must be an integer from 0 to 2147483647');
  const integrations = body.integrations ?? null;
  if (integrations !== null && !(Array.isArray(integrations) && integrations.length === 0)) {
    bad('integrations', 'is not supported: dixie reports to no tracking service; each step\'s losses are the job\'s events, and its run\'s metrics.jsonl');
  }
  return {
    model,
    trainingFile,
    validationFile,
    hyperparameters: hyperparameters(body),
    suffix,
    seed,
    metadata: metadata(body.metadata),
  };
}

// From `method` ({"type": "supervised", "supervised": {"hyperparameters": ...}}) or the older top-level
// `hyperparameters`, not both.
function hyperparameters(body: Body): Hyperparameters {
  let raw: unknown = body.hyperparameters;
  let where = 'hyperparameters';
  const method = body.method;
  if (method !== undefined && method !== null) {
    if (!isJsonObject(method)) bad('method', 'must be an object such as {"type": "supervised"}');
    checkKeys(method, ['type', 'supervised', 'dpo', 'reinforcement']);
    if (method.type !== 'supervised') bad('method.type', `must be "supervised": GPT-2 is fine-tuned on the conversations themselves (got ${quoted(method.type)})`);
    const supervised = method.supervised ?? {};
    if (!isJsonObject(supervised)) bad('method.supervised', 'must be an object such as {"hyperparameters": {"n_epochs": 3}}');
    checkKeys(supervised, ['hyperparameters']);
    if (supervised.hyperparameters !== undefined && raw !== undefined) bad('hyperparameters', 'give the hyperparameters in method.supervised.hyperparameters or here, not both');
    if (supervised.hyperparameters !== undefined) {
      raw = supervised.hyperparameters;
      where = 'method.supervised.hyperparameters';
    }
  }
  raw ??= {};
  if (!isJsonObject(raw)) bad(where, 'must be an object such as {"n_epochs": 3}');
  for (const key of Object.keys(raw)) if (!HYPERPARAMETERS.includes(key)) bad(`${where}.${key}`, `unsupported hyperparameter (supported: ${HYPERPARAMETERS.join(', ')})`);
  const choice = (key: string, ok: (v: number) => boolean, rule: string): 'auto' | number => {
    const v = raw[key] ?? 'auto';
    if (v === 'auto') return v;
    if (typeof v !== 'number' || !ok(v)) bad(`${where}.${key}`, `must be "auto" or ${rule}`);
    return v;
  };
  return {
    batch_size: choice('batch_size', (v) => Number.isInteger(v) && v >= 1 && v <= 256, 'an integer from 1 to 256'),
    learning_rate_multiplier: choice('learning_rate_multiplier', (v) => v > 0 && v <= 1000, 'a number above 0, at most 1000'),
    n_epochs: choice('n_epochs', (v) => Number.isInteger(v) && v >= 1 && v <= 1000, 'an integer from 1 to 1000'),
    lora_rank: choice('lora_rank', (v) => Number.isInteger(v) && v >= 0 && v <= maxServedRank(), `an integer from 0 (every weight) to ${maxServedRank()}`),
  };
}

// OpenAI's metadata: up to 16 pairs, keys of at most 64 characters, values of at most 512.
function metadata(value: unknown): Record<string, string> | null {
  if (value === undefined || value === null) return null;
  if (!isJsonObject(value)) bad('metadata', 'must be an object of strings');
  const entries = Object.entries(value);
  if (entries.length > 16) bad('metadata', 'must have at most 16 keys');
  for (const [k, v] of entries) {
    if (k.length > 64) bad('metadata', `keys must be at most 64 characters (${JSON.stringify(k.slice(0, 20))}... has ${k.length})`);
    if (typeof v !== 'string' || v.length > 512) bad(`metadata.${k}`, 'must be a string of at most 512 characters');
  }
  return Object.fromEntries(entries) as Record<string, string>;
}
