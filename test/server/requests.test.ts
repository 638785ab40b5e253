// Requests to one model over real HTTP: a request with settings the sampler refuses is answered 400 on its own
// while the requests decoding beside it are answered 200; a bad sampling default fails the start, not every
// request; and the JSON answer says what a prompt lost to fit the context.
import fs from 'node:fs';
import t from 'tap';
import { LONG, makeModels, request, startServer, tempDir, type Running } from './helpers';
import { validateServerConfig } from '../../lib/server/config';
import { createServer } from '../../lib/server/app';

let dir: string;
let srv: Running;

t.before(async () => {
  dir = tempDir('requests');
  await makeModels(dir, { alpha: 1 }, 'Hi', 1, LONG);
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
  for (let i = 0; i < 200 && srv.server.service.registry.peek('general')?.generator.batcher.load.running !== 3; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(srv.server.service.registry.peek('general')?.generator.batcher.load.running, 3, 'three requests decoding');
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
  const logged = srv.logs.find((l) => l.msg === 'prompt trimmed to fit the context' && l.model === 'chat');
  t.ok(logged && logged.messages === j.trimmed_messages, 'and the log says so');
});
