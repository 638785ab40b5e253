// bin/serve as a child process: graceful SIGTERM (requests in flight finish, new ones are refused, exit 0), SIGHUP
// (the config read again; refused while ./server_config.json is missing), both while the server starts, where to
// connect said to a terminal (and not into a pipe), the message when there is nothing to serve or the port is taken, an upload that the disk
// has no room for, a fine-tuning job whose events cannot be written, a second server on one fine-tuning folder, and
// a server killed (SIGKILL) just after it answered a change to a job, the flags that set a config's fields, and API
// keys given without a config (--api_key_file, DIXIE_API_KEYS).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import t, { type Test } from 'tap';
import { makeModels, tempDir } from './helpers';
import { withFileSizeLimit } from '../helpers/file_size_limit';

const SERVE = path.resolve(__dirname, '..', '..', '..', 'bin', 'serve');
const PROMPT = 'How big is the earth?';
const LENGTH = 60;

interface Child {
  proc: ChildProcess;
  lines: Record<string, unknown>[];
  stderr: string[];
  exited: Promise<number | null>;
}

// fileSizeLimitKib: the server as on a disk with that much room for a file.
function serve(args: string[], cwd: string, fileSizeLimitKib: number | 'unlimited' = 'unlimited', env: NodeJS.ProcessEnv = {}): Child {
  const command = withFileSizeLimit(fileSizeLimitKib, [process.execPath, SERVE, ...args], { DIXIE_MODELS_DIR: '', ...env });
  const proc = spawn(command.file, command.args, { cwd, env: command.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  readline.createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  (proc.stderr as NodeJS.ReadableStream).on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, lines, stderr, exited };
}

async function waitFor<T>(what: () => T | undefined, child: Child): Promise<T> {
  for (;;) {
    const found = what();
    if (found !== undefined) return found;
    if (child.proc.exitCode !== null) throw new Error(`bin/serve exited: ${child.stderr.join('')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('SIGTERM: requests in flight finish, new ones are refused, the process exits 0', async (t) => {
  const dir = tempDir('sigterm');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const expected = await makeModels(dir, { alpha: 1 }, PROMPT, LENGTH);
  const config = path.join(dir, 'server_config.json');
  fs.writeFileSync(config, JSON.stringify({ port: 0, models: [{ key: 'general', restore_from: 'alpha', sampling: { temperature: 0, penalize: 0, length: LENGTH } }] }));
  const child = serve(['--config', config], dir);
  t.teardown(() => {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  const listening = await waitFor(() => child.lines.find((l) => l.msg === 'listening'), child);
  const url = `http://127.0.0.1:${listening.port as number}`;
  t.equal(listening.pid, child.proc.pid, 'the pid to signal, in the log');
  t.notMatch(child.stderr.join(''), /chat page/, 'into a pipe, no words for a terminal');

  // Three requests decoding when the signal comes: each has shown its first piece.
  const streams = await Promise.all([0, 1, 2].map(async () => {
    const res = await fetch(`${url}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model_key: 'general', raw_text: PROMPT, stream: true }) });
    const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
    const first = await reader.read();
    return { reader, text: first.value ?? '' };
  }));
  child.proc.kill('SIGTERM');
  await waitFor(() => child.lines.find((l) => l.msg === 'shutting down: finishing requests in flight'), child);

  let refused: string;
  try {
    const late = await fetch(`${url}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model_key: 'general', raw_text: PROMPT }) });
    refused = `status ${late.status}`;
  } catch (err) {
    refused = ((err as Error).cause as { code?: string } | undefined)?.code ?? 'fetch failed';
  }
  t.match(refused, /^(ECONNREFUSED|ECONNRESET|status 503)$/, `a new request is refused (${refused})`);

  for (const s of streams) {
    let text = s.text;
    for (let r = await s.reader.read(); !r.done; r = await s.reader.read()) text += r.value;
    const done = /event: done\ndata: (.*)\n/.exec(text);
    t.ok(done, 'the request in flight finished');
    const j = JSON.parse(done?.[1] ?? '{}') as Record<string, unknown>;
    t.equal(j.finish_reason, 'length');
    t.equal(j.text, expected.alpha, 'with its whole answer');
  }
  t.equal(await child.exited, 0);
  t.ok(child.lines.some((l) => l.msg === 'stopped'));
});

t.test('SIGHUP: the config read again, its models served without a stop; a broken one logged and left alone', async (t) => {
  const dir = tempDir('sighup');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const expected = await makeModels(dir, { alpha: 1, beta: 3 }, PROMPT, 4);
  const config = path.join(dir, 'server_config.json');
  const models = (...names: string[]) => names.map((name) => ({ key: name, restore_from: name, sampling: { temperature: 0, penalize: 0, length: 4 } }));
  fs.writeFileSync(config, JSON.stringify({ port: 0, models: models('alpha') }));
  const child = serve([], dir);
  t.teardown(() => {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  const listening = await waitFor(() => child.lines.find((l) => l.msg === 'listening'), child);
  const url = `http://127.0.0.1:${listening.port as number}`;
  const ask = async (model: string) => {
    const res = await fetch(`${url}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model_key: model, raw_text: PROMPT }) });
    return `${res.status} ${await res.text()}`;
  };
  t.match(await ask('beta'), /^404 /);

  fs.writeFileSync(config, JSON.stringify({ port: 0, models: models('alpha', 'beta') }));
  child.proc.kill('SIGHUP');
  t.match(await waitFor(() => child.lines.find((l) => l.msg === 'config reloaded'), child), { added: ['beta'], removed: [], replaced: [] });
  t.equal(await ask('beta'), `200 ${expected.beta}`, 'the model added answers');

  fs.writeFileSync(config, '{"models": [');
  child.proc.kill('SIGHUP');
  const refused = await waitFor(() => child.lines.find((l) => l.msg === 'config not reloaded: the models stay as they were'), child);
  t.match(refused, { level: 'error', error: /server_config\.json/ }, 'the file named');
  t.equal(await ask('alpha'), `200 ${expected.alpha}`, 'serving on');
  t.equal(await ask('beta'), `200 ${expected.beta}`);
  child.proc.kill('SIGTERM');
  t.equal(await child.exited, 0);
});

t.test('SIGHUP while ./server_config.json is missing (an editor\'s save, a deploy rewriting it): refused, the keys kept', async (t) => {
  const dir = tempDir('sighup-missing');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, PROMPT, 1);
  const config = path.join(dir, 'server_config.json');
  fs.writeFileSync(config, JSON.stringify({ port: 0, api_keys: ['a-key-of-sixteen-characters'], models: [{ key: 'alpha', restore_from: 'alpha' }] }));
  const child = serve([], dir);
  t.teardown(() => {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  const listening = await waitFor(() => child.lines.find((l) => l.msg === 'listening'), child);
  fs.renameSync(config, `${config}.saving`);
  child.proc.kill('SIGHUP');
  const refused = await waitFor(() => child.lines.find((l) => l.msg === 'config not reloaded: the models stay as they were'), child);
  t.match(refused, { level: 'error', error: /server_config\.json: cannot read: ENOENT/ }, 'the file read again, and why it could not be');
  const open = await fetch(`http://127.0.0.1:${listening.port as number}/v1/models`);
  t.equal(open.status, 401, 'a key still asked for');
  child.proc.kill('SIGTERM');
  t.equal(await child.exited, 0);
});

t.test('signals while the server starts: a SIGHUP reloads once it is up, a SIGTERM stops it then', async (t) => {
  const dir = tempDir('early-signals');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, PROMPT, 1);
  // A sanitizer that holds the start until the test says: the start is under way while it waits.
  const started = path.join(dir, 'started');
  const go = path.join(dir, 'go');
  fs.writeFileSync(path.join(dir, 'slow.js'), `const fs = require('fs');
fs.writeFileSync(${JSON.stringify(started)}, '');
while (!fs.existsSync(${JSON.stringify(go)})) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
exports.sanitize = (text) => text;
`);
  const start = async (signal: NodeJS.Signals) => {
    fs.rmSync(started, { force: true });
    fs.rmSync(go, { force: true });
    const child = serve(['--model', 'alpha', '--sanitizer', './slow.js', '--port', '0'], dir);
    t.teardown(() => {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    });
    await waitFor(() => (fs.existsSync(started) ? true : undefined), child);
    child.proc.kill(signal);
    fs.writeFileSync(go, '');
    return child;
  };
  const hup = await start('SIGHUP');
  t.match(await waitFor(() => hup.lines.find((l) => l.msg === 'config reloaded'), hup), { added: [], removed: [], replaced: [] }, 'reloaded once up');
  // Handled (not the default action, which ends the process) as soon as the start lets a handler run: by then the
  // server is most often up.
  t.ok(hup.lines.some((l) => /^SIGHUP received/.test(String(l.msg))), 'logged');
  hup.proc.kill('SIGTERM');
  t.equal(await hup.exited, 0);

  const term = await start('SIGTERM');
  t.equal(await term.exited, 0, 'stopped as a running server stops');
  t.ok(term.lines.some((l) => /^SIGTERM received/.test(String(l.msg))));
  t.ok(term.lines.some((l) => l.msg === 'stopped'));
});

// bin/serve of the tiny model as "general", with fine-tuning on (in dir/fine-tuning), as on a disk with
// `fileSizeLimitKib` of room for a file; stopped at the end of test `t`.
async function serveWithFineTuning(t: Test, name: string, fileSizeLimitKib: number | 'unlimited' = 'unlimited'): Promise<{ dir: string; child: Child; url: string }> {
  const dir = tempDir(name);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, PROMPT, LENGTH);
  fs.writeFileSync(path.join(dir, 'server_config.json'), JSON.stringify({ port: 0, models: [{ key: 'general', restore_from: 'alpha' }] }));
  const child = serveFineTuningIn(t, dir, fileSizeLimitKib);
  return { dir, child, url: await listeningAt(child) };
}

// bin/serve started again on the folder serveWithFineTuning made.
function serveFineTuningIn(t: Test, dir: string, fileSizeLimitKib: number | 'unlimited' = 'unlimited'): Child {
  const child = serve(['--config', path.join(dir, 'server_config.json'), '--fine_tuning', path.join(dir, 'fine-tuning')], dir, fileSizeLimitKib);
  t.teardown(() => {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  return child;
}

async function listeningAt(child: Child): Promise<string> {
  const listening = await waitFor(() => child.lines.find((l) => l.msg === 'listening'), child);
  return `http://127.0.0.1:${listening.port as number}`;
}

async function killed(child: Child): Promise<void> {
  child.proc.kill('SIGKILL');
  await child.exited;
}

async function uploadChats(url: string, text: string): Promise<globalThis.Response> {
  const form = new FormData();
  form.append('purpose', 'fine-tune');
  form.append('file', new Blob([text]), 'chats.train');
  return fetch(`${url}/v1/files`, { method: 'POST', body: form });
}

const CHATS = '1|team|Can we meet Monday? <EOM>\n0|team|Sure, 8 works for me. <EOM>\n';

t.test('a second server on a fine-tuning folder is refused, naming the server that holds it; one killed leaves it to the next', async (t) => {
  const { dir, child: first } = await serveWithFineTuning(t, 'two-servers');
  const second = serveFineTuningIn(t, dir);
  t.equal(await Promise.race([second.exited, listeningAt(second).then(() => 'listening', () => second.exited)]), 1, 'the second exits, never listening');
  const lock = path.join(dir, 'fine-tuning', '.dixie.lock');
  t.equal(second.stderr.join(''), `serve: ${path.join(dir, 'fine-tuning')} is in use by process ${first.proc.pid} (a server), which is writing there: a server is refused (run it again when that is done; the lock is ${lock}: remove it if that process is not dixie's)\n`);
  t.equal((await fetch(`${await listeningAt(first)}/v1/files`)).status, 200, 'the first serves on');

  await killed(first);
  const third = serveFineTuningIn(t, dir);
  await listeningAt(third);
  t.match(third.lines.find((l) => l.level === 'warn'), { msg: `${lock}: taken over from process ${first.proc.pid} (a server), which is no longer running` });
  third.proc.kill('SIGTERM');
  t.equal(await third.exited, 0);
  t.notOk(fs.existsSync(lock), 'a server stopped releases it');
});

t.test('a fine-tuning job created, or cancelled, is kept so by a server killed just after it answered; a write the kill cut short leaves no temporary file', async (t) => {
  const { dir, child } = await serveWithFineTuning(t, 'kill-after-answer');
  let url = await listeningAt(child);
  const file = (await (await uploadChats(url, CHATS.repeat(20))).json()) as { id: string };
  const created = await fetch(`${url}/v1/fine_tuning/jobs`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'general', training_file: file.id, hyperparameters: { n_epochs: 1000 } }),
  });
  const { id } = (await created.json()) as { id: string };
  await killed(child);

  const restarted = serveFineTuningIn(t, dir);
  url = await listeningAt(restarted);
  t.equal((await fetch(`${url}/v1/fine_tuning/jobs/${id}`)).status, 200, 'the job created is there');
  const cancel = await fetch(`${url}/v1/fine_tuning/jobs/${id}/cancel`, { method: 'POST' });
  t.match(await cancel.json(), { id, status: 'cancelled' });
  await killed(restarted);
  // What a kill in the middle of a write of job.json leaves: the killed server's temporary file.
  const torn = path.join(dir, 'fine-tuning', 'jobs', id, `.job.json.${restarted.proc.pid}.0123456789ab.tmp`);
  fs.writeFileSync(torn, '{"job": {"status": "runn');

  url = await listeningAt(serveFineTuningIn(t, dir));
  t.match(await (await fetch(`${url}/v1/fine_tuning/jobs/${id}`)).json(), { id, status: 'cancelled' }, 'cancelled, and not trained again');
  t.notOk(fs.existsSync(torn), "the killed server's temporary file is removed");
});

t.test('an upload the disk has no room for: a 507 that says so, nothing kept, and the server serves on', async (t) => {
  const { dir, child, url } = await serveWithFineTuning(t, 'disk-full', 64);
  const tooBig = await uploadChats(url, CHATS.repeat(2000));
  t.equal(tooBig.status, 507);
  t.same(await tooBig.json(), { error: { message: "the server has no room left to write this request's files (EFBIG): nothing of it was kept; try again once room is made", type: 'server_error', param: null, code: null } });
  t.match(child.lines.find((l) => l.msg === 'out of disk space'), { path: '/v1/files', error: /fine-tuning.*: EFBIG: file too large, write$/ }, 'the log names the file');
  t.same(fs.readdirSync(path.join(dir, 'fine-tuning', 'files')), [], 'nothing kept on disk');

  const fits = await uploadChats(url, CHATS);
  t.equal(fits.status, 200, 'an upload that fits is kept');
  const list = (await (await fetch(`${url}/v1/files`)).json()) as { data: { filename: string }[] };
  t.same(list.data.map((f) => f.filename), ['chats.train']);
});

t.test('a fine-tuning job whose events cannot be written trains on, and the server serves on', async (t) => {
  const { dir, child, url } = await serveWithFineTuning(t, 'job-events');
  const file = (await (await uploadChats(url, CHATS.repeat(20))).json()) as { id: string };
  const created = await fetch(`${url}/v1/fine_tuning/jobs`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'general', training_file: file.id, hyperparameters: { n_epochs: 1 } }),
  });
  const { id } = (await created.json()) as { id: string };
  // A folder where the job's event log is: each append fails from here on, as on a full disk. An event the job
  // appends between the removal and the mkdir makes the file again, so it is removed again.
  const events = path.join(dir, 'fine-tuning', 'jobs', id, 'events.jsonl');
  for (;;) {
    fs.rmSync(events, { force: true });
    try {
      fs.mkdirSync(events);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const unwritten = await waitFor(() => child.lines.find((l) => l.msg === 'a fine-tuning job event could not be written'), child);
  t.match(unwritten, { job: id, error: /^EISDIR: .*events\.jsonl/ }, 'logged, the file named');
  let status = 'validating_files';
  while (!['succeeded', 'failed', 'cancelled'].includes(status)) {
    await new Promise((r) => setTimeout(r, 50));
    status = ((await (await fetch(`${url}/v1/fine_tuning/jobs/${id}`)).json()) as { status: string }).status;
  }
  t.equal(status, 'succeeded', 'the job trains to its end');
  t.equal((await fetch(`${url}/v1/models`)).status, 200, 'the server serves on');
});

t.test('at a terminal: where to point a browser and the clients', { skip: !fs.existsSync('/usr/bin/script') && 'no script(1) to give it a terminal' }, async (t) => {
  const dir = tempDir('terminal');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, PROMPT, 4);
  // script(1) runs it on a pseudo-terminal, in a process group of its own to stop at the end.
  const command = [process.execPath, SERVE, '--model', 'alpha', '--port', '0'].map((a) => `'${a}'`).join(' ');
  const proc = spawn('script', ['-qfec', command, '/dev/null'], { cwd: dir, env: { ...process.env, DIXIE_MODELS_DIR: '' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  t.teardown(() => {
    if (proc.exitCode === null) process.kill(-(proc.pid as number), 'SIGKILL');
  });
  let output = '';
  (proc.stdout as NodeJS.ReadableStream).on('data', (d: Buffer) => (output += d.toString()));
  for (let waited = 0; !/Ctrl\+C stops it/.test(output); waited += 20) {
    if (proc.exitCode !== null || waited > 60_000) throw new Error(`bin/serve said no more than: ${output}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const url = /Serving chatbot at (http:\/\/127\.0\.0\.1:\d+)\r?\n/.exec(output)?.[1];
  t.ok(url, `it names the model and its address: ${output}`);
  t.match(output, `chat page       ${url}/`);
  t.match(output, `OpenAI clients  base URL ${url}/v1`);
  t.match(output, `Ollama clients  host ${url}`);
  t.match(output, '  fine-tuning     off: --fine_tuning DIR lets the chat page teach a new bot from a chat app\'s export', 'how to turn fine-tuning on');
  t.match(output, /kill -HUP \d+ reloads the models/, 'how to reload');
  t.notMatch(output, /Authorization/, 'no key to send: the server has no api_keys');
  const ping = await fetch(`${url}/ping`);
  t.equal(await ping.text(), 'Pong!', 'the address it gives answers');
});

t.test('no arguments and nothing to serve: says how to get a model and exits non-zero', async (t) => {
  const dir = tempDir('empty');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const child = serve([], dir);
  t.equal(await child.exited, 1);
  const message = child.stderr.join('');
  t.match(message, /no model to serve/);
  t.match(message, /bin\/download-model 124M/);
  t.match(message, /Quick start/);
});

t.test('a bad config stops the start with the field named', async (t) => {
  const dir = tempDir('badconfig');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'server_config.json'), JSON.stringify({ models: [{ key: 'chatbot', restore_from: 'checkpoint/run1/' }] }));
  const child = serve([], dir);
  t.equal(await child.exited, 1);
  t.match(child.stderr.join(''), /server_config\.json: models\[0\]\.restore_from: .*checkpoint\/run1 does not exist/);
  t.match(child.lines.at(-1), { level: 'error', msg: 'not started', error: /models\[0\]\.restore_from: .*checkpoint\/run1 does not exist/ }, 'and in the JSON log');
});

t.test('--model (or --restore_from, as bin/chat has it) takes a name under models/, as the other commands do, and says how to get one it does not find', async (t) => {
  const dir = tempDir('model-name');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(path.join(dir, 'models'), { tiny: 1 }, PROMPT, 1);
  const child = serve(['--model', 'tiny', '--port', '0'], dir);
  t.teardown(() => {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  const listening = await waitFor(() => child.lines.find((l) => l.msg === 'listening'), child);
  const answer = await fetch(`http://127.0.0.1:${listening.port as number}/v1/models`).then((r) => r.json()) as { data: { id: string }[] };
  t.same(answer.data.map((m) => m.id), ['chatbot'], 'models/tiny served');
  child.proc.kill('SIGTERM');
  t.equal(await child.exited, 0);

  // bin/chat's and bin/generate's flag for a model folder names it too.
  const restored = serve(['--restore_from', path.join('models', 'tiny'), '--port', '0'], dir);
  t.teardown(() => {
    if (restored.proc.exitCode === null) restored.proc.kill('SIGKILL');
  });
  t.match(await waitFor(() => restored.lines.find((l) => l.msg === 'serving model'), restored), { model: 'chatbot' }, '--restore_from');
  restored.proc.kill('SIGTERM');
  t.equal(await restored.exited, 0);

  const missing = serve(['--model', '124M', '--port', '0'], dir);
  t.equal(await missing.exited, 1);
  t.match(missing.stderr.join(''), /^serve: --model 124M: model "124M" not found: no folder .*models[/\\]124M .*; download it with `bin\/download-model 124M`\n$/);
  // As README has it: the folder bin/download-model writes, not downloaded yet.
  const missingFolder = serve(['--model', path.join('models', '124M'), '--port', '0'], dir);
  t.equal(await missingFolder.exited, 1);
  t.equal(missingFolder.stderr.join(''), `serve: --model ${path.join('models', '124M')}: model "${path.join(fs.realpathSync(dir), 'models', '124M')}" not found: no folder ${path.join(fs.realpathSync(dir), 'models', '124M')}; download it with \`bin/download-model 124M\`\n`);
});

t.test('a port another program listens on: the start stops, saying how to serve on another', async (t) => {
  const dir = tempDir('port-taken');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, PROMPT, 1);
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.teardown(() => holder.close());
  const port = (holder.address() as net.AddressInfo).port;
  const child = serve(['--model', 'alpha', '--port', String(port)], dir);
  t.equal(await child.exited, 1);
  const message = `port ${port} on 127.0.0.1 is taken by another program (another bin/serve?): stop it, or serve on another port with --port (or "port" in server_config.json; 0 takes any free port)`;
  t.equal(child.stderr.join(''), `serve: ${message}\n`);
  t.match(child.lines.at(-1), { level: 'error', msg: 'not started', error: message }, 'and in the JSON log');
});

t.test('--threads, --batch_slots and --memory_budget_mb set the config\'s fields of the same name, over a config file\'s, and are checked as they are', async (t) => {
  const dir = tempDir('serve-flags');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, PROMPT, 1);
  fs.writeFileSync(path.join(dir, 'server_config.json'), JSON.stringify({ models: [{ key: 'chatbot', restore_from: 'alpha' }], threads: 1, batch_slots: 2 }));
  const child = serve(['--threads', '3', '--batch_slots', '5', '--port', '0'], dir);
  t.teardown(() => {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  const listening = await waitFor(() => child.lines.find((l) => l.msg === 'listening'), child);
  const url = `http://127.0.0.1:${listening.port as number}`;
  const props = await fetch(`${url}/props`).then((r) => r.json()) as { total_slots: number };
  t.equal(props.total_slots, 5, 'batch_slots');
  // The model's thread pool starts when it loads, for the first generation: the caller and threads - 1 workers.
  const tasks = `/proc/${child.proc.pid as number}/task`;
  const threadsNow = () => fs.readdirSync(tasks).length;
  const before = fs.existsSync(tasks) ? threadsNow() : null;
  const generated = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'chatbot', prompt: PROMPT, max_tokens: 1 }) });
  t.equal(generated.status, 200);
  if (before === null) t.comment('no /proc here: the threads started are not counted');
  else t.equal(threadsNow() - before, 2, 'three threads');
  // A reload reads the file again, the flags still over it: the fields it changed need no restart.
  fs.writeFileSync(path.join(dir, 'server_config.json'), JSON.stringify({ models: [{ key: 'chatbot', restore_from: 'alpha' }], threads: 4, batch_slots: 6 }));
  child.proc.kill('SIGHUP');
  const reloaded = await waitFor(() => child.lines.find((l) => l.msg === 'config reloaded'), child);
  t.same(reloaded.needRestart, [], 'a reload keeps the flags over the file\'s');
  child.proc.kill('SIGTERM');
  t.equal(await child.exited, 0);

  // The tiny model's embeddings alone are 6 MB.
  const small = serve(['--model', 'alpha', '--memory_budget_mb', '1', '--port', '0'], dir);
  t.equal(await small.exited, 1);
  t.match(small.stderr.join(''), /more than the whole memory_budget_mb \(1 MB\)/);
  const many = serve(['--model', 'alpha', '--threads', '2000', '--port', '0'], dir);
  t.equal(await many.exited, 1);
  t.equal(many.stderr.join(''), 'serve: --threads: must be an integer from 0 to 1024 (got 2000)\n');
  t.match(execFileSync(process.execPath, [SERVE, '--help'], { encoding: 'utf8' }), /--threads +CPU threads of each model/);
});

t.test('--api_key_file and DIXIE_API_KEYS: their keys are required, over the config\'s; a bad key is placed, never shown; the file is read again at a reload', async (t) => {
  const dir = tempDir('key-file');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, PROMPT, 1);
  const [OLD, NEW, BAD] = ['old-key-0123456789abcdef', 'new-key-0123456789abcdef', 'short secret'];
  const keys = path.join(dir, 'keys.txt');
  fs.writeFileSync(keys, `# the clients' keys\r\n\r\n${OLD}\r\n`);
  const child = serve(['--model', 'alpha', '--port', '0', '--api_key_file', 'keys.txt'], dir);
  t.teardown(() => {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  const listening = await waitFor(() => child.lines.find((l) => l.msg === 'listening'), child);
  const status = (key?: string) => fetch(`http://127.0.0.1:${listening.port as number}/v1/models`, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } }).then((r) => r.status);
  t.equal(await status(), 401, 'a key asked for');
  t.equal(await status(OLD), 200, 'the file\'s key taken, its comment and blank line skipped');

  // Rotated: the file rewritten with the new key alone, and a reload.
  fs.writeFileSync(keys, `${NEW}\n`);
  child.proc.kill('SIGHUP');
  await waitFor(() => child.lines.find((l) => l.msg === 'config reloaded'), child);
  t.equal(await status(NEW), 200, 'the new key taken at the reload');
  t.equal(await status(OLD), 401, 'the old one refused');
  // A bad line at a reload: refused, the keys as they were.
  fs.writeFileSync(keys, `${NEW}\n${BAD}\n`);
  child.proc.kill('SIGHUP');
  const refused = await waitFor(() => child.lines.find((l) => l.msg === 'config not reloaded: the models stay as they were'), child);
  t.equal(refused.error, `--api_key_file ${keys}:2: must be a key of at least 16 characters without spaces (got a key with a space or other blank at character 6)`);
  t.equal(await status(NEW), 200, 'the keys kept');
  child.proc.kill('SIGTERM');
  t.equal(await child.exited, 0);
  t.notMatch(child.lines.map((l) => JSON.stringify(l)).join('\n'), new RegExp(`${OLD}|${NEW}|${BAD}`), 'no key in the log');

  // At the start, a bad line stops it, placed in the file and not shown.
  fs.writeFileSync(keys, `${OLD}\n\n${BAD}\n`);
  const bad = serve(['--model', 'alpha', '--port', '0', '--api_key_file', keys], dir);
  t.equal(await bad.exited, 1);
  t.equal(bad.stderr.join(''), `serve: --api_key_file ${keys}:3: must be a key of at least 16 characters without spaces (got a key with a space or other blank at character 6)\n`);
  t.notMatch(bad.lines.map((l) => JSON.stringify(l)).join('\n'), BAD, 'nor in the log');

  // DIXIE_API_KEYS, as a container is given its secrets: its keys in place of the config's.
  const CONFIG_KEY = 'config-key-0123456789abc';
  fs.writeFileSync(path.join(dir, 'server_config.json'), JSON.stringify({ port: 0, api_keys: [CONFIG_KEY], models: [{ key: 'alpha', restore_from: 'alpha' }] }));
  const fromEnv = serve([], dir, 'unlimited', { DIXIE_API_KEYS: `${OLD}, ${NEW},` });
  t.teardown(() => {
    if (fromEnv.proc.exitCode === null) fromEnv.proc.kill('SIGKILL');
  });
  const envListening = await waitFor(() => fromEnv.lines.find((l) => l.msg === 'listening'), fromEnv);
  const envStatus = (key?: string) => fetch(`http://127.0.0.1:${envListening.port as number}/v1/models`, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } }).then((r) => r.status);
  t.same([await envStatus(), await envStatus(OLD), await envStatus(NEW), await envStatus(CONFIG_KEY)], [401, 200, 200, 401], 'none: 401; each of DIXIE_API_KEYS: 200; the config\'s: 401');
  fromEnv.proc.kill('SIGTERM');
  t.equal(await fromEnv.exited, 0);
  const badEnv = serve(['--model', 'alpha', '--port', '0'], dir, 'unlimited', { DIXIE_API_KEYS: `${OLD},${BAD}` });
  t.equal(await badEnv.exited, 1);
  t.equal(badEnv.stderr.join(''), 'serve: DIXIE_API_KEYS (key 2 of 2): must be a key of at least 16 characters without spaces (got a key with a space or other blank at character 6)\n');

  // llama.cpp's --api-key: refused, saying where a key goes, without repeating it.
  const onCommandLine = serve(['--model', 'alpha', '--api-key', OLD], dir);
  t.equal(await onCommandLine.exited, 1);
  t.match(onCommandLine.stderr.join(''), /--api_key is not taken: .*\(ps\).*--api_key_file FILE, or set DIXIE_API_KEYS/);
  t.notMatch(onCommandLine.stderr.join(''), OLD);
  t.match(execFileSync(process.execPath, [SERVE, '--help'], { encoding: 'utf8' }), /--api_key_file +API keys clients must send/);
});

t.test('beyond loopback without api_keys: refuses to start, saying how to set them; --insecure lets it try', async (t) => {
  const dir = tempDir('insecure');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, PROMPT, 1);
  const open = serve(['--model', 'alpha', '--host', '0.0.0.0', '--port', '0'], dir);
  t.equal(await open.exited, 1);
  t.match(open.stderr.join(''), /^serve: refusing to listen on 0\.0\.0\.0 without api_keys: .*"api_keys" in server_config\.json.*--insecure/);
  t.same(open.lines.filter((l) => l.msg === 'listening'), [], 'it never listened');
  // 192.0.2.1 (TEST-NET-1) is no address of this machine: past the check, the bind itself fails.
  const insecure = serve(['--model', 'alpha', '--host', '192.0.2.1', '--port', '0', '--insecure'], dir);
  t.equal(await insecure.exited, 1);
  t.match(insecure.stderr.join(''), /EADDRNOTAVAIL/);
  t.match(insecure.lines.at(-1), { level: 'error', msg: 'not started', error: /EADDRNOTAVAIL/ }, 'the JSON log says why, after its lines of the start');
  t.match(execFileSync(process.execPath, [SERVE, '--help'], { encoding: 'utf8' }), /--insecure +listen on an address other than loopback without api_keys/);
});

t.test('a batch whose answers the disk has no room for fails at once, saying why, its answers so far kept; so after a restart', async (t) => {
  // 16 KiB a file: the batch's requests fit, their answers not.
  const { dir, child } = await serveWithFineTuning(t, 'batch-full-disk', 16);
  const url = await listeningAt(child);
  const requests = Array.from({ length: 60 }, (_, i) => JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/completions', body: { model: 'general', prompt: PROMPT, max_tokens: 40 } }));
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([`${requests.join('\n')}\n`]), 'requests.jsonl');
  const file = (await (await fetch(`${url}/v1/files`, { method: 'POST', body: form })).json()) as { id: string };
  const created = await fetch(`${url}/v1/batches`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' }),
  });
  const { id } = (await created.json()) as { id: string };
  await waitFor(() => child.lines.find((l) => l.batch === id && l.level === 'error'), child);
  interface BatchSeen { status: string; failed_at: number | null; request_counts: { completed: number }; errors: { data: { message: string }[] } | null }
  const batch = (await (await fetch(`${url}/v1/batches/${id}`)).json()) as BatchSeen;
  t.equal(batch.status, 'failed', 'failed, not in progress');
  t.type(batch.failed_at, 'number');
  const written = fs.readFileSync(path.join(dir, 'fine-tuning', 'batches', id, 'answered.jsonl'), 'utf8');
  t.ok(written.endsWith('\n'), 'no line cut short at its end');
  const answered = written.split('\n').slice(0, -1);
  t.ok(answered.length > 0 && answered.length < 60, `some answered (${answered.length})`);
  t.equal(batch.request_counts.completed, answered.length, 'counted as written');
  t.match(batch.errors?.data[0].message, new RegExp(`^the batch stopped after ${answered.length} of its 60 requests were answered: EFBIG`));
  t.same(answered.map((line) => (JSON.parse(line) as { response: { status_code: number } }).response.status_code), answered.map(() => 200), 'each line whole');

  await killed(child);
  const again = serveFineTuningIn(t, dir);
  const restarted = (await (await fetch(`${await listeningAt(again)}/v1/batches/${id}`)).json()) as BatchSeen;
  t.same(restarted, batch, 'so after a restart');
  again.proc.kill('SIGTERM');
  t.equal(await again.exited, 0);
});
