// llama.cpp's server's own API over real HTTP on 127.0.0.1: /completion gives the text /v1/completions gives for the
// same prompt and settings (llama.cpp's names for them: n_predict, repeat_penalty, logit_bias pairs, n_probs), whole
// and streamed as llama-server streams it; how it stopped; prompts of token ids, mixed, or several; /props from the
// model's folder and config; /health open to all; /embedding the vectors of /v1/embeddings; /tokenize and
// /detokenize; errors in llama.cpp's shape, naming the field.
import t from 'tap';
import { chatTemplate } from '../../lib/data/chat_format';
import { loadTokenizer } from '../../lib/tokenizer';
import { TINY, inFlightAfterLeaving, request, serveApiModels, startServer, type ApiModels, type Running } from './helpers';

const API_KEY = 'llama-cpp-test-key-0123456789';
const AUTH = { Authorization: `Bearer ${API_KEY}` };
const PROMPT = 'How big is the earth?';
const LENGTH = 12;
const tokenizer = loadTokenizer();

let served: ApiModels;
let greedy: string;
let srv: Running;

t.before(async () => {
  served = await serveApiModels('llama-cpp', API_KEY, PROMPT, LENGTH);
  ({ greedy, srv } = served);
});
t.teardown(() => served.close());

type Answer = Record<string, unknown> & { content: string; tokens: number[]; stop_type: string; stopping_word: string; tokens_predicted: number; tokens_evaluated: number };

// The default model is the chatbot (its sanitizer and chat format); these ask for the plain one unless told.
async function completion(body: Record<string, unknown>): Promise<Answer> {
  const r = await request(`${srv.url}/completion`, { body: { model: 'general', ...body }, headers: AUTH });
  if (r.status !== 200) throw new Error(`${r.status}: ${r.text}`);
  return r.json() as Answer;
}

// The text /v1/completions gives for the same request, in OpenAI's names.
async function openAIText(body: Record<string, unknown>): Promise<string> {
  const r = await request(`${srv.url}/v1/completions`, { body: { model: 'general', ...body }, headers: AUTH });
  if (r.status !== 200) throw new Error(`${r.status}: ${r.text}`);
  return (r.json().choices as { text: string }[])[0].text;
}

async function refusal(path: string, body: Record<string, unknown>): Promise<{ status: number; error: { code: number; message: string; type: string; field?: string } }> {
  const r = await request(`${srv.url}${path}`, { body, headers: AUTH });
  return { status: r.status, error: (r.json() as { error: { code: number; message: string; type: string; field?: string } }).error };
}

// A streamed answer's events, as llama-server sends them: `data: {...}` lines, no [DONE].
async function streamed(body: Record<string, unknown>): Promise<Record<string, unknown>[]> {
  const r = await request(`${srv.url}/completion`, { body: { model: 'general', ...body, stream: true }, headers: AUTH });
  if (r.status !== 200 || !/^text\/event-stream/.test(r.headers.get('content-type') ?? '')) throw new Error(`${r.status}: ${r.text}`);
  const events = r.text.split('\n\n').filter((e) => e !== '');
  if (!events.every((e) => e.startsWith('data: '))) throw new Error(`not all data lines: ${r.text}`);
  return events.map((e) => JSON.parse(e.slice('data: '.length)) as Record<string, unknown>);
}

t.test('completion: the greedy text, how it stopped, the counts and timings', async (t) => {
  const a = await completion({ model: 'general', prompt: PROMPT, n_predict: LENGTH });
  t.equal(a.content, greedy);
  const promptTokens = tokenizer.encode(PROMPT, { allowSpecial: false }).length;
  t.match(a, { stop: true, model: 'general', stop_type: 'limit', stopping_word: '', tokens_predicted: LENGTH, tokens_evaluated: promptTokens, truncated: false, prompt: PROMPT, tokens: [], dixie_finish_reason: 'length' });
  const { topK, topP } = srv.server.service.model('general').sampling;
  t.match(a.generation_settings, { n_predict: LENGTH, temperature: 0, top_k: topK, top_p: topP, repeat_penalty: 1, seed: -1 });
  const timings = a.timings as Record<string, number>;
  t.equal(timings.predicted_n, LENGTH);
  t.equal(timings.prompt_n + timings.cache_n, promptTokens, 'the prompt fed or found in the cache');
  t.ok(timings.predicted_ms >= 0 && timings.prompt_ms >= 0);

  const byDefault = await completion({ prompt: PROMPT, n_predict: -1 });
  t.equal(byDefault.content, greedy, 'at the model\'s own length (n_predict -1)');
  // The tiny models' context is 128; "<|endoftext|>" banned, so that the reply runs to its length.
  const full = await completion({ model: 'general', prompt: PROMPT, n_predict: -2, logit_bias: [[50256, false]] });
  t.match(full, { tokens_evaluated: promptTokens, tokens_predicted: 128 - promptTokens, stop_type: 'limit', truncated: false }, 'n_predict -2: until the context is full');
  const ids = Array.from({ length: 100 }, (_, i) => 1000 + i);
  t.match(await completion({ model: 'general', prompt: ids, n_predict: -2, logit_bias: [[50256, false]] }), { tokens_evaluated: 100, tokens_predicted: 28 }, 'after a prompt of more than half the context too');
  t.match(await completion({ model: 'general', prompt: PROMPT, n_predict: 1000, logit_bias: [[50256, false]] }), { tokens_evaluated: promptTokens, tokens_predicted: 128 - promptTokens, truncated: true }, 'a length past the context: the prompt kept whole, the reply shortened');
  t.equal((await completion({ model: 'general', prompt: PROMPT, n_predict: LENGTH, return_tokens: true })).tokens.length, LENGTH, 'return_tokens');
  const aliased = await request(`${srv.url}/completions`, { body: { model: 'general', prompt: PROMPT }, headers: AUTH });
  t.equal((aliased.json() as Answer).content, greedy, '/completions too');
  const chatbot = await request(`${srv.url}/completion`, { body: { prompt: PROMPT }, headers: AUTH });
  t.equal((chatbot.json() as Answer).model, 'chatbot', 'the default model is the server\'s');

  const settings = { prompt: 'Once upon a time', temperature: 1.1, top_k: 40, top_p: 0.9, seed: 7, n_predict: 10, presence_penalty: 0.4 };
  const minP = { ...settings, min_p: 0.9, seed: 8, n_predict: 20 };  // the random model's logits are close: 0.9 cuts
  t.equal((await completion({ model: 'general', ...settings })).content, await openAIText({ ...settings, max_tokens: 10, n_predict: undefined }), 'the other settings keep their meaning');
  const cut = await completion({ model: 'general', ...minP });
  t.equal(cut.content, await openAIText({ ...minP, max_tokens: 20, n_predict: undefined }), 'min_p too');
  t.not(cut.content, (await completion({ model: 'general', ...minP, min_p: 0 })).content, 'and it matters here');
});

t.test('prompts: token ids, ids and text mixed, several at once', async (t) => {
  const ids = [...tokenizer.encode(PROMPT, { allowSpecial: false })];
  t.equal((await completion({ prompt: ids })).content, greedy, 'token ids');
  const more = [...tokenizer.encode(' Very', { allowSpecial: false })];
  const mixed = await completion({ prompt: [...ids, ' Very'] });
  t.equal(mixed.content, await openAIText({ prompt: [...ids, ...more] }), 'a text among ids is tokenized in place');
  t.equal(mixed.prompt, `${PROMPT} Very`);
  const several = await request(`${srv.url}/completion`, { body: { model: 'general', prompt: [PROMPT, 'Once upon a time'] }, headers: AUTH });
  const answers = several.json() as unknown as Answer[];
  t.same(answers.map((a) => a.index), [0, 1], 'several prompts, a list of answers');
  t.equal(answers[0].content, greedy);
  t.equal(answers[1].content, await openAIText({ prompt: 'Once upon a time' }));
  const empty = await request(`${srv.url}/completion`, { body: { model: 'general', prompt: [['', ''], ['']] }, headers: AUTH });
  t.equal(empty.status, 200, `texts that are all empty: ${empty.text.slice(0, 200)}`);
  const nothing = await completion({ prompt: '' });
  t.same((empty.json() as unknown as Answer[]).map((a) => a.content), [nothing.content, nothing.content], 'the empty prompt, the start of a document, as "" is');
});

t.test('stopping: at a stop string (left out), at the end of text, at the length', async (t) => {
  const word = greedy.slice(4, 8);
  t.ok(word.trim() !== '' && !greedy.slice(0, 4).includes(word), `"${word}" first appears at 4`);
  const a = await completion({ prompt: PROMPT, stop: [word, 'zzzz'] });
  t.match(a, { content: greedy.slice(0, 4), stop_type: 'word', stopping_word: word });
  const ended = await completion({ prompt: PROMPT, logit_bias: [[50256, 100]] });
  t.match(ended, { content: '', stop_type: 'eos', stopping_word: '', tokens_predicted: 0 });
});

t.test('logit_bias as llama.cpp writes it: pairs, false for never; repeat_penalty as penalize', async (t) => {
  const first = tokenizer.encode(greedy, { allowSpecial: false })[0];
  const banned = await completion({ prompt: PROMPT, logit_bias: [[first, false]] });
  t.not(banned.content, greedy);
  t.equal(banned.content, await openAIText({ prompt: PROMPT, logit_bias: { [first]: -100 } }), 'false is -100');
  t.equal((await completion({ prompt: PROMPT, logit_bias: { [first]: -100 } })).content, banned.content, 'or OpenAI\'s object');
  for (const key of ['0x10', '', ' 1 ', '1e2', '01']) {
    const refused = await request(`${srv.url}/completion`, { body: { model: 'general', prompt: PROMPT, logit_bias: { [key]: 100 } }, headers: AUTH });
    t.match([refused.status, refused.json()], [400, { error: { message: /^logit_bias\[0\]: must pair a token id/ } }], `${JSON.stringify(key)} is no token id`);
  }

  const penalized = await completion({ prompt: PROMPT, n_predict: 40, repeat_penalty: 1.25, repeat_last_n: -1 });
  t.not(penalized.content, (await completion({ prompt: PROMPT, n_predict: 40 })).content, 'the penalty matters here');
  t.equal(penalized.content, await openAIText({ prompt: PROMPT, max_tokens: 40, penalize: 0.8 }), 'repeat_penalty 1.25 is penalize 0.8');
  const off = await completion({ prompt: PROMPT, repeat_penalty: 1, repeat_last_n: 64, penalize_nl: false, typical_p: 1, tfs_z: 1, mirostat: 0, mirostat_tau: 5, cache_prompt: true, id_slot: -1, seed: -1 });
  t.equal(off.content, greedy, 'samplers at the values that turn them off, and the machine\'s settings, are accepted');
});

t.test('n_probs: each token\'s log-probability and its alternatives, as /v1/completions gives them', async (t) => {
  const a = await completion({ prompt: PROMPT, n_probs: 3 });
  const probs = a.completion_probabilities as { id: number; token: string; logprob: number; bytes: number[]; top_logprobs: { id: number; logprob: number }[] }[];
  t.equal(probs.length, LENGTH);
  const r = await request(`${srv.url}/v1/completions`, { body: { model: 'general', prompt: PROMPT, logprobs: 3 }, headers: AUTH });
  const theirs = (r.json().choices as { logprobs: { tokens: string[]; token_logprobs: number[] } }[])[0].logprobs;
  t.same(probs.map((p) => p.logprob), theirs.token_logprobs);
  t.same(probs.map((p) => p.token), theirs.tokens);
  t.same(probs.map((p) => tokenizer.decode([p.id])), theirs.tokens, 'ids with the tokens');
  t.ok(probs.every((p) => p.top_logprobs.length === 3 && p.top_logprobs[0].id === p.id), 'greedy: each token the most likely');
});

t.test('streamed: pieces that add up, then the answer\'s fields; tokens and probabilities per piece', async (t) => {
  const events = await streamed({ prompt: PROMPT, return_tokens: true, n_probs: 1 });
  const last = events[events.length - 1];
  t.match(last, { stop: true, stop_type: 'limit', tokens_predicted: LENGTH, content: '' });
  const pieces = events.slice(0, -1);
  t.ok(pieces.length > 1 && pieces.every((e) => e.stop === false && e.index === 0), 'pieces before it');
  t.equal(events.map((e) => e.content).join(''), greedy, 'the pieces add up to the text');
  const tokens = events.flatMap((e) => e.tokens as number[]);
  t.same(tokens, (await completion({ prompt: PROMPT, return_tokens: true })).tokens, 'and their tokens to its tokens');
  t.equal(events.flatMap((e) => (e.completion_probabilities as unknown[] | undefined) ?? []).length, LENGTH, 'a probability a token');

  const two = await streamed({ prompt: [PROMPT, 'Once upon a time'] });
  t.equal(two.filter((e) => e.index === 0).map((e) => e.content).join(''), greedy, 'several prompts: told apart by index');
  t.equal(two.filter((e) => e.stop === true).length, 2);
});

t.test('a streaming client that leaves stops its generation', async (t) => {
  const res = await fetch(`${srv.url}/completion`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'long', prompt: 'Once', n_predict: 1000, stream: true }) });
  t.equal(res.status, 200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  t.match(new TextDecoder().decode((await reader.read()).value), /^data: /, 'a piece came');
  await reader.cancel();
  t.same(await inFlightAfterLeaving(srv, 'long', API_KEY), { inFlight: 0, running: 0 }, 'no request in flight for the model, its batch slot free');
  const metrics = await request(`${srv.url}/metrics`, { headers: AUTH });
  t.match(metrics.text, /^dixie_http_requests_total\{route="\/completion \/completions",status="200"\} \d+$/m, 'counted under the route of both paths');
});

t.test('slots: each batch slot, the request a busy one decodes with its settings and progress; fail_on_no_slot while none is free', async (t) => {
  const own = await startServer({ batch_slots: 1, models: [{ key: 'long', restore_from: 'long' }] }, served.dir);
  t.teardown(() => own.close());
  const slots = async (query = ''): Promise<{ status: number; body: unknown }> => {
    const r = await request(`${own.url}/slots${query}`);
    return { status: r.status, body: r.json() };
  };
  const idle = { status: 200, body: [{ id: 0, n_ctx: 1024, speculative: false, is_processing: false }] };
  t.same(await slots(), idle, 'before the model loads: its slot, free');
  t.same(await slots('?fail_on_no_slot=1'), idle, 'a free slot: no failure');

  // The end of text banned, so that the reply runs on while the slots are read.
  const body = { prompt: 'Once', n_predict: 1000, temperature: 0.5, top_k: 7, seed: 5, stop: ['zzz'], stream: true, logit_bias: [[50256, false]] };
  const res = await fetch(`${own.url}/completion`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  t.match(new TextDecoder().decode((await reader.read()).value), /^data: /, 'a piece came');
  const busy = await slots();
  t.match(busy, {
    status: 200,
    body: [{ id: 0, n_ctx: 1024, is_processing: true, n_prompt_tokens: 1, n_prompt_tokens_cache: 0, params: { n_predict: 1000, temperature: 0.5, top_k: 7, top_p: 0.9, min_p: 0, seed: 5, n_probs: 0 }, next_token: { has_next_token: true } }],
  });
  t.notOk(JSON.stringify(busy.body).includes('zzz'), 'the request\'s stop strings, text its client wrote, are not shown');
  const next = (busy.body as { next_token: { n_decoded: number; n_remain: number } }[])[0].next_token;
  t.ok(next.n_decoded >= 1 && next.n_decoded < 1000, `tokens drawn so far: ${next.n_decoded}`);
  t.ok(next.n_remain <= 1000 - next.n_decoded, 'and those left, counted at or after them');
  t.match(await slots('?fail_on_no_slot=1'), { status: 503, body: { error: { code: 503, message: 'no slot available', type: 'unavailable_error' } } }, 'every slot busy: 503, in llama.cpp\'s shape');
  await reader.cancel();
  t.same(await inFlightAfterLeaving(own, 'long', ''), { inFlight: 0, running: 0 });
  t.same(await slots(), idle, 'the slot free again once its client left');
  t.match(await slots('?model=nope'), { status: 404, body: { error: { code: 404, field: 'model' } } });
});

t.test('apply-template: the prompt chat completions send, which /completion then answers as they do', async (t) => {
  const messages = [{ role: 'user', content: 'How are you?' }, { role: 'assistant', content: 'Fine.' }, { role: 'user', content: 'And Dad?' }];
  const r = await request(`${srv.url}/apply-template`, { body: { model: 'chatbot', messages }, headers: AUTH });
  t.equal(r.status, 200, r.text);
  const { prompt } = r.json() as { prompt: string };
  t.equal(prompt, '1|mom|How are you? <EOM>\n0|mom|Fine. <EOM>\n1|mom|And Dad? <EOM>\n0|mom|', 'the chat format, ending in the bot\'s turn');
  const ours = await request(`${srv.url}/completion`, { body: { model: 'chatbot', prompt, seed: 3 }, headers: AUTH });
  const theirs = await request(`${srv.url}/v1/chat/completions`, { body: { model: 'chatbot', messages, seed: 3 }, headers: AUTH });
  t.equal((ours.json() as Answer).content, (theirs.json().choices as { message: { content: string } }[])[0].message.content, 'the same reply');
  const raw = await request(`${srv.url}/apply-template`, { body: { model: 'general', messages }, headers: AUTH });
  t.same(raw.json(), { prompt: 'How are you?\nFine.\nAnd Dad?' }, 'a raw model: the messages one a line');
  const ignored = await request(`${srv.url}/apply-template`, { body: { model: 'lenient', messages: [{ role: 'system', content: 'Be brief.' }, ...messages] }, headers: AUTH });
  t.equal(ignored.headers.get('x-dixie-ignored-messages'), '0', 'a system message the model ignores is said to be left out');
  t.match(await refusal('/apply-template', { model: 'chatbot', messages: [{ role: 'robot', content: 'x' }] }), { status: 400, error: { field: 'messages[0].role' } });
});

t.test('props: the context, slots and defaults of a model, and a chat model\'s chat template', async (t) => {
  const general = await request(`${srv.url}/props?model=general`, { headers: AUTH });
  t.equal(general.status, 200);
  t.match(general.json(), {
    default_generation_settings: { n_ctx: TINY.nCtx, params: { n_predict: LENGTH, temperature: 0 } },
    total_slots: srv.server.service.config.batchSlots, model_path: 'general', chat_template: '', eos_token: '<|endoftext|>',
  });
  const chatbot = await request(`${srv.url}/props?model=chatbot`, { headers: AUTH });
  t.equal(chatbot.json().chat_template, chatTemplate('mom'));
  t.match((await request(`${srv.url}/props?model=nope`, { headers: AUTH })).json(), { error: { code: 404, type: 'not_found_error', message: /model "nope" is not served here/ } });
});

t.test('a model whose config sizes no reply: every route reports the length it answers with, half its context of 128', async (t) => {
  const own = await startServer({ models: [{ key: 'unsized', restore_from: 'alpha', sampling: { temperature: 0 } }] }, served.dir);
  t.teardown(() => own.close());
  const half = TINY.nCtx / 2;
  const listed = async (): Promise<unknown> => ((await request(`${own.url}/models/list`)).json().models as { sampling: { length: number } }[])[0].sampling.length;
  t.equal(await listed(), half, '/models/list, before the model loads');
  t.equal(((await request(`${own.url}/props?model=unsized`)).json().default_generation_settings as { params: { n_predict: number } }).params.n_predict, half, '/props');
  const r = await request(`${own.url}/completion`, { body: { prompt: PROMPT, n_predict: -1 } });
  const answer = r.json() as Answer & { generation_settings: { n_predict: number } };
  t.equal(answer.generation_settings.n_predict, half, 'n_predict -1: the length used, in generation_settings');
  t.ok(answer.tokens_predicted <= half, `n_predict -1: at most ${half} tokens (${answer.tokens_predicted})`);
  const full = (await request(`${own.url}/completion`, { body: { prompt: PROMPT, n_predict: -2 } })).json() as Answer & { generation_settings: { n_predict: number } };
  t.equal(full.generation_settings.n_predict, TINY.nCtx - tokenizer.encode(PROMPT, { allowSpecial: false }).length, 'n_predict -2: what the context leaves after the prompt');
  t.equal(await listed(), half, '/models/list, once loaded');
});

t.test('health: open to all, as llama-server has it', async (t) => {
  const r = await request(`${srv.url}/health`);
  t.equal(r.status, 200);
  t.same(r.json(), { status: 'ok' });
  const locked = await request(`${srv.url}/completion`, { body: { prompt: PROMPT } });
  t.equal(locked.status, 401, 'the rest needs the key');
  t.match(locked.json(), { error: { code: 401, type: 'authentication_error' } });
});

t.test('embedding: the vectors of /v1/embeddings, of length 1 unless embd_normalize is -1', async (t) => {
  const texts = ['How big is the earth?', 'The quick brown fox'];
  const ours = await request(`${srv.url}/embedding`, { body: { content: texts }, headers: AUTH });
  t.equal(ours.status, 200, ours.text);
  const list = ours.json() as unknown as { index: number; embedding: number[][] }[];
  const openai = await request(`${srv.url}/v1/embeddings`, { body: { model: 'general', input: texts }, headers: AUTH });
  const vectors = (openai.json().data as { embedding: number[] }[]).map((d) => d.embedding);
  t.same(list, vectors.map((v, index) => ({ index, embedding: [v] })));
  const raw = await request(`${srv.url}/embedding`, { body: { content: texts[0], embd_normalize: -1 }, headers: AUTH });
  const ollama = await request(`${srv.url}/api/embeddings`, { body: { model: 'general', prompt: texts[0] }, headers: AUTH });
  t.same((raw.json() as unknown as { embedding: number[][] }[])[0].embedding[0], ollama.json().embedding, 'as they are');
});

t.test('tokenize and detokenize', async (t) => {
  const tok = await request(`${srv.url}/tokenize`, { body: { model: 'general', content: 'Hello world' }, headers: AUTH });
  t.equal(tok.status, 200);
  t.same(tok.json().tokens, [...tokenizer.encode('Hello world', { allowSpecial: false })]);
  const pieces = await request(`${srv.url}/tokenize`, { body: { content: 'Hello world', with_pieces: true }, headers: AUTH });
  t.same(pieces.json().tokens, [{ id: 15496, piece: 'Hello' }, { id: 995, piece: ' world' }]);
  const special = { model: 'general', content: 'Hi<|endoftext|>', add_special: true };
  const plain = await request(`${srv.url}/tokenize`, { body: special, headers: AUTH });
  t.same(plain.json().tokens, [...tokenizer.encode('Hi<|endoftext|>', { allowSpecial: false })], 'add_special: nothing to add (GPT-2 has no BOS); special tokens as text');
  const parsed = await request(`${srv.url}/tokenize`, { body: { ...special, parse_special: true }, headers: AUTH });
  t.same(parsed.json().tokens, [...tokenizer.encode('Hi', { allowSpecial: false }), 50256], 'parse_special: <|endoftext|> is its id');
  const detok = await request(`${srv.url}/detokenize`, { body: { tokens: tok.json().tokens }, headers: AUTH });
  t.same(detok.json(), { content: 'Hello world' });
  t.match(await refusal('/detokenize', { tokens: [-1] }), { status: 400, error: { code: 400, type: 'invalid_request_error', field: 'tokens' } });
});

t.test('errors name the field, in llama.cpp\'s shape', async (t) => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ prompt: PROMPT, typical_p: 0.9 }, 'typical_p', /^typical_p: is not supported/],
    [{ prompt: PROMPT, min_p: 1 }, 'min_p', /^min_p: must be a number from 0 \(off\) to below 1/],
    [{ prompt: PROMPT, repeat_penalty: 1.1, repeat_last_n: 64 }, 'repeat_last_n', /^repeat_last_n: only -1 .* or any with repeat_penalty 1$/],
    [{ prompt: PROMPT, n_predict: 0 }, 'n_predict', /^n_predict: must be/],
    [{ prompt: PROMPT, temperature: 'hot' }, 'temperature', /^temperature: must be/],
    [{ prompt: PROMPT, logit_bias: [['Hello', 1]] }, 'logit_bias[0]', /text is not supported/],
    [{ prompt: PROMPT, samplers: ['top_k'] }, 'samplers', /^samplers: must list "penalties" once, as its setting is on/],
    [{ prompt: PROMPT, response_fields: ['content'] }, 'response_fields', /^response_fields: is not supported/],
    [{ prompt: PROMPT, adaptive_target: 0.5, adaptive_decay: 0.9 }, 'adaptive_target', /^adaptive_target: is not supported/],
    [{ prompt: {} }, 'prompt', /^prompt: must be a text, token ids/],
    [{ prompt: PROMPT, json_schema: { type: 'object', minProperties: 1 } }, 'json_schema', /^json_schema\.minProperties: is not supported/],
    [{ prompt: PROMPT, grammar: 'root ::= "a" "' }, 'grammar', /^grammar:1:\d+: /],
    [{ prompt: PROMPT, penalize_nl: false, repeat_penalty: 1.1 }, 'penalize_nl', /^penalize_nl: only true is supported while a repetition penalty applies/],
    // More prompts than batch_slots + max_queue (8 + 64) could never all be admitted: not a 503 to try again.
    [{ prompt: Array.from({ length: 73 }, () => 'x') }, 'prompt', /^prompt: asks for 73 generations, more than a model holds at once \(72: batch_slots \+ max_queue\)$/],
  ];
  for (const [body, field, message] of cases) {
    const r = await refusal('/completion', body);
    t.equal(r.status, 400, JSON.stringify(body));
    t.match(r.error, { code: 400, type: 'invalid_request_error', field, message }, JSON.stringify(body));
  }
  t.match(await refusal('/completion', { model: 'nope', prompt: PROMPT }), { status: 404, error: { code: 404, field: 'model' } });
  // The routes take any case and a trailing slash; their errors keep their API's shape.
  for (const path of ['/completion/', '/Completion']) t.match(await refusal(path, { prompt: {} }), { status: 400, error: { code: 400, field: 'prompt' } }, path);
  t.match(await refusal('/embedding', { content: 'x', embd_normalize: 1 }), { status: 400, error: { field: 'embd_normalize' } });
});
