// GET /metrics: Prometheus. It tells which models there are and how they are used, so with api_keys it needs a
// key like the API unless metrics_public (app.ts decides where it is mounted).
import express, { type Request, type Response } from 'express';
import { PROMETHEUS_CONTENT_TYPE } from '../metrics';
import type { ChatService } from '../service';

export function metricsRouter(service: ChatService): express.Router {
  const router = express.Router();
  router.get('/metrics', (_req: Request, res: Response) => {
    res.type(PROMETHEUS_CONTENT_TYPE).send(service.metrics.render());
  });
  return router;
}
