// Hostile requests against one real server, in concurrent batches: near-valid bodies for every POST endpoint (a valid
// request with a field or two replaced by a wrong type, a number at or past an edge, a lone surrogate or NUL, a deep
// nesting, a huge map, an unknown field; streamed or not, the path in capitals or with a trailing slash), bodies that
// are not JSON, not what their headers say or over the limit, the GET routes under every method, and clients that
// leave mid-stream or before the answer. Every answer must be 2xx or 4xx (a 503 only for overload, with Retry-After)
// in its API's shape, a 400 naming its field, a stream whose pieces are JSON and no error; nothing may outlive the
// client's timeout. Beside each batch a greedy request must answer as it did before the fuzz, and after it nothing
// may be held: no request in flight or queued, no lease on a model, no batch slot. At the end the fixed requests
// answer byte for byte as before, batch_slots of them at once, and the server still answers /ping.
// The run is reproducible: DIXIE_FUZZ_SEED and DIXIE_FUZZ_RUNS choose the seed (printed on failure) and the batches.
import fs from 'node:fs';
import zlib from 'node:zlib';
import fc from 'fast-check';
import t from 'tap';
import { LLAMA_CPP_PATHS } from '../../lib/server/routes/llama_cpp';
import { makeModels, startServer, tempDir, type Running } from './helpers';

const SEED = Number(process.env.DIXIE_FUZZ_SEED ?? 20250611);
const RUNS = Number(process.env.DIXIE_FUZZ_RUNS ?? 150);
const BATCH_SLOTS = 4;
const BODY_LIMIT_KB = 16;
const CLIENT_TIMEOUT_MS = 20_000;
const PROMPT = 'How big is the earth?';
const MODELS = ['general', 'chatbot'];
// The models a request may name: Ollama's tag, which Ollama's and OpenAI's APIs take, is refused by the others.
const NAMES = [...MODELS, 'chatbot:latest'];

let dir: string;
let srv: Running;

t.before(async () => {
  dir = tempDir('fuzz');
  await makeModels(dir, { alpha: 1 }, PROMPT, 1);
  srv = await startServer({
    batch_slots: BATCH_SLOTS,
    max_queue: 16,
    body_limit_kb: BODY_LIMIT_KB,
    request_timeout_s: 10,
    models: [
      { key: 'general', restore_from: 'alpha', sampling: { temperature: 0, penalize: 0, length: 8 } },
      { key: 'chatbot', restore_from: 'alpha', sanitizer: 'sanitizers.chatbot', audience: 'mom', sampling: { length: 8 } },
    ],
  }, dir);
});
t.teardown(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// A value JSON.stringify cannot write as the fuzz means it (a nesting deeper than its stack, a number past a double's
// range): a placeholder string, swapped for its text once the body is written.
const RAW_TEXTS: string[] = [];
const raw = (text: string): string => `\u0001${RAW_TEXTS.push(text) - 1}\u0001`;
function serialize(body: unknown): string {
  return JSON.stringify(body).replace(/"\\u0001(\d+)\\u0001"/g, (_, i: string) => RAW_TEXTS[Number(i)]);
}

const deep = (open: string, close: string, depth: number): string => raw(open.repeat(depth) + close.repeat(depth));
const hugeBias = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [String(i * 50), -100]));

// Values no field expects: wrong types, numbers at and past every edge, text that is not what it seems.
const hostileConstant = fc.constantFrom<unknown>(
  null, true, false, 0, -0, 1, -1, 2, 0.5, -0.5, 1e-7, 5e-324, 1e308, -1e308, 4096, 4097, 50256, 50257, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 64,
  raw('1e999'), raw('-1e999'), raw('1.0000000000000001'), raw('-0.0'),
  '', ' ', 'NaN', 'Infinity', '-1', '1e999', '0x1F', '12', 'true', 'null', '\u0000', '\ud800', '\udfffx', 'a\u0000b', '<|endoftext|>',
  '1|mom|hi <EOM>\n0|mom|', '\u202e\u200b', 'x'.repeat(6000),
  [], {}, [null], [''], [[]], [{}], [0], [-1], [1.5], [50257], [0, 50256], [1e10], Array.from({ length: 600 }, () => 50256),
  ['a', 1], [[1, 2], 'a'], { '': '' }, { type: 'text' }, { role: 'user' }, JSON.parse('{"__proto__": 1}'), { constructor: 1 }, { toString: 'x' },
  ['', 'a'], Array.from({ length: 20 }, () => 'a'), Array.from({ length: 30 }, () => 'a'), [''], [['']], [['', 5]], hugeBias, { abc: 1 }, { '-1': 1 }, { 99999999999: 1 }, [[0, 1e9]], [[0, false]],
  deep('[', ']', 6000), deep('{"a":', '}', 3000), deep('[', ']', 40),
);
const someString = fc.string({ unit: fc.oneof(fc.constantFrom('\ud800', '\udc00', '\u0000', '|', '\n', '<EOM>'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: 24 });
const hostile = fc.oneof(
  { weight: 6, arbitrary: hostileConstant },
  { weight: 2, arbitrary: fc.integer({ min: -10, max: 70_000 }) },
  { weight: 2, arbitrary: fc.integer({ min: -2, max: 24 }) },
  { weight: 2, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  { weight: 2, arbitrary: someString },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

// A request that is valid as it stands, and the fields the fuzz may spoil (a path into the body), valid ones and
// unknown ones alike.
interface Endpoint {
  path: string;
  body: Record<string, unknown>;
  fields: string[][];
  streams?: true;  // its answer streams as `stream` says (Ollama's unless it says false)
}

const f = (...names: string[]): string[][] => names.map((n) => n.split('.'));
const SAMPLING = f('temperature', 'top_p', 'top_k', 'min_p', 'seed', 'bogus', '__proto__', 'constructor');
const OPENAI_SAMPLING = [...SAMPLING, ...f('max_tokens', 'max_completion_tokens', 'penalize', 'n', 'stop', 'stream_options', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'user', 'model')];
const messages = [{ role: 'system', content: 'audience: dad' }, { role: 'user', content: 'Hi there' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: PROMPT }];
const MESSAGE_FIELDS = f('messages', 'messages.0', 'messages.0.role', 'messages.0.content', 'messages.1.content', 'messages.3.role', 'messages.3.content', 'messages.3.content.0');

const ENDPOINTS: Endpoint[] = [
  {
    path: '/invocations',
    body: { model_key: 'general', raw_text: PROMPT, length: 4, format: 'json' },
    fields: [...SAMPLING, ...f('model_key', 'raw_text', 'format', 'stream', 'history', 'length', 'penalize')],
    streams: true,
  },
  {
    path: '/invocations',
    body: { model_key: 'chatbot', raw_text: PROMPT, length: 4, history: [{ from: 'user', text: 'Hi' }, { from: 'bot', text: 'Hello' }] },
    fields: [...SAMPLING, ...f('raw_text', 'history', 'history.0', 'history.0.from', 'history.1.text', 'stream', 'length')],
    streams: true,
  },
  {
    path: '/v1/completions',
    body: { model: 'general', prompt: PROMPT, max_tokens: 4 },
    fields: [...OPENAI_SAMPLING, ...f('prompt', 'prompt.0', 'logprobs', 'echo', 'suffix', 'best_of', 'stream')],
    streams: true,
  },
  {
    path: '/v1/chat/completions',
    body: { model: 'chatbot', messages, max_tokens: 4 },
    fields: [...OPENAI_SAMPLING, ...MESSAGE_FIELDS, ...f('logprobs', 'top_logprobs', 'response_format', 'tools', 'tool_choice', 'metadata', 'modalities', 'store', 'service_tier', 'stream')],
    streams: true,
  },
  {
    path: '/v1/responses',
    body: { model: 'chatbot', input: [{ role: 'user', content: [{ type: 'input_text', text: PROMPT }] }], max_output_tokens: 4 },
    fields: [...SAMPLING, ...f('input', 'input.0', 'input.0.type', 'input.0.content', 'input.0.content.0.text', 'instructions', 'max_output_tokens', 'include', 'top_logprobs', 'text', 'reasoning', 'truncation', 'store', 'previous_response_id', 'prompt', 'metadata', 'stream_options', 'stream')],
    streams: true,
  },
  {
    path: '/v1/embeddings',
    body: { model: 'general', input: ['Hello', PROMPT] },
    fields: f('model', 'input', 'input.0', 'input.1', 'encoding_format', 'dimensions', 'user', 'bogus'),
  },
  {
    path: '/api/generate',
    body: { model: 'general', prompt: PROMPT, stream: false, options: { num_predict: 4 } },
    fields: [...f('model', 'prompt', 'system', 'raw', 'suffix', 'template', 'context', 'images', 'format', 'keep_alive', 'think', 'logprobs', 'top_logprobs', 'stream', 'options', 'bogus'),
      ...f('options.num_predict', 'options.temperature', 'options.top_k', 'options.top_p', 'options.min_p', 'options.repeat_penalty', 'options.repeat_last_n', 'options.seed', 'options.stop',
        'options.presence_penalty', 'options.frequency_penalty', 'options.num_ctx', 'options.typical_p', 'options.mirostat_tau', 'options.bogus', 'options.__proto__', 'options.constructor', 'options.toString', 'options.hasOwnProperty')],
    streams: true,
  },
  {
    path: '/api/chat',
    body: { model: 'chatbot', messages, stream: false, options: { num_predict: 4 } },
    fields: [...MESSAGE_FIELDS, ...f('model', 'messages.1.images', 'messages.1.tool_calls', 'tools', 'stream', 'logprobs', 'top_logprobs', 'options', 'options.num_predict', 'options.stop', 'options.temperature', 'options.valueOf')],
    streams: true,
  },
  { path: '/api/embed', body: { model: 'general', input: 'Hello' }, fields: f('model', 'input', 'input.0', 'truncate', 'dimensions', 'options', 'keep_alive', 'bogus') },
  { path: '/api/embeddings', body: { model: 'general', prompt: 'Hello' }, fields: f('model', 'prompt', 'options', 'bogus') },
  { path: '/api/show', body: { model: 'general' }, fields: f('model', 'verbose', 'bogus') },
  {
    path: '/completion',
    body: { model: 'general', prompt: PROMPT, n_predict: 4 },
    fields: [...SAMPLING, ...f('model', 'prompt', 'prompt.0', 'prompt.1', 'n_predict', 'repeat_penalty', 'repeat_last_n', 'presence_penalty', 'frequency_penalty', 'stop', 'penalize_nl', 'n_probs',
      'return_tokens', 'logit_bias', 'id_slot', 'cache_prompt', 'typical_p', 'mirostat', 'mirostat_tau', 'grammar', 'json_schema', 'lora', 'response_fields', 'samplers', 'samplers.0', 'stream')],
    streams: true,
  },
  { path: '/embedding', body: { model: 'general', content: 'Hello' }, fields: f('model', 'content', 'content.0', 'embd_normalize', 'bogus') },
  { path: '/apply-template', body: { model: 'chatbot', messages }, fields: [...MESSAGE_FIELDS, ...f('model', 'bogus')] },
  { path: '/tokenize', body: { model: 'general', content: 'Hello world' }, fields: f('model', 'content', 'with_pieces', 'bogus') },
  { path: '/detokenize', body: { model: 'general', tokens: [15496, 995] }, fields: f('model', 'tokens', 'tokens.0', 'bogus') },
  { path: '/prime', body: { model_key: 'general' }, fields: f('model_key', 'raw_text', 'bogus') },
];

const GETS = [
  '/ping', '/health', '/metrics', '/models/list', '/v1/models', '/v1/models/general', '/v1/models/nope', '/v1/models/%E0%A4%A', '/v1/models/%', '/v1/models/%00',
  '/props', '/props?model=chatbot', '/props?model=nope', '/props?model=', '/props?model=a&model=b', '/props?model[x]=1', '/api/tags', '/api/ps', '/api/version', '/nowhere',
];

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  leave?: { chunks: number } | { ms: number };  // the client goes away after chunks of a streamed answer, or a time
}

// A copy of the body with the value at `path` replaced (undefined: removed), making the objects and arrays on the way.
function spoil(body: Record<string, unknown>, path: string[], value: unknown): Record<string, unknown> {
  const copy = structuredClone(body);
  let at: Record<string, unknown> = copy;
  path.forEach((key, i) => {
    if (i === path.length - 1) {
      if (value === undefined) delete at[key];
      else Object.defineProperty(at, key, { value, enumerable: true, writable: true, configurable: true });  // __proto__ as a key
      return;
    }
    if (typeof at[key] !== 'object' || at[key] === null) at[key] = /^\d+$/.test(path[i + 1]) ? [] : {};
    at = at[key] as Record<string, unknown>;
  });
  return copy;
}

const JSON_TYPE = { 'content-type': 'application/json' };

const nearValid: fc.Arbitrary<FuzzRequest> = fc.constantFrom(...ENDPOINTS).chain((endpoint) => fc.record({
  spoiled: fc.array(fc.tuple(fc.constantFrom(...endpoint.fields), fc.oneof({ weight: 6, arbitrary: hostile }, { weight: 1, arbitrary: fc.constant(undefined) })), { maxLength: 2 }),
  stream: fc.constantFrom(undefined, true, false),
  leave: fc.option(fc.oneof(fc.record({ chunks: fc.nat(3) }), fc.record({ ms: fc.nat(60) })), { nil: undefined, freq: 3 }),
  model: fc.constantFrom(...NAMES),
  accept: fc.constantFrom(undefined, 'application/json', 'text/event-stream', 'text/plain', 'image/png'),
  spelling: fc.constantFrom('', '', '', 'upper', 'slash'),
}).map(({ spoiled, stream, leave, model, accept, spelling }) => {
  const base = { ...endpoint.body, ...(endpoint.streams && stream !== undefined && { stream }) };
  if ('model' in base) base.model = model;
  const body = spoiled.reduce((b, [path, value]) => spoil(b, path, value), base);
  const path = spelling === 'upper' ? endpoint.path.toUpperCase() : spelling === 'slash' ? `${endpoint.path}/` : endpoint.path;
  return { method: 'POST', path, headers: { ...JSON_TYPE, ...(accept && { accept }) }, body: serialize(body), leave };
}));

// Bodies that are not what their headers say, or not JSON, or over the limit.
const malformed: fc.Arbitrary<FuzzRequest> = fc.record({
  path: fc.constantFrom(...ENDPOINTS.map((e) => e.path)),
  headers: fc.constantFrom<Record<string, string>>(
    JSON_TYPE, { 'content-type': 'text/plain' }, { 'content-type': 'application/x-www-form-urlencoded' }, { 'content-type': 'application/json; charset=utf-16' },
    { 'content-type': 'application/json; charset=latin1' }, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, { 'content-type': 'application/json', 'content-encoding': 'zstd-ish' },
    { 'content-type': 'application/vnd.api+json' }, { 'content-type': 'multipart/form-data; boundary=x' }, {},
  ),
  body: fc.constantFrom<string | Buffer>(
    '', '{', '{"model": "general",', '[', 'nul', 'null', '"text"', '123', '[]', '{"a":1}garbage', '\u0000', '\ufeff{}', '{"model": "general"}', 'a=b&c=d',
    `{"raw_text": "${'x'.repeat(BODY_LIMIT_KB * 1024)}"}`, zlib.gzipSync('{"model": "general", "prompt": "Hi"}'), zlib.gzipSync('{'), Buffer.from([0xff, 0xfe, 0x00, 0x7b]),
  ),
}).map(({ path, headers, body }) => ({ method: 'POST', path, headers, body }));

const gets: fc.Arbitrary<FuzzRequest> = fc.tuple(fc.constantFrom(...GETS), fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS')).map(([path, method]) => ({ method, path, headers: {} }));

const anyRequest = fc.oneof({ weight: 8, arbitrary: nearValid }, { weight: 2, arbitrary: malformed }, { weight: 1, arbitrary: gets });

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  left: boolean;  // the client went away mid-stream
}

const LEFT = new Error('the client went away');
async function send(r: FuzzRequest): Promise<Answer> {
  const client = new AbortController();
  const timers = [setTimeout(() => client.abort(new Error(`no answer within ${CLIENT_TIMEOUT_MS} ms`)), CLIENT_TIMEOUT_MS)];
  if (r.leave && 'ms' in r.leave) timers.push(setTimeout(() => client.abort(LEFT), r.leave.ms));
  let status = 0;
  let headers = new Headers();
  try {
    const res = await fetch(`${srv.url}${r.path}`, { method: r.method, headers: r.headers, body: r.body, signal: client.signal });
    ({ status, headers } = res);
    const streamed = r.leave && 'chunks' in r.leave && res.status === 200 && /event-stream|ndjson/.test(res.headers.get('content-type') ?? '');
    if (!streamed || res.body === null) return { status, headers, text: await res.text(), left: false };
    const reader = res.body.getReader();
    for (let i = 0; i <= (r.leave as { chunks: number }).chunks; i++) if ((await reader.read()).done) break;
    client.abort(LEFT);
    await reader.cancel().catch(() => undefined);
    return { status, headers, text: '', left: true };
  } catch (err) {
    if (client.signal.reason === LEFT) return { status, headers, text: '', left: true };
    throw err;
  } finally {
    timers.forEach(clearTimeout);
  }
}

// A JSON text's value, or undefined if it does not parse.
function parsed(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// What is wrong with an answer, or null: a 5xx (but a 503 with Retry-After), an error not in its API's shape or a
// 400 that names no field, a success that does not parse, a stream with an error in it.
function fault(r: FuzzRequest, a: Answer): string | null {
  // As the routers match it: in any case, a trailing slash or not.
  const path = r.path.split('?')[0].toLowerCase().replace(/(.)\/$/, '$1');
  if (a.status >= 500 && !(a.status === 503 && a.headers.get('retry-after') !== null)) return `status ${a.status}`;
  // A client that left has only its status to judge (none, if it left first); a HEAD has no body; an OPTIONS is
  // answered by Express, with the methods allowed.
  if (a.left || r.method === 'HEAD' || (r.method === 'OPTIONS' && a.status < 300)) return null;
  const type = a.headers.get('content-type') ?? '';
  if (a.status >= 400) {
    const body = parsed(a.text) as { error?: { message?: unknown; param?: unknown; field?: unknown; code?: unknown } | string; field?: unknown } | undefined;
    if (typeof body !== 'object' || body === null) return `an error that is not JSON (${type})`;
    const { error } = body;
    let message: unknown;
    let field: unknown;
    if (path.startsWith('/v1/')) {
      if (typeof error !== 'object' || !('param' in error) || !('code' in error)) return 'not OpenAI\'s error shape';
      ({ message, param: field } = error);
    } else if (LLAMA_CPP_PATHS.includes(path)) {
      if (typeof error !== 'object' || error.code !== a.status) return 'not llama.cpp\'s error shape';
      ({ message, field } = error);
    } else {
      [message, field] = [error, body.field];
    }
    if (typeof message !== 'string' || message === '') return 'an error without a message';
    if (a.status === 400 && (typeof field !== 'string' || !message.includes(field))) return 'a 400 that names no field';
    return null;
  }
  if (a.status >= 300) return `status ${a.status}`;
  // A stream's events (their data) or lines, each JSON, none of them an error; else the answer whole.
  const pieces = /event-stream/.test(type)
    ? a.text.split('\n\n').filter((e) => e.trim() !== '').map((e) => e.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n')).filter((d) => d !== '[DONE]')
    : /ndjson/.test(type) ? a.text.split('\n').filter((l) => l !== '') : null;
  for (const piece of pieces ?? []) {
    const value = parsed(piece) as Record<string, unknown> | undefined;
    if (typeof value !== 'object') return `a piece of the stream that is not JSON: ${piece}`;
    if ('error' in value || value.type === 'response.failed') return `an error in the stream: ${piece}`;
  }
  if (pieces !== null || /^text\/plain/.test(type)) return null;
  if (/json/.test(type)) return parsed(a.text) === undefined ? 'JSON that does not parse' : null;
  return `an answer of type ${type}`;
}

// What is still held, all models together, once nothing is asked: requests in flight and queued (/metrics), leases on
// the models (/models/list), and the batchers' slots taken and requests waiting; within two seconds, since a client
// that went away is noticed at the next step.
interface Held {
  inFlight: number;
  queued: number;
  leases: number;
  slots: number;
  waiting: number;
}
const NOTHING_HELD: Held = { inFlight: 0, queued: 0, leases: 0, slots: 0, waiting: 0 };
async function held(): Promise<Held> {
  let state = NOTHING_HELD;
  for (let i = 0; i < 100; i++) {
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    // NaN unless every model has its line: a metric renamed must not pass as nothing held.
    const sum = (name: string): number => {
      const lines = [...metrics.matchAll(new RegExp(`^${name}\\{model="[^"]+"\\} (\\d+)$`, 'gm'))];
      return lines.length === MODELS.length ? lines.reduce((n, m) => n + Number(m[1]), 0) : NaN;
    };
    const { models } = (await (await fetch(`${srv.url}/models/list`)).json()) as { models: { in_flight: number }[] };
    const loads = MODELS.map((m) => srv.server.service.registry.peek(m)?.generator.load ?? { running: 0, waiting: 0 });
    state = {
      inFlight: sum('dixie_requests_in_flight'),
      queued: sum('dixie_queue_depth'),
      leases: models.reduce((n, m) => n + m.in_flight, 0),
      slots: loads.reduce((n, l) => n + l.running, 0),
      waiting: loads.reduce((n, l) => n + l.waiting, 0),
    };
    if (Object.values(state).every((v) => v === 0)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return state;
}

const describe = (r: FuzzRequest): string => `${r.method} ${r.path} ${JSON.stringify(r.headers)} ${String(r.body ?? '').slice(0, 300)}${r.leave === undefined ? '' : ` (leaving after ${JSON.stringify(r.leave)})`}`;

// Each request alone, then its answer judged.
async function check(r: FuzzRequest): Promise<string | null> {
  try {
    const problem = fault(r, await send(r));
    return problem === null ? null : `${describe(r)}: ${problem}`;
  } catch (err) {
    return `${describe(r)}: ${(err as Error).message}`;
  }
}

// Requests that once answered 500 or in another API's shape, replayed as the first batch: a prototype member's
// name as an option, a nesting too deep to quote, a path that does not decode, texts that make no tokens, more
// prompts than the model holds at once, a path spelled in capitals.
const post = (path: string, body: Record<string, unknown>): FuzzRequest => ({ method: 'POST', path, headers: JSON_TYPE, body: serialize(body) });
const ONCE_WRONG: FuzzRequest[] = [
  post('/api/generate', { model: 'general', prompt: PROMPT, stream: false, options: JSON.parse('{"__proto__": 1}') }),
  post('/invocations', { model_key: 'general', raw_text: PROMPT, temperature: deep('[', ']', 6000) }),
  post('/v1/responses', { model: 'chatbot', input: [{ type: deep('[', ']', 6000), role: 'user', content: PROMPT }] }),
  { method: 'GET', path: '/v1/models/%E0%A4%A', headers: {} },
  post('/completion', { model: 'general', prompt: [['']], stream: true }),
  post('/v1/completions', { model: 'general', prompt: Array.from({ length: 21 }, () => PROMPT) }),
  post('/COMPLETION/', { model: 'general', prompt: {} }),
];

// Two requests whose answers are fixed by their settings (greedy; seeded), to compare before and after the fuzz.
const FIXED: FuzzRequest[] = [
  { method: 'POST', path: '/invocations', headers: JSON_TYPE, body: JSON.stringify({ model_key: 'general', raw_text: PROMPT, length: 24 }) },
  { method: 'POST', path: '/v1/completions', headers: JSON_TYPE, body: JSON.stringify({ model: 'general', prompt: 'Once upon a time', max_tokens: 24, temperature: 1, seed: 42, n: 2 }) },
];
async function fixedAnswers(): Promise<string[]> {
  return Promise.all(FIXED.map(async (r) => {
    const a = await send(r);
    if (a.status !== 200) return `${a.status} ${a.text}`;
    return r.path === '/invocations' ? a.text : JSON.stringify((JSON.parse(a.text) as { choices: unknown }).choices);
  }));
}

t.test('hostile requests, concurrently: 2xx or 4xx in their API\'s shape, and the server as it was', async (t) => {
  const before = await fixedAnswers();
  t.ok(before.every((text) => !/^\d{3} /.test(text)), 'the fixed requests are answered');

  const started = Date.now();
  const result = await fc.check(fc.asyncProperty(fc.array(anyRequest, { minLength: 4, maxLength: 8 }), async (batch) => {
    // Beside them, a request whose answer is known: no other request may change it.
    const [canary, ...answers] = await Promise.all([send(FIXED[0]), ...batch.map(check)]);
    const problems = answers.filter((p): p is string => p !== null);
    if (canary.text !== before[0]) problems.push(`the fixed request beside them answered ${JSON.stringify(canary.text)}, not ${JSON.stringify(before[0])}`);
    const state = await held();
    if (Object.values(state).some((v) => v !== 0)) problems.push(`held after the batch: ${JSON.stringify(state)}`);
    if (problems.length > 0) throw new Error(problems.join('\n'));
  }), { seed: SEED, numRuns: RUNS, examples: [[ONCE_WRONG]], endOnFailure: true });
  t.comment(`${result.numRuns} batches in ${Date.now() - started} ms (seed ${SEED})`);
  // The problems name each request that failed: the batch it came in is the counterexample.
  if (result.failed) t.fail(`seed ${SEED} (DIXIE_FUZZ_SEED=${SEED} to replay): ${(result.errorInstance as Error | null)?.message}\n${fc.defaultReportMessage(result)}`);
  else t.pass(`seed ${SEED}: every answer as it should be`);

  t.same(await fixedAnswers(), before, 'the fixed requests answer as before, byte for byte');
  const all = await Promise.all(Array.from({ length: BATCH_SLOTS }, () => send(FIXED[0])));
  t.same(all.map((a) => a.text), Array.from({ length: BATCH_SLOTS }, () => before[0]), `${BATCH_SLOTS} at once (every batch slot): each answered as before`);
  t.same(await held(), NOTHING_HELD, 'nothing in flight, no lease or batch slot held');
  const ping = await fetch(`${srv.url}/ping`);
  t.equal(await ping.text(), 'Pong!', 'the server is alive');
});
