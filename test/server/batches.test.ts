// OpenAI's Batch API over real HTTP on 127.0.0.1, through the official `openai` client: a file of requests uploaded
// with purpose "batch" is answered request by request by the server's own endpoints, as the same requests sent one at
// a time are answered, the failures (a 400 with its field) in the error file; a mistake in the file is a 400 at
// upload naming its line; a batch cancelled keeps what it answered; and a server that stops with a batch half done
// goes on with it when it starts again, answering each request once.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import OpenAI, { toFile } from 'openai';
import { makeModels, request, startServer, tempDir, LONG, type Running } from './helpers';

const API_KEY = 'batch-test-key-0123456789';
const AUTH = { Authorization: `Bearer ${API_KEY}` };

let dir: string;
let srv: Running;
let client: OpenAI;

function serverConfig(): Record<string, unknown> {
  return {
    api_keys: [API_KEY],
    batch_slots: 4,
    fine_tuning: { dir: path.join(dir, 'kept') },
    models: [
      { key: 'general', restore_from: 'alpha', sampling: { temperature: 0, penalize: 0, length: 6 } },
      { key: 'long', restore_from: 'long', sampling: { temperature: 0, penalize: 0, length: 400 } },
    ],
  };
}

async function start(): Promise<void> {
  srv = await startServer(serverConfig(), dir);
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
}

t.before(async () => {
  dir = tempDir('batches');
  await makeModels(dir, { alpha: 1 }, 'Hello', 1);
  await makeModels(dir, { long: 2 }, 'Hello', 1, LONG);
  await start();
});
t.teardown(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const jsonl = (lines: unknown[]): string => lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
const upload = async (name: string, lines: unknown[]): Promise<string> => (await client.files.create({ file: await toFile(Buffer.from(jsonl(lines)), name), purpose: 'batch' })).id;

// Polled until it ends; within two minutes, for a busy machine.
async function finished(id: string): Promise<OpenAI.Batch> {
  for (let i = 0; i < 2400; i++) {
    const batch = await client.batches.retrieve(id);
    if (['completed', 'cancelled', 'failed'].includes(batch.status)) return batch;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`batch ${id} did not finish`);
}

async function linesOf(fileId: string | null | undefined): Promise<Record<string, any>[]> {
  if (!fileId) return [];
  const text = await (await client.files.content(fileId)).text();
  return text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
}

t.test('a batch of chat completions: each answered as it would be alone, the failure in the error file', async (t) => {
  const asks = ['Hi there', 'How are you?', 'Tell me a story'];
  const requests = [
    ...asks.map((content, i) => ({ custom_id: `ask-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'general', messages: [{ role: 'user', content }] } })),
    { custom_id: 'too-wide', method: 'POST', url: '/v1/chat/completions', body: { model: 'general', messages: [{ role: 'user', content: 'Hi' }], top_p: 2 } },
  ];
  const input = await upload('asks.jsonl', requests);
  t.match(await client.files.retrieve(input), { purpose: 'batch', filename: 'asks.jsonl' });
  const created = await client.batches.create({ input_file_id: input, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { run: 'one' } });
  t.match(created, { object: 'batch', endpoint: '/v1/chat/completions', input_file_id: input, completion_window: '24h', metadata: { run: 'one' }, request_counts: { total: 4 } });
  const batch = await finished(created.id);
  t.match(batch, { status: 'completed', request_counts: { total: 4, completed: 3, failed: 1 }, output_file_id: /^file-/, error_file_id: /^file-/ });
  t.ok((batch.completed_at ?? 0) >= batch.created_at);

  const output = await linesOf(batch.output_file_id);
  t.same(output.map((l) => l.custom_id), ['ask-0', 'ask-1', 'ask-2'], 'the answers in the order of the requests');
  for (const [i, line] of output.entries()) {
    const alone = await client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: asks[i] }] });
    t.match(line, { id: /^batch_req_/, response: { status_code: 200, request_id: /./, body: { object: 'chat.completion', model: 'general' } }, error: null });
    t.equal(line.response.body.choices[0].message.content, alone.choices[0].message.content, `${line.custom_id}: the reply the request gets alone`);
  }
  const errors = await linesOf(batch.error_file_id);
  t.match(errors, [{ custom_id: 'too-wide', response: { status_code: 400, body: { error: { param: 'top_p' } } } }], 'the failure as the endpoint answers it');

  const listed = await client.batches.list();
  t.ok(listed.data.some((b) => b.id === batch.id), 'listed');
  t.equal((await client.files.retrieve(batch.output_file_id as string)).purpose, 'batch_output');
});

t.test("embeddings in a batch; the request's URL must be the batch's endpoint", async (t) => {
  const input = await upload('embed.jsonl', [{ custom_id: 'e', method: 'POST', url: '/v1/embeddings', body: { model: 'general', input: 'hello' } }]);
  const batch = await finished((await client.batches.create({ input_file_id: input, endpoint: '/v1/embeddings', completion_window: '24h' })).id);
  const alone = await client.embeddings.create({ model: 'general', input: 'hello' });
  t.same((await linesOf(batch.output_file_id))[0].response.body.data[0].embedding, alone.data[0].embedding);
  const r = await request(`${srv.url}/v1/batches`, { headers: AUTH, body: { input_file_id: input, endpoint: '/v1/chat/completions', completion_window: '24h' } });
  t.match([r.status, r.json().error], [400, { param: 'input_file_id', message: /embed\.jsonl:1 goes to \/v1\/embeddings, not to the batch's endpoint \/v1\/chat\/completions/ }]);
});

// A value `levels` arrays and objects deep.
function nested(levels: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < levels; i++) value = i % 2 === 0 ? [value] : { a: value };
  return value;
}

t.test("a batch of many choices takes turns at the model's slots with its clients, and none of their room", async (t) => {
  // 200 tokens a choice (never <|endoftext|>), 16 choices a line, two lines at a time: 32 generations in hand,
  // 4 decoding.
  const noEnd = { 50256: -100 };
  const lines = [0, 1, 2, 3].map((i) => ({ custom_id: `many-${i}`, method: 'POST', url: '/v1/completions', body: { model: 'long', prompt: 'Once upon a time', max_tokens: 200, n: 16, logit_bias: noEnd } }));
  const created = await client.batches.create({ input_file_id: await upload('many.jsonl', lines), endpoint: '/v1/completions', completion_window: '24h' });
  const load = () => srv.server.service.registry.peek('long')?.generator.load;
  for (let i = 0; i < 1000 && !(load()?.running === 4 && load()?.waiting === 28); i++) await new Promise((r) => setTimeout(r, 10));
  t.same(load(), { running: 4, waiting: 28 }, 'the batch\'s first two lines in hand');

  const quick = await request(`${srv.url}/v1/completions`, { headers: AUTH, body: { model: 'long', prompt: 'Hi', max_tokens: 5, logit_bias: noEnd } });
  t.equal(quick.status, 200);
  t.equal((await client.batches.retrieve(created.id)).request_counts?.completed, 0, 'a client\'s request is answered before the batch\'s first line');
  // batch_slots + max_queue is 68: with the batch's 32 in hand, 37 more would be refused if they counted.
  const wide = await request(`${srv.url}/v1/completions`, { headers: AUTH, body: { model: 'long', prompt: Array.from({ length: 37 }, (_, i) => `Hi ${i}`), max_tokens: 1 } });
  t.equal(wide.status, 200, 'the batch takes none of the clients\' room');

  t.match(await finished(created.id), { status: 'completed', request_counts: { total: 4, completed: 4, failed: 0 } });
});

t.test('a mistake in the file is a 400 at upload that names its line and field', async (t) => {
  const ok = { custom_id: 'a', method: 'POST', url: '/v1/completions', body: { model: 'general', prompt: 'x' } };
  for (const [lines, message] of [
    [[ok, { ...ok }], /^400 dup\.jsonl:2: custom_id: "a" names the request on line 1 too/],
    [[ok, { ...ok, custom_id: 'b', url: '/v1/images' }], /^400 dup\.jsonl:2: url: must be one of \/v1\/chat\/completions/],
    [[{ ...ok, body: { ...ok.body, stream: true } }], /^400 dup\.jsonl:1: body\.stream: must not be true/],
    [[{ ...ok, method: 'GET' }], /^400 dup\.jsonl:1: method: must be "POST"/],
    [[{ ...ok, headers: {} }], /^400 dup\.jsonl:1: headers: unsupported field/],
    [[ok, { ...ok, custom_id: 'b', body: { ...ok.body, logit_bias: nested(65) } }], /^400 dup\.jsonl:2: body\.logit_bias: nests arrays and objects more than 64 deep/],
  ] as const) {
    await t.rejects(upload('dup.jsonl', lines as unknown as unknown[]), { status: 400, message }, String(message));
  }
  const notUtf8 = await client.files.create({ file: await toFile(Buffer.concat([Buffer.from(`${JSON.stringify(ok)}\n`), Buffer.from([0x7b, 0xff, 0x7d, 0x0a])]), 'latin.jsonl'), purpose: 'batch' }).catch((e: Error) => e);
  t.match(notUtf8, { status: 400, message: /^400 latin\.jsonl:2: not UTF-8 text/ });
  const notJson = await client.files.create({ file: await toFile(Buffer.from(`${JSON.stringify(ok)}\n{nope\n`), 'bad.jsonl'), purpose: 'batch' }).catch((e: Error) => e);
  t.match(notJson, { status: 400, message: /^400 bad\.jsonl:2: not JSON/ });
  for (const [body, param] of [
    [{ input_file_id: 'file-none', endpoint: '/v1/completions', completion_window: '24h' }, 'input_file_id'],
    [{ input_file_id: 'x', endpoint: '/v1/images', completion_window: '24h' }, 'endpoint'],
    [{ input_file_id: 'x', endpoint: '/v1/completions', completion_window: '1h' }, 'completion_window'],
  ] as const) {
    const r = await request(`${srv.url}/v1/batches`, { headers: AUTH, body });
    t.match([r.status, r.json().error], [400, { param }], JSON.stringify(body));
  }
  t.equal((await request(`${srv.url}/v1/batches/batch_nope`, { headers: AUTH })).status, 404);
});

// Requests for the long model: each a few hundred decoding steps, so that a batch of them is still running when the
// test acts.
const slowRequests = (n: number): unknown[] => Array.from({ length: n }, (_, i) => ({ custom_id: `slow-${i}`, method: 'POST', url: '/v1/completions', body: { model: 'long', prompt: `Number ${i}` } }));

t.test('a batch cancelled sends no more requests, and keeps the answers it has', async (t) => {
  const input = await upload('slow.jsonl', slowRequests(40));
  const created = await client.batches.create({ input_file_id: input, endpoint: '/v1/completions', completion_window: '24h' });
  while ((await client.batches.retrieve(created.id)).request_counts?.completed === 0) await new Promise((r) => setTimeout(r, 20));
  const cancelling = await client.batches.cancel(created.id);
  t.equal(cancelling.status, 'cancelling');
  const batch = await finished(created.id);
  t.equal(batch.status, 'cancelled');
  const answered = batch.request_counts?.completed ?? 0;
  t.ok(answered > 0 && answered < 40, `${answered} of 40 answered`);
  t.equal((await linesOf(batch.output_file_id)).length, answered, 'the output file holds them');
  const again = await request(`${srv.url}/v1/batches/${created.id}/cancel`, { headers: AUTH, body: {} });
  t.equal(again.status, 409);
});

t.test('a server that stops with a batch half done, or crashes writing an answer, goes on with it when it starts again, each request answered once', async (t) => {
  const input = await upload('resume.jsonl', slowRequests(12));
  const created = await client.batches.create({ input_file_id: input, endpoint: '/v1/completions', completion_window: '24h' });
  while (((await client.batches.retrieve(created.id)).request_counts?.completed ?? 0) < 3) await new Promise((r) => setTimeout(r, 20));
  await srv.close();
  const kept = fs.readFileSync(path.join(dir, 'kept', 'batches', created.id, 'answered.jsonl'), 'utf8').trim().split('\n');
  t.ok(kept.length >= 3 && kept.length < 12, `${kept.length} answered before the stop`);
  t.notOk(kept.some((l) => JSON.parse(l).response.status_code !== 200), 'none of them cut short by the stop');
  // As a crash leaves an answer it was writing: a line without its end, whose request is sent again.
  fs.appendFileSync(path.join(dir, 'kept', 'batches', created.id, 'answered.jsonl'), '{"id": "batch_req_cut", "custom_id": "slow-11", "resp');
  await start();
  const batch = await finished(created.id);
  t.match(batch, { status: 'completed', request_counts: { total: 12, completed: 12, failed: 0 } });
  const output = await linesOf(batch.output_file_id);
  t.same(output.map((l) => l.custom_id), Array.from({ length: 12 }, (_, i) => `slow-${i}`), 'each request once, in order');
  const before = new Map(kept.map((l) => [JSON.parse(l).custom_id, JSON.parse(l).id]));
  t.ok(output.every((l) => !before.has(l.custom_id) || before.get(l.custom_id) === l.id), 'those answered before the stop were not sent again');
});

t.test('a server stopped while it wrote a batch\'s output files writes them again as the same files, leaving no copies', async (t) => {
  const input = await upload('finalize.jsonl', [
    { custom_id: 'ok', method: 'POST', url: '/v1/completions', body: { model: 'general', prompt: 'Hello' } },
    { custom_id: 'bad', method: 'POST', url: '/v1/completions', body: { model: 'nobody', prompt: 'Hello' } },
  ]);
  const done = await finished((await client.batches.create({ input_file_id: input, endpoint: '/v1/completions', completion_window: '24h' })).id);
  t.ok(done.output_file_id && done.error_file_id, 'an output file and an error file');
  const outputs = async (): Promise<string[]> => (await client.files.list({ purpose: 'batch_output' })).data.map((f) => f.id).sort();
  const before = await outputs();
  await srv.close();
  // As a crash leaves it after the files were written and before the batch recorded them.
  const record = path.join(dir, 'kept', 'batches', done.id, 'batch.json');
  const stopped = { ...JSON.parse(fs.readFileSync(record, 'utf8')), status: 'finalizing', output_file_id: null, error_file_id: null, completed_at: null };
  fs.writeFileSync(record, JSON.stringify(stopped));
  await start();
  const again = await finished(done.id);
  t.match(again, { status: 'completed', output_file_id: done.output_file_id, error_file_id: done.error_file_id, request_counts: { total: 2, completed: 1, failed: 1 } });
  t.same(await outputs(), before, 'the same files, and no others');
});
