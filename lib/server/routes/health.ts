// GET /ping and GET /health: health for load balancers ("Pong!"; llama.cpp's server's {"status": "ok"}), 503 while
// shutting down, so that the balancer stops sending requests here. Open to all: they tell nothing.
import express, { type Request, type Response } from 'express';
import { llamaCppError } from './llama_cpp';

export const HEALTH_PATHS: readonly string[] = ['/ping', '/health'];

export function healthRouter(isDraining: () => boolean): express.Router {
  const router = express.Router();
  router.get('/ping', (_req: Request, res: Response) => {
    if (isDraining()) res.status(503).type('text/plain').send('shutting down');
    else res.type('text/plain').send('Pong!');
  });
  router.get('/health', (_req: Request, res: Response) => {
    if (isDraining()) res.status(503).json(llamaCppError(503, 'the server is shutting down', undefined));
    else res.json({ status: 'ok' });
  });
  return router;
}
