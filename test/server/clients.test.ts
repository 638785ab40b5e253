// Requests as the chat apps and libraries people use send them (read from their source), over real HTTP on
// 127.0.0.1: what they probe at connect time, the bodies they post and the answers they parse. llama-server and
// Ollama pass over fields not of their API, which these clients send (one body for several backends), and so does
// dixie, naming them in X-Dixie-Ignored-Fields; their own fields for what dixie does not do are refused, naming
// the field.
import t from 'tap';
import { request, serveApiModels, type ApiModels, type Running } from './helpers';

const API_KEY = 'clients-test-key-0123456789';
const AUTH = { Authorization: `Bearer ${API_KEY}` };
const PROMPT = 'How big is the earth?';
const LENGTH = 12;

let served: ApiModels;
let greedy: string;
let srv: Running;

t.before(async () => {
  served = await serveApiModels('clients', API_KEY, PROMPT, LENGTH);
  ({ greedy, srv } = served);
});
t.teardown(() => served.close());

const post = (path: string, body: unknown) => request(`${srv.url}${path}`, { body, headers: AUTH });
const ignoredFields = (r: { headers: Headers }): string[] => (r.headers.get('x-dixie-ignored-fields') ?? '').split(',').filter((f) => f !== '').map(decodeURIComponent);

// SillyTavern's text completion body (getTextGenGenerationData, its llama.cpp source): text-generation-webui's,
// KoboldCpp's and Ollama's names beside llama.cpp's, the llama.cpp sampler order, and logit_bias as pairs.
// SillyTavern's server forwards it as it is to /completion.
const SILLYTAVERN_FOREIGN = {
  max_new_tokens: LENGTH, max_tokens: LENGTH, typical: 1, sampler_seed: -1, repetition_penalty: 1.2, skew: 0, min_tokens: 0, add_bos_token: true,
  smoothing_factor: 0, smoothing_curve: 1, max_tokens_second: 0, stopping_strings: ['\nUser:'], truncation_length: 128, ban_eos_token: false,
  skip_special_tokens: true, top_a: 0, tfs: 1, mirostat_mode: 0, custom_token_bans: '', banned_strings: [], api_type: 'llamacpp',
  api_server: 'http://127.0.0.1:8080', legacy_api: false, rep_pen: 1.2, rep_pen_range: 0, repetition_penalty_range: 0, guidance_scale: 1,
  negative_prompt: '', grammar_string: '', num_predict: LENGTH, num_ctx: 128, rep_pen_slope: 1,
};
function sillyTavernBody(settings: Record<string, unknown>): Record<string, unknown> {
  return {
    prompt: PROMPT, model: 'general', temperature: 0.7, top_p: 0.5, typical_p: 1, min_p: 0, frequency_penalty: 0, presence_penalty: 0, top_k: 40,
    dry_allowed_length: 2, dry_multiplier: 0, dry_base: 1.75, dry_sequence_breakers: '["\\n", ":", "\\"", "*"]', dry_penalty_last_n: 0,
    samplers: ['top_k', 'tfs_z', 'typical_p', 'top_p', 'min_p', 'temperature'], stop: ['\nUser:'], mirostat_tau: 5, mirostat_eta: 0.1,
    xtc_threshold: 0.1, xtc_probability: 0, seed: -1, repeat_penalty: 1.2, tfs_z: 1, repeat_last_n: 0, n_predict: LENGTH, mirostat: 0,
    ignore_eos: false, logit_bias: [], grammar: '', cache_prompt: true, ...SILLYTAVERN_FOREIGN, ...settings,
  };
}

t.test('SillyTavern (llama.cpp): its whole body answered, whole and streamed; the fields not llama.cpp\'s passed over and named', async (t) => {
  // Greedy (temperature 0), no sampler order changes the draw; the repetition penalty is off with repeat_last_n 0.
  const whole = await post('/completion', sillyTavernBody({ temperature: 0 }));
  t.equal(whole.status, 200, whole.text);
  t.match(whole.json(), { content: greedy, stop: true, stop_type: 'limit', tokens_predicted: LENGTH, generation_settings: { n_predict: LENGTH, temperature: 0, repeat_penalty: 1 } });
  t.same(ignoredFields(whole), Object.keys(SILLYTAVERN_FOREIGN), 'each field not llama.cpp\'s named, in the order sent');

  const streamed = await post('/completion', sillyTavernBody({ temperature: 0, stream: true }));
  t.equal(streamed.status, 200, streamed.text);
  t.match(streamed.headers.get('content-type'), /^text\/event-stream/);
  const events = streamed.text.split('\n\n').filter((e) => e !== '').map((e) => JSON.parse(e.replace(/^data: /, '')) as { content: string; stop: boolean });
  t.equal(events.map((e) => e.content).join(''), greedy, 'the pieces SillyTavern adds up (data.content)');
  t.same(events.map((e) => e.stop), [...events.slice(1).map(() => false), true], 'the last event, and only it, with "stop": true');
});

t.test('SillyTavern (llama.cpp): samplers in dixie\'s order draw as /v1/completions does; in another order they are refused', async (t) => {
  const settings = { temperature: 1.1, top_k: 40, top_p: 0.9, min_p: 0.05, seed: 7, n_predict: 10 };
  const reference = await post('/v1/completions', { model: 'general', prompt: 'Once upon a time', ...settings, n_predict: undefined, max_tokens: 10 });
  t.equal(reference.status, 200, reference.text);
  const expected = (reference.json().choices as { text: string }[])[0].text;
  // temperature commutes with top_k, and top_k with min_p; the letters are llama.cpp's short form.
  for (const samplers of [['dry', 'temperature', 'top_k', 'typ_p', 'min_p', 'xtc', 'top_p'], ['top_k', 'temperature', 'min_p', 'top_p'], 'ktmp']) {
    const r = await post('/completion', sillyTavernBody({ prompt: 'Once upon a time', ...settings, samplers }));
    t.equal(r.status, 200, r.text);
    t.equal(r.json().content, expected, JSON.stringify(samplers));
  }
  // SillyTavern's default order applies top_p and min_p before the temperature; llama-server leaves out a sampler
  // not listed.
  for (const [samplers, message] of [
    [['top_k', 'tfs_z', 'typical_p', 'top_p', 'min_p', 'temperature'], /^samplers: "min_p" before "temperature" is not supported: dixie applies the penalties, temperature, top_k, min_p, then top_p/],
    [['temperature', 'top_k', 'top_p', 'min_p'], /^samplers: "top_p" before "min_p" is not supported/],
    [['temperature', 'top_k', 'min_p'], /^samplers: must list "top_p" once, as its setting is on/],
    [['temperature', 'temperature', 'top_k', 'min_p', 'top_p'], /^samplers: must list "temperature" once/],
    [[1, 2], /^samplers: must be an array of sampler names/],
  ] as const) {
    const r = await post('/completion', sillyTavernBody({ ...settings, samplers }));
    t.equal(r.status, 400, JSON.stringify(samplers));
    t.match(r.json(), { error: { code: 400, field: 'samplers', message } }, JSON.stringify(samplers));
  }
});

t.test('SillyTavern (llama.cpp): its sampler order lists the penalties, which llama-server applies only where listed', async (t) => {
  // SillyTavern's default order now; greedy, so that only the penalties' place can change the draw.
  const order = ['penalties', 'dry', 'top_n_sigma', 'top_k', 'typ_p', 'top_p', 'min_p', 'xtc', 'temperature', 'adaptive_p'];
  const settings = { prompt: 'Once upon a time', temperature: 0, top_k: 40, top_p: 1, repeat_penalty: 1.5, repeat_last_n: -1, presence_penalty: 0.5, n_predict: 20 };
  const reference = await post('/completion', { model: 'general', ...settings });
  const unpenalized = await post('/completion', { model: 'general', ...settings, repeat_penalty: 1, presence_penalty: 0 });
  t.not(reference.json().content, unpenalized.json().content, 'the penalties change the test model\'s greedy text');
  const listed = await post('/completion', sillyTavernBody({ ...settings, samplers: order }));
  t.equal(listed.status, 200, listed.text);
  t.equal(listed.json().content, reference.json().content, 'listed first: the text of no list');
  for (const [samplers, message] of [
    [order.filter((name) => name !== 'penalties'), /^samplers: must list "penalties" once, as its setting is on/],
    ['kemt', /^samplers: "top_k" before "penalties" is not supported: dixie applies the penalties, temperature, top_k, min_p, then top_p/],
    [['temperature', 'penalties', 'top_k'], /^samplers: "temperature" before "penalties" is not supported/],
  ] as const) {
    const r = await post('/completion', sillyTavernBody({ ...settings, samplers }));
    t.match({ status: r.status, ...r.json() }, { status: 400, error: { code: 400, field: 'samplers', message } }, JSON.stringify(samplers));
  }
  const off = await post('/completion', sillyTavernBody({ ...settings, repeat_penalty: 1, presence_penalty: 0, samplers: ['top_k', 'temperature'] }));
  t.equal(off.json().content, unpenalized.json().content, 'with every penalty off, a list may leave them out');
});

t.test('SillyTavern (Ollama): /api/generate raw with its options, as its parser reads the answer', async (t) => {
  // SillyTavern's server posts these, its options picked from the same body by Ollama's names.
  const body = {
    model: 'general:latest', prompt: PROMPT, stream: false, keep_alive: -1, raw: true,
    options: { num_predict: LENGTH, num_ctx: 128, stop: ['\nUser:'], temperature: 0, repeat_penalty: 1.2, presence_penalty: 0, frequency_penalty: 0, top_k: 40, top_p: 0.5, tfs_z: 1, typical_p: 1, seed: -1, repeat_last_n: 0, mirostat: 0, mirostat_tau: 5, mirostat_eta: 0.1, min_p: 0 },
  };
  const whole = await post('/api/generate', body);
  t.equal(whole.status, 200, whole.text);
  t.match(whole.json(), { model: 'general:latest', response: greedy, done: true, done_reason: 'length', eval_count: LENGTH, total_duration: Number, eval_duration: Number, prompt_eval_count: Number });
  t.same(ignoredFields(whole), []);
  const streamed = await post('/api/generate', { ...body, stream: true });
  t.match(streamed.headers.get('content-type'), /^application\/x-ndjson/);
  const lines = streamed.text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { response: string; done: boolean });
  t.equal(lines.map((l) => l.response).join(''), greedy, 'the lines\' responses add up');
  t.same(lines.map((l) => l.done), [...lines.slice(1).map(() => false), true]);
});

t.test('Open WebUI (Ollama): the connection probes, then /api/chat with `system` and `metadata` beside the messages, passed over as Ollama does', async (t) => {
  const version = await request(`${srv.url}/api/version`, { headers: AUTH });
  t.match(version.json(), { version: String });
  const tags = await request(`${srv.url}/api/tags`, { headers: AUTH });
  t.ok((tags.json().models as { name: string; model: string }[]).some((m) => m.name === 'general:latest' && m.model === 'general:latest'), 'the model listed by name');
  t.match((await request(`${srv.url}/api/ps`, { headers: AUTH })).json(), { models: Array });
  t.ok(((await request(`${srv.url}/v1/models`, { headers: AUTH })).json().data as { id: string }[]).some((m) => m.id === 'general'), 'and its OpenAI connection\'s /v1/models');

  // Open WebUI moves a model's `system` parameter out of its options to the request, where Ollama's /api/chat
  // passes over it; its `metadata` goes along too. Its older versions sent presence_penalty as
  // options.new_topic_penalty, an option Ollama does not have.
  const chat = await post('/api/chat', {
    model: 'general:latest', messages: [{ role: 'user', content: PROMPT }], stream: false, system: 'You are a helpful assistant.', metadata: { chat_id: 'c1', message_id: 'm1' },
    options: { temperature: 0, num_ctx: 2048, num_predict: LENGTH, new_topic_penalty: 0 },
  });
  t.equal(chat.status, 200, chat.text);
  t.match(chat.json(), { model: 'general:latest', message: { role: 'assistant', content: greedy }, done: true, done_reason: 'length', eval_count: LENGTH });
  t.same(ignoredFields(chat), ['system', 'metadata', 'options.new_topic_penalty']);
});

t.test('Continue (Ollama): /api/show\'s parameters give the context it fits prompts to; each streamed line of /api/chat a message', async (t) => {
  // Continue asks /api/show by `name` and reads its Modelfile parameters, a `key value` a line, for num_ctx.
  const show = await post('/api/show', { name: 'long' });
  t.equal(show.status, 200, show.text);
  const parameters = new Map((show.json().parameters as string).split('\n').map((line) => line.split(/\s+/) as [string, string]));
  t.equal(parameters.get('num_ctx'), '1024', 'the model\'s context');
  // Its chat: the model file parameters it has, unset ones left out, and keep_alive in seconds; every line it reads
  // must hold the message, the last one too.
  const chat = await post('/api/chat', { model: 'general', messages: [{ role: 'user', content: PROMPT }], options: { temperature: 0, num_predict: LENGTH, num_ctx: 128 }, keep_alive: 1800 });
  t.equal(chat.status, 200, chat.text);
  const lines = chat.text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { message: { role: string; content: string }; done: boolean });
  t.ok(lines.every((l) => l.message.role === 'assistant'), 'each line an assistant\'s message');
  t.equal(lines.map((l) => l.message.content).join(''), greedy);
  t.equal(lines.at(-1)?.done, true);
});

t.test('VS Code Copilot Chat (Ollama): the version it requires, the models and their context from /api, the chat through /v1 by their Ollama names', async (t) => {
  // Copilot compares /api/version, part by part as numbers, with the oldest Ollama it takes, 0.6.4.
  const version = (await request(`${srv.url}/api/version`, { headers: AUTH })).json().version as string;
  const parts = version.split('.').map(Number);
  t.ok(parts.length === 3 && parts.every(Number.isInteger) && (parts[0] > 0 || parts[1] > 6 || (parts[1] === 6 && parts[2] >= 4)), `${version} is 0.6.4 or later`);
  // It names each model as /api/tags' `model`, and sizes its prompts from /api/show's <architecture>.context_length.
  const names = ((await request(`${srv.url}/api/tags`, { headers: AUTH })).json().models as { model: string }[]).map((m) => m.model);
  t.ok(names.includes('general:latest'));
  const show = (await post('/api/show', { model: 'general:latest' })).json() as { model_info: Record<string, unknown>; capabilities: string[] };
  t.equal(show.model_info[`${show.model_info['general.architecture'] as string}.context_length`], 128);
  t.ok(show.capabilities.includes('tools'));
  // Then it streams chat completions from <url>/v1, as Ollama's OpenAI API takes that name (LibreChat's endpoints
  // named "ollama" do the same: their models from /api/tags by `name`, their chats through /v1).
  const r = await post('/v1/chat/completions', { model: 'general:latest', messages: [{ role: 'user', content: PROMPT }], stream: true, max_tokens: LENGTH, temperature: 0 });
  t.equal(r.status, 200, r.text);
  const chunks = r.text.split('\n\n').filter((e) => e !== '' && e !== 'data: [DONE]').map((e) => JSON.parse(e.slice('data: '.length)) as { model: string; choices: { delta: { content?: string } }[] });
  t.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), greedy);
  t.equal(chunks[0].model, 'general');
  t.match((await post('/v1/chat/completions', { model: 'nobody:latest', messages: [{ role: 'user', content: PROMPT }] })).json(), { error: { param: 'model', code: 'model_not_found', message: 'The model "nobody:latest" does not exist' } });
});

t.test('LibreChat (an endpoint named "ollama"): its model list from /api/tags with the endpoint\'s headers, else from /v1/models with its apiKey', async (t) => {
  // LibreChat asks /api/tags (at the base URL's origin) with the endpoint's configured `headers` only, not its apiKey.
  const bare = await request(`${srv.url}/api/tags`);
  t.equal(bare.status, 401, 'a keyed server lists no models to a request without the key');
  t.match(bare.json(), { error: /^an API key is required/ }, 'in Ollama\'s error shape');
  const withHeaders = await request(`${srv.url}/api/tags`, { headers: AUTH });
  t.ok((withHeaders.json().models as { name: string }[]).some((m) => m.name === 'general:latest'), 'headers: {Authorization: "Bearer <key>"} lists them by `name`');
  // Where /api/tags fails, LibreChat asks <baseURL>/models with "Authorization: Bearer <apiKey>", its baseURL the
  // server's /v1; the keys it lists there are the names its chats then send to /v1/chat/completions.
  const fallback = await request(`${srv.url}/v1/models`, { headers: AUTH });
  t.ok((fallback.json().data as { id: string }[]).some((m) => m.id === 'general'), 'its fallback lists the models by key');
});

t.test('the Vercel AI SDK (openai-compatible): a chat stream with include_usage, framed as its parser reads it', async (t) => {
  // What @ai-sdk/openai-compatible's chat model posts for streamText: its standard settings by OpenAI's names, the
  // unset ones left out.
  const r = await post('/v1/chat/completions', { model: 'general', max_tokens: LENGTH, temperature: 0, messages: [{ role: 'user', content: PROMPT }], stream: true, stream_options: { include_usage: true } });
  t.equal(r.status, 200, r.text);
  t.match(r.headers.get('content-type'), /^text\/event-stream/);
  const events = r.text.split('\n\n').filter((e) => e !== '');
  t.ok(events.every((e) => e.startsWith('data: ')), 'data lines only');
  t.equal(events.at(-1), 'data: [DONE]', 'ending with [DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)) as { choices: { delta: { role?: string; content?: string }; finish_reason: string | null }[]; usage?: Record<string, number> });
  const usage = chunks.at(-1) as (typeof chunks)[number];
  t.same(usage.choices, [], 'the usage in a last chunk of no choices');
  t.match(usage.usage, { prompt_tokens: Number, completion_tokens: LENGTH, total_tokens: Number });
  const deltas = chunks.slice(0, -1).map((c) => c.choices[0]);
  t.equal(deltas[0].delta.role, 'assistant');
  t.equal(deltas.map((d) => d.delta.content ?? '').join(''), greedy);
  t.same(deltas.map((d) => d.finish_reason), [...deltas.slice(1).map(() => null), 'length']);
  // OpenAI's API refuses a field it does not know, and so does /v1 (only the local APIs pass them over).
  const unknown = await post('/v1/chat/completions', { model: 'general', messages: [{ role: 'user', content: PROMPT }], metadata_extra: 1 });
  t.match({ status: unknown.status, error: unknown.json().error }, { status: 400, error: { param: 'metadata_extra' } });
});
