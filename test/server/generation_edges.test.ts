// The edges of generation over real HTTP on 127.0.0.1, alike on every API that generates (OpenAI's, Ollama's,
// llama.cpp's): stop strings that are not whole characters, lengths that fill the context, and log-probabilities of
// tokens that hold part of a character.
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
  for (const [path, body, field] of [
    ['/api/generate', { model: 'general', prompt: PROMPT, stream: false, options: { num_predict: 0 } }, 'options.num_predict'],
    ['/completion', { model: 'general', prompt: PROMPT, n_predict: -3 }, 'n_predict'],
  ] as const) {
    const r = await post(path, body);
    t.equal(r.status, 400, `${path}: 400`);
    t.match(JSON.stringify(r.json), `${field}: must be an integer from 1 to 4096, -1 (the model's own reply length) or -2 (what the context leaves after the prompt)`, `${path}: names ${field} and what it takes`);
  }
});
