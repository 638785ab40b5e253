// Requests to one model over real HTTP: a request with settings the sampler refuses is answered 400 on its own
// while the requests decoding beside it are answered 200; a bad sampling default fails the start, not every
// request; and the JSON answer says what a prompt lost to fit the context.
import fs from 'node:fs';
import t from 'tap';
import { LONG, TINY, makeModels, request, startServer, tempDir, type Running } from './helpers';
import { validateServerConfig } from '../../lib/server/config';
import { createServer } from '../../lib/server/app';

let dir: string;
let srv: Running;

t.before(async () => {
  dir = tempDir('requests');
  await makeModels(dir, { alpha: 1 }, 'Hi', 1, LONG);
  await makeModels(dir, { small: 2 }, 'Hi', 1, TINY);
  srv = await startServer({
    models: [
      { key: 'general', restore_from: 'alpha' },
      { key: 'chat', restore_from: 'alpha', prompt_format: 'chat', audience: 'mom', sampling: { length: 900 } },
    ],
  }, dir);
});
t.teardown(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('a request the sampler would refuse gets 400 naming the field; the requests in flight beside it get 200', async (t) => {
  const good = [1, 2, 3].map((seed) => request(`${srv.url}/invocations`, { body: { model_key: 'general', raw_text: 'Once upon a time', length: 200, seed, format: 'json' } }));
  // Wait until the good ones are decoding, so that the bad ones would join their batch.
  for (let i = 0; i < 200 && srv.server.service.registry.peek('general')?.generator.load.running !== 3; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(srv.server.service.registry.peek('general')?.generator.load.running, 3, 'three requests decoding');
  const poisons: [Record<string, unknown>, string][] = [
    [{ top_k: 1_000_000 }, 'top_k'],
    [{ top_k: 50258 }, 'top_k'],
    [{ top_p: 5e-324 }, 'top_p'],
  ];
  for (const [fields, field] of poisons) {
    const r = await request(`${srv.url}/invocations`, { body: { model_key: 'general', raw_text: 'x', ...fields } });
    t.equal(r.status, 400, JSON.stringify(fields));
    t.equal(r.json().field, field);
    t.match(r.json().error, new RegExp(`^${field} must be`));
  }
  for (const r of await Promise.all(good)) {
    t.equal(r.status, 200, 'a good request beside the bad ones');
    t.equal(r.json().finish_reason, 'length');
  }
  const edge = await request(`${srv.url}/invocations`, { body: { model_key: 'general', raw_text: 'x', top_k: 50257, top_p: 1e-45, length: 2, format: 'json' } });
  t.equal(edge.status, 200, 'the whole vocabulary and the smallest float32 are accepted');
});

t.test('a value nested deeper than JSON can be written back, long, or past a double\'s range: 400 naming the field, quoted short', async (t) => {
  const deep = '['.repeat(8000) + ']'.repeat(8000);
  for (const [path, body, field] of [
    ['/invocations', `{"model_key": "general", "raw_text": "x", "temperature": ${deep}}`, 'temperature'],
    ['/v1/completions', `{"model": "general", "prompt": "x", "max_tokens": ${deep}}`, 'max_tokens'],
    ['/v1/responses', `{"model": "general", "input": [{"type": ${deep}, "role": "user", "content": "x"}]}`, 'input'],
    ['/invocations', `{"model_key": "general", "raw_text": "x", "top_p": "${'x'.repeat(20_000)}"}`, 'top_p'],
  ] as const) {
    const r = await request(`${srv.url}${path}`, { raw: body, headers: { 'content-type': 'application/json' } });
    t.equal(r.status, 400, `${path} ${field}: ${r.text.slice(0, 200)}`);
    const error = r.json().error as string | { message: string; param: string };
    const [message, named] = typeof error === 'string' ? [error, r.json().field] : [error.message, error.param];
    t.equal(named, field);
    t.ok(message.startsWith(`${field}: `) && message.length < 400, `the value quoted short: ${message}`);
  }
  const infinite = await request(`${srv.url}/invocations`, { raw: '{"model_key": "general", "raw_text": "x", "temperature": 1e999}', headers: { 'content-type': 'application/json' } });
  t.match(infinite.json(), { field: 'temperature', error: /\(got Infinity\)$/ }, '1e999 is Infinity, not null');
});

t.test('a sampling default the sampler would refuse fails the start, naming the setting', async (t) => {
  for (const [sampling, field] of [[{ top_k: 1_000_000 }, 'top_k'], [{ top_p: 1e-300 }, 'top_p']] as const) {
    const config = validateServerConfig({ models: [{ key: 'general', restore_from: 'alpha', sampling }] }, 'server_config.json', dir);
    t.throws(() => createServer(config, { log: () => undefined }), new RegExp(`^server_config.json: models\\[0\\]\\.sampling\\.${field}: must be`), field);
  }
});

t.test('the JSON answer says what a chat lost to fit the context: messages and tokens', async (t) => {
  const history = Array.from({ length: 40 }, (_, i) => ({ from: i % 2 ? 'bot' : 'user', text: `message number ${i} of a long chat` }));
  const r = await request(`${srv.url}/invocations`, { body: { model_key: 'chat', raw_text: 'and now?', history, length: 900, temperature: 0, format: 'json' } });
  t.equal(r.status, 200);
  const j = r.json();
  t.ok((j.prompt_tokens as number) <= 1024 - 900, `the prompt (${j.prompt_tokens} tokens) fits beside the reply`);
  t.ok((j.trimmed_messages as number) > 0 && (j.trimmed_messages as number) < 40, `${j.trimmed_messages} of the oldest messages dropped`);
  t.equal(j.trimmed_message_chars, 0, 'the newest message whole');
  t.ok((j.trimmed_prompt_tokens as number) > 100, `${j.trimmed_prompt_tokens} tokens dropped`);
  const short = await request(`${srv.url}/invocations`, { body: { model_key: 'chat', raw_text: 'hi', history: history.slice(0, 2), length: 5, format: 'json' } });
  t.same([short.json().trimmed_prompt_tokens, short.json().trimmed_messages, short.json().trimmed_message_chars], [0, 0, 0], 'nothing dropped from a short chat');
  const logged = srv.logs.find((l) => l.msg === 'prompt and reply fitted to the context' && l.model === 'chat');
  t.ok(logged && (logged.trimmed as { messages: number }).messages === j.trimmed_messages, 'and the log says so');
});

t.test("the user's words reach the model: a reply nobody sized takes half the context, and shrinks before the newest message is cut", async (t) => {
  const small = await startServer({ models: [{ key: 'tiny', restore_from: 'small', prompt_format: 'chat', audience: 'mom' }] }, dir);
  t.teardown(small.close);
  const ask = (body: Record<string, unknown>) => request(`${small.url}/invocations`, { body: { raw_text: 'How was your day?', temperature: 0, format: 'json', ...body } });
  const plain = (await ask({})).json();
  t.equal(plain.length, 64, 'the default 120 tokens become half of a 128-token context');
  t.equal(plain.trimmed_reply_tokens, 0);
  t.same([plain.trimmed_prompt_tokens, plain.trimmed_message_chars], [0, 0], 'the message whole');
  const history = Array.from({ length: 12 }, (_, i) => ({ from: i % 2 ? 'bot' : 'user', text: `an earlier message, number ${i}` }));
  const chat = (await ask({ history })).json();
  t.ok((chat.trimmed_messages as number) > 0, `history goes first: ${chat.trimmed_messages} messages dropped`);
  t.equal(chat.length, 64, 'and the reply keeps its length');
  const long = 'word '.repeat(90).trim();
  const shrunk = (await ask({ raw_text: long, history })).json();
  t.equal(shrunk.trimmed_messages, history.length, 'a long message leaves no room for the history');
  t.equal(shrunk.trimmed_message_chars, 0, 'but stays whole');
  t.ok((shrunk.length as number) < 64 && (shrunk.length as number) + (shrunk.prompt_tokens as number) <= 128, `the reply gets what is left: ${shrunk.length} tokens`);
  t.equal(shrunk.trimmed_reply_tokens, 64 - (shrunk.length as number), 'and the answer says how much it lost');
  t.ok(small.logs.some((l) => l.msg === 'prompt and reply fitted to the context' && l.length === shrunk.length), 'so does the log');
  t.equal((await ask({ length: 100 })).json().length, 100, 'a length asked for is kept where the message leaves room');
  const tooLong = await ask({ raw_text: 'word '.repeat(200) });
  t.equal(tooLong.status, 400, 'a message longer than the context is refused, not cut');
  t.match(tooLong.json().error, /the message takes \d+ tokens .* at most 128/);
});

t.test("a chat's next turn prefills only what is new, and replies as it would with prefix reuse off", async (t) => {
  const off = await startServer({ prefix_reuse: false, models: [{ key: 'chat', restore_from: 'alpha', prompt_format: 'chat', audience: 'mom' }] }, dir);
  t.teardown(off.close);
  const turn = async (server: Running, history: { from: string; text: string }[], text: string, seed: number) => {
    const r = await request(`${server.url}/invocations`, { body: { model_key: 'chat', raw_text: text, history, seed, length: 12, temperature: 0.9, format: 'json' } });
    t.equal(r.status, 200);
    return r.json() as { text: string; tokens: number[]; prompt_tokens: number; cached_prompt_tokens: number };
  };
  const history: { from: string; text: string }[] = [];
  const messages = ['How are you?', 'What did you cook?', 'Is it still raining there?', 'Call me tomorrow'];
  let previousPrompt = 0;
  for (let i = 0; i < messages.length; i++) {
    const [on, cold] = [await turn(srv, history, messages[i], i), await turn(off, history, messages[i], i)];
    t.same(on.tokens, cold.tokens, `turn ${i + 1}: the same reply with and without reuse`);
    t.equal(cold.cached_prompt_tokens, 0, `turn ${i + 1}: nothing reused with prefix_reuse false`);
    // The last turn's prompt starts this one's (its history is this one's start); the reply after it was
    // cleaned for the history, so it may not match token for token.
    if (i > 0) t.ok(on.cached_prompt_tokens >= previousPrompt - 1, `turn ${i + 1}: ${on.cached_prompt_tokens} of ${on.prompt_tokens} prompt tokens found in the cache (the last prompt had ${previousPrompt})`);
    previousPrompt = on.prompt_tokens;
    history.push({ from: 'user', text: messages[i] }, { from: 'bot', text: on.text });
  }
  const metrics = srv.server.service.metrics.render();
  const reused = Number(/dixie_prompt_tokens_reused_total\{model="chat"\} (\d+)/.exec(metrics)?.[1]);
  const prefilled = Number(/dixie_prompt_tokens_prefilled_total\{model="chat"\} (\d+)/.exec(metrics)?.[1]);
  t.ok(reused > 0 && prefilled > 0, `/metrics counts ${reused} reused and ${prefilled} prefilled prompt tokens`);
});

t.test('a conversation past the context drops its oldest messages in steps, so most turns still begin with the last one\'s prompt', async (t) => {
  const history: { from: string; text: string }[] = [];
  const overflowed: { cached: number; prompt: number; dropped: number }[] = [];
  for (let i = 0; i < 24; i++) {
    // About 60 tokens a message, each its own numbers (no two share a prefix by chance): a turn grows the history
    // by about a sixth of a step (half the 1012 tokens left beside a 12-token reply).
    const text = Array.from({ length: 30 }, (_, j) => String(1000 + i * 30 + j)).join(' ');
    const r = await request(`${srv.url}/invocations`, { body: { model_key: 'chat', raw_text: text, history, seed: i, length: 12, temperature: 0.9, format: 'json' } });
    t.equal(r.status, 200);
    const answer = r.json() as { text: string; prompt_tokens: number; cached_prompt_tokens: number; trimmed_messages: number };
    t.ok(answer.prompt_tokens + 12 <= LONG.nCtx, `turn ${i + 1}: ${answer.prompt_tokens} prompt tokens and the reply fit the context`);
    if (answer.trimmed_messages > 0) overflowed.push({ cached: answer.cached_prompt_tokens, prompt: answer.prompt_tokens, dropped: answer.trimmed_messages });
    history.push({ from: 'user', text }, { from: 'bot', text: answer.text });
  }
  t.ok(overflowed.length >= 5, `${overflowed.length} turns past the context`);
  const reused = overflowed.filter((o) => o.cached >= o.prompt / 2).length;
  t.ok(reused >= overflowed.length / 2, `${reused} of them found most of their prompt in the cache: ${JSON.stringify(overflowed)}`);
  t.ok(overflowed.every((o) => o.prompt >= (LONG.nCtx - 12) / 2 - 200), 'a step drops at most half the room more than needed (and two messages)');
});

t.test('/metrics: counters that only grow are counters; first-token and queue-wait histograms; the process', async (t) => {
  const metrics = srv.server.service.metrics.render();
  const type = (name: string) => new RegExp(`^# TYPE ${name} (\\w+)$`, 'm').exec(metrics)?.[1];
  for (const name of ['dixie_model_loads_total', 'dixie_prompt_tokens_reused_total', 'dixie_prompt_tokens_prefilled_total', 'process_cpu_seconds_total']) t.equal(type(name), 'counter', name);
  for (const name of ['dixie_time_to_first_token_seconds', 'dixie_queue_wait_seconds']) {
    t.equal(type(name), 'histogram', name);
    t.ok(Number(new RegExp(`^${name}_count\\{model="general"\\} (\\d+)$`, 'm').exec(metrics)?.[1]) >= 3, `${name} observed the requests`);
  }
  for (const name of ['nodejs_heap_used_bytes', 'nodejs_eventloop_lag_seconds']) t.equal(type(name), 'gauge', name);
  t.ok(Number(/^process_cpu_seconds_total (\S+)$/m.exec(metrics)?.[1]) > 0, 'CPU time counted');
  t.match(metrics, /^nodejs_eventloop_lag_seconds\{quantile="0\.99"\} \S+$/m);
});
