// OpenAI's Batch API (lib/server/batches.ts), for its SDKs' `client.batches`:
//   POST /v1/batches                 {input_file_id, endpoint, completion_window: "24h", metadata}
//   GET  /v1/batches                 newest first (after, limit)
//   GET  /v1/batches/<id>            its status, its request counts, and its files once it has them
//   POST /v1/batches/<id>/cancel     sends no more of its requests; the answers so far go to its output file
import express, { type Request, type Response } from 'express';
import { BATCH_ENDPOINTS, COMPLETION_WINDOW, type Batches } from '../batches';
import { bad, checkKeys, objectBody } from './api_common';
import { cursorPage } from './pages';
import { isJsonObject } from '../../util/json_object';

const BATCH_FIELDS = ['input_file_id', 'endpoint', 'completion_window', 'metadata', 'output_expires_after'];
const MAX_METADATA = 16;

export function batchesRouter(batches: Batches, jsonBody: express.RequestHandler): express.Router {
  const router = express.Router();

  router.post('/v1/batches', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    checkKeys(body, BATCH_FIELDS);
    if (typeof body.input_file_id !== 'string') bad('input_file_id', 'is required: the id of a file uploaded with purpose "batch"');
    if (typeof body.endpoint !== 'string' || !BATCH_ENDPOINTS.includes(body.endpoint)) bad('endpoint', `must be one of ${BATCH_ENDPOINTS.join(', ')}`);
    if (body.completion_window !== COMPLETION_WINDOW) bad('completion_window', `must be "${COMPLETION_WINDOW}" (a batch here runs until it is done)`);
    if (body.output_expires_after !== undefined && body.output_expires_after !== null) bad('output_expires_after', 'is not supported: files are kept until deleted');
    const metadata = body.metadata ?? null;
    if (metadata !== null && !(isJsonObject(metadata) && Object.keys(metadata).length <= MAX_METADATA && Object.values(metadata).every((v) => typeof v === 'string'))) {
      bad('metadata', `must be an object of at most ${MAX_METADATA} strings`);
    }
    res.json(await batches.create(body.input_file_id, body.endpoint, metadata as Record<string, string> | null));
  });

  router.get('/v1/batches', (req: Request, res: Response) => {
    for (const key of Object.keys(req.query)) if (key !== 'after' && key !== 'limit') bad(key, 'unsupported query parameter (supported: after, limit)');
    res.json(cursorPage(batches.list(), req.query, 20));
  });

  router.get('/v1/batches/:id', (req: Request, res: Response) => {
    res.json(batches.get(String(req.params.id)));
  });

  router.post('/v1/batches/:id/cancel', async (req: Request, res: Response) => {
    res.json(await batches.cancel(String(req.params.id)));
  });

  return router;
}
