// GET /ping: health for load balancers ("Pong!", as the original; 503 while shutting down, so that the
// balancer stops sending requests here). GET /metrics: Prometheus.
import express, { type Request, type Response } from 'express';
import { PROMETHEUS_CONTENT_TYPE } from '../metrics';
import type { ChatService } from '../service';

export function healthRouter(service: ChatService, isDraining: () => boolean): express.Router {
  const router = express.Router();
  router.get('/ping', (_req: Request, res: Response) => {
    if (isDraining()) res.status(503).type('text/plain').send('shutting down');
    else res.type('text/plain').send('Pong!');
  });
  router.get('/metrics', (_req: Request, res: Response) => {
    res.type(PROMETHEUS_CONTENT_TYPE).send(service.metrics.render());
  });
  return router;
}
