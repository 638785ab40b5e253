// POST /invocations (docs/compatibility.md): {"model_key": "chatbot", "raw_text": "..."} answers the sanitized reply
// as text/plain; as JSON ({text, tokens, finish_reason, timings, ...}) when the client
// sends Accept: application/json or "format": "json"; as Server-Sent Events (each the text that follows, then
// the JSON) with "stream": true or Accept: text/event-stream. Optional: "history" (earlier messages of a chat-format
// model's conversation, since the server keeps none), sampling settings under server_config.json's names ("length",
// "temperature", "top_k", "top_p", "min_p", "penalize") and "seed".
import express, { type Request, type Response } from 'express';
import type { Turn } from '../../data/chat_format';
import { requestSampling } from '../config';
import { appendOnly, type ChatService, type Completion } from '../service';
import { isJsonObject } from '../../util/json_object';
import { bad } from './api_common';

const FIELDS = ['model_key', 'raw_text', 'format', 'stream', 'history', 'seed', 'length', 'temperature', 'top_k', 'top_p', 'min_p', 'penalize'];
const MAX_HISTORY = 200;

interface InvocationBody {
  modelKey: string;
  rawText: string;
  format: 'text' | 'json' | null;
  stream: boolean;
  history: Turn[];
  seed: number | undefined;
  overrides: Record<string, unknown>;
}

// Checks the body's shape; the sampling values are checked against the model's settings later.
function readInvocation(body: unknown, defaultModelKey: string): InvocationBody {
  if (!isJsonObject(body)) bad('body', 'must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) if (!FIELDS.includes(key)) bad(key, `unknown field (known: ${FIELDS.join(', ')})`);
  const modelKey = b.model_key ?? defaultModelKey;
  if (typeof modelKey !== 'string' || modelKey === '') bad('model_key', 'must be a non-empty string');
  if (b.raw_text === undefined) bad('raw_text', 'is required (the text to answer)');
  if (typeof b.raw_text !== 'string') bad('raw_text', 'must be a string');
  if (b.format !== undefined && b.format !== 'text' && b.format !== 'json') bad('format', 'must be "text" or "json"');
  if (b.stream !== undefined && typeof b.stream !== 'boolean') bad('stream', 'must be true or false');
  if (b.seed !== undefined && !(Number.isSafeInteger(b.seed) && (b.seed as number) >= 0)) bad('seed', 'must be a non-negative integer');
  const history: Turn[] = [];
  if (b.history !== undefined) {
    if (!Array.isArray(b.history)) bad('history', 'must be an array of {"from": "user" | "bot", "text": string}');
    if (b.history.length > MAX_HISTORY) bad('history', `must have at most ${MAX_HISTORY} messages`);
    b.history.forEach((m: unknown, i) => {
      const { from, text } = (typeof m === 'object' && m !== null ? m : {}) as Record<string, unknown>;
      if (from !== 'user' && from !== 'bot') bad(`history[${i}].from`, 'must be "user" or "bot"');
      if (typeof text !== 'string') bad(`history[${i}].text`, 'must be a string');
      history.push({ from, text });
    });
  }
  const overrides: Record<string, unknown> = {};
  for (const key of ['length', 'temperature', 'top_k', 'top_p', 'min_p', 'penalize']) if (b[key] !== undefined) overrides[key] = b[key];
  return {
    modelKey,
    rawText: b.raw_text,
    format: (b.format as 'text' | 'json' | undefined) ?? null,
    stream: b.stream === true,
    history,
    seed: b.seed as number | undefined,
    overrides,
  };
}

function completionJson(c: Completion): Record<string, unknown> {
  return {
    model_key: c.model,
    text: c.text,
    tokens: c.tokens,
    finish_reason: c.finishReason,
    prompt_tokens: c.promptIds.length,
    cached_prompt_tokens: c.timings.cachedPromptTokens,
    length: c.length,
    trimmed_prompt_tokens: c.trimmed.tokens,
    trimmed_messages: c.trimmed.messages,
    trimmed_message_chars: c.trimmed.messageChars,
    trimmed_reply_tokens: c.trimmed.replyTokens,
    timings: {
      queued_ms: c.timings.queuedMs,
      first_token_ms: c.timings.firstTokenMs,
      total_ms: c.timings.totalMs,
      generated_tokens: c.timings.generatedTokens,
      tokens_per_second: Number.isFinite(c.timings.tokensPerSecond) ? c.timings.tokensPerSecond : null,
    },
  };
}

function sse(res: Response, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

export function invocationsRouter(service: ChatService, jsonBody: express.RequestHandler): express.Router {
  const router = express.Router();
  router.post('/invocations', jsonBody, async (req: Request, res: Response) => {
    const body = readInvocation(req.body, service.defaultModelKey);
    const model = service.model(body.modelKey);
    if (body.history.length > 0 && model.promptFormat !== 'chat') {
      bad('history', `model "${model.key}" takes raw prompts (prompt_format "raw"); send the whole prompt in raw_text`);
    }
    const sampling = requestSampling(body.overrides, model.sampling, (key) => key);
    res.locals.model = model.key;
    // The client going away stops its generation and frees its batch slot.
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const generation = { prompt: service.prompt(model, body.rawText, body.history), promptField: 'raw_text', sampling, lengthGiven: body.overrides.length !== undefined, seed: body.seed, signal: gone.signal, client: req.ip };
    const streaming = body.stream || (req.accepts(['text/plain', 'application/json', 'text/event-stream']) === 'text/event-stream');
    if (!streaming) {
      const completion = await service.generate(model.key, generation);
      const wantsJson = body.format === 'json' || (body.format === null && req.accepts(['text/plain', 'application/json']) === 'application/json');
      if (wantsJson) res.json(completionJson(completion));
      else res.type('text/plain; charset=utf-8').send(completion.text);
      return;
    }
    let started = false;
    const start = () => {
      if (started) return;
      started = true;
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
    };
    // Each event carries the text that follows the last one's: a reply of n characters costs n, not n^2 / 2.
    const send = appendOnly((text) => {
      start();
      sse(res, 'text', { text });
    });
    try {
      const completion = await service.generate(model.key, { ...generation, onText: send });
      send(completion.text);
      start();
      sse(res, 'done', completionJson(completion));
      res.end();
    } catch (err) {
      if (!started) throw err;  // nothing sent yet: the error handler answers with the right status
      sse(res, 'error', { error: (err as Error).message });
      res.end();
    }
  });
  return router;
}
