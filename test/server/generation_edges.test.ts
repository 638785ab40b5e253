// The edges of generation over real HTTP on 127.0.0.1, alike on every API that generates (OpenAI's, Ollama's,
// llama.cpp's): stop strings that are not whole characters, lengths that fill the context, log-probabilities of
// tokens that hold part of a character, how a reply ends that its sanitizer completes on its last allowed token, and
// temperatures below 0.
import t from 'tap';
import { loadTokenizer } from '../../lib/tokenizer';
import { TINY, request, serveApiModels, type ApiModels, type Running } from './helpers';

const API_KEY = 'generation-edges-test-key-0123456789';
const AUTH = { Authorization: `Bearer ${API_KEY}` };
const PROMPT = 'How big is the earth?';
const LENGTH = 12;

let served: ApiModels;
let srv: Running;

t.before(async () => {
  served = await serveApiModels('generation-edges', API_KEY, PROMPT, LENGTH);
  ({ srv } = served);
});
t.teardown(() => served.close());

async function post(path: string, body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await request(`${srv.url}${path}`, { body, headers: AUTH });
  return { status: r.status, json: r.json() };
}

t.test('a stop string holding half of a UTF-16 pair is refused on every API, naming the field; a whole emoji is a stop', async (t) => {
  const halfEmoji = '\ud83d';
  const refusals: [string, Record<string, unknown>, string][] = [
    ['/v1/completions', { model: 'general', prompt: PROMPT, stop: ['x', halfEmoji] }, 'stop'],
    ['/v1/chat/completions', { model: 'general', messages: [{ role: 'user', content: PROMPT }], stop: `a${halfEmoji}` }, 'stop'],
    ['/api/generate', { model: 'general', prompt: PROMPT, stream: false, options: { stop: ['\ude00'] } }, 'options.stop'],
    ['/completion', { model: 'general', prompt: PROMPT, stop: [halfEmoji] }, 'stop'],
  ];
  for (const [path, body, field] of refusals) {
    const r = await post(path, body);
    t.equal(r.status, 400, `${path}: 400`);
    t.match(JSON.stringify(r.json), new RegExp(`${field.replace('.', '\\.')}: must be whole characters`), `${path}: names ${field}`);
  }
  const whole = await post('/v1/completions', { model: 'general', prompt: PROMPT, stop: ['😀'] });
  t.equal(whole.status, 200, 'a whole emoji is a stop string');
});

t.test("a length of -2 fills the context after the prompt alike on Ollama's API and llama.cpp's; other lengths are refused naming the field and the values taken", async (t) => {
  const promptTokens = loadTokenizer().encode(PROMPT, { allowSpecial: false }).length;
  const full = (await post('/completion', { model: 'general', prompt: PROMPT, n_predict: -2 })).json;
  t.match(full, { tokens_evaluated: promptTokens, tokens_predicted: TINY.nCtx - promptTokens, stop_type: 'limit', generation_settings: { n_predict: TINY.nCtx - promptTokens } }, '/completion: what the context leaves');
  const generated = (await post('/api/generate', { model: 'general', prompt: PROMPT, raw: true, stream: false, options: { num_predict: -2 } })).json;
  t.match(generated, { response: full.content, prompt_eval_count: promptTokens, eval_count: TINY.nCtx - promptTokens, done_reason: 'length' }, '/api/generate: the same reply');
  const chat = (await post('/api/chat', { model: 'general', messages: [{ role: 'user', content: PROMPT }], stream: false, options: { num_predict: -2 } })).json;
  t.match(chat, { message: { content: full.content }, eval_count: TINY.nCtx - promptTokens }, '/api/chat: the same reply');
  const own = (await post('/api/generate', { model: 'general', prompt: PROMPT, raw: true, stream: false, options: { num_predict: -1 } })).json;
  t.equal(own.eval_count, LENGTH, "-1: the model's own length");
  const overlong = `${PROMPT} ${'Hello '.repeat(TINY.nCtx)}`;
  const cut = (await post('/completion', { model: 'general', prompt: overlong, n_predict: -2 })).json;
  t.match(cut, { tokens_predicted: LENGTH, truncated: true }, "a prompt past the context leaves none to fill: the model's own length, the prompt cut");
  const overlongChat = (await post('/api/chat', { model: 'general', messages: [{ role: 'user', content: overlong }], stream: false, options: { num_predict: -2 } })).json;
  t.match(overlongChat, { message: { content: cut.content }, eval_count: LENGTH }, '/api/chat: the same');
  for (const [path, body, field] of [
    ['/api/generate', { model: 'general', prompt: PROMPT, stream: false, options: { num_predict: 0 } }, 'options.num_predict'],
    ['/completion', { model: 'general', prompt: PROMPT, n_predict: -3 }, 'n_predict'],
  ] as const) {
    const r = await post(path, body);
    t.equal(r.status, 400, `${path}: 400`);
    t.match(JSON.stringify(r.json), `${field}: must be an integer from 1 to 4096, -1 (the model's own reply length) or -2 (what the context leaves after the prompt)`, `${path}: names ${field} and what it takes`);
  }
});

// A completion's token as its bytes: OpenAI's "bytes:\xNN..." for one that holds part of a character, else its text.
const tokenBytes = (token: string): Buffer => (token.startsWith('bytes:') ? Buffer.from(token.slice('bytes:'.length).replaceAll('\\x', ''), 'hex') : Buffer.from(token, 'utf8'));

// Where each token begins in the text its bytes make: the characters the tokens before it complete.
function expectedOffsets(tokens: string[], at = 0): number[] {
  const decoder = new TextDecoder();
  return tokens.map((token) => {
    const offset = at;
    at += decoder.decode(tokenBytes(token), { stream: true }).length;
    return offset;
  });
}

t.test("completions' log-probabilities of tokens that hold part of a character: named by their bytes, each at its place in the text, streamed or not", async (t) => {
  type Logprobs = { tokens: string[]; text_offset: number[]; top_logprobs: Record<string, number>[] };
  // Held to one string of emoji and CJK, which the tiny model spells in tokens of a byte or two.
  const emojiAndCJK = { type: 'json_schema', json_schema: { name: 'text', schema: { type: 'string', enum: ['😀日本語é'] } } };
  const body = { model: 'general', prompt: 'Hi 😀', max_tokens: 20, logprobs: 20, response_format: emojiAndCJK };
  const echoed = (await post('/v1/completions', { ...body, echo: true })).json.choices as { text: string; logprobs: Logprobs }[];
  const { text, logprobs } = echoed[0];
  t.equal(text, 'Hi 😀"😀日本語é"');
  t.ok(logprobs.tokens.some((token) => token.startsWith('bytes:')), 'some tokens hold part of a character');
  t.equal(Buffer.concat(logprobs.tokens.map(tokenBytes)).toString('utf8'), text, "the tokens' bytes are the text's, prompt and reply");
  t.same(logprobs.text_offset, expectedOffsets(logprobs.tokens), 'each token at its place in the text');
  const misplaced = logprobs.tokens.filter((token, i) => !token.startsWith('bytes:') && !text.startsWith(token, logprobs.text_offset[i]));
  t.same(misplaced, [], 'a token of whole characters is found in the text at its offset');
  t.ok(logprobs.top_logprobs.slice(1).every((top) => Object.keys(top).length === 20), 'every position has its 20 alternatives, none named alike');

  const whole = ((await post('/v1/completions', body)).json.choices as { text: string; logprobs: Logprobs }[])[0];
  t.same(whole.logprobs.text_offset, expectedOffsets(whole.logprobs.tokens), 'not echoed: from the start of the reply');
  const r = await request(`${srv.url}/v1/completions`, { body: { ...body, stream: true }, headers: AUTH });
  const chunks = r.text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => (JSON.parse(e.slice('data: '.length)) as { choices: { text: string; logprobs: Logprobs | null }[] }).choices[0]);
  t.equal(chunks.map((c) => c.text).join(''), whole.text, 'streamed: the same text');
  t.same(chunks.flatMap((c) => c.logprobs?.tokens ?? []), whole.logprobs.tokens, 'streamed: the same tokens');
  t.same(chunks.flatMap((c) => c.logprobs?.text_offset ?? []), whole.logprobs.text_offset, 'streamed: the same offsets');
});

t.test('a reply the sanitizer completes on its last allowed token stopped, as it does with room for more', async (t) => {
  const messages = [{ role: 'user', content: PROMPT }];
  // Line breaks made likely, each of which ends the chatbot's message.
  const settings = { model: 'chatbot', messages, max_tokens: 40, temperature: 1.2, logit_bias: { 198: 6 } };
  type Chat = { choices: { message: { content: string }; finish_reason: string }[]; usage: { completion_tokens: number } };
  let seed = 0;
  let free: Chat | undefined;
  for (; seed < 20 && free === undefined; seed++) {
    const answer = (await post('/v1/chat/completions', { ...settings, seed })).json as Chat;
    if (answer.choices[0].finish_reason === 'stop' && answer.usage.completion_tokens > 1) free = answer;
  }
  if (free === undefined) throw new Error('no seed of 20 gave a reply the sanitizer completed');
  const tokens = free.usage.completion_tokens;
  const exact = (await post('/v1/chat/completions', { ...settings, seed: seed - 1, max_tokens: tokens })).json as Chat;
  t.equal(exact.choices[0].message.content, free.choices[0].message.content, `max_tokens ${tokens}: the same reply`);
  t.equal(exact.usage.completion_tokens, tokens, 'of the same tokens');
  t.equal(exact.choices[0].finish_reason, 'stop', 'finish_reason "stop", not "length"');
});

t.test("a temperature below 0 is greedy on Ollama's API, as Ollama's sampler and llama.cpp's take it", async (t) => {
  // 'long' samples at its own temperature unless told.
  const greedy = ((await post('/v1/completions', { model: 'long', prompt: PROMPT, max_tokens: 8, temperature: 0 })).json.choices as { text: string }[])[0].text;
  const ollama = await post('/api/generate', { model: 'long', prompt: PROMPT, raw: true, stream: false, options: { num_predict: 8, temperature: -1, seed: 3 } });
  t.equal(ollama.status, 200, '/api/generate: answered');
  t.equal(ollama.json.response, greedy, '/api/generate: the greedy text');
  const llamaCpp = await post('/completion', { model: 'long', prompt: PROMPT, n_predict: 8, temperature: -1, seed: 3 });
  t.equal(llamaCpp.json.content, greedy, '/completion: the same');
});
