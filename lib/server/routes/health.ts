// GET /ping: health for load balancers ("Pong!"; 503 while shutting down, so that the
// balancer stops sending requests here). Open to all: it tells nothing.
import express, { type Request, type Response } from 'express';

export function healthRouter(isDraining: () => boolean): express.Router {
  const router = express.Router();
  router.get('/ping', (_req: Request, res: Response) => {
    if (isDraining()) res.status(503).type('text/plain').send('shutting down');
    else res.type('text/plain').send('Pong!');
  });
  return router;
}
