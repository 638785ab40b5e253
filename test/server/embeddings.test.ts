// Embeddings over real HTTP on 127.0.0.1: OpenAI's /v1/embeddings driven by the official `openai` client (which asks
// for base64) and by fetch (floats), Ollama's /api/embed and /api/embeddings by the `ollama` client. Each vector is
// the one the library's Generator.embed gives for the same text on the same model folder, bit for bit, also while
// the model is generating for another request; inputs too long for the context are refused or cut, as each API
// does; errors name the field.
import path from 'node:path';
import t from 'tap';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { Generator } from '../../lib/generate';
import { TINY, request, serveApiModels, type ApiModels, type Running } from './helpers';

const API_KEY = 'embeddings-test-key-0123456789';
const AUTH = { Authorization: `Bearer ${API_KEY}` };
const TEXTS = ['How big is the earth?', 'The quick brown fox jumps over the lazy dog.'];
// Past the 128-token context of the test models.
const LONG_TEXT = Array.from({ length: 90 }, (_, i) => `word${i}`).join(' ');

let served: ApiModels;
let srv: Running;
let client: OpenAI;
let ollama: Ollama;
let library: Generator;

t.before(async () => {
  served = await serveApiModels('embeddings', API_KEY, TEXTS[0], 12);
  srv = served.srv;
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
  ollama = new Ollama({ host: srv.url, headers: AUTH });
  library = await Generator.load(path.join(served.dir, 'alpha'), { slots: 2 });
});
t.teardown(async () => {
  await library.close();
  await served.close();
});

const asNumbers = (v: Float32Array): number[] => [...v];

async function embeddings(body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const r = await request(`${srv.url}/v1/embeddings`, { body, headers: AUTH });
  return { status: r.status, json: r.status === 200 || r.status >= 400 ? r.json() : {}, text: r.text };
}

t.test('OpenAI\'s client: each text\'s vector is the library\'s, of length 1, with the tokens counted', async (t) => {
  const expected = await Promise.all(TEXTS.map((text) => library.embed(text)));
  const r = await client.embeddings.create({ model: 'general', input: TEXTS });
  t.equal(r.object, 'list');
  t.equal(r.model, 'general');
  t.same(r.data.map((d) => d.index), [0, 1]);
  r.data.forEach((d, i) => {
    t.equal(d.embedding.length, TINY.nEmbd);
    t.same(d.embedding, asNumbers(expected[i].embedding), `"${TEXTS[i]}": the library's vector exactly (sent as base64)`);
    t.ok(Math.abs(Math.hypot(...d.embedding) - 1) < 1e-6, 'of length 1');
  });
  const tokens = expected[0].promptTokens + expected[1].promptTokens;
  t.same(r.usage, { prompt_tokens: tokens, total_tokens: tokens });
  t.notSame(r.data[0].embedding, r.data[1].embedding, 'two texts, two vectors');

  const floats = await embeddings({ model: 'general', input: TEXTS[1], encoding_format: 'float' });
  t.equal(floats.status, 200, floats.text);
  t.same((floats.json.data as { embedding: number[] }[])[0].embedding, asNumbers(expected[1].embedding), 'as floats, the same numbers');
  const ids = [...library.encode(TEXTS[0])];
  const byIds = await embeddings({ model: 'general', input: [ids], encoding_format: 'float' });
  t.same((byIds.json.data as { embedding: number[] }[])[0].embedding, asNumbers(expected[0].embedding), 'token ids: the vector of their text');
  const chat = await client.embeddings.create({ model: 'chatbot', input: TEXTS[0] });
  t.same(chat.data[0].embedding, asNumbers(expected[0].embedding), 'a chat model embeds the text itself, not a chat prompt');
  const metrics = await request(`${srv.url}/metrics`, { headers: AUTH });
  t.match(metrics.text, /dixie_embeddings_total\{model="general"\} 4\n/, 'four inputs counted');
  t.same(srv.logs.filter((l) => l.msg === 'request' && l.path === '/v1/embeddings').map((l) => l.model), ['general', 'general', 'general', 'chatbot'], 'each request line names its model');
});

t.test('an embedding while the model generates for another request: the same bits', async (t) => {
  const alone = await client.embeddings.create({ model: 'long', input: TEXTS[1] });
  const generating = ollama.generate({ model: 'long', prompt: TEXTS[0], raw: true, stream: false, options: { num_predict: 200, temperature: 0 } });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const beside = await client.embeddings.create({ model: 'long', input: TEXTS[1] });
  const generated = await generating;
  t.ok(generated.eval_count > 0, `the generation ran (${generated.eval_count} tokens)`);
  t.same(beside.data[0].embedding, alone.data[0].embedding);
});

t.test('a long list of inputs takes half the batch slots at a time, leaving room for other requests', async (t) => {
  const texts = Array.from({ length: 40 }, (_, i) => `${i}: ${LONG_TEXT}`);
  let most = 0;
  let mostRequests = 0;
  let sawRunning = false;
  let done = false;
  const watching = (async () => {
    while (!done) {
      const generator = srv.server.service.registry.peek('long')?.generator;
      if (generator) {
        most = Math.max(most, generator.load.running + generator.load.waiting);
        mostRequests = Math.max(mostRequests, generator.runningOf('long'));
        sawRunning ||= generator.load.running > 0;
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  const r = await client.embeddings.create({ model: 'long', input: texts });
  done = true;
  await watching;
  t.equal(r.data.length, 40);
  t.ok(sawRunning, 'the inputs were seen running');
  t.equal(most, 4, 'at most 4 of them (half of batch_slots 8) running or queued at once');
  t.equal(mostRequests, 1, 'counted as one request decoding, as queue_depth counts it');
  const first = await client.embeddings.create({ model: 'long', input: texts[0] });
  t.same(r.data[0].embedding, first.data[0].embedding, 'each as it is alone');
});

t.test('Ollama\'s client: /api/embed\'s vectors of length 1, cut to the context unless truncate is false; /api/embeddings\' as they are', async (t) => {
  const expected = await Promise.all(TEXTS.map((text) => library.embed(text)));
  const r = await ollama.embed({ model: 'general:latest', input: TEXTS });
  t.equal(r.model, 'general:latest');
  t.same(r.embeddings, expected.map((e) => asNumbers(e.embedding)));
  t.equal(r.prompt_eval_count, expected[0].promptTokens + expected[1].promptTokens);
  t.ok(r.total_duration > 0);
  const one = await ollama.embed({ model: 'general', input: TEXTS[1] });
  t.same(one.embeddings, [asNumbers(expected[1].embedding)], 'one text, one vector');

  const longIds = [...library.encode(LONG_TEXT)];
  t.ok(longIds.length > TINY.nCtx, `the long text is ${longIds.length} tokens`);
  const cut = await ollama.embed({ model: 'general', input: LONG_TEXT });
  const firstTokens = await library.embed(longIds.slice(0, TINY.nCtx));
  t.same(cut.embeddings[0], asNumbers(firstTokens.embedding), 'a text past the context is its first n_ctx tokens\' vector');
  t.equal(cut.prompt_eval_count, TINY.nCtx);
  await t.rejects(ollama.embed({ model: 'general', input: LONG_TEXT, truncate: false }), { message: `input: ${longIds.length} tokens, more than the context of model "general" (128)` });

  const legacy = await ollama.embeddings({ model: 'general', prompt: TEXTS[0] });
  const raw = await library.embed(TEXTS[0], { normalize: false });
  t.same(legacy.embedding, asNumbers(raw.embedding), 'the older endpoint: the mean of the states, not scaled');
  t.notOk(Math.abs(Math.hypot(...legacy.embedding) - 1) < 1e-3, 'which is not of length 1');
  for (const path of ['/api/embed', '/api/embeddings']) t.ok(srv.logs.some((l) => l.msg === 'request' && l.path === path && l.status === 200 && l.model === 'general'), `${path}: the request line names the model`);
});

t.test('errors name the field', async (t) => {
  const cases: [Record<string, unknown>, number, string][] = [
    [{ model: 'general', input: LONG_TEXT }, 400, `input: ${library.encode(LONG_TEXT).length} tokens, more than the context of model "general" (128)`],
    [{ model: 'general', input: ['fine', LONG_TEXT] }, 400, 'input[1]: '],
    [{ model: 'general', input: '' }, 400, 'input: must not be empty'],
    [{ model: 'general', input: [] }, 400, 'input: must be a string, a non-empty array of strings'],
    [{ model: 'general', input: [[50257]] }, 400, 'input[0]: token id 50257 is not in the vocabulary of model "general"'],
    [{ model: 'general', input: 'hi', dimensions: 16 }, 400, `dimensions: only ${TINY.nEmbd} (the model's n_embd) is supported`],
    [{ model: 'general', input: 'hi', encoding_format: 'int8' }, 400, 'encoding_format: must be "float" or "base64"'],
    [{ model: 'general', input: 'hi', pooling: 'cls' }, 400, 'pooling: unsupported field'],
    [{ model: 'nobody', input: 'hi' }, 404, 'The model "nobody" does not exist'],
    [{ input: 'hi' }, 400, 'model: is required'],
    [{ model: 'general', input: Array(2049).fill('a') }, 400, 'input: holds 2049 inputs, more than 2048'],
  ];
  for (const [body, status, message] of cases) {
    const r = await embeddings(body);
    t.equal(r.status, status, JSON.stringify(body).slice(0, 80));
    const error = r.json.error as { message: string; param: string | null; code: string | null };
    t.ok(error.message.startsWith(message), `${error.message} starts with ${message}`);
    if (status === 400) t.equal(error.param, message.split(':')[0], 'OpenAI\'s param names the field');
    if (body.input === LONG_TEXT) t.equal(error.code, 'context_length_exceeded', 'an input longer than the context: OpenAI\'s code for it');
  }
  const ok = await embeddings({ model: 'general', input: 'hi', dimensions: TINY.nEmbd, user: 'someone' });
  t.equal(ok.status, 200, 'the model\'s own width, and a user, are accepted');
  const refused = await request(`${srv.url}/api/embed`, { body: { model: 'general', input: [1, 2] }, headers: AUTH });
  t.equal(refused.status, 400);
  t.same(refused.json(), { error: 'input: must be a string or a non-empty array of strings', field: 'input' });
  const many = Array(2049).fill('a');
  const tooMany = await request(`${srv.url}/api/embed`, { body: { model: 'general', input: many }, headers: AUTH });
  t.same([tooMany.status, tooMany.json()], [400, { error: 'input: holds 2049 inputs, more than 2048', field: 'input' }], "OpenAI's limit on Ollama's endpoint");
  const llama = await request(`${srv.url}/embedding`, { body: { model: 'general', content: many }, headers: AUTH });
  t.match([llama.status, llama.json()], [400, { error: { message: 'content: holds 2049 inputs, more than 2048' } }], "and on llama.cpp's");
  const unauthorized = await request(`${srv.url}/v1/embeddings`, { body: { model: 'general', input: 'hi' } });
  t.equal(unauthorized.status, 401, 'the API key is asked for as on every endpoint');
});
