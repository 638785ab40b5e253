// What the model APIs share (openai.ts: OpenAI's completions and chat completions; responses.ts: its responses;
// ollama.ts: Ollama's): reading and checking the request's fields, the messages made into the model's prompt, the
// reply generated as it streams, and the stream's framing. Every error names the field it is about (OpenAI's
// `param`); the app's one error handler gives it each API's shape (openAIError for /v1).
import type { Request, Response } from 'express';
import type { Conversation, ToolCall, Turn } from '../../data/chat_format';
import { audienceNamedBy, toolCallsText } from '../../data/chat_format';
import type { TokenLogprob } from '../../generate/logprobs';
import type { Tokenizer } from '../../tokenizer';
import { MAX_REPLY_LENGTH, requestSampling, type ModelConfig, type SamplingDefaults } from '../config';
import { HttpError } from '../errors';
import { appendOnly, type ChatService, type Completion, type GenerationRequest } from '../service';
import { isJsonObject } from '../../util/json_object';

export type Body = Record<string, unknown>;

export function bad(param: string, message: string): never {
  throw new HttpError(400, `${param}: ${message}`, { field: param });
}

// OpenAI's error object for an answer of this status: {"error": {message, type, param, code}}.
// `details`: what else the error object tells, beside OpenAI's fields (an HttpError's `details`: the senders of an
// export that must be told which is the user's).
export function openAIError(status: number, message: string, param: string | null, code: string | null, details: Record<string, unknown> = {}): { error: Record<string, unknown> } {
  const type = status === 401 ? 'authentication_error' : status === 404 ? 'invalid_request_error' : status === 429 || status === 503 ? 'server_overloaded' : status < 500 ? 'invalid_request_error' : 'server_error';
  return { error: { ...details, message, type, param, code: code ?? (status === 401 ? 'invalid_api_key' : null) } };
}

export function objectBody(req: Request): Body {
  if (!isJsonObject(req.body)) bad('body', 'must be a JSON object');
  return req.body;
}

// `where`: the request's field that holds the object, when it is not the body (response_format.json_schema).
export function checkKeys(body: Body, known: readonly string[], where?: string): void {
  for (const key of Object.keys(body)) if (!known.includes(key)) bad(where === undefined ? key : `${where}.${key}`, `unsupported field (supported: ${known.join(', ')})`);
}

// A UTF-16 surrogate without its other half (a `u` regex reads a whole pair as one code point).
const LONE_SURROGATE = /\p{Surrogate}/u;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE, 'gu');

// llama-server and Ollama read their API's fields by name and pass over any other, and clients written for several
// backends send one body to all of them (SillyTavern sends text-generation-webui's and KoboldCpp's names to
// llama-server's /completion too; Open WebUI a `system` to Ollama's /api/chat): so do these APIs here, where checkKeys
// refuses what OpenAI's API refuses. The fields passed over are named in the answer's X-Dixie-Ignored-Fields, each
// URI-encoded (a header takes ASCII alone), as many as fit in MAX_IGNORED_HEADER characters (a client's limit on a
// header is not the server's on a body); an API's own fields for what dixie does not do are refused all the same, by
// the reader of each.
export const IGNORED_FIELDS_HEADER = 'X-Dixie-Ignored-Fields';
const MAX_IGNORED_HEADER = 1024;
export function ignoreForeignKeys(res: Response, body: Body, known: readonly string[], where?: string): void {
  // encodeURIComponent throws on half of a UTF-16 pair.
  const encoded = (key: string): string => encodeURIComponent((where === undefined ? key : `${where}.${key}`).replace(LONE_SURROGATES, '\ufffd'));
  let named = String(res.getHeader(IGNORED_FIELDS_HEADER) ?? '');
  for (const key of Object.keys(body)) {
    if (known.includes(key)) continue;
    const more = named === '' ? encoded(key) : `${named},${encoded(key)}`;
    if (more.length > MAX_IGNORED_HEADER) break;
    named = more;
  }
  if (named !== '') res.setHeader(IGNORED_FIELDS_HEADER, named);
}

// OpenAI's fields for what GPT-2 does not do. Clients send many of them with every request at their neutral
// values (an empty list of tools, a text response format, no logit biases, the default, or null for "not set"),
// and those are accepted; any other value is refused with the reason, never ignored. Each applies to the endpoints
// that list it in their keys.
interface NeutralOnly {
  neutral: (v: unknown) => boolean;
  rule: string;
}
const ANY_STRING: NeutralOnly = { neutral: (v) => typeof v === 'string', rule: 'must be a string' };
const NEUTRAL_ONLY: Readonly<Record<string, NeutralOnly>> = {
  suffix: { neutral: (v) => v === '', rule: 'is not supported: GPT-2 only continues text' },
  modalities: { neutral: (v) => Array.isArray(v) && v.length === 1 && v[0] === 'text', rule: 'only ["text"] is supported' },
  store: { neutral: (v) => v === false, rule: 'only false is supported: dixie keeps nothing it answers' },
  service_tier: { neutral: (v) => v === 'auto' || v === 'default', rule: 'only "auto" or "default" is supported' },
  // Chat completions'.
  reasoning_effort: { neutral: (v) => v === 'none', rule: 'only "none" is supported: GPT-2 does not reason' },
  verbosity: { neutral: (v) => v === 'medium', rule: 'only "medium" (the default) is supported: a reply\'s length is bounded by its maximum of tokens alone' },
  audio: { neutral: () => false, rule: 'is not supported: GPT-2 writes text only' },
  prediction: { neutral: () => false, rule: 'is not supported: dixie does not take predicted outputs' },
  web_search_options: { neutral: () => false, rule: 'is not supported: GPT-2 does not search the web' },
  // dixie's prefix reuse keeps a prompt in memory only, and only until its batch slot takes another.
  prompt_cache_retention: { neutral: (v) => v === 'in-memory', rule: 'only "in-memory" is supported' },
  // The Responses API's.
  reasoning: { neutral: (v) => isJsonObject(v) && Object.values(v).every((r) => r === null), rule: 'is not supported: GPT-2 does not reason' },
  background: { neutral: (v) => v === false, rule: 'only false is supported: dixie keeps no responses to fetch later' },
  previous_response_id: { neutral: () => false, rule: 'is not supported: dixie keeps no responses; send the conversation in input' },
  conversation: { neutral: () => false, rule: 'is not supported: dixie keeps no conversations; send the conversation in input' },
  // Who is asking and what to tag the request with, for OpenAI's abuse monitoring, caching and stored completions:
  // nothing here acts on them.
  user: ANY_STRING,
  safety_identifier: ANY_STRING,
  prompt_cache_key: ANY_STRING,
  metadata: { neutral: (v) => isJsonObject(v) && Object.values(v).every((m) => typeof m === 'string'), rule: 'must be an object of strings' },
};

// `where`: the request's field that holds the object, when it is not the body (the Responses API's text.verbosity).
export function checkNeutral(body: Body, where?: string): void {
  for (const [key, { neutral, rule }] of Object.entries(NEUTRAL_ONLY)) {
    if (body[key] !== undefined && body[key] !== null && !neutral(body[key])) bad(where === undefined ? key : `${where}.${key}`, rule);
  }
}

// OpenAI's stream_options, its `known` fields beside include_obfuscation, which pads each delta against length side
// channels: dixie does not, so only false.
export function readStreamOptions(body: Body, known: readonly string[]): Body {
  const options = optional<Body>(body, 'stream_options', isJsonObject, `an object such as ${known.length > 0 ? `{"${known[0]}": true}` : '{}'}`) ?? {};
  checkKeys(options, [...known, 'include_obfuscation'], 'stream_options');
  const obfuscation = options.include_obfuscation;
  if (obfuscation !== undefined && obfuscation !== null && obfuscation !== false) bad('stream_options.include_obfuscation', 'only false is supported: dixie does not pad the stream');
  return options;
}

export function optional<T>(body: Body, key: string, is: (v: unknown) => boolean, rule: string): T | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (!is(v)) bad(key, `must be ${rule}`);
  return v as T;
}

export const isInt = (min: number, max: number) => (v: unknown): boolean => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
export const isBool = (v: unknown): boolean => typeof v === 'boolean';

// OpenAI's bound on stop strings.
const MAX_STOPS = 4;
// Stop strings for the APIs whose servers set no bound of their own (llama.cpp's, Ollama's), whose clients send more
// than OpenAI's 4 (a chat's names, its separators). A bound all the same: every stop string is searched for after
// each token, so a request's list slows every token of its generation.
export const MAX_LOCAL_STOPS = 16;
// OpenAI's bound on a logit bias: -100 bans a token, 100 all but forces it.
export const MAX_LOGIT_BIAS = 100;

// An embedding request's `dimensions`, which the model's width must equal (ChatService.embed).
export function readDimensions(body: Body): number | undefined {
  return optional<number>(body, 'dimensions', isInt(1, Number.MAX_SAFE_INTEGER), 'a positive integer');
}

// Stop sequences: a string or up to `most` of them (OpenAI's limit unless the API allows more).
export function readStop(body: Body, key: string, most = MAX_STOPS): string[] | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  const stop = typeof value === 'string' ? [value] : Array.isArray(value) ? (value as unknown[]) : bad(key, 'must be a string or an array of strings');
  if (stop.length > most || stop.some((s) => typeof s !== 'string' || s === '')) bad(key, `must be a non-empty string or an array of at most ${most} of them`);
  // The text is cut where a stop begins, and held back while it may begin: half of a UTF-16 pair would cut a
  // character in two, and the half left would reach the client as U+FFFD.
  if ((stop as string[]).some((s) => LONE_SURROGATE.test(s))) bad(key, 'must be whole characters: a lone surrogate ("\\ud83d", half of an emoji\'s UTF-16 pair) is not one');
  return stop as string[];
}

// OpenAI's seed: any 64-bit integer, negative too. The sampler takes its 64 bits (rngStateFromSeed: a negative one's
// two's complement). JSON.parse reads a number past 2^53 as the nearest double (9223372036854775807 as 2^63), so
// seeds that far out that differ by less than that rounding draw alike.
const INT64_BOUND = 2 ** 63;
export function readSeed(body: Body, key: string): bigint | undefined {
  const seed = optional<number>(body, key, (v) => Number.isInteger(v) && Math.abs(v as number) <= INT64_BOUND, 'an integer from -9223372036854775808 to 9223372036854775807');
  return seed === undefined ? undefined : BigInt(seed);
}

// OpenAI's bound on temperature; dixie's own (the config's, /invocations') reaches further, but OpenAI's clients are
// written for its API, which refuses more.
const MAX_OPENAI_TEMPERATURE = 2;
export function checkOpenAITemperature(body: Body): void {
  optional<number>(body, 'temperature', (v) => typeof v === 'number' && v >= 0 && v <= MAX_OPENAI_TEMPERATURE, `a number from 0 to ${MAX_OPENAI_TEMPERATURE}`);
}

// llama.cpp's and Ollama's seed, where -1 asks for a random one, as no seed does.
export function readLocalSeed(body: Body, key: string): number | undefined {
  const seed = optional<number>(body, key, (v) => v === -1 || (Number.isSafeInteger(v) && (v as number) >= 0), 'a non-negative integer, or -1 (random)');
  return seed === -1 ? undefined : seed;
}

// OpenAI's presence_penalty and frequency_penalty, from -2 to 2 (SamplingOptions).
const MAX_ADDITIVE_PENALTY = 2;
export function readAdditivePenalty(body: Body, key: string): number | undefined {
  return optional<number>(body, key, (v) => typeof v === 'number' && Math.abs(v) <= MAX_ADDITIVE_PENALTY, `a number from ${-MAX_ADDITIVE_PENALTY} to ${MAX_ADDITIVE_PENALTY}`);
}

// llama.cpp's repeat_penalty (Ollama's option too) divides the logits of the tokens used, dixie's penalize
// multiplies them: 1.1 is 1 / 1.1. dixie penalizes the whole context (repeat_last_n -1); repeat_last_n 0 turns the
// penalty off, and any window goes with repeat_penalty 1, which is off. Returns the request's penalize, if it sets one.
export function readRepeatPenalty(body: Body, penaltyKey: string, lastNKey: string): number | undefined {
  const repeat = body[penaltyKey];
  if (repeat !== undefined && repeat !== null && (typeof repeat !== 'number' || !(repeat >= 1))) bad(penaltyKey, 'must be a number of at least 1 (1: off)');
  const lastN = body[lastNKey];
  if (lastN === 0 || repeat === 1) return 0;
  if (lastN !== undefined && lastN !== null && lastN !== -1) bad(lastNKey, `only -1 (the whole context, as dixie penalizes) or 0 (off) is supported, or any with ${penaltyKey} 1`);
  return typeof repeat === 'number' ? 1 / repeat : undefined;
}

// The other way: dixie's penalize as llama.cpp's repeat_penalty (1: off).
export function repeatPenaltyOf(penalize: number): number {
  return penalize > 0 ? 1 / penalize : 1;
}

// The tag Ollama names models by, `<name>:latest`, as /api/tags lists dixie's. Clients that list the models there and
// generate through the OpenAI API at the same address (VS Code's Copilot Chat) name them so on /v1 too, as Ollama's
// OpenAI API takes them: so a model is taken by its key or as `<key>:latest`.
export const LATEST_TAG = ':latest';

// The served model a request names, by its key (or as `<key>:latest`).
export function readModel(service: ChatService, body: Body): ModelConfig {
  const name = body.model;
  if (typeof name !== 'string' || name === '') bad('model', 'is required: the key of a served model (GET /v1/models)');
  const key = name.endsWith(LATEST_TAG) && !service.models.has(name) ? name.slice(0, -LATEST_TAG.length) : name;
  if (!service.models.has(key)) throw new HttpError(404, `The model "${name}" does not exist`, { field: 'model', code: 'model_not_found' });
  return service.model(key);
}

// A request's generations (its prompts times its choices) are each one of the model's requests in hand: more than it
// holds at once (batch_slots + max_queue) could never all be admitted, so the request would only fill the queue for
// everyone else before its 503, and a retry would meet the same.
export function checkGenerations(service: ChatService, count: number, field: string): void {
  const most = service.config.batchSlots + service.config.maxQueue;
  if (count > most) bad(field, `asks for ${count} generations, more than a model holds at once (${most}: batch_slots + max_queue)`);
}

// The request's sampling settings over the model's defaults; `names` maps the endpoint's fields to the defaults'
// names (max_tokens -> length), and errors name the endpoint's field.
export function readSampling(body: Body, model: ModelConfig, names: Readonly<Record<string, string>>): { sampling: SamplingDefaults; lengthGiven: boolean } {
  const overrides: Body = {};
  const fields: Record<string, string> = {};
  for (const [field, name] of Object.entries(names)) {
    if (body[field] === undefined || body[field] === null) continue;
    // Two names of one setting (max_tokens and max_completion_tokens) may both come, but must agree.
    if (name in overrides && overrides[name] !== body[field]) bad(field, `must be what ${fields[name]} is, ${JSON.stringify(overrides[name])}, where both are given`);
    overrides[name] = body[field];
    fields[name] = field;
  }
  return { sampling: requestSampling(overrides, model.sampling, (key) => fields[key]), lengthGiven: overrides.length !== undefined };
}

// llama.cpp's n_predict and Ollama's num_predict, which also take -1 (until the model stops: the model's own reply
// length) and -2 (until the context is full: GenerationRequest.fillContext). Either is taken out of `fields`, whose
// other values readSampling reads.
export function readLocalLength(fields: Body, key: string): { fillContext: boolean } {
  const value = fields[key];
  if (value === undefined || value === null) return { fillContext: false };
  if (value !== -1 && value !== -2 && !isInt(1, MAX_REPLY_LENGTH)(value)) bad(key, `must be an integer from 1 to ${MAX_REPLY_LENGTH}, -1 (the model's own reply length) or -2 (what the context leaves after the prompt)`);
  if (value === -1 || value === -2) delete fields[key];
  return { fillContext: value === -2 };
}

// llama.cpp's and Ollama's samplers take a temperature below 0 as 0, greedy: so is it read.
export function readLocalTemperature(fields: Body, key: string): void {
  const temperature = fields[key];
  if (typeof temperature === 'number' && temperature < 0) fields[key] = 0;
}

// A message of the request, its content read as text (messageText), and the request's fields of its role and its
// text, for errors (messages[2].role, messages[2].content).
export interface InputMessage {
  role: unknown;
  text: string;
  roleField: string;
  textField: string;
}

// A message's content as text: a string, or an array of text parts of the endpoint's types. `field`: the request's
// field that holds it (messages[2].content).
export function messageText(content: unknown, field: string, partTypes: readonly string[]): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) bad(field, 'must be a string or an array of text parts');
  return content
    .map((part: unknown, j) => {
      if (!isJsonObject(part) || !partTypes.includes(part.type as string) || typeof part.text !== 'string') {
        bad(`${field}[${j}]`, `only ${partTypes.map((type) => `{"type": "${type}", "text": "..."}`).join(' or ')} parts are supported`);
      }
      return part.text as string;
    })
    .join('');
}

// Chat completions' messages (and llama.cpp's, which are theirs): {"role", "content"}, the content a string or
// text parts. A conversation that called tools comes back with the calls in assistant messages (`tool_calls`) and
// each call's output in a `tool` message naming it (`tool_call_id`), which must follow the call; or, in OpenAI's
// older function calling, an assistant's `function_call` and the output in a `function` message.
export function openAIMessages(messages: unknown): InputMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) bad('messages', 'must be a non-empty array of {"role", "content"}');
  const called = new Set<string>();
  return messages.map((m: unknown, i) => {
    const where = `messages[${i}]`;
    if (!isJsonObject(m)) bad(where, 'must be an object {"role", "content"}');
    const fields = { role: m.role === 'function' ? 'tool' : m.role, roleField: `${where}.role`, textField: `${where}.content` };
    if (m.role === 'tool' && (typeof m.tool_call_id !== 'string' || !called.has(m.tool_call_id))) bad(`${where}.tool_call_id`, 'must be the id of a call in an earlier assistant message');
    const given = (v: unknown): boolean => v !== undefined && v !== null;
    if (m.role !== 'assistant' || (!given(m.tool_calls) && !given(m.function_call))) return { ...fields, text: messageText(m.content, fields.textField, ['text']) };
    const calls: ToolCall[] = [];
    if (given(m.tool_calls)) {
      const shape = '{"id", "type": "function", "function": {"name", "arguments"}}';
      if (!Array.isArray(m.tool_calls)) bad(`${where}.tool_calls`, `must be an array of ${shape}`);
      m.tool_calls.forEach((call: unknown, j) => {
        const at = `${where}.tool_calls[${j}]`;
        if (!isJsonObject(call) || typeof call.id !== 'string' || !isJsonObject(call.function)) bad(at, `must be ${shape}`);
        called.add(call.id);
        calls.push(sentCall(call.function.name, callArguments(call.function.arguments, `${at}.function.arguments`), `${at}.function.name`));
      });
    }
    if (given(m.function_call)) {
      const at = `${where}.function_call`;
      if (!isJsonObject(m.function_call)) bad(at, 'must be {"name", "arguments"}');
      calls.push(sentCall(m.function_call.name, callArguments(m.function_call.arguments, `${at}.arguments`), `${at}.name`));
    }
    const content = m.content === undefined || m.content === null ? '' : messageText(m.content, fields.textField, ['text']);
    return { ...fields, text: toolCallsText(content, calls) };
  });
}

// A tool call sent back in a conversation: the model reads it as it writes one (toolCallsText). `nameField`: the
// request's field of the call's name, for errors.
export function sentCall(name: unknown, args: unknown, nameField: string): ToolCall {
  if (typeof name !== 'string' || name === '') bad(nameField, 'must be the name of the function called');
  return { name, arguments: args };
}

// A call's arguments as OpenAI's APIs send them back: the JSON text of an object.
export function callArguments(value: unknown, field: string): unknown {
  const rule = 'must be the call\'s arguments as a JSON text, such as "{\\"city\\": \\"Oslo\\"}"';
  if (typeof value !== 'string') bad(field, rule);
  try {
    return JSON.parse(value);
  } catch {
    return bad(field, `${rule}; this is not JSON`);
  }
}

// The prompt the messages make, and the indices of the messages it leaves out. A chat model gets the chat format
// (lib/data/chat_format.ts): user messages are the user's side (`1|<audience>|...`), assistant messages the bot's
// (`0|<audience>|...`), a tool's output the user's side too (the format knows two sides, and the output is what the
// bot is told, as llama.cpp's templates tell a model that has no tool role), and the bot answers as the audience: the
// model's, or the one a system message names as "audience: <name>". A GPT-2 chat model has no system role, so any
// other system message is refused, or left out where the model's config says so (system_messages), and the answer
// says which (X-Dixie-Ignored-Messages). A raw model continues the messages' contents, in order, one a line: its
// reply goes on from the last message, as /invocations' raw_text. `field`: the request's field that holds them.
export function chatPrompt(model: ModelConfig, messages: readonly InputMessage[], field: string): { prompt: string | Conversation; ignored: number[] } {
  let audience = model.audience;
  const turns: Turn[] = [];
  const ignored: number[] = [];
  messages.forEach(({ role, text, roleField, textField }, i) => {
    if (role === 'user' || role === 'assistant' || role === 'tool') turns.push({ from: role === 'assistant' ? 'bot' : 'user', text });
    else if (role === 'system' || role === 'developer') {
      if (model.promptFormat !== 'chat') return;
      const named = audienceNamedBy(text);
      if (named !== null) audience = named;
      else if (model.systemMessages === 'ignore') ignored.push(i);
      else bad(textField, `a chat model has no system prompt; a ${role} message may only name who the bot answers as, "audience: <name>" (or the model's "system_messages": "ignore" in the server's config, bin/serve --system_messages ignore, leaves such messages out)`);
    } else bad(roleField, 'must be "system", "developer", "user", "assistant" or "tool"');
  });
  if (model.promptFormat !== 'chat') return { prompt: messages.map((m) => m.text).join('\n'), ignored };
  if (turns.length === 0) bad(field, 'must hold at least one user or assistant message');
  return { prompt: { audience, turns }, ignored };
}

// Whether the request is one of a batch's (/v1/batches), which wait for the model's slots in a queue of their own.
export function sentByBatch(res: Response): boolean {
  return res.locals.sentByBatch === true;
}

// Aborted when the client goes away before its answer is whole: every generation of the answer stops with it.
export function clientGone(res: Response): AbortController {
  const gone = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  return gone;
}

// An answer streamed on `res`, its status and headers written with the first piece. An answer already ended (an
// error answered before anything was streamed, while another of the request's prompts still ran) takes no more.
function streamWriter(res: Response, contentType: string): { write: (text: string) => void; started: () => boolean } {
  let started = false;
  return {
    write: (text) => {
      if (res.writableEnded) return;
      if (!started) {
        started = true;
        res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
      }
      res.write(text);
    },
    started: () => started,
  };
}

// Server-sent events; `event` names an event's type where the endpoint's stream names them.
export function eventSender(res: Response): { send: (data: unknown, event?: string) => void; started: () => boolean } {
  const { write, started } = streamWriter(res, 'text/event-stream; charset=utf-8');
  return { send: (data, event) => write(`${event === undefined ? '' : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`), started };
}

// One JSON object a line (Ollama's streams).
export function lineSender(res: Response): { send: (data: unknown) => void; started: () => boolean } {
  const { write, started } = streamWriter(res, 'application/x-ndjson; charset=utf-8');
  return { send: (data) => write(`${JSON.stringify(data)}\n`), started };
}

export function tokenText(tokenizer: Tokenizer, token: number): string {
  return tokenizer.decode([token]);
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

// A token's text where its bytes are whole UTF-8 on their own; null where they hold part of a character.
export function wholeTokenText(tokenizer: Tokenizer, token: number): string | null {
  try {
    return STRICT_UTF8.decode(tokenizer.tokenBytes(token));
  } catch {
    return null;
  }
}

// Each token's log-probability and its alternatives', as chat completions and responses give them; `withIds`: with
// each token's id too, as llama.cpp's server gives them.
export function tokenLogprobs(tokenizer: Tokenizer, logprobs: readonly TokenLogprob[], withIds = false): Record<string, unknown>[] {
  const entry = (token: number, logprob: number) => ({ ...(withIds && { id: token }), token: tokenText(tokenizer, token), logprob, bytes: [...tokenizer.tokenBytes(token)] });
  return logprobs.map((l) => ({ ...entry(l.token, l.logprob), top_logprobs: l.top.map((a) => entry(a.token, a.logprob)) }));
}

// Whether a reply was cut short: at its length, or by the deadline, which the APIs report as cut at its length
// (dixie_finish_reason beside it tells the two apart).
export function cutShort(c: Completion): boolean {
  return c.finishReason === 'length' || c.finishReason === 'deadline';
}

// A generation whose reply streams, piece by piece as it settles. Each piece comes with the log-probabilities of the
// tokens drawn since the piece before (a token's text may come in a later piece, held back by a stop sequence that
// may begin or by the sanitizer); a last call, with no text and the completion, brings those drawn after, so that
// all the pieces' together are the reply's.
export async function generateStreamed(
  service: ChatService,
  key: string,
  request: GenerationRequest,
  onPiece: (text: string, logprobs: TokenLogprob[], done: Completion | null) => void,
): Promise<Completion> {
  let drawn: TokenLogprob[] = [];
  const take = (): TokenLogprob[] => {
    const taken = drawn;
    drawn = [];
    return taken;
  };
  const piece = appendOnly((text) => onPiece(text, take(), null));
  const c = await service.generate(key, { ...request, onText: piece, onLogprob: (l) => drawn.push(l) });
  piece(c.text);
  onPiece('', take(), c);
  return c;
}
