// bin/download-model against loopback servers: a hub in Hugging Face's URL layout that redirects the weights to
// a second server (the file host), a connection dropped mid-file (resumed), wrong checksums (refused, nothing
// under the final name), a missing file, no network, a full disk (said, not retried), and the command line.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { downloadModel, hubBase } from '../../lib/download/download_model';
import { fetchFile } from '../../lib/download/fetch_file';
import { formatProgress, type ProgressSink } from '../../lib/download/progress';
import { inspectModelFolder } from '../../lib/formats/model_folder';
import { withFileSizeLimit } from '../helpers/file_size_limit';

const TINY = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'gpt2-tiny');
const ROOT = path.resolve(__dirname, '..', '..', '..');

const FILES: Record<string, Buffer> = {
  'config.json': fs.readFileSync(path.join(TINY, 'config.json')),
  'vocab.json': Buffer.from(JSON.stringify(Object.fromEntries(Array.from({ length: 256 }, (_, i) => [`t${i}`, i])))),
  'merges.txt': Buffer.from('#version: 0.2\nt 1\n'),
};
const WEIGHTS = fs.readFileSync(path.join(TINY, 'model.safetensors'));
const WEIGHTS_SHA256 = crypto.createHash('sha256').update(WEIGHTS).digest('hex');
const gitSha1 = (b: Buffer): string => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

interface Behaviour {
  dropAfter?: number;      // the file host sends this many bytes, then drops the connection...
  drops?: number;          // ...this many times
  corruptWeights?: boolean;
  wrongEtag?: string;      // a small file whose ETag does not match
  missingRepo?: boolean;   // the hub has no such repository
}

interface Servers {
  hub: string;
  fileHost: string;
  log: { host: 'hub' | 'files'; url: string; range?: string; auth?: string }[];
  close(): Promise<void>;
}

// Serves bytes with Range support, as both Hugging Face hosts do.
function sendBytes(req: http.IncomingMessage, res: http.ServerResponse, data: Buffer, headers: Record<string, string>, dropAfter?: number): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = range ? Number(range[1]) : 0;
  if (start > data.length) {
    res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
    return;
  }
  const body = data.subarray(start);
  res.writeHead(range ? 206 : 200, {
    ...headers, 'content-length': String(body.length), 'accept-ranges': 'bytes',
    ...(range ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
  });
  if (dropAfter !== undefined && dropAfter - start < body.length) {
    res.write(body.subarray(0, dropAfter - start), () => res.socket?.destroy());
    return;
  }
  res.end(body);
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function startServers(behaviour: Behaviour = {}): Promise<Servers> {
  const log: Servers['log'] = [];
  let drops = behaviour.drops ?? 0;
  const weights = Buffer.from(WEIGHTS);
  if (behaviour.corruptWeights) weights[weights.length - 10] ^= 1;
  const files = http.createServer((req, res) => {
    log.push({ host: 'files', url: req.url ?? '', range: req.headers.range, auth: req.headers.authorization });
    if (!req.url?.startsWith(`/lfs/${WEIGHTS_SHA256}?`)) return void res.writeHead(404).end();
    const dropAfter = drops > 0 ? behaviour.dropAfter : undefined;
    if (dropAfter !== undefined) drops--;
    sendBytes(req, res, weights, { etag: '"cdn-etag-1"' }, dropAfter);
  });
  const fileHost = await listen(files);
  const hubServer = http.createServer((req, res) => {
    log.push({ host: 'hub', url: req.url ?? '', range: req.headers.range, auth: req.headers.authorization });
    const match = /^\/openai-community\/gpt2\/resolve\/main\/(.+)$/.exec(req.url ?? '');
    if (!match || behaviour.missingRepo) return void res.writeHead(404, { 'x-error-code': 'RepoNotFound' }).end('Repository not found');
    const file = match[1];
    if (file === 'model.safetensors') {
      res.writeHead(302, {
        location: `${fileHost}/lfs/${WEIGHTS_SHA256}?signature=abc`,
        'x-linked-size': String(WEIGHTS.length), 'x-linked-etag': `"${WEIGHTS_SHA256}"`, etag: `"${WEIGHTS_SHA256}"`,
      }).end();
      return;
    }
    const data = FILES[file];
    if (!data) return void res.writeHead(404, { 'x-error-code': 'EntryNotFound' }).end('Entry not found');
    sendBytes(req, res, data, { etag: `"${file === 'vocab.json' && behaviour.wrongEtag ? behaviour.wrongEtag : gitSha1(data)}"` });
  });
  const hub = await listen(hubServer);
  return {
    hub, fileHost, log,
    close: async () => {
      hubServer.closeAllConnections();
      files.closeAllConnections();
      await Promise.all([new Promise((r) => hubServer.close(r)), new Promise((r) => files.close(r))]);
    },
  };
}

function sink(): ProgressSink & { text: string } {
  const out = { text: '', isTTY: false, write: (s: string) => { out.text += s; return true; } };
  return out;
}

function expectModel(t: Test, dir: string): void {
  t.same(fs.readFileSync(path.join(dir, 'model.safetensors')), WEIGHTS, 'the weights arrived intact');
  for (const [name, data] of Object.entries(FILES)) t.same(fs.readFileSync(path.join(dir, name)), data, name);
  t.same(fs.readdirSync(dir).filter((f) => f.includes('partial') || f.endsWith('.tmp')), [], 'no partial file left');
  t.match(inspectModelFolder(dir), { kind: 'huggingface', config: { nLayer: 2, nEmbd: 64 } });
}

t.test('the hub layout, with the weights redirected to a separate file host', async (t) => {
  const servers = await startServers();
  t.teardown(servers.close);
  const dir = path.join(t.testdir(), '124M');
  const progress = sink();
  const saved = process.env.HF_TOKEN;
  process.env.HF_TOKEN = 'hf_secret';
  t.teardown(() => {
    if (saved === undefined) delete process.env.HF_TOKEN;
    else process.env.HF_TOKEN = saved;
  });
  const folder = await downloadModel('gpt2', { mirror: `${servers.hub}/`, dir, progress, retryDelayMs: 0 });
  t.equal(folder.dir, dir);
  expectModel(t, dir);
  t.notOk(fs.existsSync(path.join(dir, 'tokenizer.json')), 'optional files the hub lacks are skipped');
  t.same(servers.log.filter((r) => r.host === 'files').map((r) => r.url), [`/lfs/${WEIGHTS_SHA256}?signature=abc`], 'fetched from the file host');
  t.ok(servers.log.filter((r) => r.host === 'hub').every((r) => r.auth === 'Bearer hf_secret'), 'the token goes to the hub');
  t.ok(servers.log.filter((r) => r.host === 'files').every((r) => r.auth === undefined), '...and not to the file host');
  t.match(progress.text, /124M\/model\.safetensors 100% \[#+\] 485 kB \/ 485 kB {2}[\d.]+ [kMG]?B\/s {2}ETA 0:00/);

  // Present files are not fetched again.
  const before = servers.log.length;
  await downloadModel('124M', { mirror: servers.hub, dir, progress: null });
  t.same(servers.log.slice(before).map((r) => r.url.split('/').pop()), ['tokenizer.json', 'generation_config.json'], 'only the optional files are asked for again');
});

t.test('a connection dropped mid-file resumes with a Range request', async (t) => {
  const servers = await startServers({ dropAfter: 100_000, drops: 2 });
  t.teardown(servers.close);
  const dir = path.join(t.testdir(), '124M');
  const progress = sink();
  await downloadModel('124M', { mirror: servers.hub, dir, progress, retryDelayMs: 1 });
  expectModel(t, dir);
  t.same(servers.log.filter((r) => r.host === 'files').map((r) => r.range), [undefined, 'bytes=100000-', 'bytes=100000-']);
  t.match(progress.text, /the connection broke at byte 100000 of 484608 .*; retrying/);
});

t.test('a download interrupted in one run resumes in the next', async (t) => {
  const servers = await startServers({ dropAfter: 200_000, drops: 1 });
  t.teardown(servers.close);
  const dir = path.join(t.testdir(), '124M');
  await t.rejects(downloadModel('124M', { mirror: servers.hub, dir, progress: null, retries: 0 }), /the connection broke at byte 200000 of 484608/);
  t.notOk(fs.existsSync(path.join(dir, 'model.safetensors')), 'nothing under the final name');
  t.equal(fs.statSync(path.join(dir, 'model.safetensors.partial')).size, 200_000, 'the partial keeps what arrived');
  await downloadModel('124M', { mirror: servers.hub, dir, progress: null, retries: 0 });
  expectModel(t, dir);
  t.same(servers.log.filter((r) => r.host === 'files').map((r) => r.range), [undefined, 'bytes=200000-']);
});

t.test('a partial of another version of the file starts over', async (t) => {
  const servers = await startServers();
  t.teardown(servers.close);
  const dir = path.join(t.testdir(), '124M');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial'), Buffer.alloc(1000, 7));
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial.json'), JSON.stringify({ tag: 'an-older-sha256' }));
  await downloadModel('124M', { mirror: servers.hub, dir, progress: null, retryDelayMs: 0 });
  expectModel(t, dir);
  t.same(servers.log.filter((r) => r.host === 'files').map((r) => r.range), ['bytes=1000-', undefined]);
});

t.test('wrong checksums are refused and nothing lands under the final name', async (t) => {
  const servers = await startServers({ corruptWeights: true });
  t.teardown(servers.close);
  const dir = path.join(t.testdir(), '124M');
  await t.rejects(downloadModel('124M', { mirror: servers.hub, dir, progress: null }),
    new RegExp(`model\\.safetensors: sha256 [0-9a-f]{64} does not match the announced ${WEIGHTS_SHA256}; the download was discarded`));
  t.same(fs.readdirSync(dir).sort(), ['config.json', 'merges.txt', 'vocab.json'], 'no weights, no partial');

  const bad = await startServers({ wrongEtag: '0123456789abcdef0123456789abcdef01234567' });
  t.teardown(bad.close);
  const dir2 = path.join(t.testdir(), 'x');
  await t.rejects(downloadModel('124M', { mirror: bad.hub, dir: dir2, progress: null }), /vocab\.json: git blob sha1 [0-9a-f]{40} does not match the ETag 0123456789abcdef/);
  t.notOk(fs.existsSync(path.join(dir2, 'vocab.json')));
  t.notOk(fs.existsSync(path.join(dir2, 'vocab.json.partial')));

  // Size: the file host sends fewer bytes than the hub announced, then closes cleanly.
  const short = http.createServer((_req, res) => res.writeHead(200, { 'x-linked-size': '100' }).end(Buffer.alloc(60)));
  const base = await listen(short);
  t.teardown(() => new Promise((r) => short.close(r)));
  const dest = path.join(t.testdir(), 'f.bin');
  await t.rejects(fetchFile(`${base}/f.bin`, dest, { progress: null, retries: 1, retryDelayMs: 0 }), /the transfer ended at byte 60 of 100/);
  t.notOk(fs.existsSync(dest));
});

t.test('a missing file or repository, and no network, give clear errors', async (t) => {
  const servers = await startServers({ missingRepo: true });
  t.teardown(servers.close);
  const dir = path.join(t.testdir(), '124M');
  await t.rejects(downloadModel('124M', { mirror: servers.hub, dir, progress: null }),
    /\/openai-community\/gpt2\/resolve\/main\/config\.json: not found \(HTTP 404\): is http:\/\/127\.0\.0\.1:\d+ a Hugging Face hub or a mirror of one\?/);
  t.notOk(fs.existsSync(dir), 'no empty model folder left behind');

  const closed = http.createServer();
  const dead = await listen(closed);
  await new Promise((r) => closed.close(r));
  const started = process.hrtime.bigint();
  await t.rejects(downloadModel('124M', { mirror: dead, dir, progress: null }), /cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): no network\? Use --mirror URL, or set DIXIE_MIRROR or HF_ENDPOINT/);
  t.ok(process.hrtime.bigint() - started < 5_000_000_000n, 'without retrying for long');
  await t.rejects(downloadModel('gpt3', { mirror: dead }), /unknown model "gpt3": the GPT-2 releases are 124M \(gpt2\), 355M \(gpt2-medium\)/);
  t.throws(() => hubBase('ftp://x'), /must be an http\(s\) URL/);
  t.throws(() => hubBase('not a url'), /is not a URL/);
});

t.test('the mirror comes from --mirror, DIXIE_MIRROR, then HF_ENDPOINT', async (t) => {
  const saved = [process.env.DIXIE_MIRROR, process.env.HF_ENDPOINT];
  t.teardown(() => {
    for (const [key, value] of [['DIXIE_MIRROR', saved[0]], ['HF_ENDPOINT', saved[1]]] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });
  delete process.env.DIXIE_MIRROR;
  delete process.env.HF_ENDPOINT;
  t.equal(hubBase(), 'https://huggingface.co');
  process.env.HF_ENDPOINT = 'https://hf-mirror.example/';
  t.equal(hubBase(), 'https://hf-mirror.example');
  process.env.DIXIE_MIRROR = 'http://10.0.0.1:8080/hub';
  t.equal(hubBase(), 'http://10.0.0.1:8080/hub');
  t.equal(hubBase('http://127.0.0.1:1'), 'http://127.0.0.1:1');
});

t.test('progress lines', async (t) => {
  t.equal(formatProgress('124M/model.safetensors', 250e6, 500e6, 10e6), '124M/model.safetensors  50% [############------------] 250 MB / 500 MB  10.0 MB/s  ETA 0:25');
  t.equal(formatProgress('f', 1500, null, 0), 'f  1.5 kB  0 B/s');
  t.match(formatProgress('f', 0, 6e9, 0), /ETA --:--$/);
  t.match(formatProgress('f', 0, 6e9, 1e6), /ETA 1:40:00$/);
});

t.test('bin/download-model', async (t) => {
  const servers = await startServers();
  t.teardown(servers.close);
  const models = t.testdir();
  const run = (args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> => new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'download-model'), ...args], { env: { ...process.env, ...env } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('close', (code) => resolve({ code, stderr }));
  });
  const ok = await run(['gpt2'], { DIXIE_MODELS_DIR: models, DIXIE_MIRROR: servers.hub });
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stderr, /124M: GPT-2 with 2 layers, 4 heads, 64 channels, context 64, vocabulary 256/);
  expectModel(t, path.join(models, '124M'));
  // The original tools' README names the releases 117M and 345M, as OpenAI first did.
  const oldNames = path.join(models, 'old-names');
  const old = await run(['117M'], { DIXIE_MODELS_DIR: oldNames, DIXIE_MIRROR: servers.hub });
  t.equal(old.code, 0, old.stderr);
  t.match(old.stderr, /^117M is OpenAI's old name of the release now called 124M: downloading 124M\n/);
  expectModel(t, path.join(oldNames, '124M'));
  // Beside the original tools' own download of that name, the download is still 124M's, and says so.
  fs.mkdirSync(path.join(oldNames, '117M'));
  const beside = await run(['117M'], { DIXIE_MODELS_DIR: oldNames, DIXIE_MIRROR: servers.hub });
  t.match([beside.code, beside.stderr], [0, /^117M is OpenAI's old name of the release now called 124M: downloading 124M\n/]);
  const bad = await run(['gpt2-xl', '--mirror', servers.hub], { DIXIE_MODELS_DIR: models });
  t.equal(bad.code, 1);
  t.match(bad.stderr, /^download-model: .*gpt2-xl\/resolve\/main\/config\.json: not found \(HTTP 404\)/);
  // No network: the folders the download made (models/355M/, or models/ itself) go again; those that were there stay.
  const offline = await run(['355M', '--mirror', 'http://127.0.0.1:1'], { DIXIE_MODELS_DIR: models });
  t.match([offline.code, offline.stderr], [1, /^download-model: cannot reach http:\/\/127\.0\.0\.1:1 .*: no network\?/]);
  t.same(fs.readdirSync(models).sort(), ['124M', 'old-names'], 'models/ and its models kept, no models/355M/ left behind');
  const parent = path.join(models, 'elsewhere');
  fs.mkdirSync(parent);
  const fresh = await run(['355M', '--mirror', 'http://127.0.0.1:1'], { DIXIE_MODELS_DIR: path.join(parent, 'models') });
  t.equal(fresh.code, 1, fresh.stderr);
  t.same(fs.readdirSync(parent), [], 'no models/ left behind');
});

t.test('a disk that fills up is said as the file that did not fit, not retried, and the next run resumes', async (t) => {
  const servers = await startServers();
  t.teardown(servers.close);
  const models = t.testdir();
  const dir = path.join(models, '124M');
  const launcher = path.join(ROOT, 'bin', 'download-model');
  const run = (limit: number | 'unlimited'): Promise<{ code: number | null; stderr: string }> => new Promise((resolve) => {
    const limited = withFileSizeLimit(limit, [process.execPath, launcher, '124M', '--retries', '3'], { DIXIE_MODELS_DIR: models, DIXIE_MIRROR: servers.hub });
    const child = spawn(limited.file, limited.args, { env: limited.env });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('close', (code) => resolve({ code, stderr }));
  });
  const full = await run(64);
  t.equal(full.code, 1, full.stderr);
  const partial = path.join(dir, 'model.safetensors.partial');
  t.equal(full.stderr.split('\n').at(-2), `download-model: ${partial}: EFBIG: file too large, write (what was downloaded is kept: run again to resume once there is room)`);
  t.notMatch(full.stderr, /retrying/);
  t.equal(servers.log.filter((r) => r.host === 'files').length, 1, 'the weights were asked for once');
  t.equal(fs.statSync(partial).size, 64 * 1024, 'the part that fitted is kept');
  t.notOk(fs.existsSync(path.join(dir, 'model.safetensors')));

  const resumed = await run('unlimited');
  t.equal(resumed.code, 0, resumed.stderr);
  t.equal(servers.log.filter((r) => r.host === 'files').at(-1)?.range, `bytes=${64 * 1024}-`, 'the next run resumes where the disk stopped it');
  expectModel(t, dir);
});
