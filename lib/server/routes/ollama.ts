// Ollama's API, the one many chat apps and home automations speak to local models (Open WebUI, Home Assistant's
// Ollama integration, Enchanted, the ollama libraries), over the same models, queue, batching, sanitizers, API keys
// and errors as the rest of the server:
//   GET  /api/version (the Ollama release whose API this is), /api/tags (every configured model), /api/ps (those
//        loaded)
//   POST /api/show       a model's sizes and sampling defaults
//   POST /api/chat       `messages` made into the model's prompt as chat completions' are (chatPrompt)
//   POST /api/generate   `prompt` as one user message (with `system`), or continued as it is (`raw`, or a raw model),
//                        then after the `context` an earlier answer gave
//   POST /api/embed      `input`, a text or texts, as one vector each (lib/generate/embed.ts), of length 1; inputs
//                        longer than the context cut to it unless `"truncate": false`
//   POST /api/embeddings the older form: one `prompt`, its vector as it is
// As Ollama does, it streams unless `"stream": false`: one JSON object a line (application/x-ndjson), the last
// with `"done": true` and the counts and durations. A request with no messages (or an empty prompt) loads the
// model, or with `keep_alive` 0 unloads it. Models are named `<key>:latest`, or by their key. Ollama's `options`
// map onto dixie's sampling (readRequest); those for what dixie does not do are accepted at their neutral values
// only, as in the OpenAI API, and fields and options not of Ollama's API are passed over, as Ollama passes over them
// (ignoreForeignKeys).
// `format` ("json" or a JSON schema) holds the reply to it (response_format.ts).
import crypto from 'node:crypto';
import fs from 'node:fs';
import express, { type Request, type Response } from 'express';
import { toolCallsText, type Conversation, type ToolCall } from '../../data/chat_format';
import type { TokenLogprob } from '../../generate/logprobs';
import { MAX_TOP_LOGPROBS } from '../../generate/logprobs';
import { parameterCount, type GPT2Config, type ModelFolder } from '../../formats/model_folder';
import type { ModelConfig, SamplingDefaults } from '../config';
import { resolveModelSource } from '../model_source';
import type { ChatService, Completion, GenerationRequest } from '../service';
import {
  LATEST_TAG, MAX_LOCAL_STOPS, bad, chatPrompt, clientGone, cutShort, generateStreamed, ignoreForeignKeys, isBool, isInt, lineSender, objectBody, optional, readAdditivePenalty, readDimensions, readModel, readLocalLength, readLocalSeed, readLocalTemperature, readRepeatPenalty, readSampling, repeatPenaltyOf, sentCall,
  readStop, tokenLogprobs, type Body, type InputMessage,
} from './api_common';
import { readOllamaFormat } from './response_format';
import { readToolChoice, replyCalls, replyKind, type ToolChoice } from './tool_calls';
import type { Grammar } from '../../generate/grammar';
import { isJsonObject } from '../../util/json_object';

const COMMON_KEYS = ['model', 'stream', 'format', 'keep_alive', 'think', 'options', 'logprobs', 'top_logprobs'];
const CHAT_KEYS = [...COMMON_KEYS, 'messages', 'tools'];
const GENERATE_KEYS = [...COMMON_KEYS, 'prompt', 'system', 'raw', 'suffix', 'template', 'context', 'images'];
const EMBED_KEYS = ['model', 'input', 'truncate', 'dimensions', 'options', 'keep_alive'];
const LEGACY_EMBED_KEYS = ['model', 'prompt', 'options', 'keep_alive'];

// The Ollama release whose API /api speaks: the newest of its fields taken here, `logprobs`, came with 0.12.11.
// Clients gate on it (VS Code's Copilot Chat refuses a server below 0.6.4), so /api/version answers it, and dixie's
// own version beside it.
const OLLAMA_API_VERSION = '0.12.11';

// Ollama's options read as dixie's sampling; `num_predict` -1 (until the model stops) leaves the model's own reply
// length, and -2 (until the context is full) takes what the context leaves after the prompt (readLocalLength).
// Options for the machine (threads, GPU layers, memory mapping) are accepted, the server's own settings deciding;
// those for samplers dixie does not have only at their neutral values.
const OPTION_NAMES: Readonly<Record<string, string>> = { 'options.num_predict': 'length', 'options.temperature': 'temperature', 'options.top_k': 'top_k', 'options.top_p': 'top_p', 'options.min_p': 'min_p', 'options.repeat_penalty': 'penalize' };
const SAMPLING_OPTIONS = ['num_predict', 'temperature', 'top_k', 'top_p', 'min_p', 'repeat_penalty', 'repeat_last_n', 'seed', 'stop', 'presence_penalty', 'frequency_penalty'];
const MACHINE_OPTIONS = ['num_ctx', 'num_batch', 'num_gpu', 'main_gpu', 'num_thread', 'numa', 'low_vram', 'f16_kv', 'vocab_only', 'use_mmap', 'use_mlock', 'num_keep', 'logits_all', 'embedding_only', 'penalize_newline'];
// A Map, since the options' names are the client's: looked up in an object, "constructor" or "__proto__" would
// find Object.prototype's members.
const NEUTRAL_OPTIONS: ReadonlyMap<string, (v: unknown) => boolean> = new Map([
  ['typical_p', (v: unknown) => v === 1],
  ['tfs_z', (v: unknown) => v === 1],
  ['mirostat', (v: unknown) => v === 0],
  ['mirostat_tau', (v: unknown) => typeof v === 'number'],
  ['mirostat_eta', (v: unknown) => typeof v === 'number'],
]);

interface OllamaRequest {
  name: string;           // as the request gave it, which the answer names
  model: ModelConfig;
  sampling: SamplingDefaults;
  lengthGiven: boolean;
  fillContext: boolean;
  stop: string[] | undefined;
  seed: number | undefined;
  presencePenalty: number | undefined;
  frequencyPenalty: number | undefined;
  stream: boolean;
  top: number | undefined;  // with `logprobs`, the alternatives each token's comes with
  grammar: Grammar | undefined;  // `format`'s: "json" or a JSON schema (response_format.ts)
  tools?: ToolChoice;            // /api/chat's tools, which the model may call (tool_calls.ts)
  unload: boolean;               // keep_alive 0: the model is unloaded once answered, unless other requests hold it
}

async function readRequest(service: ChatService, given: Body, keys: readonly string[], res: Response): Promise<OllamaRequest> {
  ignoreForeignKeys(res, given, keys);
  // Those passed over are not read below either (an embedding's `think` or `format`).
  const body: Body = Object.fromEntries(Object.entries(given).filter(([key]) => keys.includes(key)));
  const model = readModel(service, body);
  if (body.think !== undefined && body.think !== null && body.think !== false) bad('think', 'only false is supported: GPT-2 does not think');
  const keepAlive = body.keep_alive;
  if (keepAlive !== undefined && keepAlive !== null && typeof keepAlive !== 'string' && typeof keepAlive !== 'number') bad('keep_alive', 'must be a duration ("5m") or a number of seconds');
  // 0 unloads the model once the request is answered; any other duration is idle_unload_s's to decide.
  const unload = keepAlive === 0 || (typeof keepAlive === 'string' && /^0+(\.0*)?(ns|us|µs|ms|s|m|h)?$/.test(keepAlive));
  const options = optional<Body>(body, 'options', isJsonObject, 'an object') ?? {};
  // Read under the names errors give them: options.temperature.
  const flat: Body = Object.fromEntries(Object.entries(options).map(([k, v]) => [`options.${k}`, v]));
  // Ollama passes over an option it does not know, with a warning in its log.
  ignoreForeignKeys(res, options, [...SAMPLING_OPTIONS, ...MACHINE_OPTIONS, ...NEUTRAL_OPTIONS.keys()], 'options');
  for (const [key, value] of Object.entries(options)) {
    const neutral = NEUTRAL_OPTIONS.get(key);
    if (value !== null && neutral && !neutral(value)) bad(`options.${key}`, 'is not supported: dixie samples with temperature, top_k, top_p, min_p and the penalties; only its neutral value is accepted');
  }
  const { fillContext } = readLocalLength(flat, 'options.num_predict');
  readLocalTemperature(flat, 'options.temperature');
  const penalize = readRepeatPenalty(flat, 'options.repeat_penalty', 'options.repeat_last_n');
  if (penalize === undefined) delete flat['options.repeat_penalty'];
  else flat['options.repeat_penalty'] = penalize;
  const logprobs = optional<boolean>(body, 'logprobs', isBool, 'true or false') ?? false;
  const top = optional<number>(body, 'top_logprobs', isInt(0, MAX_TOP_LOGPROBS), `an integer from 0 to ${MAX_TOP_LOGPROBS}`);
  if (top !== undefined && !logprobs) bad('top_logprobs', 'needs "logprobs": true');
  return {
    name: body.model as string,
    model,
    ...readSampling(flat, model, OPTION_NAMES),
    fillContext,
    stop: readStop(flat, 'options.stop', MAX_LOCAL_STOPS),
    seed: readLocalSeed(flat, 'options.seed'),
    presencePenalty: readAdditivePenalty(flat, 'options.presence_penalty'),
    frequencyPenalty: readAdditivePenalty(flat, 'options.frequency_penalty'),
    stream: optional<boolean>(body, 'stream', isBool, 'true or false') ?? true,
    top: logprobs ? (top ?? 0) : undefined,
    grammar: await readOllamaFormat(body),
    unload,
  };
}

// /api/chat's messages: {"role", "content"}, a tool's output with role "tool", and the calls an assistant made in its
// `tool_calls` ({"function": {"name", "arguments"}}, the arguments an object), read as chat completions' are
// (api_common.ts). Images are refused, naming the message.
function chatMessages(messages: unknown): InputMessage[] {
  if (!Array.isArray(messages)) bad('messages', 'must be an array of {"role", "content"}');
  return messages.map((m: unknown, i) => {
    const where = `messages[${i}]`;
    if (!isJsonObject(m)) bad(where, 'must be an object {"role", "content"}');
    // Ollama reads a content left out (an assistant's that only calls tools) as "".
    const content = m.content ?? '';
    if (typeof content !== 'string') bad(`${where}.content`, 'must be a string');
    if (Array.isArray(m.images) && m.images.length > 0) bad(`${where}.images`, 'are not supported: GPT-2 reads text only');
    const calls = m.role !== 'assistant' || m.tool_calls === undefined || m.tool_calls === null ? [] : ollamaCalls(m.tool_calls, `${where}.tool_calls`);
    return { role: m.role, text: toolCallsText(content, calls), roleField: `${where}.role`, textField: `${where}.content` };
  });
}

function ollamaCalls(calls: unknown, field: string): ToolCall[] {
  const shape = '{"function": {"name", "arguments"}}';
  if (!Array.isArray(calls)) bad(field, `must be an array of ${shape}`);
  return calls.map((call: unknown, j) => {
    const at = `${field}[${j}].function`;
    if (!isJsonObject(call) || !isJsonObject(call.function) || !isJsonObject(call.function.arguments)) bad(`${field}[${j}]`, `must be ${shape}, the arguments an object`);
    return sentCall(call.function.name, call.function.arguments, `${at}.name`);
  });
}

// /api/generate's prompt: sent as it is when `raw`, else one user message after the `system` one, if any.
function generatePrompt(model: ModelConfig, body: Body): string | Conversation {
  for (const [key, rule] of [['suffix', 'GPT-2 only continues text'], ['template', 'the prompt format is the model\'s (a chat model\'s chat format)']] as const) {
    const v = body[key];
    if (v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0)) bad(key, `is not supported: ${rule}`);
  }
  if (Array.isArray(body.images) && body.images.length > 0) bad('images', 'are not supported: GPT-2 reads text only');
  const prompt = body.prompt as string;
  const system = optional<string>(body, 'system', (v) => typeof v === 'string', 'a string');
  if (optional<boolean>(body, 'raw', isBool, 'true or false')) {
    if (system !== undefined && system !== '') bad('system', 'is not supported with raw: the prompt is sent as it is');
    return prompt;
  }
  const messages: InputMessage[] = [];
  if (system !== undefined && system !== '') messages.push({ role: 'system', text: system, roleField: 'system', textField: 'system' });
  messages.push({ role: 'user', text: prompt, roleField: 'prompt', textField: 'prompt' });
  return chatPrompt(model, messages, 'prompt').prompt;
}

// /api/generate's `context`, as Ollama gives it in an answer's last line and its clients send it back to go on from
// there: the tokens of the prompt and the reply. It is the tokens of a prompt continued as it is (`raw`, or a raw
// model's), which the next prompt's tokens follow; a chat model's prompt is the conversation its chat format makes,
// which /api/chat takes whole. Returns the prompt, as token ids after a context given, and the answer's context (none
// for a chat model): the prompt's tokens the model saw (a prompt too long for the context cut as it was fed), then
// the reply's, those drawn unless the reply was cut short of them (at a stop string, whose tokens the next prompt
// must not follow), when they are its text's.
async function continuedPrompt(service: ChatService, request: OllamaRequest, prompt: string | Conversation, given: unknown): Promise<{ prompt: GenerationRequest['prompt']; contextOf: ((c: Completion) => number[]) | null }> {
  const context = given === undefined || given === null ? [] : given;
  if (!Array.isArray(context) || !context.every((id) => Number.isSafeInteger(id) && (id as number) >= 0)) bad('context', 'must be the token ids an earlier answer gave as its context');
  if (typeof prompt !== 'string') {
    if (context.length > 0) bad('context', 'is only taken where the prompt is continued as it is ("raw": true, or a raw model): a chat model\'s conversation goes to /api/chat whole');
    return { prompt, contextOf: null };
  }
  const tokenizer = await service.tokenizer(request.model.key);
  const replyTokens = (c: Completion): Iterable<number> => (tokenizer.decode(c.tokens) === c.text ? c.tokens : tokenizer.encode(c.text, { allowSpecial: false }));
  const ids = context.length > 0 ? [...(context as number[]), ...(await service.encodeText(tokenizer, prompt))] : prompt;
  return { prompt: ids, contextOf: (c) => [...c.promptIds, ...replyTokens(c)] };
}

// How Ollama's answers end: the counts and durations (nanoseconds) of the prompt and the reply.
function doneFields(c: Completion): Record<string, unknown> {
  const ns = (ms: number): number => (Number.isFinite(ms) ? Math.max(0, Math.round(ms * 1e6)) : 0);
  const { queuedMs, firstTokenMs, totalMs } = c.timings;
  return {
    done: true,
    done_reason: cutShort(c) ? 'length' : 'stop',
    dixie_finish_reason: c.finishReason,
    total_duration: ns(totalMs),
    load_duration: 0,
    prompt_eval_count: c.promptIds.length,
    prompt_eval_duration: ns(firstTokenMs - queuedMs),
    eval_count: c.tokens.length,
    eval_duration: ns(totalMs - firstTokenMs),
  };
}

// One answer of /api/chat or /api/generate: `reply` puts a piece of text, or a reply's calls, in the endpoint's field.
// A reply that begins as calls is held until it is whole (tool_calls.ts), and its calls come in the last line.
// `last`: the endpoint's fields of its last line (/api/generate's context).
async function answer(service: ChatService, res: Response, request: OllamaRequest, prompt: GenerationRequest['prompt'], promptField: string, reply: (text: string, calls?: Record<string, unknown>[]) => Record<string, unknown>, last: (c: Completion) => Record<string, unknown> = () => ({})): Promise<void> {
  res.locals.model = request.model.key;
  const gone = clientGone(res);
  const head = (): Record<string, unknown> => ({ model: request.name, created_at: new Date().toISOString() });
  const tokenizer = request.top === undefined ? null : await service.tokenizer(request.model.key, gone.signal);
  const logprobsOf = (logprobs: readonly TokenLogprob[] | undefined): Record<string, unknown> => (tokenizer && logprobs ? { logprobs: tokenLogprobs(tokenizer, logprobs) } : {});
  const generation: GenerationRequest = {
    prompt,
    promptField,
    sampling: request.sampling,
    lengthGiven: request.lengthGiven,
    fillContext: request.fillContext,
    stop: request.stop,
    seed: request.seed,
    presencePenalty: request.presencePenalty,
    frequencyPenalty: request.frequencyPenalty,
    signal: gone.signal,
    client: res.req.ip,
    logprobs: request.top,
    grammar: request.tools?.grammar ?? request.grammar,
    textBesideCalls: request.tools?.optional,
  };
  // Ollama gives a call's arguments as an object.
  const whole = (c: Completion): Record<string, unknown> => {
    const calls = request.tools ? replyCalls(c) : null;
    return calls ? reply('', calls.map((call) => ({ function: { name: call.name, arguments: JSON.parse(call.arguments) as unknown } }))) : reply(c.text);
  };
  if (!request.stream) {
    const c = await service.generate(request.model.key, generation);
    await unloadIfAsked(service, request);
    res.json({ ...head(), ...whole(c), ...logprobsOf(c.logprobs), ...doneFields(c), ...last(c) });
    return;
  }
  // Each line carries the log-probabilities of the tokens drawn since the line before (generateStreamed).
  const { send: line, started } = lineSender(res);
  const kindOf = replyKind();
  try {
    await generateStreamed(service, request.model.key, generation, (text, drawn, done) => {
      const held = request.tools !== undefined && kindOf(text) === 'calls';
      if (held && done === null && drawn.length === 0) return;
      const piece = !held ? reply(text) : done ? whole(done) : reply('');
      line({ ...head(), ...piece, ...(drawn.length > 0 && logprobsOf(drawn)), ...(done ? { ...doneFields(done), ...last(done) } : { done: false }) });
    });
  } catch (err) {
    if (!started()) throw err;
    line({ error: (err as Error).message });
  }
  await unloadIfAsked(service, request);
  res.end();
}

// keep_alive 0: the model is unloaded before the answer ends, so that a client that then asks /api/ps sees it gone.
async function unloadIfAsked(service: ChatService, request: OllamaRequest): Promise<void> {
  if (request.unload) await service.registry.unloadNow(request.model.key);
}

// A request with nothing to answer loads the model, as Ollama's clients ask to have it ready; with keep_alive 0 it
// unloads it.
async function load(service: ChatService, res: Response, request: OllamaRequest, reply: Record<string, unknown>): Promise<void> {
  res.locals.model = request.model.key;
  if (request.unload) await service.registry.unloadNow(request.model.key);
  else await service.tokenizer(request.model.key);
  res.json({ model: request.name, created_at: new Date().toISOString(), ...reply, done: true, done_reason: request.unload ? 'unload' : 'load' });
}

// What /api/tags and /api/ps say of a model, from its folder (read as every load reads it): the weights' file for
// the size and time, the sizes for the parameter count. The digest names the file's version (its path, size and
// time), not a hash of its bytes, which would mean reading gigabytes for a listing.
function describeModel(m: ModelConfig): { entry: Record<string, unknown>; config: GPT2Config | null } {
  let folder: ModelFolder | null = null;
  let stat: fs.Stats | null = null;
  try {
    folder = resolveModelSource(m);
    stat = fs.statSync(folder.weights);
  } catch {
    // A folder that is not there now fails at load, with the reason; the listing shows what it can.
  }
  const name = `${m.key}${LATEST_TAG}`;
  const config = folder?.config ?? null;
  const count = config ? parameterCount(config) : 0;
  const entry = {
    name,
    model: name,
    modified_at: new Date(stat?.mtimeMs ?? 0).toISOString(),
    size: stat?.size ?? 0,
    digest: crypto.createHash('sha256').update(`${folder?.weights ?? m.key}\0${stat?.size ?? 0}\0${stat?.mtimeMs ?? 0}`).digest('hex'),
    details: {
      parent_model: m.adapter ? (m.base ?? '') : '',
      format: folder?.kind === 'gguf' ? 'gguf' : 'safetensors',
      family: 'gpt2',
      families: ['gpt2'],
      parameter_size: count >= 1e9 ? `${(count / 1e9).toFixed(1)}B` : `${(count / 1e6).toFixed(2)}M`,
      quantization_level: m.weightDtype.toUpperCase(),
    },
  };
  return { entry, config };
}

// A model's sampling defaults as Modelfile parameters, and its context where its config gives it (num_ctx, which
// clients such as Continue read to fit their prompts).
function parameters(s: SamplingDefaults, config: GPT2Config | null): string {
  return [
    `num_predict ${s.length}`,
    `temperature ${s.temperature}`,
    `top_k ${s.topK}`,
    `top_p ${s.topP}`,
    ...(s.minP > 0 ? [`min_p ${s.minP}`] : []),
    ...(s.penalize > 0 ? [`repeat_penalty ${+repeatPenaltyOf(s.penalize).toFixed(6)}`, 'repeat_last_n -1'] : []),
    ...(config ? [`num_ctx ${config.nCtx}`] : []),
  ].join('\n');
}

export function ollamaRouter(service: ChatService, jsonBody: express.RequestHandler, version: string): express.Router {
  const router = express.Router();

  router.get('/api/version', (_req: Request, res: Response) => {
    res.json({ version: OLLAMA_API_VERSION, dixie_version: version });
  });

  router.get('/api/tags', (_req: Request, res: Response) => {
    res.json({ models: [...service.models.values()].map((m) => describeModel(m).entry) });
  });

  router.get('/api/ps', (_req: Request, res: Response) => {
    const idleMs = service.config.idleUnloadMs;
    const status = service.registry.status();
    const bytes = new Map(status.map((s) => [s.key, s.bytes]));
    const loaded = status.filter((s) => s.state === 'loaded' && service.models.has(s.key));
    res.json({
      models: loaded.map((s) => ({
        ...describeModel(service.model(s.key)).entry,
        // With the model it is loaded over (the base of an adapter, the model that entries of one folder share).
        size: s.bytes + (s.over === null ? 0 : (bytes.get(s.over) ?? 0)),
        size_vram: 0,
        // Unloaded once idle this long after its last use (idle_unload_s); 0 never.
        expires_at: new Date(idleMs > 0 ? (s.lastUsed ?? Date.now()) + idleMs : Date.UTC(9999, 0)).toISOString(),
      })),
    });
  });

  router.post('/api/show', jsonBody, (req: Request, res: Response) => {
    const body = objectBody(req);
    ignoreForeignKeys(res, body, ['model', 'name', 'verbose']);
    // `name`: the model's older field, which Ollama still takes.
    const m = readModel(service, { model: body.model ?? body.name });
    const { entry, config } = describeModel(m);
    res.json({
      license: '',
      modelfile: '',
      parameters: parameters({ ...m.sampling, length: service.defaultLength(m.key) }, config),
      template: '',
      system: '',
      details: entry.details,
      modified_at: entry.modified_at,
      model_info: {
        'general.architecture': 'gpt2',
        ...(config && {
          'general.parameter_count': parameterCount(config),
          'gpt2.block_count': config.nLayer,
          'gpt2.context_length': config.nCtx,
          'gpt2.embedding_length': config.nEmbd,
          'gpt2.attention.head_count': config.nHead,
          'gpt2.vocab_size': config.vocabSize,
        }),
      },
      capabilities: ['completion', 'tools', 'embedding'],
      dixie: { prompt_format: m.promptFormat, audience: m.audience, audiences: m.audiences },
    });
  });

  router.post('/api/chat', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    const read = await readRequest(service, body, CHAT_KEYS, res);
    // Ollama's tools are the model's to call or not: tool_choice "auto" (a tool_choice sent is passed over).
    const request = { ...read, tools: await readToolChoice({ tools: body.tools }, read.model, read.grammar) };
    const messages = chatMessages(body.messages ?? []);
    if (messages.length === 0) return load(service, res, request, { message: { role: 'assistant', content: '' } });
    const { prompt, ignored } = chatPrompt(request.model, messages, 'messages');
    if (ignored.length > 0) res.setHeader('X-Dixie-Ignored-Messages', ignored.join(','));
    return answer(service, res, request, prompt, 'messages', (text, calls) => ({ message: { role: 'assistant', content: text, ...(calls && { tool_calls: calls }) } }));
  });

  router.post('/api/generate', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    const request = await readRequest(service, body, GENERATE_KEYS, res);
    if (body.prompt !== undefined && typeof body.prompt !== 'string') bad('prompt', 'must be a string');
    if (body.prompt === undefined || body.prompt === '') return load(service, res, request, { response: '' });
    const { prompt, contextOf } = await continuedPrompt(service, request, generatePrompt(request.model, body), body.context);
    const context = (c: Completion): Record<string, unknown> => (contextOf === null ? {} : { context: contextOf(c) });
    return answer(service, res, request, prompt, Array.isArray(prompt) ? 'context' : 'prompt', (text) => ({ response: text }), context);
  });

  router.post('/api/embed', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    const request = await readRequest(service, body, EMBED_KEYS, res);
    res.locals.model = request.model.key;
    const input = body.input;
    if (typeof input !== 'string' && !(Array.isArray(input) && input.length > 0 && input.every((s) => typeof s === 'string'))) bad('input', 'must be a string or a non-empty array of strings');
    const truncate = optional<boolean>(body, 'truncate', isBool, 'true or false') ?? true;
    const single = typeof input === 'string';
    const e = await service.embed(request.model.key, { inputs: single ? [input] : input, field: 'input', single, truncate, normalize: true, dimensions: readDimensions(body), signal: clientGone(res).signal, client: req.ip });
    await unloadIfAsked(service, request);
    res.json({ model: request.name, embeddings: e.vectors.map((v) => [...v]), total_duration: Math.round(e.ms * 1e6), load_duration: 0, prompt_eval_count: e.promptTokens });
  });

  router.post('/api/embeddings', jsonBody, async (req: Request, res: Response) => {
    const body = objectBody(req);
    const request = await readRequest(service, body, LEGACY_EMBED_KEYS, res);
    res.locals.model = request.model.key;
    if (typeof body.prompt !== 'string') bad('prompt', 'must be a string');
    const e = await service.embed(request.model.key, { inputs: [body.prompt], field: 'prompt', single: true, truncate: true, normalize: false, signal: clientGone(res).signal, client: req.ip });
    await unloadIfAsked(service, request);
    res.json({ embedding: [...e.vectors[0]] });
  });

  return router;
}
