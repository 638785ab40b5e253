// POST /tokenize {"content", "model"?, "with_pieces"?} -> {"tokens"} and POST /detokenize {"tokens", "model"?}
// -> {"content"}, as llama.cpp's server has them, for clients that count tokens. `model` defaults as
// /invocations' model_key does. Text is tokenized as prompts are: special tokens are ordinary characters.
import express, { type Request, type Response } from 'express';
import { HttpError } from '../errors';
import type { ChatService } from '../service';

type Body = Record<string, unknown>;

function readBody(body: unknown, known: readonly string[]): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body: must be a JSON object', { field: 'body' });
  for (const key of Object.keys(body)) if (!known.includes(key)) throw new HttpError(400, `${key}: unknown field (known: ${known.join(', ')})`, { field: key });
  return body as Body;
}

function modelKey(service: ChatService, body: Body): string {
  const key = body.model ?? service.defaultModelKey;
  if (typeof key !== 'string' || key === '') throw new HttpError(400, 'model: must be a non-empty string', { field: 'model' });
  service.model(key);
  return key;
}

export function tokensRouter(service: ChatService, jsonBody: express.RequestHandler): express.Router {
  const router = express.Router();

  router.post('/tokenize', jsonBody, async (req: Request, res: Response) => {
    const body = readBody(req.body, ['content', 'model', 'with_pieces']);
    if (typeof body.content !== 'string') throw new HttpError(400, 'content: must be a string', { field: 'content' });
    if (body.with_pieces !== undefined && typeof body.with_pieces !== 'boolean') throw new HttpError(400, 'with_pieces: must be true or false', { field: 'with_pieces' });
    const tokenizer = await service.tokenizer(modelKey(service, body));
    const tokens = [...tokenizer.encode(body.content, { allowSpecial: false })];
    if (body.with_pieces !== true) {
      res.json({ tokens });
      return;
    }
    // A piece that is not whole UTF-8 on its own (part of a character) comes as its bytes, as llama.cpp does.
    const decoder = new TextDecoder('utf-8', { fatal: true });
    res.json({
      tokens: tokens.map((id) => {
        const bytes = tokenizer.tokenBytes(id);
        try {
          return { id, piece: decoder.decode(bytes) };
        } catch {
          return { id, piece: [...bytes] };
        }
      }),
    });
  });

  router.post('/detokenize', jsonBody, async (req: Request, res: Response) => {
    const body = readBody(req.body, ['tokens', 'model']);
    const tokenizer = await service.tokenizer(modelKey(service, body));
    const tokens = body.tokens;
    if (!Array.isArray(tokens) || !tokens.every((t) => Number.isInteger(t) && t >= 0 && t < tokenizer.vocabSize)) {
      throw new HttpError(400, `tokens: must be an array of token ids from 0 to ${tokenizer.vocabSize - 1}`, { field: 'tokens' });
    }
    res.json({ content: tokenizer.decode(tokens as number[]) });
  });

  return router;
}
