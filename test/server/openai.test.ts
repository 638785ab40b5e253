// The OpenAI-compatible API over real HTTP on 127.0.0.1, driven by the official `openai` client and by a plain
// fetch whose stream eventsource-parser reads: completions and chat completions, streamed and not, n, stop,
// seed, log-probabilities against the engine's own log-softmax, usage against the tokenizer, errors as the
// client's own classes, a stream whose client goes away freeing its slot, and the token endpoints.
import path from 'node:path';
import t from 'tap';
import OpenAI from 'openai';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Model } from '../../lib/engine/model';
import { Generator } from '../../lib/generate';
import { loadTokenizer } from '../../lib/tokenizer';
import { inFlightAfterLeaving, request, serveApiModels, startServer, type ApiModels, type Running } from './helpers';

const API_KEY = 'openai-test-key-0123456789';
const PROMPT = 'How big is the earth?';
const LENGTH = 12;
const tokenizer = loadTokenizer();

let served: ApiModels;
let dir: string;
let greedy: string;
let srv: Running;
let client: OpenAI;

t.before(async () => {
  served = await serveApiModels('openai', API_KEY, PROMPT, LENGTH);
  ({ dir, greedy, srv } = served);
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
});
t.teardown(() => served.close());

t.test('GET /v1/models lists every configured model, loaded or not; /v1/models/<key> gives one', async (t) => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  t.same(ids, ['general', 'chatbot', 'long', 'lenient']);
  const one = await client.models.retrieve('chatbot');
  t.match(one, { id: 'chatbot', object: 'model', owned_by: 'dixie', prompt_format: 'chat' }, 'one model by its key');
  const missing = await client.models.retrieve('nope').catch((e: unknown) => e);
  t.ok(missing instanceof OpenAI.NotFoundError && missing.code === 'model_not_found', 'a key not served: NotFoundError');
  for (const key of ['%E0%A4%A', '%']) {
    const garbled = await request(`${srv.url}/v1/models/${key}`, { headers: { Authorization: `Bearer ${API_KEY}` } });
    t.match([garbled.status, garbled.json()], [400, { error: { param: 'path', message: /^path: ".*" is not valid percent-encoding$/ } }], `${key}: a key that does not decode is the client's mistake, not a 500`);
  }
});

t.test('completions: the greedy text, usage from the tokenizer, n choices seeded apart, the same seed the same text', async (t) => {
  const r = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: LENGTH, temperature: 0 });
  t.equal(r.object, 'text_completion');
  t.equal(r.choices[0].text, greedy, 'the text the engine generates greedily');
  t.equal(r.choices[0].finish_reason, 'length');
  t.equal((r.choices[0] as unknown as Record<string, unknown>).dixie_finish_reason, 'length', "dixie's own finish reason beside OpenAI's");
  const promptTokens = tokenizer.encode(PROMPT, { allowSpecial: false }).length;
  t.match(r.usage, { prompt_tokens: promptTokens, completion_tokens: LENGTH, total_tokens: promptTokens + LENGTH });
  const again = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: LENGTH, temperature: 0 });
  t.equal(again.choices[0].text, greedy, 'the same text again');
  t.equal(again.usage?.prompt_tokens_details?.cached_tokens, promptTokens - 1, 'with the prompt found in the cache, all but its last token');
  const sampled = { model: 'general', prompt: PROMPT, max_tokens: 8, temperature: 1.5, top_p: 1, seed: 42, n: 2 } as const;
  const a = await client.completions.create(sampled);
  const b = await client.completions.create(sampled);
  t.same(a.choices.map((c) => c.index), [0, 1]);
  t.same(a.choices.map((c) => c.text), b.choices.map((c) => c.text), 'the same seed, the same choices');
  t.not(a.choices[0].text, a.choices[1].text, 'the choices differ from each other');
  const alone = await client.completions.create({ ...sampled, n: 1 });
  t.equal(alone.choices[0].text, a.choices[0].text, 'choice 0 is what the request alone gives');
  const next = await client.completions.create({ ...sampled, seed: 43 });
  t.not(next.choices[0].text, a.choices[1].text, 'the next seed does not repeat choice 1');
  t.equal(a.usage?.completion_tokens, 16, 'usage counts both choices');
  const two = await client.completions.create({ model: 'general', prompt: [PROMPT, 'Hello'], max_tokens: 3, temperature: 0 });
  t.equal(two.choices.length, 2, 'a prompt array: a choice per prompt');
  t.equal(two.usage?.prompt_tokens, tokenizer.encode(PROMPT, { allowSpecial: false }).length + tokenizer.encode('Hello', { allowSpecial: false }).length);
  const echoed = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: LENGTH, temperature: 0, echo: true });
  t.equal(echoed.choices[0].text, PROMPT + greedy, 'echo: the prompt, then the text');
});

t.test("chat messages carry OpenAI's refusal (null), and every answer and chunk its system_fingerprint: one per model, kept from request to request", async (t) => {
  const messages = [{ role: 'user' as const, content: PROMPT }];
  const chat = await client.chat.completions.create({ model: 'general', messages, max_tokens: 3 });
  t.equal(chat.choices[0].message.refusal, null, 'refusal: null, as OpenAI sends it');
  t.match(chat.system_fingerprint, /^fp_[0-9a-f]{12}$/);
  const again = await client.chat.completions.create({ model: 'general', messages, max_tokens: 3 });
  const completion = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: 3 });
  t.same([again.system_fingerprint, completion.system_fingerprint], [chat.system_fingerprint, chat.system_fingerprint], 'the same for the same model, on chat completions and completions');
  const other = await client.chat.completions.create({ model: 'chatbot', messages, max_tokens: 3 });
  t.not(other.system_fingerprint, chat.system_fingerprint, 'another model (another entry of the config) has its own');
  const stream = await client.chat.completions.create({ model: 'general', messages, max_tokens: 3, stream: true, stream_options: { include_usage: true } });
  const fingerprints = new Set<string | undefined>();
  for await (const chunk of stream) fingerprints.add(chunk.system_fingerprint);
  t.same([...fingerprints], [chat.system_fingerprint], 'every chunk carries it');
  // The same entry elsewhere in another config, beside other models: the same replies, so the same fingerprint.
  const moved = await startServer({ models: [{ key: 'long', restore_from: 'long' }, { key: 'general', restore_from: 'alpha', sampling: { temperature: 0, penalize: 0, length: LENGTH } }] }, dir);
  t.teardown(moved.close);
  const elsewhere = await new OpenAI({ apiKey: 'none', baseURL: `${moved.url}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'general', messages, max_tokens: 3 });
  t.equal(elsewhere.system_fingerprint, chat.system_fingerprint, 'not where the entry stands among the models, nor whether another shares its weights');
});

t.test("seed: any 64-bit integer, as OpenAI takes it, the same seed the same reply, alone and beside other choices; OpenAI's ranges refused naming the field", async (t) => {
  const messages = [{ role: 'user' as const, content: PROMPT }];
  const sampled = { model: 'general', messages, max_tokens: 6, temperature: 1.5 } as const;
  const replies = new Map<number, string | null>();
  for (const seed of [-1, -(2 ** 63), 2 ** 53 + 2, 2 ** 63]) {
    const alone = await client.chat.completions.create({ ...sampled, seed });
    const beside = await client.chat.completions.create({ ...sampled, seed, n: 2 });
    t.equal(beside.choices[0].message.content, alone.choices[0].message.content, `seed ${seed}: choice 0 of two is the reply alone`);
    replies.set(seed, alone.choices[0].message.content);
  }
  t.not(replies.get(-1), replies.get(2 ** 53 + 2), 'seeds apart draw apart');
  // 9223372036854775807, the largest, reaches the server as the double 2^63, whose 64 bits are -2^63's.
  t.equal(replies.get(2 ** 63), replies.get(-(2 ** 63)), 'the largest seed, rounded by JSON, is the smallest\'s 64 bits');
  for (const [fields, param] of [
    [{ seed: 1.5 }, 'seed'],
    [{ seed: 2 ** 64 }, 'seed'],
    [{ temperature: 2.5 }, 'temperature'],
    [{ top_p: 1.5 }, 'top_p'],
    [{ frequency_penalty: -2.5 }, 'frequency_penalty'],
    [{ n: 129 }, 'n'],
  ] as const) {
    const err = await client.chat.completions.create({ ...sampled, ...fields }).catch((e: unknown) => e);
    t.ok(err instanceof OpenAI.BadRequestError && err.param === param, `${JSON.stringify(fields)}: 400 naming ${param}`);
  }
  const hot = await client.responses.create({ model: 'general', input: PROMPT, temperature: 2.5 }).catch((e: unknown) => e);
  t.ok(hot instanceof OpenAI.BadRequestError && hot.param === 'temperature', 'the Responses API bounds temperature at 2 too');
  t.match((hot as Error).message, /temperature: must be a number from 0 to 2/);
});

t.test('completions from token ids, as OpenAI takes them: a list, or a list of lists, each a choice', async (t) => {
  const ids = [...tokenizer.encode(PROMPT, { allowSpecial: false })];
  const r = await client.completions.create({ model: 'general', prompt: ids, max_tokens: LENGTH, temperature: 0 });
  t.equal(r.choices[0].text, greedy, "the text the prompt's own tokens give");
  t.equal(r.usage?.prompt_tokens, ids.length);
  const hello = [...tokenizer.encode('Hello', { allowSpecial: false })];
  const two = await client.completions.create({ model: 'general', prompt: [ids, hello], max_tokens: 3, temperature: 0 });
  t.equal(two.choices.length, 2, 'a choice per list');
  t.equal(two.choices[0].text, greedy.slice(0, two.choices[0].text.length));
  t.equal(two.usage?.prompt_tokens, ids.length + hello.length);
  const echoed = await client.completions.create({ model: 'general', prompt: ids, max_tokens: LENGTH, temperature: 0, echo: true });
  t.equal(echoed.choices[0].text, PROMPT + greedy, 'echo: the tokens as text, then the text');
  const eot = await client.completions.create({ model: 'general', prompt: [50256], max_tokens: 2, temperature: 0 });
  t.equal(eot.usage?.prompt_tokens, 1, '<|endoftext|> by its id: the start of a document');
  for (const [prompt, rule] of [
    [[50257], /token id 50257 is not in the vocabulary of model "general" \(0 to 50256\)/],
    [[1, 'a'], /must be a string, a non-empty array of strings, an array of token ids/],
    [[], /must be a string/],
    [[[1], []], /must be a string/],
    [[-1], /must be a string/],
  ] as const) {
    const err = await client.completions.create({ model: 'general', prompt: prompt as unknown as number[], max_tokens: 2 }).catch((e: unknown) => e);
    t.ok(err instanceof OpenAI.BadRequestError && err.param === 'prompt', `${JSON.stringify(prompt)}: refused, naming prompt`);
    t.match((err as Error).message, rule);
  }
});

t.test('a streamed request of several prompts, one of them refused, answers its error and hurts no other request', async (t) => {
  for (let round = 0; round < 3; round++) {
    const refused = await request(`${srv.url}/v1/completions`, {
      headers: { Authorization: `Bearer ${API_KEY}` },
      body: { model: 'long', prompt: [Array(200).fill(464), [50257]], max_tokens: 50, stream: true },
    });
    t.match([refused.status, refused.json()], [400, { error: { param: 'prompt', message: /token id 50257 is not in the vocabulary/ } }], `round ${round}: the refusal`);
    const other = await client.completions.create({ model: 'long', prompt: PROMPT, max_tokens: 3 });
    t.equal(other.choices[0].finish_reason, 'length', `round ${round}: the next request is answered`);
  }
  t.same(await inFlightAfterLeaving(srv, 'long', API_KEY), { inFlight: 0, running: 0 }, 'no request left in flight, no batch slot held');
});

t.test("OpenAI's fields for what GPT-2 does not do: accepted at their neutral values, as clients send them, and refused at any other", async (t) => {
  const messages = [{ role: 'user', content: PROMPT }] as const;
  const plain = await client.chat.completions.create({ model: 'general', messages: [...messages], max_tokens: LENGTH, temperature: 0 });
  const neutral = {
    response_format: { type: 'text' }, tools: [], tool_choice: 'none', parallel_tool_calls: false, logit_bias: {}, store: false,
    metadata: { app: 'test' }, service_tier: 'auto', modalities: ['text'], user: 'u-1', safety_identifier: 'u-1', prompt_cache_key: 'k',
    presence_penalty: 0, frequency_penalty: 0, function_call: 'auto', functions: [],
  };
  const same = await client.chat.completions.create({ model: 'general', messages: [...messages], max_tokens: LENGTH, temperature: 0, ...neutral } as OpenAI.ChatCompletionCreateParamsNonStreaming);
  t.equal(same.choices[0].message.content, plain.choices[0].message.content, 'the same reply as without them');
  // Their defaults, and null for "not set", as generated clients send every field they know.
  const defaults = {
    verbosity: 'medium', reasoning_effort: null, audio: null, prediction: null, web_search_options: null, prompt_cache_retention: null,
    stream_options: { include_obfuscation: false }, service_tier: null, metadata: null,
  };
  const unset = await client.chat.completions.create({ model: 'general', messages: [...messages], max_tokens: LENGTH, temperature: 0, ...defaults } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);
  t.equal(unset.choices[0].message.content, plain.choices[0].message.content, 'defaults and nulls: the same reply as without them');
  for (const [streamOptions, param] of [[{ include_obfuscation: true }, 'stream_options.include_obfuscation'], [{ include_usage: true, bogus: 1 }, 'stream_options.bogus']] as const) {
    const err = await client.chat.completions.create({ model: 'general', messages: [...messages], stream: true, stream_options: streamOptions } as OpenAI.ChatCompletionCreateParamsStreaming).catch((e: unknown) => e);
    t.ok(err instanceof OpenAI.BadRequestError && err.param === param, `stream_options ${JSON.stringify(streamOptions)}: refused, naming ${param}`);
  }
  const completion = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: LENGTH, temperature: 0, logit_bias: { 50256: 0 }, suffix: '', user: 'u-1' });
  t.equal(completion.choices[0].text, greedy, 'completions: zero biases and an empty suffix change nothing');
  for (const [field, value, rule] of [
    ['functions', 'weather', /functions: must be an array of \{"name", "parameters"\}/],
    ['tool_choice', 'required', /"required" needs at least one tool in tools/],
    ['store', true, /keeps nothing it answers/],
    ['modalities', ['text', 'audio'], /only \["text"\]/],
    ['metadata', { n: 1 }, /an object of strings/],
    ['reasoning_effort', 'low', /only "none" is supported: GPT-2 does not reason/],
    ['verbosity', 'low', /only "medium"/],
    ['audio', { voice: 'alloy', format: 'mp3' }, /GPT-2 writes text only/],
    ['frobnicate', 1, /unsupported field/],
  ] as const) {
    const err = await client.chat.completions.create({ model: 'general', messages: [...messages], [field]: value } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming).catch((e: unknown) => e);
    t.ok(err instanceof OpenAI.BadRequestError && err.param === field, `${field}: ${JSON.stringify(value)} refused, naming the field`);
    t.match((err as Error).message, rule);
  }
  const tools = await client.completions.create({ model: 'general', prompt: PROMPT, tools: [] } as unknown as OpenAI.CompletionCreateParamsNonStreaming).catch((e: unknown) => e);
  t.ok(tools instanceof OpenAI.BadRequestError && tools.param === 'tools', 'completions take only their own fields, as OpenAI\'s do');
});

t.test('a raw prompt keeps its tokens before a long max_tokens: the reply gets what the context leaves, and keeps at least half of it', async (t) => {
  // The tiny models' context is 128; "<|endoftext|>" banned, so that each reply runs to its length.
  const promptTokens = tokenizer.encode(PROMPT, { allowSpecial: false }).length;
  const long = { model: 'general', max_tokens: 1000, temperature: 0, logit_bias: { 50256: -100 } } as const;
  const short = await client.completions.create({ ...long, prompt: PROMPT });
  t.equal(short.usage?.prompt_tokens, promptTokens, 'the whole prompt');
  t.equal(short.usage?.completion_tokens, 128 - promptTokens, 'the reply, what the context leaves');
  t.equal(short.choices[0].finish_reason, 'length');
  const chat = await client.chat.completions.create({ ...long, messages: [{ role: 'user', content: PROMPT }] });
  t.same([chat.usage?.prompt_tokens, chat.usage?.completion_tokens], [promptTokens, 128 - promptTokens], 'chat completions of a raw model alike');
  const ids = Array.from({ length: 100 }, (_, i) => 1000 + i);
  const longPrompt = await client.completions.create({ ...long, prompt: ids });
  t.same([longPrompt.usage?.prompt_tokens, longPrompt.usage?.completion_tokens], [64, 64], 'a long prompt keeps its newest half, the reply the other');
  const invocation = await request(`${srv.url}/invocations`, { body: { model_key: 'general', raw_text: PROMPT, length: 1000, format: 'json' }, headers: { Authorization: `Bearer ${API_KEY}` } });
  t.match(invocation.json(), { prompt_tokens: promptTokens, trimmed_prompt_tokens: 0, length: 128 - promptTokens, trimmed_reply_tokens: 127 - (128 - promptTokens) }, 'the JSON answer says what the reply\'s length lost');
});

t.test("presence_penalty and frequency_penalty lower the drawn tokens' logits as the library's penalties do", async (t) => {
  const model = await Model.load(path.join(dir, 'alpha'), { trainable: false });
  const gen = new Generator(model, tokenizer, { slots: 1 });
  const penalties = { presencePenalty: 0.5, frequencyPenalty: 1.5 };
  const library = await gen.generate(PROMPT, { maxTokens: LENGTH, temperature: 0, ...penalties });
  await gen.close();
  model.dispose();
  t.not(library.text, greedy, 'the penalties change the greedy text');
  const r = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: LENGTH, temperature: 0, presence_penalty: 0.5, frequency_penalty: 1.5 });
  t.equal(r.choices[0].text, library.text, 'completions: the library\'s penalized text');
  const chat = await client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: 4, temperature: 0, frequency_penalty: -2 });
  t.equal(chat.choices.length, 1, 'a negative penalty (repetition encouraged) is taken too');
  const refused = await client.completions.create({ model: 'general', prompt: PROMPT, frequency_penalty: -2.5 }).catch((e: unknown) => e);
  t.ok(refused instanceof OpenAI.BadRequestError && refused.param === 'frequency_penalty', 'outside [-2, 2]: refused, naming the field');
  t.match((refused as Error).message, /frequency_penalty: must be a number from -2 to 2/);
});

t.test('logit_bias adds to the logits as OpenAI\'s does: +100 forces a token, -100 bans it; ids and ranges checked', async (t) => {
  const forced = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: 3, temperature: 0, logit_bias: { 4242: 100, 4243: 99 } });
  t.equal(forced.choices[0].text, tokenizer.decode([4242, 4242, 4242]), 'the token biased most, at every step');
  const banned = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: 3, temperature: 0, logit_bias: { 4242: -100, 4243: 99 } });
  t.equal(banned.choices[0].text, tokenizer.decode([4243, 4243, 4243]), 'with it banned, the next');
  const chat = await client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: 2, temperature: 0, logit_bias: { 4242: 100 } });
  t.equal(chat.choices[0].message.content, tokenizer.decode([4242, 4242]), 'chat completions too');
  for (const [bias, rule] of [
    [{ 50257: 5 }, /logit_bias must be token ids from 0 to 50256, each with a finite bias for model "general", got \{"50257":5\}/],
    [{ 1: 101 }, /logit_bias: must be an object of token ids to biases from -100 to 100/],
    [{ abc: 1 }, /logit_bias must be an object of token ids \(integers from 0\) to numbers/],
    [[1], /logit_bias: must be an object/],
  ] as const) {
    const err = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: 2, logit_bias: bias as unknown as Record<string, number> }).catch((e: unknown) => e);
    t.ok(err instanceof OpenAI.BadRequestError && err.param === 'logit_bias', `${JSON.stringify(bias)}: refused, naming logit_bias`);
    t.match((err as Error).message, rule);
  }
});

t.test('stop sequences end the text where they begin, with finish_reason "stop"', async (t) => {
  const text = greedy;
  const stop = text.slice(4, 7);
  const r = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: LENGTH, temperature: 0, stop: [stop, 'never seen'] });
  t.equal(r.choices[0].text, text.slice(0, text.indexOf(stop)));
  t.equal(r.choices[0].finish_reason, 'stop');
  t.equal((r.choices[0] as unknown as Record<string, unknown>).dixie_finish_reason, 'stop');
});

t.test("log-probabilities agree with the engine's log-softmax of the logits within 1e-4", async (t) => {
  const r = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: 6, temperature: 0, logprobs: 3 });
  const lp = r.choices[0].logprobs;
  t.ok(lp, 'logprobs are there');
  const model = await Model.load(path.join(dir, 'alpha'), { trainable: false });
  t.teardown(() => model.dispose());
  const prompt = tokenizer.encode(PROMPT, { allowSpecial: false });
  const generated = tokenizer.encode((lp?.tokens ?? []).join(''), { allowSpecial: false });
  const all = Int32Array.from([...prompt, ...generated]);
  const V = model.config.vocabSize;
  const logits = new Float32Array(all.length * V);
  await model.forward(all, null, 1, all.length, logits);
  let worst = 0;
  (lp?.token_logprobs ?? []).forEach((given, i) => {
    const row = logits.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
    const max = row.reduce((m, x) => Math.max(m, x), -Infinity);
    const logZ = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    worst = Math.max(worst, Math.abs((given as number) - (row[all[prompt.length + i]] - logZ)));
    const top = Object.values(lp?.top_logprobs?.[i] ?? {});
    t.equal(top.length, 3, `token ${i}: three alternatives`);
    t.ok(Math.abs(top[0] - (max - logZ)) < 1e-4, `token ${i}: the most likely first`);
  });
  t.equal(lp?.token_logprobs?.length, 6);
  t.ok(worst < 1e-4, `largest difference ${worst.toExponential(2)}`);
  const chat = await client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2 });
  const content = chat.choices[0].logprobs?.content ?? [];
  t.equal(content.length, chat.usage?.completion_tokens);
  t.same(content[0].bytes, [...Buffer.from(content[0].token)], 'bytes of the token');
  t.equal(content[0].top_logprobs.length, 2);
});

t.test('streamed log-probabilities: each chunk carries its tokens\', and all of them together are the answer\'s', async (t) => {
  const completion = { model: 'general', prompt: PROMPT, max_tokens: LENGTH, temperature: 0, logprobs: 2 } as const;
  const whole = (await client.completions.create(completion)).choices[0].logprobs;
  const parts: OpenAI.Completions.CompletionChoice.Logprobs[] = [];
  let text = '';
  for await (const chunk of await client.completions.create({ ...completion, stream: true })) {
    text += chunk.choices[0].text;
    if (chunk.choices[0].logprobs) parts.push(chunk.choices[0].logprobs);
  }
  t.equal(text, greedy);
  t.ok(parts.length >= LENGTH / 2, `${parts.length} chunks with log-probabilities, as the tokens come`);
  const joined = (key: keyof OpenAI.Completions.CompletionChoice.Logprobs) => parts.flatMap((p) => p[key] as unknown[]);
  t.same({ tokens: joined('tokens'), token_logprobs: joined('token_logprobs'), top_logprobs: joined('top_logprobs'), text_offset: joined('text_offset') }, whole, 'completions: the chunks\' together = the answer\'s');
  const chat = { model: 'general', messages: [{ role: 'user' as const, content: PROMPT }], max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 };
  const wholeChat = (await client.chat.completions.create(chat)).choices[0].logprobs?.content;
  const content: OpenAI.Chat.ChatCompletionTokenLogprob[] = [];
  let chunks = 0;
  for await (const chunk of await client.chat.completions.create({ ...chat, stream: true })) {
    const part = chunk.choices[0]?.logprobs?.content;
    if (part) {
      content.push(...part);
      chunks++;
    }
  }
  t.ok(chunks >= 3, `${chunks} chat chunks with log-probabilities`);
  t.same(content, wholeChat, 'chat: the chunks\' together = the answer\'s');
});

t.test("echo with logprobs: the prompt's log-probabilities, as scoring tools ask for them, agree with the engine's log-softmax", async (t) => {
  // More tokens than the rows of logits the CPU backend plans (64): scored over two steps.
  const text = `${PROMPT} The earth is big. ${PROMPT} It is round, and it turns. `.repeat(3);
  const prompt = tokenizer.encode(text, { allowSpecial: false });
  t.ok(prompt.length > 65 && prompt.length < 120, `${prompt.length} prompt tokens`);
  const model = await Model.load(path.join(dir, 'alpha'), { trainable: false });
  t.teardown(() => model.dispose());
  const V = model.config.vocabSize;
  const logits = new Float32Array(prompt.length * V);
  await model.forward(prompt, null, 1, prompt.length, logits);
  const logSoftmax = (row: Float32Array, token: number): number => {
    const max = row.reduce((m, x) => Math.max(m, x), -Infinity);
    return row[token] - (max + Math.log(row.reduce((sum, x) => sum + Math.exp(x - max), 0)));
  };
  const score = { model: 'general', prompt: text, max_tokens: 1, temperature: 0, logprobs: 1, echo: true } as const;
  const alone = await client.completions.create(score);
  const lp = alone.choices[0].logprobs;
  t.equal(alone.choices[0].text.slice(0, text.length), text, 'the prompt, then the text');
  t.equal(lp?.tokens?.length, prompt.length + 1, 'a token for each of the prompt and the reply');
  t.equal(lp?.tokens?.slice(0, prompt.length).join(''), text);
  t.same([lp?.token_logprobs?.[0], lp?.top_logprobs?.[0]], [null, null], 'nothing before the first token');
  t.same([lp?.text_offset?.[0], lp?.text_offset?.[prompt.length]], [0, text.length]);
  let worst = 0;
  for (let i = 1; i < prompt.length; i++) {
    const row = logits.subarray((i - 1) * V, i * V);
    worst = Math.max(worst, Math.abs((lp?.token_logprobs?.[i] as number) - logSoftmax(row, prompt[i])));
    const best = row.indexOf(row.reduce((m, x) => Math.max(m, x), -Infinity));
    t.equal(Object.keys(lp?.top_logprobs?.[i] ?? {}).length, 1);
    t.ok(Math.abs(Object.values(lp?.top_logprobs?.[i] ?? {})[0] - logSoftmax(row, best)) < 1e-4, `token ${i}: the most likely alternative`);
  }
  t.ok(worst < 1e-4, `every prompt token within 1e-4: largest difference ${worst.toExponential(2)}`);
  t.ok(Math.abs((lp?.token_logprobs?.[prompt.length] as number) - logSoftmax(logits.subarray((prompt.length - 1) * V), tokenizer.encode(lp?.tokens?.[prompt.length] ?? '', { allowSpecial: false })[0])) < 1e-4, 'and the reply\'s token');
  // Beside requests that generate, on the same model: each gets what it gets alone.
  const generating = { model: 'general', prompt: PROMPT, max_tokens: LENGTH, temperature: 0 } as const;
  const [a, b, c, d] = await Promise.all([client.completions.create(generating), client.completions.create(score), client.completions.create({ ...score, prompt: [...prompt] }), client.completions.create(generating)]);
  t.same([a.choices[0].text, d.choices[0].text], [greedy, greedy], 'the generating requests, as alone');
  t.same(b.choices[0].logprobs, lp, 'the scored prompt, as alone');
  t.same(c.choices[0].logprobs, lp, 'and given as token ids');
  const tooLong = await client.completions.create({ ...score, prompt: [...new Array(127).fill(prompt[0])], max_tokens: 2 }).catch((e: unknown) => e);
  t.ok(tooLong instanceof OpenAI.BadRequestError && tooLong.param === 'prompt', 'a prompt that, with its reply, passes the context: refused, not cut');
  t.match((tooLong as Error).message, /its log-probabilities need the whole prompt within the context of model "general": 127 tokens and a reply of 2 pass 128/);
  t.equal((tooLong as InstanceType<typeof OpenAI.APIError>).code, 'context_length_exceeded');
});

t.test('chat completions: the chat format for a chat model, the reply sanitized, streamed as chunks that add up', async (t) => {
  const messages = [
    { role: 'system', content: 'audience: grandma' },
    { role: 'user', content: 'How are you?' },
    { role: 'assistant', content: 'Fine, thanks.' },
    { role: 'user', content: 'And the garden?' },
  ] as const;
  const since = srv.logs.length;
  const whole = await client.chat.completions.create({ model: 'chatbot', messages: [...messages], seed: 7 });
  t.equal(whole.object, 'chat.completion');
  t.equal(whole.choices[0].message.role, 'assistant');
  t.notMatch(whole.choices[0].message.content ?? '', /\||<EOM>|<\|endoftext\|>/, 'sanitized');
  const prompt = srv.logs.slice(since).find((l) => l.msg === 'generated')?.prompt;
  t.equal(prompt, '1|grandma|How are you? <EOM>\n0|grandma|Fine, thanks. <EOM>\n1|grandma|And the garden? <EOM>\n0|grandma|', 'user on side 1, assistant on side 0, as the audience the system message names');
  const stream = await client.chat.completions.create({ model: 'chatbot', messages: [...messages], seed: 7, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  let chunks = 0;
  for await (const chunk of stream) {
    t.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      finish = c.finish_reason ?? finish;
    }
    chunks++;
  }
  t.equal(text, whole.choices[0].message.content, 'the chunks add up to the same seed\'s reply');
  t.equal(finish, whole.choices[0].finish_reason);
  t.same([usage?.prompt_tokens, usage?.completion_tokens, usage?.total_tokens], [whole.usage?.prompt_tokens, whole.usage?.completion_tokens, whole.usage?.total_tokens], 'include_usage: the usage in a last chunk');
  t.ok(chunks >= 2);
  const raw = await client.chat.completions.create({ model: 'general', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: PROMPT }], max_tokens: LENGTH });
  t.equal(raw.usage?.prompt_tokens, tokenizer.encode('Be brief.\nHow big is the earth?', { allowSpecial: false }).length, 'a raw model continues the messages, one a line');
});

t.test('a chat model configured to ignore system messages leaves out those that name no audience, and says which', async (t) => {
  const user = { role: 'user' as const, content: 'How was your day?' };
  const since = srv.logs.length;
  const messages = [{ role: 'system' as const, content: 'You are a helpful assistant.' }, { role: 'system' as const, content: 'audience: grandma' }, user, { role: 'developer' as const, content: 'Be brief.' }];
  const { data, response } = await client.chat.completions.create({ model: 'lenient', messages, seed: 3 }).withResponse();
  t.equal(response.headers.get('x-dixie-ignored-messages'), '0,3', 'the messages left out, by index');
  t.equal(srv.logs.slice(since).find((l) => l.msg === 'generated')?.prompt, '1|grandma|How was your day? <EOM>\n0|grandma|', 'the prompt without them, as the audience the other one names');
  const plain = await client.chat.completions.create({ model: 'lenient', messages: [messages[1], user], seed: 3 }).withResponse();
  t.equal(plain.data.choices[0].message.content, data.choices[0].message.content, 'the reply is the one without them');
  t.equal(plain.response.headers.get('x-dixie-ignored-messages'), null, 'nothing left out: no header');
  const streamed = await client.chat.completions.create({ model: 'lenient', messages, seed: 3, stream: true }).withResponse();
  let text = '';
  for await (const chunk of streamed.data) text += chunk.choices[0]?.delta.content ?? '';
  t.equal(streamed.response.headers.get('x-dixie-ignored-messages'), '0,3', 'streamed, the same header');
  t.equal(text, data.choices[0].message.content);
});

t.test("errors come as the client's own classes, with OpenAI's shape and the field named", async (t) => {
  const notFound = await client.completions.create({ model: 'nope', prompt: 'x' }).catch((e: unknown) => e);
  t.ok(notFound instanceof OpenAI.NotFoundError, 'unknown model: NotFoundError');
  t.equal((notFound as InstanceType<typeof OpenAI.APIError>).code, 'model_not_found');
  t.equal((notFound as InstanceType<typeof OpenAI.APIError>).param, 'model');
  for (const [fields, param] of [
    [{ temperature: -1 }, 'temperature'],
    [{ max_tokens: 0 }, 'max_tokens'],
    [{ presence_penalty: 2.5 }, 'presence_penalty'],
    [{ top_k: 1_000_000 }, 'top_k'],
    [{ n: 100 }, 'n'],
    [{ stream: true, stream_options: { include_usage: 'yes' } }, 'stream_options.include_usage'],
    // More choices than batch_slots + max_queue (8 + 64) could never all be admitted: not a 503 to try again.
    [{ prompt: Array.from({ length: 5 }, () => 'x'), n: 16 }, 'prompt'],
  ] as const) {
    const err = await client.completions.create({ model: 'general', prompt: 'x', ...fields } as OpenAI.CompletionCreateParamsNonStreaming).catch((e: unknown) => e);
    t.ok(err instanceof OpenAI.BadRequestError, `${JSON.stringify(fields)}: BadRequestError`);
    t.equal((err as InstanceType<typeof OpenAI.APIError>).param, param);
    t.equal((err as InstanceType<typeof OpenAI.APIError>).type, 'invalid_request_error');
  }
  const both = await client.chat.completions.create({ model: 'chatbot', messages: [{ role: 'user', content: 'hi' }], max_tokens: 'abc' as unknown as number, max_completion_tokens: 3 }).catch((e: unknown) => e);
  t.ok(both instanceof OpenAI.BadRequestError && both.param === 'max_completion_tokens', 'two names of the length that disagree: refused, not the first one dropped');
  t.match((both as Error).message, /max_completion_tokens: must be what max_tokens is, "abc", where both are given/);
  const agreeing = await client.chat.completions.create({ model: 'chatbot', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, max_completion_tokens: 2 });
  t.ok(agreeing.usage && agreeing.usage.completion_tokens <= 2, 'two that agree are taken');
  const lastSeed = await client.completions.create({ model: 'general', prompt: 'x', max_tokens: 2, seed: Number.MAX_SAFE_INTEGER, n: 2 });
  t.equal(lastSeed.choices.length, 2, 'the largest seed, with choices seeded past it');
  const system = await client.chat.completions.create({ model: 'chatbot', messages: [{ role: 'system', content: 'You are a pirate.' }, { role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
  t.ok(system instanceof OpenAI.BadRequestError && system.param === 'messages[0].content', 'a system prompt a chat model cannot take is refused, not dropped');
  t.match((system as Error).message, /"system_messages": "ignore" in the server's config, bin\/serve --system_messages ignore/, 'the refusal says how to have them ignored');
  const long = 'word '.repeat(3000);
  const tooLong = await client.chat.completions.create({ model: 'chatbot', messages: [{ role: 'user', content: long }] }).catch((e: unknown) => e);
  t.ok(tooLong instanceof OpenAI.BadRequestError && tooLong.param === 'messages', 'a message longer than the context: refused, naming messages');
  t.match((tooLong as Error).message, /the message takes \d+ tokens in the chat format, and the model reads at most \d+/);
  t.equal((tooLong as InstanceType<typeof OpenAI.APIError>).code, 'context_length_exceeded', 'with OpenAI\'s code, which clients key on to shorten the conversation');
  const invocation = await request(`${srv.url}/invocations`, { body: { model_key: 'chatbot', raw_text: long }, headers: { Authorization: `Bearer ${API_KEY}` } });
  t.match([invocation.status, invocation.json()], [400, { field: 'raw_text', error: /reads at most/ }], 'and on /invocations, naming raw_text');
  const shouted = await request(`${srv.url}/V1/completions/`, { body: { model: 'general', prompt: 5 }, headers: { Authorization: `Bearer ${API_KEY}` } });
  t.match([shouted.status, shouted.json()], [400, { error: { param: 'prompt', type: 'invalid_request_error' } }], 'a path in another case, with a trailing slash: routed, and answered in OpenAI\'s shape');
  const stranger = new OpenAI({ apiKey: 'wrong-key-0123456789abcdef', baseURL: `${srv.url}/v1`, maxRetries: 0 });
  const denied = await stranger.models.list().catch((e: unknown) => e);
  t.ok(denied instanceof OpenAI.AuthenticationError, 'a wrong key: AuthenticationError');
});

t.test('a streaming client that goes away frees its slot at once', async (t) => {
  const stream = await client.completions.create({ model: 'long', prompt: 'Once', max_tokens: 1000, stream: true });
  for await (const chunk of stream) {
    if (chunk.choices[0]?.text) break;  // leaving the loop aborts the request
  }
  t.same(await inFlightAfterLeaving(srv, 'long', API_KEY), { inFlight: 0, running: 0 }, 'no request in flight for the model, its batch slot free');
});

t.test('a client no one here wrote: fetch, with the stream read by eventsource-parser', async (t) => {
  const res = await fetch(`${srv.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model: 'general', prompt: PROMPT, max_tokens: LENGTH, temperature: 0, stream: true }),
  });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/event-stream/);
  const events: string[] = [];
  const parser = createParser({ onEvent: (e: EventSourceMessage) => events.push(e.data) });
  const decoder = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(part, { stream: true }));
  t.equal(events[events.length - 1], '[DONE]', 'the stream ends with [DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { object: string; choices: { text: string; finish_reason: string | null }[] });
  t.ok(chunks.every((c) => c.object === 'text_completion'));
  t.equal(chunks.map((c) => c.choices[0].text).join(''), greedy, 'the pieces add up to the greedy text');
  t.equal(chunks[chunks.length - 1].choices[0].finish_reason, 'length');
});

t.test('CORS: off unless configured; then a page of an allowed origin may call the API, preflight included', async (t) => {
  const preflight = (url: string, origin: string) => fetch(`${url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
  t.equal((await preflight(srv.url, 'https://app.example.com')).headers.get('access-control-allow-origin'), null, 'no CORS by default');
  const open = await startServer({ api_keys: [API_KEY], cors_origins: ['https://app.example.com'], models: [{ key: 'general', restore_from: 'alpha', sampling: { length: 2 } }] }, dir);
  t.teardown(open.close);
  const allowed = await preflight(open.url, 'https://app.example.com');
  t.equal(allowed.status, 204, 'the preflight is answered without an API key');
  t.equal(allowed.headers.get('access-control-allow-origin'), 'https://app.example.com');
  t.match(allowed.headers.get('access-control-allow-headers') ?? '', /authorization/i, 'the API key\'s header allowed');
  t.equal((await preflight(open.url, 'https://evil.example')).headers.get('access-control-allow-origin'), null, 'another origin is not allowed');
  // The headers the openai library sends with every request (its X-Stainless-* ones), taken from its own requests: a
  // browser refuses the whole request unless the preflight allows each one it asks for (the safelisted Accept, and
  // User-Agent, which a browser sets itself, left out).
  let sent = new Headers();
  const library = new OpenAI({ apiKey: API_KEY, baseURL: `${open.url}/v1`, maxRetries: 0, fetch: (url, init) => ((sent = new Headers(init?.headers)), fetch(url, init)) });
  await library.models.list();
  const asked = [...sent.keys()].filter((h) => h !== 'accept' && h !== 'user-agent');
  t.ok(asked.some((h) => h.startsWith('x-stainless-')), `the library's own headers: ${asked.join(', ')}`);
  const libraryPreflight = await fetch(`${open.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': asked.join(',') } });
  const allowedHeaders = (libraryPreflight.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(',').map((h) => h.trim());
  t.same(asked.filter((h) => !allowedHeaders.includes(h)), [], "each header the openai library sends is allowed, so that a page may use it");
  const call = await fetch(`${open.url}/v1/models`, { headers: { origin: 'https://app.example.com', authorization: `Bearer ${API_KEY}` } });
  t.equal(call.status, 200);
  t.equal(call.headers.get('access-control-allow-origin'), 'https://app.example.com', 'the answer itself carries the header');
  t.equal((await fetch(`${open.url}/v1/models`, { headers: { origin: 'https://app.example.com' } })).status, 401, 'and the API key is still needed');
});

t.test('a reply cut by the deadline: "length" for OpenAI, "deadline" in dixie_finish_reason', async (t) => {
  const hurried = await startServer({ request_timeout_s: 1, models: [{ key: 'long', restore_from: 'long', sampling: { temperature: 1 } }] }, dir);
  t.teardown(hurried.close);
  t.equal((await request(`${hurried.url}/prime`, { method: 'POST' })).status, 202);
  while (hurried.server.service.registry.status()[0].state !== 'loaded') await new Promise((r) => setTimeout(r, 20));
  const started = Date.now();
  const r = await request(`${hurried.url}/v1/chat/completions`, { body: { model: 'long', messages: [{ role: 'user', content: PROMPT }], max_tokens: 1000, seed: 1 } });
  const body = r.json() as { choices: Record<string, unknown>[]; usage: { completion_tokens: number } };
  const [choice] = body.choices;
  t.comment(`${body.usage.completion_tokens} tokens in ${Date.now() - started} ms`);
  // A machine fast enough to write the 1000 tokens within the second ends by length instead.
  if (body.usage.completion_tokens === 1000) t.match(choice, { finish_reason: 'length', dixie_finish_reason: 'length' });
  else t.match(choice, { finish_reason: 'length', dixie_finish_reason: 'deadline' });
});
