// OpenAI's Files API over real HTTP on 127.0.0.1, driven by the official `openai` client (uploads, lists, pages,
// contents, deletes) and by plain requests for what the client would not send: each refusal's status and OpenAI
// error shape, the files on disk (the bytes as uploaded; nothing left by a refused upload or a delete), and a new
// store over the same folder, as after a restart, seeing the same files.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import OpenAI, { toFile } from 'openai';
import { importChats } from '../../lib/import';
import { FileStore } from '../../lib/server/files';
import { makeModels, rawRequest, request, startServer, tempDir, type Running } from './helpers';

const API_KEY = 'files-test-key-0123456789';
const AUTH = { authorization: `Bearer ${API_KEY}` };
const MAX_FILE_MB = 0.01;
const MAX_FILE_BYTES = Math.floor(MAX_FILE_MB * 1024 * 1024);

const line = (user: string, bot: string) => JSON.stringify({ messages: [{ role: 'user', content: user }, { role: 'assistant', content: bot }] });
const TRAIN = `${line('Hi', 'Hello!')}\n${line('How are you?', 'Fine, thanks.')}\n`;
const SHAREGPT = `${JSON.stringify({ conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Yo' }] })}\n`;

let dir: string;
let filesFolder: string;
let srv: Running;
let off: Running;
let client: OpenAI;

t.before(async () => {
  dir = tempDir('files');
  await makeModels(dir, { alpha: 1 }, 'Hi', 1);
  srv = await startServer({ api_keys: [API_KEY], models: [{ key: 'general', restore_from: 'alpha' }], fine_tuning: { dir: 'ft', max_file_mb: MAX_FILE_MB } }, dir);
  off = await startServer({ models: [{ key: 'general', restore_from: 'alpha' }] }, dir);
  filesFolder = path.join(dir, 'ft', 'files');
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
});
t.teardown(async () => {
  await srv.close();
  await off.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const onDisk = () => fs.readdirSync(filesFolder).sort();

// An upload as a browser or curl sends it, the parts in the order given.
function form(parts: [string, string | { text: string | Buffer; name: string }][]): FormData {
  const f = new FormData();
  for (const [name, value] of parts) {
    if (typeof value === 'string') f.append(name, value);
    else f.append(name, new Blob([value.text]), value.name);
  }
  return f;
}

async function upload(parts: [string, string | { text: string | Buffer; name: string }][]) {
  const res = await fetch(`${srv.url}/v1/files`, { method: 'POST', body: form(parts), headers: AUTH });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as { error: { message: string; param: string | null; type: string; asks_for?: string[] } } };
}

// The same as raw bytes, for a request whose body the server stops reading.
async function multipartBytes(parts: [string, string | { text: string | Buffer; name: string }][]): Promise<{ body: Buffer; type: string }> {
  const r = new Request('http://localhost/', { method: 'POST', body: form(parts) });
  return { body: Buffer.from(await r.arrayBuffer()), type: r.headers.get('content-type') as string };
}

t.test('an upload through the openai client: the file object, its bytes on disk as sent, listed, read back, deleted', async (t) => {
  const before = Math.floor(Date.now() / 1000);
  const file = await client.files.create({ file: await toFile(Buffer.from(TRAIN), 'train.jsonl'), purpose: 'fine-tune' });
  t.match(file, { object: 'file', bytes: Buffer.byteLength(TRAIN), filename: 'train.jsonl', purpose: 'fine-tune', status: 'processed', status_details: null, expires_at: null });
  t.match(file.id, /^file-[A-Za-z0-9]{24}$/);
  t.ok(file.created_at >= before && file.created_at <= Date.now() / 1000, 'created_at in Unix seconds');
  t.same(fs.readFileSync(path.join(filesFolder, `${file.id}.content`)), Buffer.from(TRAIN), 'the bytes as uploaded');
  t.same(onDisk(), [`${file.id}.content`, `${file.id}.json`], 'the bytes and their record, nothing else');

  t.same(await client.files.retrieve(file.id), file, 'retrieved as created');
  const content = await client.files.content(file.id);
  t.equal(await content.text(), TRAIN, 'the content as uploaded');
  t.match(content.headers.get('content-type'), /^application\/jsonl/);
  t.match(content.headers.get('content-disposition'), /^attachment; filename="?train\.jsonl"?$/);

  t.same(await client.files.delete(file.id), { id: file.id, object: 'file', deleted: true });
  t.same(onDisk(), [], 'nothing left on disk');
  const gone = await client.files.retrieve(file.id).catch((e: unknown) => e);
  t.ok(gone instanceof OpenAI.NotFoundError, 'a deleted file is not found');
  t.match((gone as InstanceType<typeof OpenAI.APIError>).message, file.id, 'the error names the id');
});

t.test('lists newest first or oldest first, paged by the client with after, filtered by purpose; a restart sees the same', async (t) => {
  const ids: string[] = [];
  for (const [i, text] of [TRAIN, SHAREGPT, `{"messages": [{"role": "system", "content": "audience: mom"}, {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}`].entries()) {
    ids.push((await client.files.create({ file: await toFile(Buffer.from(text), `data${i}.jsonl`), purpose: 'fine-tune' })).id);
  }
  // A job's results, written by a store of its own over the same folder.
  const results = await new FileStore(filesFolder).make('a job\'s metrics', 'step_metrics.csv', 'fine-tune-results', (file) => fs.promises.writeFile(file, 'step,train_loss\n1,3.5\n'));
  const newest = [results.id, ...ids.slice().reverse()];

  const page = await request(`${srv.url}/v1/files`, { headers: AUTH });
  t.match(page.json(), { object: 'list', first_id: newest[0], last_id: newest[3], has_more: false });
  t.same((page.json().data as { id: string }[]).map((f) => f.id), newest, 'newest first');
  const paged: string[] = [];
  for await (const f of client.files.list({ limit: 1 })) paged.push(f.id);
  t.same(paged, newest, 'a page of one at a time, the client following after');
  const asc: string[] = [];
  for await (const f of client.files.list({ order: 'asc', limit: 2 })) asc.push(f.id);
  t.same(asc, newest.slice().reverse(), 'oldest first');
  const tuning: string[] = [];
  for await (const f of client.files.list({ purpose: 'fine-tune' })) tuning.push(f.id);
  t.same(tuning, newest.slice(1), 'by purpose');
  const first = await request(`${srv.url}/v1/files?limit=2&purpose=fine-tune`, { headers: AUTH });
  t.match(first.json(), { first_id: newest[1], last_id: newest[2], has_more: true });

  const csv = await client.files.content(results.id);
  t.equal(await csv.text(), 'step,train_loss\n1,3.5\n');
  t.match(csv.headers.get('content-type'), /^text\/csv/);

  const restarted = new FileStore(filesFolder);
  t.same(restarted.list(), page.json().data, 'a new store over the folder lists the same files');
  t.equal(fs.readFileSync(restarted.contentPath(ids[1]), 'utf8'), SHAREGPT);
  for (const id of newest) await client.files.delete(id);
  t.same(onDisk(), []);
});

t.test('training data is checked at upload: a bad line is a 400 naming the file and line, and nothing is kept', async (t) => {
  const cases: [string, string | Buffer, RegExp][] = [
    ['bad JSON on line 3', `${TRAIN}{"messages": [}\n`, /^file: train\.jsonl:3: not valid JSON/],
    ['not a conversation', `${line('a', 'b')}\n\n{"text": "a document"}\n`, /^file: train\.jsonl:3: not a conversation: \{"messages"/],
    ['an unknown role', `${line('a', 'b')}\n{"messages": [{"role": "robot", "content": "x"}]}\n`, /^file: train\.jsonl:2: messages\[0\]: "role" must be one of/],
    ['not UTF-8 on line 2', Buffer.concat([Buffer.from(`${line('a', 'b')}\n`), Buffer.from([0x7b, 0xff, 0x7d, 0x0a])]), /^file: train\.jsonl:2: not UTF-8 text/],
    ['no conversation', '\n\n', /^file: train\.jsonl: holds no conversation/],
    ['an empty file', '', /^file: train\.jsonl: holds no conversation/],
  ];
  for (const [what, text, message] of cases) {
    const r = await upload([['purpose', 'fine-tune'], ['file', { text, name: 'train.jsonl' }]]);
    t.equal(r.status, 400, what);
    t.match(r.body.error, { message, param: 'file', type: 'invalid_request_error' }, what);
  }
  // The chat format, as bin/import-chat writes it, checked line by line the same way.
  const chat = '1|mom|How was your day? <EOM>\n0|mom|Lovely, dear. <EOM>\n\n1|mom|And yours? <EOM>\n';
  const bad = await upload([['purpose', 'fine-tune'], ['file', { text: `${chat}0|mom|no end of message\n`, name: 'mom.train' }]]);
  t.match([bad.status, bad.body.error], [400, { message: /^file: mom\.train:5: not a message of the chat format: no <EOM> at the end/, param: 'file' }], 'a malformed chat line, by its line');
  const chatFile = await client.files.create({ file: await toFile(Buffer.from(chat), 'mom.train'), purpose: 'fine-tune' });
  const served = await fetch(`${srv.url}/v1/files/${chatFile.id}/content`, { headers: AUTH });
  t.equal(served.headers.get('content-type'), 'text/plain; charset=utf-8', 'kept as text');
  t.equal(await served.text(), chat, 'as uploaded');
  await client.files.delete(chatFile.id);
  const one = `${line('a', 'b')}\n`;
  const big = one.repeat(Math.floor(MAX_FILE_BYTES / one.length));
  const ok = await upload([['file', { text: big, name: 'big.jsonl' }], ['purpose', 'fine-tune']]);
  t.equal(ok.status, 200, 'a file near the limit, the purpose after it');
  await client.files.delete((ok.body as unknown as { id: string }).id);
  t.same(onDisk(), [], 'nothing kept of a refused upload');
});

t.test('training data is checked off the server\'s thread: none of its lines is parsed there, and a mistake names its line all the same', async (t) => {
  const lines = Math.floor(MAX_FILE_BYTES / (line('a', 'b').length + 1)) - 2;
  const good = `${line('a', 'b')}\n`.repeat(lines);
  const parse = JSON.parse;
  let parsed = 0;
  JSON.parse = (...args: Parameters<typeof JSON.parse>) => {
    parsed++;
    return parse(...args);
  };
  let ok: Awaited<ReturnType<typeof upload>>;
  let bad: Awaited<ReturnType<typeof upload>>;
  try {
    ok = await upload([['purpose', 'fine-tune'], ['file', { text: good, name: 'many.jsonl' }]]);
    bad = await upload([['purpose', 'fine-tune'], ['file', { text: `${good}{"messages": [}\n`, name: 'many.jsonl' }]]);
  } finally {
    JSON.parse = parse;
  }
  t.equal(ok.status, 200, `${lines} conversations taken`);
  t.match(bad.body.error, { message: new RegExp(`^file: many\\.jsonl:${lines + 1}: not valid JSON`), param: 'file' }, 'the bad line named by its number');
  // What is parsed here: the first line, to tell the file's kind, and the answers.
  t.ok(parsed < 10, `JSON.parse called ${parsed} times on this thread for two uploads of ${lines} lines each`);
  await client.files.delete((ok.body as unknown as { id: string }).id);
});

t.test('uploads refused: the purpose, a field missing or unknown, too large, not multipart', async (t) => {
  const file = { text: TRAIN, name: 'train.jsonl' };
  const cases: [string, [string, string | { text: string | Buffer; name: string }][], number, string | null, RegExp][] = [
    ['another purpose, before the file', [['purpose', 'assistants'], ['file', file]], 400, 'purpose', /^purpose: must be "fine-tune" or "batch" \(got "assistants"\)/],
    ['another purpose, after the file', [['file', file], ['purpose', 'vision']], 400, 'purpose', /^purpose: must be "fine-tune" or "batch" \(got "vision"\)/],
    ['the jobs\' purpose', [['purpose', 'fine-tune-results'], ['file', file]], 400, 'purpose', /"fine-tune-results" files are written by the server/],
    ['the batches\' purpose', [['purpose', 'batch_output'], ['file', file]], 400, 'purpose', /"batch_output" files are written by the server/],
    ['training data as a batch', [['purpose', 'batch'], ['file', file]], 400, 'file', /^train\.jsonl:1: messages: unsupported field \(supported: custom_id, method, url, body\)/],
    ['no purpose', [['file', file]], 400, 'purpose', /^purpose: is required: "fine-tune", "batch"/],
    ['no file', [['purpose', 'fine-tune']], 400, 'file', /^file: is required/],
    ['the file as text', [['purpose', 'fine-tune'], ['file', TRAIN]], 400, 'file', /^file: must be the file itself/],
    ['an unknown field', [['purpose', 'fine-tune'], ['model', 'x'], ['file', file]], 400, 'model', /^model: unsupported field \(supported: file, purpose, me, format, encoding, date_order\)/],
    ['an expiry', [['purpose', 'fine-tune'], ['expires_after[anchor]', 'created_at'], ['file', file]], 400, 'expires_after', /kept until deleted/],
    ['two files', [['purpose', 'fine-tune'], ['file', file], ['file', file]], 400, 'file', /one file per upload/],
    ['over the limit', [['purpose', 'fine-tune'], ['file', { text: 'x'.repeat(MAX_FILE_BYTES + 1), name: 'big.jsonl' }]], 413, 'file', new RegExp(`^file: larger than the upload limit of ${MAX_FILE_BYTES} bytes .*fine_tuning\\.max_file_mb`)],
  ];
  for (const [what, parts, status, param, message] of cases) {
    const r = await upload(parts);
    t.equal(r.status, status, what);
    t.match(r.body.error, { message, param }, what);
  }

  // Past the limit by more than a multipart body's own bytes: refused before a byte of it is read.
  const huge = await rawRequest(srv.url, { method: 'POST', path: '/v1/files', headers: { ...AUTH, 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(100 * 1024 * 1024) } });
  t.equal(huge.status, 413, 'a declared length over the limit');
  t.match(JSON.parse(huge.text), { error: { message: /upload limit/, param: 'file' } });
  // Over the limit while streaming, the rest not read: answered, and the connection closed.
  const { body, type } = await multipartBytes([['purpose', 'fine-tune'], ['file', { text: 'x'.repeat(4 * MAX_FILE_BYTES), name: 'big.jsonl' }]]);
  const cut = await rawRequest(srv.url, { method: 'POST', path: '/v1/files', headers: { ...AUTH, 'content-type': type, 'content-length': String(body.length + 1000) }, body });
  t.equal(cut.status, 413, 'a file past the limit as it arrives');
  t.equal(cut.closed, true);

  const json = await request(`${srv.url}/v1/files`, { body: { purpose: 'fine-tune', file: TRAIN }, headers: AUTH });
  t.equal(json.status, 415, 'JSON is not an upload');
  t.match(json.json(), { error: { message: /multipart\/form-data with the fields "file" .* and "purpose"/ } });
  const boundless = await request(`${srv.url}/v1/files`, { raw: 'x', headers: { ...AUTH, 'content-type': 'multipart/form-data' } });
  t.match([boundless.status, boundless.json()], [400, { error: { param: 'body', message: /^body: not multipart\/form-data/ } }], 'multipart without a boundary');
  const unauthorized = await request(`${srv.url}/v1/files`);
  t.equal(unauthorized.status, 401, 'the API key is needed');
  t.same(onDisk(), [], 'nothing kept of any of them');
});

t.test('an upload slower than request_timeout_s is taken while it keeps coming; one that stalls, or crawls, is given up with 408', async (t) => {
  // request_timeout_s 0.5; 1 MB of upload limit, which takes about 4.3 s at the slowest rate taken: 5 s in all.
  const ftDir = tempDir('files-slow');
  const slow = await startServer({ request_timeout_s: 0.5, models: [{ key: 'general', restore_from: 'alpha' }], fine_tuning: { dir: ftDir, max_file_mb: 1 } }, dir);
  t.teardown(async () => {
    await slow.close();
    fs.rmSync(ftDir, { recursive: true, force: true });
  });
  const folder = path.join(ftDir, 'files');
  const { body, type } = await multipartBytes([['purpose', 'fine-tune'], ['file', { text: TRAIN, name: 'train.jsonl' }]]);
  const headers = { 'content-type': type, 'content-length': String(body.length) };

  const steady = await rawRequest(slow.url, { method: 'POST', path: '/v1/files', headers, trickle: { bytes: body, pieces: 12, everyMs: 150 } });
  t.equal(steady.status, 200, 'taken after about 1.8 s, over three times request_timeout_s');
  t.ok(steady.ms > 1500, `answered after ${Math.round(steady.ms)} ms`);
  const id = (JSON.parse(steady.text) as { id: string }).id;
  t.same(fs.readFileSync(path.join(folder, `${id}.content`), 'utf8'), TRAIN, 'the bytes as sent');

  const half = Math.floor(body.length / 2);
  const stalled = await rawRequest(slow.url, { method: 'POST', path: '/v1/files', headers, body: body.subarray(0, half) });
  t.equal(stalled.status, 408);
  t.match(JSON.parse(stalled.text), { error: { message: 'the upload stalled: nothing arrived for 0.5 s (the server\'s request_timeout_s)' } });
  t.ok(stalled.closed, 'and the connection closed');

  const crawling = await rawRequest(slow.url, { method: 'POST', path: '/v1/files', headers, trickle: { bytes: body, pieces: 60, everyMs: 200 } });
  t.equal(crawling.status, 408);
  t.match(JSON.parse(crawling.text), { error: { message: 'the upload did not arrive within 5 s (the time fine_tuning.max_file_mb takes at 256 KB/s)' } });
  t.ok(crawling.ms > 4900 && crawling.ms < 7000, `given up after ${Math.round(crawling.ms)} ms`);
  t.same(fs.readdirSync(folder).sort(), [`${id}.content`, `${id}.json`], 'nothing kept of the two given up');
});

t.test('a client that reads none of a large answer is cut off once nothing has moved for twice request_timeout_s + 10 s, and logged as gone (499)', async (t) => {
  const ftDir = tempDir('files-unread');
  // Larger than the kernel's buffers of a loopback connection take: most of it stays with the server.
  const results = await new FileStore(path.join(ftDir, 'files')).make('a test', 'big.csv', 'fine-tune-results', (file) => fs.promises.writeFile(file, Buffer.alloc(32 << 20, 'a')));
  const server = await startServer({ request_timeout_s: 0.5, models: [{ key: 'general', restore_from: 'alpha' }], fine_tuning: { dir: ftDir } }, dir);
  t.teardown(async () => {
    await server.close();
    fs.rmSync(ftDir, { recursive: true, force: true });
  });
  const where = `/v1/files/${results.id}/content`;
  const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
  t.teardown(() => socket.destroy());
  socket.on('error', () => undefined);
  socket.write(`GET ${where} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  socket.pause();
  const logged = () => server.logs.find((l) => l.msg === 'request' && l.path === where);
  for (let waited = 0; logged() === undefined && waited < 30_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
  t.match(logged(), { status: 499, ms: Number, ip: '127.0.0.1' }, 'the server gave up on it');
  t.ok((logged()?.ms as number) >= 11_000, `after ${logged()?.ms} ms`);
  const after = await request(`${server.url}/v1/files/${results.id}`);
  t.equal(after.status, 200, 'and answers the next client');
});

t.test('a shutdown lets an upload under way arrive whole, as a generation in flight finishes, within shutdown_grace_s', async (t) => {
  const ftDir = tempDir('files-shutdown');
  const server = await startServer({ models: [{ key: 'general', restore_from: 'alpha' }], fine_tuning: { dir: ftDir } }, dir);
  t.teardown(async () => {
    await server.close();
    fs.rmSync(ftDir, { recursive: true, force: true });
  });
  const { body, type } = await multipartBytes([['purpose', 'fine-tune'], ['file', { text: TRAIN, name: 'train.jsonl' }]]);
  const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  socket.on('error', () => undefined);  // a connection cut: the assertions below tell
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  const until = async (what: RegExp) => {
    while (!what.test(received) && !socket.destroyed) await new Promise((r) => setImmediate(r));
  };
  // Node answers "100 Continue" as it hands the request to the app: the upload is under way from then on.
  socket.write(`POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\n\r\n`);
  await until(/100 Continue/);
  socket.write(body.subarray(0, body.length / 2));
  const stopped = server.close();
  socket.write(body.subarray(body.length / 2));  // not end(): Node drops the answer to a client that half-closes
  await ended;
  await stopped;
  t.match(received, /HTTP\/1\.1 200 OK/, 'the upload is answered');
  const id = (JSON.parse(received.slice(received.lastIndexOf('\r\n\r\n') + 4)) as { id: string }).id;
  t.equal(fs.readFileSync(path.join(ftDir, 'files', `${id}.content`), 'utf8'), TRAIN, 'and kept whole');
  t.match(server.logs.find((l) => l.msg === 'shutting down: finishing requests in flight'), { inFlight: 1 }, 'the shutdown waited for it');
});

t.test('unknown ids and bad list queries are answered in OpenAI\'s shape, naming what is wrong', async (t) => {
  const unknown = 'file-AAAAAAAAAAAAAAAAAAAAAAAA';
  for (const [method, where] of [['GET', unknown], ['GET', `${unknown}/content`], ['DELETE', unknown], ['GET', '..%2F..%2Fserver_config.json'], ['GET', 'file-..%2F..%2Fft/content']]) {
    const r = await request(`${srv.url}/v1/files/${where}`, { method, headers: AUTH });
    t.equal(r.status, 404, `${method} ${where}`);
    t.match(r.json(), { error: { type: 'invalid_request_error', message: /^no file with id "/, param: 'file_id' } }, `${method} ${where}`);
  }
  const named = await request(`${srv.url}/v1/files/${unknown}`, { headers: AUTH });
  t.match(named.json(), { error: { message: new RegExp(unknown) } });
  const queries: [string, string, RegExp][] = [['limit=0', 'limit', /from 1 to 10000/], ['limit=10001', 'limit', /from 1 to 10000/], ['order=up', 'order', /"asc" or "desc"/], [`after=${unknown}`, 'after', /no item with id/], ['page=2', 'page', /unsupported query parameter/], ['order=asc&order=desc', 'order', /once/]];
  for (const [query, param, message] of queries) {
    const r = await request(`${srv.url}/v1/files?${query}`, { headers: AUTH });
    t.match([r.status, r.json()], [400, { error: { param, message } }], query);
  }
});

t.test('with fine-tuning off, the Files API answers 404 saying how to turn it on', async (t) => {
  for (const [method, where] of [['POST', '/v1/files'], ['GET', '/v1/files'], ['GET', '/v1/files/file-x/content'], ['DELETE', '/v1/files/file-x']]) {
    const r = await request(`${off.url}${where}`, { method });
    t.equal(r.status, 404, `${method} ${where}`);
    t.match(r.json(), { error: { type: 'invalid_request_error', message: /fine-tuning is off.*bin\/serve --fine_tuning DIR.*"fine_tuning": \{"dir"/ } });
  }
  const offClient = new OpenAI({ apiKey: 'none', baseURL: `${off.url}/v1`, maxRetries: 0 });
  const refused = await offClient.files.create({ file: await toFile(Buffer.from(TRAIN), 'train.jsonl'), purpose: 'fine-tune' }).catch((e: unknown) => e);
  t.ok(refused instanceof OpenAI.NotFoundError, 'the client\'s NotFoundError');
  t.same(fs.readdirSync(dir).sort(), ['alpha', 'ft'], 'no folder made but the other server\'s');
});

const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'fixtures');
const WHATSAPP = path.join(FIXTURES, 'exports', 'whatsapp', 'android-en-us', 'WhatsApp Chat with Mom.txt');
const WHATSAPP_ZIP = path.join(FIXTURES, 'zips', 'WhatsApp Chat - Matti.zip');
const TELEGRAM_ACCOUNT = path.join(FIXTURES, 'exports', 'telegram', 'account', 'result.json');
const SIGNAL_CHAT = path.join(FIXTURES, 'exports', 'signal', 'NoahWilliams', 'data.json');

// What bin/import-chat makes of an export, into one .train file: the reference for the server's import.
async function importedByHand(t: Test, file: string, me: string[]) {
  const out = path.join(t.testdir(), 'chats.train');
  const summary = await importChats([file], { out, me });
  return { text: fs.readFileSync(out, 'utf8'), summary };
}

async function uploadExport(file: string, me: string[], name = path.basename(file)) {
  return upload([['purpose', 'fine-tune'], ...me.map((m): [string, string] => ['me', m]), ['file', { text: fs.readFileSync(file), name }]]);
}

t.test('a chat app\'s export is imported at upload as bin/import-chat imports it, and kept in the chat format', async (t) => {
  const before = onDisk();
  const unsure = await uploadExport(WHATSAPP, []);
  t.equal(unsure.status, 400, 'without "me": which sender is the user?');
  t.match(unsure.body.error, { param: 'me', code: 'me_not_found', message: /^me: WhatsApp Chat with Mom\.txt is a chat app's export: say which of the senders is you.*Mom \(\d+\), Jane Doe \(\d+\)/ });
  const reference = await importedByHand(t, WHATSAPP, ['Jane Doe']);
  const senders = (unsure.body.error as unknown as { senders: { name: string; messages: number }[] }).senders;
  t.same(senders.map((s) => s.name), ['Mom', 'Jane Doe'], 'the senders, most messages first, for a client to offer');
  t.ok(senders.every((s) => Number.isInteger(s.messages) && s.messages > 0));
  t.same(onDisk(), before, 'nothing kept of a refused export');

  const wrong = await uploadExport(WHATSAPP, ['Jane']);
  t.match(wrong.body.error, { param: 'me', message: /"Jane" names none of the senders/ });

  const res = await fetch(`${srv.url}/v1/files`, { method: 'POST', body: form([['purpose', 'fine-tune'], ['me', 'Jane Doe'], ['file', { text: fs.readFileSync(WHATSAPP), name: 'WhatsApp Chat with Mom.txt' }]]), headers: AUTH });
  t.equal(res.status, 200);
  const file = await res.json() as { id: string; filename: string; bytes: number; imported: Record<string, unknown> };
  t.match(file, { object: 'file', purpose: 'fine-tune', filename: 'WhatsApp Chat with Mom.train', bytes: Buffer.byteLength(reference.text) });
  t.same(file.imported, {
    formats: { whatsapp: 1 },
    messages: reference.summary.kept,
    sent: reference.summary.sent,
    dropped: reference.summary.dropped,
    audiences: [{ audience: 'Mom', messages: reference.summary.kept, sent: reference.summary.sent }],
    warnings: [],
    asks_for: [],
  }, 'what the import did, as bin/import-chat counts it');
  t.equal(fs.readFileSync(path.join(filesFolder, `${file.id}.content`), 'utf8'), reference.text, 'the chat format, as bin/import-chat writes it');
  const content = await client.files.content(file.id);
  t.match(content.headers.get('content-type'), /^text\/plain/);
  t.same(onDisk(), [...before, `${file.id}.content`, `${file.id}.json`].sort(), 'no scratch left');
  await client.files.delete(file.id);
});

t.test('"format" names the app as bin/import-chat\'s --format does: the same import, or the app\'s own error', async (t) => {
  const named = await upload([['purpose', 'fine-tune'], ['me', 'Jane Doe'], ['format', 'whatsapp'], ['file', { text: fs.readFileSync(WHATSAPP), name: 'chat.txt' }]]);
  t.equal(named.status, 200);
  const reference = await importedByHand(t, WHATSAPP, ['Jane Doe']);
  const file = named.body as unknown as { id: string; filename: string };
  t.equal(file.filename, 'chat.train');
  t.equal(fs.readFileSync(path.join(filesFolder, `${file.id}.content`), 'utf8'), reference.text, 'as a detected export is imported');
  const wrong = await upload([['purpose', 'fine-tune'], ['format', 'telegram'], ['file', { text: fs.readFileSync(WHATSAPP), name: 'chat.txt' }]]);
  t.equal(wrong.status, 400);
  t.match(wrong.body.error, { param: 'file', message: /^file: chat\.txt/ }, 'read as Telegram\'s, it is refused naming the file');
  await client.files.delete(file.id);
});

t.test('"encoding" and "date_order" are bin/import-chat\'s --encoding and --date-order, and the import\'s words name them as fields', async (t) => {
  // Day and month both 12 or less: either order reads; "café" in Windows-1252 is no UTF-8.
  const chat = '3/4/21, 10:14 - Mom: Hi Jane\n3/4/21, 10:15 - Jane Doe: Hi Mom, café?\n5/4/21, 09:00 - Mom: Yes\n';
  const folder = t.testdir();
  const latin = path.join(folder, 'WhatsApp Chat with Mom.txt');
  fs.writeFileSync(latin, Buffer.from(chat, 'latin1'));
  const before = onDisk();
  const refused = await uploadExport(latin, ['Jane Doe']);
  t.equal(refused.status, 400);
  t.match(refused.body.error, { param: 'file', message: /^file: WhatsApp Chat with Mom\.txt:2: not UTF-8 text: .*the field "encoding" \(e\.g\. "encoding": "windows-1252"\)$/ });
  t.same(refused.body.error.asks_for, ['encoding'], 'the field it names, for a client to offer');
  t.notMatch(refused.body.error.message, /--/, 'in the upload\'s terms, not the command line\'s');
  t.same(onDisk(), before, 'nothing kept');

  const read = await upload([['purpose', 'fine-tune'], ['me', 'Jane Doe'], ['encoding', 'windows-1252'], ['file', { text: fs.readFileSync(latin), name: 'WhatsApp Chat with Mom.txt' }]]);
  t.equal(read.status, 200);
  const readFile = read.body as unknown as { id: string; imported: { warnings: string[]; asks_for: string[] } };
  t.match(fs.readFileSync(path.join(filesFolder, `${readFile.id}.content`), 'utf8'), /^1\|Mom\|Hi Mom, café\? <EOM>$/m, 'decoded as the field says');
  t.same(readFile.imported.warnings, ['WhatsApp Chat with Mom.txt: dates that read as well day first as month first (3/4/24: 3 April or March 4), read day first; if that is wrong, give the order with "date_order": "mdy"']);
  t.same(readFile.imported.asks_for, ['date_order']);

  const ordered = await upload([['purpose', 'fine-tune'], ['me', 'Jane Doe'], ['encoding', 'windows-1252'], ['date_order', 'mdy'], ['file', { text: fs.readFileSync(latin), name: 'WhatsApp Chat with Mom.txt' }]]);
  t.equal(ordered.status, 200);
  const orderedFile = ordered.body as unknown as { id: string; imported: { warnings: string[] } };
  t.same(orderedFile.imported.warnings, [], 'the order given, nothing guessed');
  const reference = path.join(folder, 'reference.train');
  await importChats([latin], { out: reference, me: ['Jane Doe'], encoding: 'windows-1252', dateOrder: 'mdy' });
  t.equal(fs.readFileSync(path.join(filesFolder, `${orderedFile.id}.content`), 'utf8'), fs.readFileSync(reference, 'utf8'), 'as bin/import-chat --encoding windows-1252 --date-order mdy writes it');

  const unknown = await upload([['purpose', 'fine-tune'], ['me', 'Jane Doe'], ['encoding', 'klingon'], ['file', { text: fs.readFileSync(latin), name: 'chat.txt' }]]);
  t.match(unknown.body.error, { param: 'encoding', message: /^encoding: unknown encoding "klingon" \(try utf-8, / });
  const badOrder = await upload([['purpose', 'fine-tune'], ['date_order', 'dd/mm'], ['file', { text: fs.readFileSync(latin), name: 'chat.txt' }]]);
  t.match(badOrder.body.error, { param: 'date_order', message: 'date_order: must be one of dmy, mdy, ymd (got "dd/mm")' });
  const forBatch = await upload([['purpose', 'batch'], ['encoding', 'windows-1252'], ['file', { text: TRAIN, name: 'batch.jsonl' }]]);
  t.match(forBatch.body.error, { param: 'encoding', message: /^encoding: is for a chat app's export/ });
  await client.files.delete(readFile.id);
  await client.files.delete(orderedFile.id);
});

t.test('an iPhone\'s zip names its chat; exports that say who the user is need no "me"', async (t) => {
  const zipped = await uploadExport(WHATSAPP_ZIP, ['Jane Doe']);
  t.equal(zipped.status, 200);
  const reference = await importedByHand(t, WHATSAPP_ZIP, ['Jane Doe']);
  const zipFile = zipped.body as unknown as { id: string; filename: string; imported: { audiences: { audience: string }[] } };
  t.equal(zipFile.filename, 'WhatsApp Chat - Matti.train');
  t.same(zipFile.imported.audiences.map((a) => a.audience), reference.summary.audiences.map((a) => a.audience));
  t.equal(fs.readFileSync(path.join(filesFolder, `${zipFile.id}.content`), 'utf8'), reference.text);

  const account = await uploadExport(TELEGRAM_ACCOUNT, []);
  t.equal(account.status, 200, 'Telegram\'s account export says who you are');
  const accountRef = await importedByHand(t, TELEGRAM_ACCOUNT, []);
  const accountFile = account.body as unknown as { id: string; imported: { audiences: { audience: string; messages: number }[] } };
  t.ok(accountFile.imported.audiences.length > 1, 'an audience per chat');
  t.same(accountFile.imported.audiences.map((a) => [a.audience, a.messages]), accountRef.summary.audiences.filter((a) => a.kept > 0).map((a) => [a.audience, a.kept]));
  t.equal(fs.readFileSync(path.join(filesFolder, `${accountFile.id}.content`), 'utf8'), accountRef.text);
  // A Signal chat's data.json alone, out of the folder that names the chat: a one-to-one chat, named by its sender.
  const signal = await uploadExport(SIGNAL_CHAT, []);
  t.equal(signal.status, 200, 'signal-export\'s "Me" says who you are');
  const signalFile = signal.body as unknown as { id: string; imported: { formats: Record<string, number>; audiences: { audience: string }[] } };
  t.same(signalFile.imported.formats, { signal: 1 });
  t.same(signalFile.imported.audiences.map((a) => a.audience), ['NoahWilliams']);
  await client.files.delete(zipFile.id);
  await client.files.delete(accountFile.id);
  await client.files.delete(signalFile.id);
});

t.test('an upload that is neither training data nor an export dixie reads is refused, naming it; "me" only goes with an export', async (t) => {
  const before = onDisk();
  const photos = await upload([['purpose', 'fine-tune'], ['file', { text: fs.readFileSync(path.join(FIXTURES, 'zips', 'photos.zip')), name: 'photos.zip' }]]);
  t.equal(photos.status, 400);
  t.match(photos.body.error, { param: 'file', message: /^file: photos\.zip: .*no chat export/ });
  t.notMatch(photos.body.error.message, /scratch|upload\//, 'the server\'s folders are not named');
  const prose = await upload([['purpose', 'fine-tune'], ['file', { text: 'Dear diary,\ntoday was fine.\n', name: 'diary.txt' }]]);
  t.equal(prose.status, 400);
  t.match(prose.body.error, { param: 'file', message: /^file: diary\.txt:1: a file that begins "Dear diary,", not a WhatsApp, LINE or KakaoTalk chat.*; if it is one, name its format with the field "format" \(whatsapp, line, /ms });
  t.notMatch(prose.body.error.message, /--/, 'in the upload\'s terms, not the command line\'s');
  const jsonl = await upload([['purpose', 'fine-tune'], ['me', 'Jane'], ['file', { text: TRAIN, name: 'train.jsonl' }]]);
  t.match(jsonl.body.error, { param: 'me', message: /^me: is for a chat app's export.*train\.jsonl is fine-tuning JSONL/ });
  const unknownApp = await upload([['purpose', 'fine-tune'], ['format', 'myspace'], ['file', { text: TRAIN, name: 'train.jsonl' }]]);
  t.match(unknownApp.body.error, { param: 'format', message: /^format: must be one of whatsapp, line, .* \(got "myspace"\)$/ });
  const twice = await upload([['purpose', 'fine-tune'], ['format', 'whatsapp'], ['format', 'line'], ['file', { text: TRAIN, name: 'train.jsonl' }]]);
  t.match(twice.body.error, { param: 'format', message: 'format: given twice' });
  const blank = await upload([['purpose', 'fine-tune'], ['me', ' '], ['file', { text: TRAIN, name: 'train.jsonl' }]]);
  t.match(blank.body.error, { param: 'me', message: /^me: must be a name of 1 to 200 characters/ });
  t.same(onDisk(), before, 'nothing kept');
});

t.test('a store opened after a crash removes its leftovers and keeps its files', async (t) => {
  const folder = tempDir('files-crash');
  t.teardown(() => fs.rmSync(folder, { recursive: true, force: true }));
  const store = new FileStore(folder);
  const kept = await store.make('a kept text', 'a.jsonl', 'fine-tune', (file) => fs.promises.writeFile(file, TRAIN));
  const orphan = 'file-BBBBBBBBBBBBBBBBBBBBBBBB';
  fs.writeFileSync(path.join(folder, `${orphan}.content`), 'bytes whose record was never written');
  fs.writeFileSync(path.join(folder, `.${orphan}.upload.tmp`), 'an upload cut off');
  fs.mkdirSync(path.join(folder, `.${orphan}.scratch.tmp`, 'upload'), { recursive: true });
  fs.writeFileSync(path.join(folder, `.${orphan}.scratch.tmp`, 'upload', 'WhatsApp Chat with Mom.txt'), 'an export being imported');
  fs.writeFileSync(path.join(folder, `.${kept.id}.json.123.abcdef.tmp`), 'a record being written');
  t.same(store.list().map((f) => f.id), [kept.id], 'leftovers are not files');
  t.equal(store.get(orphan), null);
  const reopened = new FileStore(folder);
  t.same(fs.readdirSync(folder).sort(), [`${kept.id}.content`, `${kept.id}.json`], 'removed at start');
  t.same(reopened.list(), [kept]);
  const again = await reopened.make('a kept text', 'b.jsonl', 'fine-tune', (file) => fs.promises.writeFile(file, 'other text'));
  t.same(again, kept, 'made again for the same thing (its maker stopped before it recorded the id), the file written before');
  const other = await reopened.make('another text', 'a.jsonl', 'fine-tune', (file) => fs.promises.writeFile(file, TRAIN));
  t.not(other.id, kept.id, 'made for something else, a file of its own');
  t.equal(await reopened.delete(other.id), true);
  t.equal(reopened.get('../x'), null, 'an id that is no id');
  t.throws(() => reopened.contentPath(orphan), /no file "file-B/);
  t.equal(await reopened.delete(orphan), false);
  t.equal(await reopened.delete(kept.id), true);
  t.same(fs.readdirSync(folder), []);
});
