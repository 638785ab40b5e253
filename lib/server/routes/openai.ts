// OpenAI's HTTP API over the same models, queue, batching and sanitizers as /invocations, so that the clients
// people already use (the openai libraries, LangChain, Open WebUI, curl recipes) talk to a dixie model:
//   GET  /v1/models             every configured model, loaded or not; /v1/models/<key> one of them
//   POST /v1/completions        a prompt (or several; text or token ids) continued; `n`, `stop`, `seed`, `logprobs`,
//                               `echo`, `stream`
//   POST /v1/chat/completions   `messages` made into the model's prompt (see chatPrompt), the reply sanitized
//   Both take `response_format` (json_object, json_schema): the reply is then held to it (response_format.ts);
//   chat completions take `tools`, the reply held to calls where tool_choice forces them or, under "auto", where it
//   begins as one (tool_calls.ts), and conversations that hold calls and their outputs
//   POST /v1/embeddings         a text (or several; text or token ids) as one vector each (lib/generate/embed.ts)
// Sampling fields keep OpenAI's names (`logit_bias`, `presence_penalty` and `frequency_penalty` too); dixie's `top_k`
// `min_p` and `penalize` come as extensions (vLLM's server takes `top_k` and `min_p` so too).
// OpenAI's fields for what GPT-2 does not do are accepted at their neutral values and refused at any other
// (NEUTRAL_ONLY in api_common.ts). /v1/responses is responses.ts.
import crypto from 'node:crypto';
import express, { type Request, type Response } from 'express';
import type { TokenLogprob } from '../../generate/logprobs';
import { MAX_TOP_LOGPROBS } from '../../generate/logprobs';
import { seedOf } from '../../generate/sequence';
import type { Tokenizer } from '../../tokenizer';
import type { ModelConfig, SamplingDefaults } from '../config';
import { HttpError } from '../errors';
import { type ChatService, type Completion, type GenerationRequest, type PromptLogprob } from '../service';
import {
  MAX_LOGIT_BIAS, bad, chatPrompt, checkGenerations, checkOpenAITemperature, checkKeys, checkNeutral, clientGone, cutShort, eventSender, isBool, isInt, objectBody, openAIError, openAIMessages, optional, readDimensions,
  generateStreamed, readAdditivePenalty, readModel, readSampling, readSeed, readStop, readStreamOptions, sentByBatch, tokenLogprobs, wholeTokenText, type Body,
} from './api_common';
import { readResponseFormat } from './response_format';
import { chatToolsLayout, readToolChoice, replyCalls, replyKind, type ToolChoice, type ToolsLayout } from './tool_calls';
import type { Grammar } from '../../generate/grammar';
import { isJsonObject } from '../../util/json_object';

const MAX_N = 16;

// OpenAI's logit_bias: token ids (the object's keys) to biases within ±MAX_LOGIT_BIAS. The ids are the sampler's to
// check (nativeSampling, then against the model's vocabulary once it is loaded).
const isLogitBias = (v: unknown): boolean => isJsonObject(v) && Object.values(v).every((b) => typeof b === 'number' && Math.abs(b) <= MAX_LOGIT_BIAS);

// What both endpoints share: the model, the sampling settings over the model's defaults, n, stop, seed, stream.
interface Common {
  model: ModelConfig;
  sampling: SamplingDefaults;
  lengthGiven: boolean;
  n: number;
  stop: string[] | undefined;
  seed: bigint | undefined;
  stream: boolean;
  includeUsage: boolean;
  logitBias: Readonly<Record<number, number>> | undefined;
  presencePenalty: number | undefined;
  frequencyPenalty: number | undefined;
  grammar: Grammar | undefined;  // response_format's, or the tools' (tool_calls.ts)
  textBesideCalls?: boolean;     // the tools' grammar lets the reply be text too (tool_choice "auto")
  fingerprint: string;           // the answer's system_fingerprint
}

const COMMON_KEYS = [
  'model', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'penalize', 'n', 'stop', 'seed', 'stream',
  'stream_options', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'user', 'response_format',
];
// What /v1/chat/completions takes beyond COMMON_KEYS that NEUTRAL_ONLY checks.
const CHAT_NEUTRAL_KEYS = [
  'tools', 'functions', 'tool_choice', 'function_call', 'parallel_tool_calls', 'modalities', 'store', 'service_tier',
  'safety_identifier', 'prompt_cache_key', 'prompt_cache_retention', 'metadata', 'reasoning_effort', 'verbosity', 'audio', 'prediction',
  'web_search_options',
];
// OpenAI's sampling fields under the names of the model's defaults (readSampling).
const SAMPLING_NAMES: Readonly<Record<string, string>> = { max_tokens: 'length', max_completion_tokens: 'length', temperature: 'temperature', top_p: 'top_p', top_k: 'top_k', min_p: 'min_p', penalize: 'penalize' };

// `version`: dixie's, for the system_fingerprint.
async function readCommon(service: ChatService, body: Body, version: string): Promise<Common> {
  const model = readModel(service, body);
  checkNeutral(body);
  checkOpenAITemperature(body);
  const { sampling, lengthGiven } = readSampling(body, model, SAMPLING_NAMES);
  const streamOptions = readStreamOptions(body, ['include_usage']);
  if (!isBool(streamOptions.include_usage ?? false)) bad('stream_options.include_usage', 'must be true or false');
  return {
    model,
    sampling,
    lengthGiven,
    n: optional<number>(body, 'n', isInt(1, MAX_N), `an integer from 1 to ${MAX_N}`) ?? 1,
    stop: readStop(body, 'stop'),
    seed: readSeed(body, 'seed'),
    stream: optional<boolean>(body, 'stream', isBool, 'true or false') ?? false,
    includeUsage: streamOptions.include_usage === true,
    logitBias: optional<Record<number, number>>(body, 'logit_bias', isLogitBias, `an object of token ids to biases from ${-MAX_LOGIT_BIAS} to ${MAX_LOGIT_BIAS}, e.g. {"50256": -100}`),
    presencePenalty: readAdditivePenalty(body, 'presence_penalty'),
    frequencyPenalty: readAdditivePenalty(body, 'frequency_penalty'),
    grammar: await readResponseFormat(body),
    fingerprint: systemFingerprint(version, model),
  };
}

// /v1/completions' prompt and /v1/embeddings' input, as OpenAI's API takes them: a text, texts, token ids, or lists of
// token ids (at most `most` of them); `single` when it is one. Token ids are fed as given (the model's vocabulary is
// checked once it is loaded).
function textsOrTokens(value: unknown, field: string): { inputs: (string | number[])[]; single: boolean } {
  const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((t) => Number.isSafeInteger(t) && t >= 0);
  if (typeof value === 'string' || isIds(value)) return { inputs: [value], single: true };
  if (Array.isArray(value) && value.length > 0 && (value.every((p) => typeof p === 'string') || value.every(isIds))) return { inputs: value as string[] | number[][], single: false };
  return bad(field, 'must be a string, a non-empty array of strings, an array of token ids, or an array of arrays of token ids');
}

// How a choice ended: OpenAI's finish reason (a reply cut by the deadline was cut, as by max_tokens), and beside it
// dixie's own, which tells the two apart ("length", "deadline", "stop"...), for clients that show why.
function finished(c: Completion): { finish_reason: 'stop' | 'length'; dixie_finish_reason: string } {
  return { finish_reason: cutShort(c) ? 'length' : 'stop', dixie_finish_reason: c.finishReason };
}

// A token as OpenAI's completions name it: its text, or where it holds part of a character, "bytes:" and its bytes
// as \xNN, as OpenAI's do; as U+FFFD, such tokens would read alike, and collide as keys of top_logprobs.
function completionToken(tokenizer: Tokenizer, token: number): string {
  return wholeTokenText(tokenizer, token) ?? `bytes:${[...tokenizer.tokenBytes(token)].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}`;
}

// Where each of consecutive tokens begins in the text their bytes make from `at` on: where the character of its first
// byte begins, since a character split over tokens comes into the text with the token that ends it.
function textOffsets(tokenizer: Tokenizer, at: number): (token: number) => number {
  const decoder = tokenizer.streamDecoder();
  return (token) => {
    const offset = at;
    at += decoder.push(token).length;
    return offset;
  };
}

// OpenAI's logprobs of a completion's tokens, `offsetOf` telling where each one's text begins.
function completionLogprobs(tokenizer: Tokenizer, logprobs: (TokenLogprob | PromptLogprob)[], offsetOf: (token: number) => number): Record<string, unknown> {
  return {
    tokens: logprobs.map((l) => completionToken(tokenizer, l.token)),
    token_logprobs: logprobs.map((l) => l.logprob),
    top_logprobs: logprobs.map((l) => l.top && Object.fromEntries(l.top.map((a) => [completionToken(tokenizer, a.token), a.logprob]))),
    text_offset: logprobs.map((l) => offsetOf(l.token)),
  };
}

// Where each token of an echoed prompt's `promptTokens` and then of its reply, from `replyAt`, begins.
function echoedOffsets(tokenizer: Tokenizer, promptTokens: number, replyAt: number): (token: number) => number {
  const inPrompt = textOffsets(tokenizer, 0);
  const inReply = textOffsets(tokenizer, replyAt);
  let seen = 0;
  return (token) => (seen++ < promptTokens ? inPrompt : inReply)(token);
}

function chatLogprobs(tokenizer: Tokenizer, logprobs: TokenLogprob[]): Record<string, unknown> {
  return { content: tokenLogprobs(tokenizer, logprobs) };
}

function usage(prompts: Completion[], completions: Completion[]): Record<string, unknown> {
  const promptTokens = prompts.reduce((sum, c) => sum + c.promptIds.length, 0);
  const completionTokens = completions.reduce((sum, c) => sum + c.tokens.length, 0);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: prompts.reduce((sum, c) => sum + c.timings.cachedPromptTokens, 0) },
  };
}

// One generation per choice, side by side in the batch; choice i of a seeded request is seeded seedOf(seed, i), so
// the same request gives the same choices, and choice 0 what the request would give alone.
interface Choice {
  index: number;
  prompt: GenerationRequest['prompt'];
}

interface Kind {
  object: string;        // of the whole answer
  chunkObject: string;   // of a streamed chunk
  idPrefix: string;
  promptField: string;   // the request's field of the prompt
  // A streamed choice's fields, in the chunks to send for a piece of text, then (done: the completion) for how it
  // ended; logprobs: those of the tokens drawn since the chunk before (in this kind's shape, below), or null.
  chunks(index: number, text: string, done: Completion | null, first: boolean, logprobs: Record<string, unknown> | null): Record<string, unknown>[];
  // The log-probabilities of tokens in this kind's shape; `offsetOf`: where each token's text begins.
  logprobs(tokenizer: Tokenizer, logprobs: (TokenLogprob | PromptLogprob)[], offsetOf: (token: number) => number): Record<string, unknown>;
}

const COMPLETION: Kind = {
  object: 'text_completion',
  chunkObject: 'text_completion',
  idPrefix: 'cmpl-',
  promptField: 'prompt',
  chunks: (index, text, done, _first, logprobs) => [{ index, text, logprobs, ...(done ? finished(done) : { finish_reason: null }) }],
  logprobs: completionLogprobs,
};

const CHAT: Kind = {
  object: 'chat.completion',
  chunkObject: 'chat.completion.chunk',
  idPrefix: 'chatcmpl-',
  promptField: 'messages',
  chunks: (index, text, done, first, logprobs) => [{ index, delta: { ...(first && { role: 'assistant' }), ...(text !== '' && { content: text }) }, logprobs, ...(done ? finished(done) : { finish_reason: null }) }],
  logprobs: (tokenizer, logprobs) => chatLogprobs(tokenizer, logprobs as TokenLogprob[]),
};

// A chat completion whose reply may be calls (tool_calls.ts): the message holds its calls, or its text (a reply in
// text, or calls cut short). A request that wrote its tools as the older `functions` gets its call so too. A call to
// the function the request's choice names ends as "stop", as OpenAI's does: the request asked for that call, where
// "tool_calls" tells a client that the model chose to call (the clients' helpers read the calls from the message).
function replyMessage(c: Completion, layout: ToolsLayout, tools: ToolChoice): { message: Record<string, unknown>; finish: Record<string, unknown> } {
  const calls = replyCalls(c);
  if (calls === null) return { message: { content: c.text }, finish: finished(c) };
  const done = { dixie_finish_reason: c.finishReason };
  const finishedAs = (chosen: string) => ({ finish_reason: tools.named ? 'stop' : chosen, ...done });
  if (layout === 'functions') return { message: { content: null, function_call: { name: calls[0].name, arguments: calls[0].arguments } }, finish: finishedAs('function_call') };
  const toolCalls = calls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }));
  return { message: { content: null, tool_calls: toolCalls }, finish: finishedAs('tool_calls') };
}

// Streamed, a reply in text streams as CHAT's does; one that begins as calls is held (replyKind), and its calls come
// whole at the end, the pieces before sending a chunk only for the role or for the log-probabilities they carry. The
// calls' chunk is followed by one of the finish reason alone, as OpenAI's streams end: the official clients' stream
// helpers take a call for done when a chunk with a finish reason comes after it (ChatCompletionStream's
// tool_calls.function.arguments.done). Made for each request: it keeps what each choice's reply is.
function toolCallKind(layout: ToolsLayout, tools: ToolChoice): Kind {
  const kinds = new Map<number, ReturnType<typeof replyKind>>();
  return {
    ...CHAT,
    chunks: (index, text, done, first, logprobs) => {
      let kindOf = kinds.get(index);
      if (kindOf === undefined) kinds.set(index, (kindOf = replyKind()));
      if (kindOf(text) !== 'calls') return CHAT.chunks(index, text, done, first, logprobs);
      const role = first ? { role: 'assistant' } : {};
      if (done === null) return first || logprobs !== null ? [{ index, delta: role, logprobs, finish_reason: null }] : [];
      const { message, finish } = replyMessage(done, layout, tools);
      const delta = message.tool_calls ? { tool_calls: (message.tool_calls as Record<string, unknown>[]).map((call, i) => ({ index: i, ...call })) }
        : message.function_call ? { function_call: message.function_call } : { content: done.text };
      return [{ index, delta: { ...role, ...delta }, logprobs, finish_reason: null }, { index, delta: {}, logprobs: null, ...finish }];
    },
  };
}

// OpenAI's system_fingerprint, which names the backend configuration a reply came from, so that a client holding
// its seed can tell a changed reply from a changed server: dixie's version and the model's entry in the config
// (its weights' source, sampling defaults, sanitizer, precision), hashed, as the entry may hold the server's paths.
// Not where the entry stands among the others, nor whether another shares its weights: a model added beside it
// changes none of its replies. Worked out once an entry (a reload makes new ones).
const fingerprints = new WeakMap<ModelConfig, string>();
function systemFingerprint(version: string, model: ModelConfig): string {
  let fingerprint = fingerprints.get(model);
  if (fingerprint === undefined) {
    const { where: _where, sharesWeights: _shares, ...entry } = model;
    fingerprint = `fp_${crypto.createHash('sha256').update(`${version}\0${JSON.stringify(entry)}`).digest('hex').slice(0, 12)}`;
    fingerprints.set(model, fingerprint);
  }
  return fingerprint;
}

// logprobs: the alternatives each token's log-probability comes with, and whether the prompt's tokens' come too.
async function answer(service: ChatService, res: Response, kind: Kind, common: Common, choices: Choice[], logprobs: { top: number; prompt: boolean } | undefined, format: (c: Completion, choice: Choice, tokenizer: Tokenizer | null) => Record<string, unknown>): Promise<void> {
  const id = `${kind.idPrefix}${crypto.randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: kind.chunkObject, created, model: common.model.key, system_fingerprint: common.fingerprint };
  res.locals.model = common.model.key;
  const gone = clientGone(res);
  const tokenizer = logprobs === undefined ? null : await service.tokenizer(common.model.key, gone.signal);
  const { send, started } = eventSender(res);
  const generate = (choice: Choice): Promise<Completion> => {
    let first = true;
    // Streamed, each chunk carries the log-probabilities of the tokens drawn since the one before (generateStreamed).
    const offsetOf = tokenizer && textOffsets(tokenizer, 0);
    const chunkLogprobs = (drawn: TokenLogprob[]): Record<string, unknown> | null => (tokenizer && offsetOf && drawn.length > 0 ? kind.logprobs(tokenizer, drawn, offsetOf) : null);
    const request: GenerationRequest = {
      prompt: choice.prompt,
      promptField: kind.promptField,
      sampling: common.sampling,
      lengthGiven: common.lengthGiven,
      seed: common.seed === undefined ? undefined : seedOf(common.seed, choice.index),
      signal: gone.signal,
      stop: common.stop,
      logitBias: common.logitBias,
      presencePenalty: common.presencePenalty,
      frequencyPenalty: common.frequencyPenalty,
      logprobs: logprobs?.top,
      promptLogprobs: logprobs?.prompt,
      grammar: common.grammar,
      textBesideCalls: common.textBesideCalls,
      sentByBatch: sentByBatch(res),
      client: res.req.ip,
      choicesOf: choices,
    };
    if (!common.stream) return service.generate(common.model.key, request);
    return generateStreamed(service, common.model.key, request, (text, drawn, done) => {
      const chunks = kind.chunks(choice.index, text, done, first, chunkLogprobs(drawn));
      for (const chunk of chunks) send({ ...head, choices: [chunk] });
      if (chunks.length > 0) first = false;
    });
  };
  let completions: Completion[];
  service.checkRoom(common.model.key, choices.length, sentByBatch(res), res.req.ip);
  try {
    completions = await Promise.all(choices.map(generate));
  } catch (err) {
    gone.abort();  // the other choices stop too
    if (!started()) throw err;
    send(openAIError(err instanceof HttpError ? err.status : 500, (err as Error).message, null, null));
    res.end();
    return;
  }
  // Each prompt counts once, however many choices it has.
  const prompts = completions.filter((_, i) => i % common.n === 0);
  if (common.stream) {
    if (common.includeUsage) send({ ...head, choices: [], usage: usage(prompts, completions) });
    res.write('data: [DONE]\n\n');
    res.end();
    return;
  }
  res.json({
    id,
    object: kind.object,
    created,
    model: common.model.key,
    system_fingerprint: common.fingerprint,
    choices: completions.map((c, i) => format(c, choices[i], tokenizer)),
    usage: usage(prompts, completions),
  });
}

export function openAIRouter(service: ChatService, jsonBody: express.RequestHandler, version: string): express.Router {
  const router = express.Router();

  const modelObject = (m: ModelConfig, state: string | undefined): Record<string, unknown> => ({ id: m.key, object: 'model', created: 0, owned_by: 'dixie', state: state ?? 'unloaded', prompt_format: m.promptFormat });
  const states = (): Map<string, string> => new Map(service.registry.status().map((s) => [s.key, s.state]));

  router.get('/v1/models', (_req: Request, res: Response) => {
    const loaded = states();
    res.json({ object: 'list', data: [...service.models.values()].map((m) => modelObject(m, loaded.get(m.key))) });
  });

  router.get('/v1/models/:model', (req: Request, res: Response) => {
    const key = String(req.params.model);
    if (!service.models.has(key)) throw new HttpError(404, `The model "${key}" does not exist`, { field: 'model', code: 'model_not_found' });
    res.json(modelObject(service.model(key), states().get(key)));
  });

  router.post('/v1/completions', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    checkKeys(body, [...COMMON_KEYS, 'prompt', 'logprobs', 'echo', 'suffix', 'best_of']);
    const common = await readCommon(service, body, version);
    const prompts = textsOrTokens(body.prompt, 'prompt').inputs;
    const logprobs = optional<number>(body, 'logprobs', isInt(0, MAX_TOP_LOGPROBS), `an integer from 0 to ${MAX_TOP_LOGPROBS}`);
    const echo = optional<boolean>(body, 'echo', isBool, 'true or false') ?? false;
    if (echo && common.stream) bad('echo', 'is not supported with stream');
    if (body.best_of !== undefined && body.best_of !== null && body.best_of !== common.n) bad('best_of', 'is not supported (only equal to n)');
    // An echoed prompt of token ids comes back as their text.
    const echoed = !echo ? null : prompts.some((p) => typeof p !== 'string') ? await service.tokenizer(common.model.key) : null;
    checkGenerations(service, prompts.length * common.n, prompts.length > 1 ? 'prompt' : 'n');
    const choices = prompts.flatMap((p, i) => Array.from({ length: common.n }, (_, j) => ({ index: i * common.n + j, prompt: p })));
    await answer(service, res, COMPLETION, common, choices, logprobs === undefined ? undefined : { top: logprobs, prompt: echo }, (c, choice, tokenizer) => {
      const p = choice.prompt as string | number[];
      const head = !echo ? '' : typeof p === 'string' ? p : (echoed as Tokenizer).decode(p);
      return {
        index: choice.index,
        text: head + c.text,
        // Echoed, the prompt's tokens come first, from the start of the text; the reply's text was decoded apart.
        logprobs: tokenizer && c.logprobs ? completionLogprobs(tokenizer, [...(c.promptLogprobs ?? []), ...c.logprobs], echoedOffsets(tokenizer, c.promptLogprobs?.length ?? 0, head.length)) : null,
        ...finished(c),
      };
    });
  });

  router.post('/v1/chat/completions', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    checkKeys(body, [...COMMON_KEYS, 'messages', 'logprobs', 'top_logprobs', ...CHAT_NEUTRAL_KEYS]);
    const read = await readCommon(service, body, version);
    const layout = chatToolsLayout(body);
    const tools = await readToolChoice(body, read.model, read.grammar, layout);
    const common = { ...read, grammar: tools?.grammar ?? read.grammar, textBesideCalls: tools?.optional };
    const { prompt, ignored } = chatPrompt(common.model, openAIMessages(body.messages), 'messages');
    if (ignored.length > 0) res.setHeader('X-Dixie-Ignored-Messages', ignored.join(','));
    const wantsLogprobs = optional<boolean>(body, 'logprobs', isBool, 'true or false') ?? false;
    const top = optional<number>(body, 'top_logprobs', isInt(0, MAX_TOP_LOGPROBS), `an integer from 0 to ${MAX_TOP_LOGPROBS}`);
    if (top !== undefined && !wantsLogprobs) bad('top_logprobs', 'needs "logprobs": true');
    checkGenerations(service, common.n, 'n');
    const choices = Array.from({ length: common.n }, (_, index) => ({ index, prompt }));
    await answer(service, res, tools ? toolCallKind(layout, tools) : CHAT, common, choices, wantsLogprobs ? { top: top ?? 0, prompt: false } : undefined, (c, choice, tokenizer) => {
      const { message, finish } = tools ? replyMessage(c, layout, tools) : { message: { content: c.text }, finish: finished(c) };
      // refusal: OpenAI's models may decline in a field of its own, which clients read beside the content; dixie's never do.
      return { index: choice.index, message: { role: 'assistant', ...message, refusal: null }, logprobs: tokenizer && c.logprobs ? chatLogprobs(tokenizer, c.logprobs) : null, ...finish };
    });
  });

  router.post('/v1/embeddings', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    checkKeys(body, ['model', 'input', 'encoding_format', 'dimensions', 'user']);
    const model = readModel(service, body);
    res.locals.model = model.key;
    checkNeutral(body);
    const { inputs, single } = textsOrTokens(body.input, 'input');
    const format = optional<string>(body, 'encoding_format', (v) => v === 'float' || v === 'base64', '"float" or "base64"') ?? 'float';
    const gone = clientGone(res);
    const e = await service.embed(model.key, { inputs, field: 'input', single, truncate: false, normalize: true, dimensions: readDimensions(body), signal: gone.signal, sentByBatch: sentByBatch(res), client: req.ip });
    res.json({
      object: 'list',
      // base64: the float32 values' little-endian bytes, which OpenAI's libraries ask for and decode.
      data: e.vectors.map((v, index) => ({ object: 'embedding', index, embedding: format === 'base64' ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : [...v] })),
      model: model.key,
      usage: { prompt_tokens: e.promptTokens, total_tokens: e.promptTokens },
    });
  });

  return router;
}
