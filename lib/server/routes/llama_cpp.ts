// llama.cpp's server's own API (llama-server), for the clients written against it (scripts and libraries that post to
// /completion, token counters), over the same models, queue, batching, sanitizers, API keys and errors as the rest
// of the server (its GET /health is health.ts's):
//   GET  /props         a model's context, slots, sampling defaults and chat template (`?model=<key>`)
//   GET  /slots         what each of a model's batch slots decodes now (`?model=<key>`, `?fail_on_no_slot=1`)
//   POST /completion    `prompt` continued as it is (a text, token ids, both mixed, or several prompts); also
//                       /completions. Streamed, one server-sent event a piece, the last with "stop": true. Held to
//                       `grammar` (GBNF) or `json_schema` when one is given (response_format.ts)
//   POST /embedding     `content` (a text or texts) as one vector each, in the mean of its tokens' states
//   POST /apply-template `messages` as the prompt the model's chat format makes of them, for /completion
//   POST /tokenize      {"content", "with_pieces"?, "parse_special"?} -> {"tokens"}; POST /detokenize {"tokens"} -> {"content"}
// llama-server serves one model; here `model` names a served one, by default the server's default model (as
// /invocations' model_key). Its sampling fields keep llama.cpp's names; those for samplers dixie does not have are
// accepted at their neutral values only, and those for the machine (slots, the prompt cache) are the server's to
// decide; fields not of its API are passed over, as llama-server passes over them (ignoreForeignKeys). Errors come
// in llama.cpp's shape, {"error": {"code", "message", "type"}} (llamaCppError, used by the app's one error handler).
import express, { type Request, type Response } from 'express';
import { chatTemplate, fitConversation } from '../../data/chat_format';
import type { TokenLogprob } from '../../generate/logprobs';
import { MAX_TOP_LOGPROBS } from '../../generate/logprobs';
import type { Tokenizer } from '../../tokenizer';
import type { ModelConfig, SamplingDefaults } from '../config';
import { HttpError } from '../errors';
import { resolveModelSource } from '../model_source';
import type { ChatService, Completion, GenerationRequest } from '../service';
import {
  MAX_LOCAL_STOPS, MAX_LOGIT_BIAS, bad, chatPrompt, checkGenerations, clientGone, eventSender, generateStreamed, ignoreForeignKeys, isBool, isInt, objectBody, openAIMessages, optional, readAdditivePenalty,
  readLocalLength, readLocalSeed, readLocalTemperature, readRepeatPenalty, readSampling, readStop, repeatPenaltyOf, tokenLogprobs, wholeTokenText, type Body,
} from './api_common';
import { readLlamaCppGrammar } from './response_format';
import { isJsonObject } from '../../util/json_object';

// The paths whose errors the app's handler gives in llama.cpp's shape.
export const LLAMA_CPP_PATHS: readonly string[] = ['/health', '/props', '/slots', '/completion', '/completions', '/embedding', '/apply-template', '/tokenize', '/detokenize'];

const ERROR_TYPES: Readonly<Record<number, string>> = { 400: 'invalid_request_error', 401: 'authentication_error', 404: 'not_found_error', 501: 'not_supported_error', 503: 'unavailable_error' };

export function llamaCppError(status: number, message: string, field: string | undefined): { error: Record<string, unknown> } {
  const type = ERROR_TYPES[status] ?? (status < 500 ? 'invalid_request_error' : 'server_error');
  return { error: { code: status, message, type, ...(field !== undefined && { field }) } };
}

// /completion's sampling fields under the names of the model's defaults (readSampling).
const SAMPLING_NAMES: Readonly<Record<string, string>> = { n_predict: 'length', temperature: 'temperature', top_k: 'top_k', top_p: 'top_p', min_p: 'min_p', repeat_penalty: 'penalize' };
// llama.cpp's samplers dixie does not have, accepted at the values that turn them off; and the settings of their
// own that only matter when they are on.
const NEUTRAL: Readonly<Record<string, (v: unknown) => boolean>> = {
  typical_p: (v) => v === 1,
  tfs_z: (v) => v === 1,
  top_n_sigma: (v) => typeof v === 'number' && v <= 0,
  mirostat: (v) => v === 0,
  dynatemp_range: (v) => v === 0,
  dry_multiplier: (v) => v === 0,
  xtc_probability: (v) => v === 0,
  adaptive_target: (v) => typeof v === 'number' && v < 0,
  min_keep: (v) => v === 0,
  n_keep: (v) => v === 0,
  n_indent: (v) => v === 0,
  n_cmpl: (v) => v === 1,
  t_max_predict_ms: (v) => v === 0,
  ignore_eos: (v) => v === false,
  post_sampling_probs: (v) => v === false,
  timings_per_token: (v) => v === false,
  return_progress: (v) => v === false,
  lora: (v) => Array.isArray(v) && v.length === 0,
  image_data: (v) => Array.isArray(v) && v.length === 0,
  response_fields: (v) => Array.isArray(v) && v.length === 0,
};
const SETTINGS_OF_NEUTRAL = ['mirostat_tau', 'mirostat_eta', 'dynatemp_exponent', 'dry_base', 'dry_allowed_length', 'dry_penalty_last_n', 'dry_sequence_breakers', 'xtc_threshold', 'adaptive_decay'];
// The machine's: which slot, and whether a prompt's cached prefix is reused, the server decides (prefix_reuse).
const MACHINE = ['id_slot', 'cache_prompt', 'n_cache_reuse'];
const COMPLETION_KEYS = [
  'model', 'prompt', 'stream', 'n_predict', 'temperature', 'top_k', 'top_p', 'min_p', 'repeat_penalty', 'repeat_last_n', 'presence_penalty', 'frequency_penalty', 'seed', 'stop',
  'penalize_nl', 'n_probs', 'return_tokens', 'logit_bias', 'grammar', 'json_schema', 'samplers', ...MACHINE, ...SETTINGS_OF_NEUTRAL, ...Object.keys(NEUTRAL),
];

// The served model a request names in `model` (a field, or the query of a GET), else the default one.
function servedModel(service: ChatService, name: unknown): ModelConfig {
  const key = name ?? service.defaultModelKey;
  if (typeof key !== 'string' || key === '') bad('model', 'must be the key of a served model');
  if (!service.models.has(key)) throw new HttpError(404, `model "${key}" is not served here (served: ${[...service.models.keys()].join(', ')})`, { field: 'model' });
  return service.model(key);
}

// llama.cpp's logit_bias: [[id, bias], ...], where a bias of false bans the token, or OpenAI's {"id": bias}; a bias
// of false is -100 here, which no logit survives. Token ids as text are not supported.
function readLogitBias(value: unknown): Record<number, number> | undefined {
  if (value === undefined || value === null) return undefined;
  // A key is an id written in decimal digits alone: Number() would read "0x10" as 16 and "" as 0.
  const id = (key: string): number => (/^(0|[1-9][0-9]*)$/.test(key) ? Number(key) : NaN);
  const pairs: unknown[] = Array.isArray(value) ? value : isJsonObject(value) ? Object.entries(value).map(([key, b]) => [id(key), b]) : bad('logit_bias', 'must be [[token id, bias], ...] or {"<token id>": bias}');
  const bias: Record<number, number> = {};
  pairs.forEach((pair, i) => {
    const [id, b] = Array.isArray(pair) && pair.length === 2 ? pair : [undefined, undefined];
    if (!Number.isSafeInteger(id) || (id as number) < 0) bad(`logit_bias[${i}]`, 'must pair a token id (a number; text is not supported) with a bias');
    if (b !== false && !(typeof b === 'number' && Math.abs(b) <= MAX_LOGIT_BIAS)) bad(`logit_bias[${i}]`, `must have a bias from ${-MAX_LOGIT_BIAS} to ${MAX_LOGIT_BIAS}, or false (never)`);
    bias[id as number] = b === false ? -MAX_LOGIT_BIAS : (b as number);
  });
  return bias;
}

// llama.cpp's prompt: a text, token ids, token ids and texts mixed (one prompt), or a list of those (several
// prompts, answered as a list). Texts are tokenized as every prompt is: special tokens are ordinary characters.
type Prompt = string | readonly (string | number)[];
function readPrompts(value: unknown): { prompts: Prompt[]; several: boolean } {
  const isId = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
  const isOne = (v: unknown): v is Prompt => typeof v === 'string' || (Array.isArray(v) && v.length > 0 && v.every((p) => typeof p === 'string' || isId(p)) && v.some(isId));
  if (isOne(value)) return { prompts: [value], several: false };
  if (Array.isArray(value) && value.length > 0 && value.every((p) => isOne(p) || (Array.isArray(p) && p.length > 0 && p.every((q) => typeof q === 'string')))) {
    return { prompts: value as Prompt[], several: true };
  }
  return bad('prompt', 'must be a text, token ids (texts may be mixed in), or a non-empty list of those');
}

// A prompt as the service takes it: a mixed one as token ids, its texts tokenized. Texts that make no tokens at all
// (["", ""]) are the empty prompt, the start of a document as "" is: a list of no ids would leave the model nothing
// to read.
async function promptForModel(service: ChatService, prompt: Prompt, tokenizer: Tokenizer): Promise<string | number[]> {
  if (typeof prompt === 'string') return prompt;
  if (prompt.every((p) => typeof p === 'number')) return prompt as number[];
  const encoded = (await service.encodeTexts(tokenizer, prompt.filter((p): p is string => typeof p === 'string'))).values();
  const ids = prompt.flatMap((p) => (typeof p === 'number' ? [p] : [...(encoded.next().value as Int32Array)]));
  return ids.length > 0 ? ids : '';
}

interface CompletionRequest {
  model: ModelConfig;
  generation: Omit<GenerationRequest, 'prompt' | 'signal'>;
  settings: Record<string, unknown>;  // generation_settings, as the answer reports them
  stream: boolean;
  nProbs: number;
  returnTokens: boolean;
}

async function readCompletion(service: ChatService, body: Body, res: Response): Promise<CompletionRequest> {
  ignoreForeignKeys(res, body, COMPLETION_KEYS);
  const model = servedModel(service, body.model);
  for (const [key, neutral] of Object.entries(NEUTRAL)) {
    if (body[key] !== undefined && body[key] !== null && !neutral(body[key])) bad(key, 'is not supported: dixie samples with temperature, top_k, top_p, min_p, the penalties and logit_bias; only the value that turns it off is accepted');
  }
  const fields: Body = { ...body };
  const { fillContext } = readLocalLength(fields, 'n_predict');
  readLocalTemperature(fields, 'temperature');
  const penalize = readRepeatPenalty(fields, 'repeat_penalty', 'repeat_last_n');
  if (penalize === undefined) delete fields.repeat_penalty;
  else fields.repeat_penalty = penalize;
  const { sampling, lengthGiven } = readSampling(fields, model, SAMPLING_NAMES);
  const presencePenalty = readAdditivePenalty(body, 'presence_penalty');
  const frequencyPenalty = readAdditivePenalty(body, 'frequency_penalty');
  checkSamplers(body.samplers, sampling, (presencePenalty ?? 0) !== 0 || (frequencyPenalty ?? 0) !== 0);
  // dixie's penalty counts a newline as any token, which llama.cpp's penalize_nl true says; false means nothing with
  // the penalty off.
  const penalizeNl = optional<boolean>(body, 'penalize_nl', isBool, 'true or false');
  if (penalizeNl === false && repeatPenaltyOf(sampling.penalize) > 1) bad('penalize_nl', 'only true is supported while a repetition penalty applies: dixie\'s penalty counts a newline as any token');
  const seed = readLocalSeed(body, 'seed');
  for (const key of MACHINE) {
    if (body[key] !== undefined && body[key] !== null && typeof body[key] !== 'number' && typeof body[key] !== 'boolean') bad(key, 'must be a number or true or false');
  }
  const stop = readStop(body, 'stop', MAX_LOCAL_STOPS);
  const nProbs = optional<number>(body, 'n_probs', isInt(0, MAX_TOP_LOGPROBS), `an integer from 0 to ${MAX_TOP_LOGPROBS}`) ?? 0;
  const returnTokens = optional<boolean>(body, 'return_tokens', isBool, 'true or false') ?? false;
  const stream = optional<boolean>(body, 'stream', isBool, 'true or false') ?? false;
  const generation = {
    promptField: 'prompt',
    sampling,
    lengthGiven,
    fillContext,
    stop,
    seed,
    logitBias: readLogitBias(body.logit_bias),
    presencePenalty,
    frequencyPenalty,
    // A streamed piece carries its tokens' ids with return_tokens: the drawn tokens come with their log-probabilities.
    logprobs: nProbs > 0 || (stream && returnTokens) ? nProbs : undefined,
    grammar: await readLlamaCppGrammar(body),
    choicesOf: {},  // this request's, which its prompts share: they take one turn at the slots
    client: res.req.ip,
  };
  const settings = {
    model: model.key,
    ...samplingSettings(lengthGiven ? sampling : { ...sampling, length: service.defaultLength(model.key) }),
    presence_penalty: generation.presencePenalty ?? 0,
    frequency_penalty: generation.frequencyPenalty ?? 0,
    seed: seed ?? -1,
    stop: stop ?? [],
    n_probs: nProbs,
    stream,
  };
  return { model, generation, settings, stream, nProbs, returnTokens };
}

// llama.cpp's `samplers`: the samplers applied, in order (as names, or as letters: "kmpt"); those left out are not
// applied. dixie applies the penalties, temperature, top_k, min_p, then top_p (native/cpu/sampler.cpp), so a list is
// taken where it draws as that order does: every one of them that the request's settings (or the model's defaults)
// turn on is listed once (the penalties as "penalties", which llama-server applies only where listed, as SillyTavern
// lists them), and the pairs whose order changes the draw come in dixie's order (temperature commutes with top_k, and
// top_k with min_p; under temperature 0, greedy, only the penalties' place changes the draw: after the temperature
// or a cut they would fall on what is left). The samplers dixie does not have are off (NEUTRAL), wherever the list
// puts them.
const SAMPLER_LETTERS: Readonly<Record<string, string>> = { e: 'penalties', t: 'temperature', k: 'top_k', m: 'min_p', p: 'top_p' };
const ORDERED_SAMPLERS: readonly (readonly [string, string])[] = [
  ['penalties', 'temperature'], ['penalties', 'top_k'], ['penalties', 'min_p'], ['penalties', 'top_p'],
  ['temperature', 'min_p'], ['temperature', 'top_p'], ['top_k', 'top_p'], ['min_p', 'top_p'],
];
function checkSamplers(value: unknown, s: SamplingDefaults, additivePenalty: boolean): void {
  if (value === undefined || value === null) return;
  const names = typeof value === 'string' ? [...value].map((letter) => SAMPLER_LETTERS[letter] ?? letter)
    : Array.isArray(value) && value.every((name) => typeof name === 'string') ? (value as string[])
    : bad('samplers', 'must be an array of sampler names, such as ["penalties", "temperature", "top_k", "min_p", "top_p"]');
  const on: Readonly<Record<string, boolean>> = { penalties: repeatPenaltyOf(s.penalize) > 1 || additivePenalty, temperature: s.temperature !== 1, top_k: s.topK > 0, min_p: s.minP > 0, top_p: s.topP < 1 };
  const inOrder = 'dixie applies the penalties, temperature, top_k, min_p, then top_p; list those the request turns on in that order';
  for (const name of Object.keys(on)) {
    if (on[name] && names.filter((n) => n === name).length !== 1) bad('samplers', `must list "${name}" once, as its setting is on: ${inOrder}`);
  }
  for (const [first, then] of ORDERED_SAMPLERS) {
    if (s.temperature === 0 && first !== 'penalties') continue;
    if (on[first] && on[then] && names.indexOf(first) > names.indexOf(then)) bad('samplers', `"${then}" before "${first}" is not supported: ${inOrder}`);
  }
}

// Sampling settings under llama.cpp's names, as its answers and /props report them.
function samplingSettings(s: SamplingDefaults): Record<string, number> {
  return { n_predict: s.length, temperature: s.temperature, top_k: s.topK, top_p: s.topP, min_p: s.minP, repeat_penalty: repeatPenaltyOf(s.penalize), repeat_last_n: -1 };
}

// How a completion ended, in llama.cpp's words: cut at its length ("limit"), at a stop string ("word", which the
// text leaves out), or where the model ended the text ("eos").
function stopOf(c: Completion, tokenizer: Tokenizer, stop: readonly string[] | undefined): { stop_type: string; stopping_word: string } {
  if (c.finishReason !== 'stop') return { stop_type: 'limit', stopping_word: '' };
  const generated = tokenizer.decode(c.tokens);
  const word = stop?.find((s) => generated.startsWith(s, c.raw.length) && c.raw.length < generated.length) ?? '';
  return { stop_type: word === '' ? 'eos' : 'word', stopping_word: word };
}

// llama.cpp's timings: the prompt's tokens fed (those found in the cache not counted) and the reply's, with their
// milliseconds and rates.
function timingsOf(c: Completion): Record<string, number> {
  const { queuedMs, firstTokenMs, totalMs, cachedPromptTokens } = c.timings;
  const promptMs = Number.isFinite(firstTokenMs) ? Math.max(0, firstTokenMs - queuedMs) : Math.max(0, totalMs - queuedMs);
  const predictedMs = Number.isFinite(firstTokenMs) ? Math.max(0, totalMs - firstTokenMs) : 0;
  const promptN = c.promptIds.length - cachedPromptTokens;
  const predictedN = c.tokens.length;
  const rate = (n: number, ms: number): number => (ms > 0 ? (1000 * n) / ms : 0);
  return {
    cache_n: cachedPromptTokens,
    prompt_n: promptN,
    prompt_ms: promptMs,
    prompt_per_token_ms: promptN > 0 ? promptMs / promptN : 0,
    prompt_per_second: rate(promptN, promptMs),
    predicted_n: predictedN,
    predicted_ms: predictedMs,
    predicted_per_token_ms: predictedN > 0 ? predictedMs / predictedN : 0,
    predicted_per_second: rate(predictedN, predictedMs),
  };
}

// One prompt's generation: its answer whole, or streamed (`send`): its pieces as events, each with the tokens drawn
// since the one before, then the answer's fields with what was drawn after the last piece (which the caller sends).
async function complete(service: ChatService, request: CompletionRequest, index: number, prompt: string | number[], tokenizer: Tokenizer, signal: AbortSignal, send: ((data: unknown) => void) | null): Promise<Record<string, unknown>> {
  // Tokens as llama-server gives them: their ids with return_tokens, their probabilities with n_probs.
  const drawnFields = (tokens: readonly number[], logprobs: readonly TokenLogprob[]): Record<string, unknown> => ({
    tokens: request.returnTokens ? tokens : [],
    ...(request.nProbs > 0 && { completion_probabilities: tokenLogprobs(tokenizer, logprobs, true) }),
  });
  const ids = (logprobs: readonly TokenLogprob[]): number[] => logprobs.map((l) => l.token);
  const generation: GenerationRequest = { ...request.generation, prompt, signal };
  let c: Completion;
  let rest: Record<string, unknown>;
  if (send === null) {
    c = await service.generate(request.model.key, generation);
    rest = { content: c.text, ...drawnFields(c.tokens, c.logprobs ?? []) };
  } else {
    let last: TokenLogprob[] = [];
    c = await generateStreamed(service, request.model.key, generation, (text, drawn, done) => {
      if (done) last = drawn;
      else send({ index, content: text, stop: false, ...drawnFields(ids(drawn), drawn) });
    });
    rest = { content: '', ...drawnFields(ids(last), last) };
  }
  return {
    index,
    ...rest,
    id_slot: -1,
    stop: true,
    model: request.model.key,
    tokens_predicted: c.tokens.length,
    tokens_evaluated: c.promptIds.length,
    // n_predict -2: the length the context left this prompt.
    generation_settings: request.generation.fillContext ? { ...request.settings, n_predict: c.length } : request.settings,
    prompt: typeof prompt === 'string' ? prompt : tokenizer.decode(prompt),
    has_new_line: c.text.includes('\n'),
    truncated: c.trimmed.tokens + c.trimmed.replyTokens > 0,
    ...stopOf(c, tokenizer, request.generation.stop),
    tokens_cached: c.timings.cachedPromptTokens,
    timings: timingsOf(c),
    dixie_finish_reason: c.finishReason,
  };
}

// The model's context, from its folder's config; a TensorFlow run folder without one says it once loaded.
async function contextOf(service: ChatService, model: ModelConfig): Promise<number> {
  const { config } = resolveModelSource(model);
  if (config !== null) return config.nCtx;
  await service.tokenizer(model.key);
  return (service.registry.peek(model.key) as { nCtx: number }).nCtx;
}

// A token endpoint's model: `model`, or the default one.
function tokenizerFor(service: ChatService, body: Body): Promise<Tokenizer> {
  return service.tokenizer(servedModel(service, body.model).key);
}

export function llamaCppRouter(service: ChatService, jsonBody: express.RequestHandler, version: string): express.Router {
  const router = express.Router();

  router.get('/props', async (req: Request, res: Response) => {
    const model = servedModel(service, req.query.model);
    res.json({
      default_generation_settings: {
        n_ctx: await contextOf(service, model),
        params: { ...samplingSettings({ ...model.sampling, length: service.defaultLength(model.key) }), seed: -1 },
      },
      total_slots: service.config.batchSlots,
      // llama-server gives its file's path; here the model's key, as a path on the server is never shown.
      model_path: model.key,
      modalities: { vision: false, audio: false },
      chat_template: model.promptFormat === 'chat' ? chatTemplate(model.audience) : '',
      bos_token: '<|endoftext|>',
      eos_token: '<|endoftext|>',
      build_info: `dixie ${version}`,
    });
  });

  // Each of the model's batch slots, as llama-server gives them: the request a busy one decodes (of any API), its
  // settings under llama.cpp's names and how far it is; a request's text is never shown, its stop strings included
  // (a front end's hold its users' names), as the slots hold other clients' requests. `?fail_on_no_slot=1`: a 503 while every slot is busy, for a client that waits for a free one.
  router.get('/slots', async (req: Request, res: Response) => {
    const model = servedModel(service, req.query.model);
    const nCtx = await contextOf(service, model);
    const activity = service.registry.peek(model.key)?.generator.slotActivity ?? new Array<null>(service.config.batchSlots).fill(null);
    const failOnNoSlot = typeof req.query.fail_on_no_slot === 'string' && req.query.fail_on_no_slot !== '';
    if (failOnNoSlot && activity.every((a) => a !== null)) throw new HttpError(503, 'no slot available');
    res.json(activity.map((a, id) => ({
      id,
      n_ctx: nCtx,
      speculative: false,
      is_processing: a !== null,
      ...(a !== null && {
        n_prompt_tokens: a.promptTokens,
        n_prompt_tokens_cache: a.cachedPromptTokens,
        params: {
          ...samplingSettings({ ...a.sampling, length: a.embeds ? 0 : a.maxTokens }),
          presence_penalty: a.sampling.presencePenalty ?? 0,
          frequency_penalty: a.sampling.frequencyPenalty ?? 0,
          seed: a.seed === undefined ? -1 : Number(a.seed),
          n_probs: a.logprobs,
        },
        next_token: { has_next_token: !a.embeds, has_new_line: a.hasNewLine, n_remain: a.embeds ? 0 : a.maxTokens - a.generated, n_decoded: a.generated },
      }),
    })));
  });

  router.post(['/completion', '/completions'], jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    const request = await readCompletion(service, body, res);
    const { prompts, several } = readPrompts(body.prompt);
    checkGenerations(service, prompts.length, 'prompt');
    res.locals.model = request.model.key;
    const gone = clientGone(res);
    const tokenizer = await service.tokenizer(request.model.key, gone.signal);
    const inputs = await Promise.all(prompts.map((p) => promptForModel(service, p, tokenizer)));
    service.checkRoom(request.model.key, inputs.length, false, req.ip);
    if (!request.stream) {
      const answers = await Promise.all(inputs.map((p, i) => complete(service, request, i, p, tokenizer, gone.signal, null))).catch((err: Error) => {
        gone.abort();  // the other prompts stop too
        throw err;
      });
      res.json(several ? answers : answers[0]);
      return;
    }
    const { send, started } = eventSender(res);
    try {
      await Promise.all(inputs.map(async (p, i) => send(await complete(service, request, i, p, tokenizer, gone.signal, send))));
    } catch (err) {
      gone.abort();
      if (!started()) throw err;
      send(llamaCppError(err instanceof HttpError ? err.status : 500, (err as Error).message, undefined));
    }
    res.end();
  });

  router.post('/embedding', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    ignoreForeignKeys(res, body, ['content', 'model', 'embd_normalize']);
    const model = servedModel(service, body.model);
    res.locals.model = model.key;
    const content = body.content;
    if (typeof content !== 'string' && !(Array.isArray(content) && content.length > 0 && content.every((c) => typeof c === 'string'))) bad('content', 'must be a text or a non-empty list of texts');
    const normalize = optional<number>(body, 'embd_normalize', (v) => v === 2 || v === -1, '2 (length 1, the default) or -1 (as they are)') ?? 2;
    const single = typeof content === 'string';
    const e = await service.embed(model.key, { inputs: single ? [content] : content, field: 'content', single, truncate: false, normalize: normalize === 2, signal: clientGone(res).signal, client: req.ip });
    // The pooled vector of each input, as llama-server gives it: in a list of one.
    res.json(e.vectors.map((v, index) => ({ index, embedding: [[...v]] })));
  });

  // The prompt /v1/chat/completions would send for the messages, whole (it is fitted to the context only when it is
  // generated from): the chat format's lines ending in the bot's turn for a chat model, the messages one a line for
  // a raw one.
  router.post('/apply-template', jsonBody, (req: Request, res: Response) => {
    const body = objectBody(req);
    ignoreForeignKeys(res, body, ['messages', 'model']);
    const model = servedModel(service, body.model);
    const { prompt, ignored } = chatPrompt(model, openAIMessages(body.messages), 'messages');
    if (ignored.length > 0) res.setHeader('X-Dixie-Ignored-Messages', ignored.join(','));
    res.json({ prompt: typeof prompt === 'string' ? prompt : fitConversation(prompt).prompt });
  });

  router.post('/tokenize', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    ignoreForeignKeys(res, body, ['content', 'model', 'with_pieces', 'add_special', 'parse_special']);
    if (typeof body.content !== 'string') bad('content', 'must be a string');
    const withPieces = optional<boolean>(body, 'with_pieces', isBool, 'true or false') ?? false;
    // GPT-2 has no beginning-of-sequence token to add: add_special changes nothing.
    optional<boolean>(body, 'add_special', isBool, 'true or false');
    const parseSpecial = optional<boolean>(body, 'parse_special', isBool, 'true or false') ?? false;
    const tokenizer = await tokenizerFor(service, body);
    const tokens = [...(await service.encodeText(tokenizer, body.content, parseSpecial))];
    if (!withPieces) {
      res.json({ tokens });
      return;
    }
    // A piece that is not whole UTF-8 on its own (part of a character) comes as its bytes, as llama.cpp does.
    res.json({ tokens: tokens.map((id) => ({ id, piece: wholeTokenText(tokenizer, id) ?? [...tokenizer.tokenBytes(id)] })) });
  });

  router.post('/detokenize', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    ignoreForeignKeys(res, body, ['tokens', 'model']);
    const tokenizer = await tokenizerFor(service, body);
    const tokens = body.tokens;
    if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === 'number' && tokenizer.spells(t))) bad('tokens', `must be an array of token ids from 0 to ${tokenizer.vocabSize - 1}`);
    res.json({ content: tokenizer.decode(tokens as number[]) });
  });

  return router;
}
