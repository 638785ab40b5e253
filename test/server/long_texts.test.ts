// Long texts over real HTTP on 127.0.0.1 are tokenized off the server's event loop, into the same tokens as one
// tokenizer in place: /tokenize, prompts of /v1/completions and llama.cpp's /completion (texts and texts among
// ids), embeddings' inputs, and chats, which are fitted to the context from their lines' tokens; a model whose
// folder's vocabulary changed after it loaded keeps its own. The server runs in this process, so a tokenizer called
// on its thread is seen here; the worker threads load their own.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { fitConversation, type Turn } from '../../lib/data/chat_format';
import { fitChat, type FittedChat, type MessageTooLongError } from '../../lib/generate/chat';
import { loadTokenizer, Tokenizer } from '../../lib/tokenizer';
import { EncoderPool } from '../../lib/tokenizer/parallel';
import { writeVocabulary } from '../../lib/tokenizer/vocab';
import { request, serveApiModels, startServer, TINY, type ApiModels } from './helpers';

const API_KEY = 'long-texts-test-key-0123456789';
const AUTH = { Authorization: `Bearer ${API_KEY}` };
const PROMPT = 'How big is the earth?';
const LENGTH = 8;
// Words, CJK without spaces, digits, blank runs and lines, and a long run of one letter (no point to cut it at).
const LONG_TEXT = `${'How big is the earth? 地球はどのくらい大きいですか。 12345  \n\n  '.repeat(150)}${'a'.repeat(5000)} the end`;
// Texts this long would hold the event loop for milliseconds or more; the server keeps shorter ones to itself.
const LONG_CHARS = 4096;

const tokenizer = loadTokenizer();
const TOY_VOCABULARY = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'tokenizer', 'toy');
const ids = (text: string): number[] => [...tokenizer.encode(text, { allowSpecial: false })];

// The length of every text the tokenizers of this thread encode while `run` runs, and the texts it hands the worker
// threads.
async function encodedHere<T>(run: () => Promise<T>): Promise<{ result: T; lengths: number[]; pooled: string[] }> {
  const encode = Tokenizer.prototype.encode;
  const encodeInPool = EncoderPool.prototype.encode;
  const lengths: number[] = [];
  const pooled: string[] = [];
  Tokenizer.prototype.encode = function (this: Tokenizer, text, options) {
    lengths.push(text.length);
    return encode.call(this, text, options);
  };
  EncoderPool.prototype.encode = function (this: EncoderPool, texts, options) {
    pooled.push(...texts);
    return encodeInPool.call(this, texts, options);
  };
  try {
    return { result: await run(), lengths, pooled };
  } finally {
    Tokenizer.prototype.encode = encode;
    EncoderPool.prototype.encode = encodeInPool;
  }
}

let served: ApiModels;

t.before(async () => {
  served = await serveApiModels('long-texts', API_KEY, PROMPT, LENGTH);
});
t.teardown(() => served.close());

async function post(path: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const r = await request(`${served.srv.url}${path}`, { body, headers: AUTH });
  if (r.status !== 200) throw new Error(`${path}: ${r.status}: ${r.text}`);
  return r.json();
}

t.test('/tokenize encodes a long text off the event loop, into the tokens of one tokenizer', async (t) => {
  const { result, lengths } = await encodedHere(() => post('/tokenize', { model: 'general', content: LONG_TEXT }));
  t.same(result.tokens, ids(LONG_TEXT));
  t.ok(lengths.every((n) => n < LONG_CHARS), `no long text encoded on the server's thread (lengths ${lengths})`);
  const special = `${LONG_TEXT}<|endoftext|>`;
  const parsed = await post('/tokenize', { model: 'general', content: special, parse_special: true });
  t.same(parsed.tokens, [...tokenizer.encode(special, { allowSpecial: true })], 'parse_special as in place');
});

t.test('a long prompt is encoded off the event loop and answered as its token ids are', async (t) => {
  const body = { model: 'general', max_tokens: LENGTH, temperature: 0 };
  const { result, lengths } = await encodedHere(() => post('/v1/completions', { ...body, prompt: LONG_TEXT }));
  const byIds = await post('/v1/completions', { ...body, prompt: ids(LONG_TEXT) });
  t.same(result.choices, byIds.choices);
  t.match(result.usage, { prompt_tokens: (byIds.usage as { prompt_tokens: number }).prompt_tokens });
  t.ok(lengths.every((n) => n < LONG_CHARS), `no long text encoded on the server's thread (lengths ${lengths})`);
});

t.test("llama.cpp's /completion: a long text among ids, and n_predict -2 over a long prompt", async (t) => {
  const mixed = await encodedHere(() => post('/completion', { model: 'general', prompt: [...ids(PROMPT), LONG_TEXT], n_predict: LENGTH }));
  const byIds = await post('/completion', { model: 'general', prompt: [...ids(PROMPT), ...ids(LONG_TEXT)], n_predict: LENGTH });
  t.equal(mixed.result.content, byIds.content);
  t.ok(mixed.lengths.every((n) => n < LONG_CHARS), `no long text encoded on the server's thread (lengths ${mixed.lengths})`);
  const full = await encodedHere(() => post('/completion', { model: 'general', prompt: LONG_TEXT, n_predict: -2 }));
  t.ok(full.lengths.every((n) => n < LONG_CHARS), `no long text encoded on the server's thread (lengths ${full.lengths})`);
  t.same(full.pooled, [LONG_TEXT], 'the prompt encoded once, for the reply it leaves room for and for its tokens');
});

t.test('embeddings of many inputs, long in all, are encoded off the event loop', async (t) => {
  const inputs = Array.from({ length: 40 }, (_, i) => `${i}: ${LONG_TEXT.slice(i * 150, i * 150 + 150)}`);
  const body = { model: 'general', encoding_format: 'float' };
  const { result, lengths } = await encodedHere(() => post('/v1/embeddings', { ...body, input: inputs }));
  const byIds = await post('/v1/embeddings', { ...body, input: inputs.map(ids) });
  t.same(result.data, byIds.data);
  t.same(result.usage, byIds.usage);
  t.equal(lengths.length, 0, "none of them encoded on the server's thread");
});

t.test('a chat of long messages is fitted off the event loop, to the prompt fitting it in place gives', async (t) => {
  const older = [0, 1, 2].map((i) => LONG_TEXT.slice(i * 3000, i * 3000 + 3000));
  const messages = [
    { role: 'user', content: older[0] },
    { role: 'assistant', content: older[1] },
    { role: 'user', content: older[2] },
    { role: 'assistant', content: 'Quite big.' },
    { role: 'user', content: PROMPT },
  ];
  const { result, lengths, pooled } = await encodedHere(() => post('/v1/chat/completions', { model: 'chatbot', messages }));
  const fitted = fitInPlace(messages);
  t.ok(fitted.droppedMessages > 0, 'the chat is longer than the context');
  t.match(result.usage, { prompt_tokens: ids(fitted.prompt).length });
  t.ok(lengths.every((n) => n < LONG_CHARS), `no long text encoded on the server's thread (lengths ${lengths})`);
  const chars = (texts: string[]): number => texts.reduce((n, text) => n + text.length, 0);
  t.equal(chars(pooled), fitConversation({ audience: 'mom', turns: turnsOf(messages) }).prompt.length, 'each line of the chat encoded once');

  const alone = [{ role: 'user', content: LONG_TEXT }];
  const tooLong = await encodedHere(() => request(`${served.srv.url}/v1/chat/completions`, { body: { model: 'chatbot', messages: alone }, headers: AUTH }));
  const refused = t.throws(() => fitInPlace(alone)) as MessageTooLongError;
  t.equal(tooLong.result.status, 400);
  t.match(tooLong.result.json(), { error: { message: new RegExp(`takes ${refused.messageTokens} tokens`) } });
  t.ok(tooLong.lengths.every((n) => n < LONG_CHARS), `no long text encoded on the server's thread (lengths ${tooLong.lengths})`);
});

// OpenAI's messages as the chatbot's turns.
function turnsOf(messages: { role: string; content: string }[]): Turn[] {
  return messages.map((m) => ({ from: m.role === 'user' ? ('user' as const) : ('bot' as const), text: m.content }));
}

// The chatbot's prompt for `messages`, fitted by one tokenizer in place.
function fitInPlace(messages: { role: string; content: string }[]): FittedChat {
  return fitChat({ audience: 'mom', turns: turnsOf(messages) }, { nCtx: TINY.nCtx, maxTokens: LENGTH, encode: (text) => tokenizer.encode(text, { allowSpecial: false }) });
}

t.test("a model whose folder's vocabulary changed after it loaded keeps its own: its long texts are then encoded in place", async (t) => {
  const dir = path.join(served.dir, 'own-vocabulary');
  fs.cpSync(path.join(served.dir, 'alpha'), dir, { recursive: true });
  await writeVocabulary(tokenizer.vocab, dir, { nCtx: (JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { n_ctx: number }).n_ctx });
  const srv = await startServer({ models: [{ key: 'own', restore_from: 'own-vocabulary' }] }, served.dir);
  t.teardown(() => srv.close());
  const tokenize = async (content: string): Promise<unknown> => (await request(`${srv.url}/tokenize`, { body: { model: 'own', content } })).json().tokens;
  t.same(await tokenize(PROMPT), ids(PROMPT), 'loaded, a short text encoded in place');
  // Another vocabulary written over the folder's, as a model copied over a served one may bring (one without the
  // tokenizer_config.json whose added tokens name this vocabulary's ids).
  for (const file of ['vocab.json', 'merges.txt']) fs.copyFileSync(path.join(TOY_VOCABULARY, file), path.join(dir, file));
  fs.rmSync(path.join(dir, 'tokenizer_config.json'));
  const warnings = srv.logs.length;
  t.same(await tokenize(LONG_TEXT), ids(LONG_TEXT), "a long one in the tokens of the vocabulary the model loaded with, not the folder's new one");
  t.match(srv.logs.slice(warnings), [{ level: 'warn', msg: "long texts encoded on the server's thread", error: `${dir}: its vocabulary changed since the model was loaded` }]);
});
