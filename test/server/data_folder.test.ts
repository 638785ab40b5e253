// The fine-tuning folder's state, in this process: a start, or a shutdown, that fails after the server took the
// folder's lock leaves the folder free for the next start; a broken job folder is left out of a start, not fatal to
// it; a job or batch whose record cannot be written is none, and a change to a job that cannot be written is undone.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import * as atomicFile from '../../lib/util/atomic_file';
import { createServer } from '../../lib/server/app';
import { validateServerConfig } from '../../lib/server/config';
import { Batches } from '../../lib/server/batches';
import { FineTuningJobs } from '../../lib/server/fine_tuning';
import { makeModels, startServer, tempDir } from './helpers';

const CHATS = '1|team|Can we meet Monday? <EOM>\n0|team|Sure, 8 works for me. <EOM>\n';

let dir: string;
const raw = { models: [{ key: 'general', restore_from: 'alpha' }], fine_tuning: { dir: 'ft' } };

t.before(async () => {
  dir = tempDir('data-folder');
  await makeModels(dir, { alpha: 1 }, 'Hi', 4);
});
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

// A file of chats to fine-tune on, uploaded.
async function uploadChats(url: string): Promise<{ id: string }> {
  const form = new FormData();
  form.append('purpose', 'fine-tune');
  form.append('file', new Blob([CHATS.repeat(20)]), 'chats.train');
  return (await (await fetch(`${url}/v1/files`, { method: 'POST', body: form })).json()) as { id: string };
}

// A job of many epochs, once running: its id, its status as the API and as job.json say it, a wait for a status, and
// a wait for its next training step.
async function runningJob(url: string): Promise<{ id: string; status: () => Promise<string>; until: (wanted: string) => Promise<void>; onDisk: () => string; nextStep: () => Promise<void> }> {
  const file = await uploadChats(url);
  const created = await fetch(`${url}/v1/fine_tuning/jobs`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'general', training_file: file.id, hyperparameters: { n_epochs: 1000 } }),
  });
  const { id } = (await created.json()) as { id: string };
  const status = async (): Promise<string> => ((await (await fetch(`${url}/v1/fine_tuning/jobs/${id}`)).json()) as { status: string }).status;
  const until = async (wanted: string): Promise<void> => {
    while (await status() !== wanted) await new Promise((r) => setTimeout(r, 20));
  };
  const onDisk = (): string => (JSON.parse(fs.readFileSync(path.join(dir, 'ft', 'jobs', id, 'job.json'), 'utf8')) as { job: { status: string } }).job.status;
  const steps = (): Promise<number> => fetch(`${url}/v1/fine_tuning/jobs/${id}/events?limit=100`).then(async (r) => ((await r.json()) as { data: { type: string }[] }).data.filter((e) => e.type === 'metrics').length);
  const nextStep = async (): Promise<void> => {
    const before = await steps();
    while (await steps() === before) await new Promise((r) => setTimeout(r, 20));
  };
  await until('running');
  return { id, status, until, onDisk, nextStep };
}

// The atomic writes of the server's records, which a test replaces to fail or hold job.json's.
const writeTextAtomic = atomicFile.writeTextAtomic;
const patched = atomicFile as { writeTextAtomic: typeof writeTextAtomic };
// The error of a write to a full disk; and every write of the record `file` failing with it, until writeTextAtomic
// is put back.
const noSpace = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
function failWritesOf(file: string): void {
  patched.writeTextAtomic = (target, text) => (path.basename(target) === file ? Promise.reject(noSpace()) : writeTextAtomic(target, text));
}

// A batch's input of one completion, uploaded; and a batch of it created.
async function uploadBatchInput(url: string): Promise<{ id: string }> {
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([`${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/completions', body: { model: 'general', prompt: 'Hi', max_tokens: 2 } })}\n`]), 'requests.jsonl');
  return (await (await fetch(`${url}/v1/files`, { method: 'POST', body: form })).json()) as { id: string };
}
function createBatch(url: string, inputFileId: string): Promise<Response> {
  return fetch(`${url}/v1/batches`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input_file_id: inputFileId, endpoint: '/v1/completions', completion_window: '24h' }),
  });
}

t.test('a start that fails after taking the folder\'s lock releases it: this process starts a server there again', async (t) => {
  // A file where the jobs' folder goes: the start cannot make it.
  const jobsDir = path.join(dir, 'ft', 'jobs');
  fs.mkdirSync(path.dirname(jobsDir), { recursive: true });
  fs.writeFileSync(jobsDir, '');
  const config = validateServerConfig(raw, 'test config', dir);
  t.throws(() => createServer(config, { log: () => undefined }), { code: 'EEXIST' });
  t.notOk(fs.existsSync(path.join(dir, 'ft', '.dixie.lock')), 'the lock released');

  fs.rmSync(jobsDir);
  const srv = await startServer(raw, dir);
  t.equal((await fetch(`${srv.url}/v1/fine_tuning/jobs`)).status, 200);
  await srv.close();
});

// A job's folder that is broken (a journal of renames that is none, a job.json cut short or not a job's) is left out
// with a warning naming it, and the others are served; a folder a kill left before its job.json was written is removed.
t.test('a broken job folder is left out with a warning; the others are served; one a kill left empty is removed', async (t) => {
  const jobsDir = path.join(dir, 'ft', 'jobs');
  const job = (id: string): string => JSON.stringify({ job: { id, status: 'cancelled', created_at: 1 }, plan: null });
  const folders: Record<string, Record<string, string>> = {
    'ftjob-good': { 'job.json': job('ftjob-good') },
    'ftjob-journal': { 'job.json': job('ftjob-journal'), [atomicFile.RENAMES_FILE]: '{}' },
    'ftjob-cut': { 'job.json': job('ftjob-cut').slice(0, 20) },
    'ftjob-null': { 'job.json': 'null' },
    'ftjob-other': { 'job.json': job('ftjob-good') },
    'ftjob-stray': { 'notes.txt': 'mine' },
    'ftjob-killed': { [`.job.json.${2 ** 22 + 1}.0123456789ab.tmp`]: '{"jo' },
  };
  for (const [id, files] of Object.entries(folders)) {
    fs.mkdirSync(path.join(jobsDir, id), { recursive: true });
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(jobsDir, id, name), text);
  }
  const srv = await startServer(raw, dir);
  t.teardown(() => fs.rmSync(jobsDir, { recursive: true, force: true }));
  const listed = ((await (await fetch(`${srv.url}/v1/fine_tuning/jobs`)).json()) as { data: { id: string }[] }).data.map((j) => j.id);
  await srv.close();
  t.same(listed, ['ftjob-good']);
  const warned = (id: string): Record<string, unknown> | undefined => srv.logs.find((l) => l.level === 'warn' && String(l.file ?? l.folder).includes(id));
  t.match(warned('ftjob-journal'), { msg: /could not be read; it is left out/, error: /not a list of renames/ });
  t.match(warned('ftjob-cut'), { error: /JSON/ });
  t.match(warned('ftjob-null'), { error: /not a fine-tuning job of id ftjob-null/ });
  t.match(warned('ftjob-other'), { error: /not a fine-tuning job of id ftjob-other/ });
  t.match(warned('ftjob-stray'), { msg: /without job\.json is not a fine-tuning job/, files: ['notes.txt'] });
  t.match(warned('ftjob-killed'), { msg: /stopped before its job\.json was written.*removed/ });
  t.same(fs.readdirSync(jobsDir).sort(), ['ftjob-cut', 'ftjob-good', 'ftjob-journal', 'ftjob-null', 'ftjob-other', 'ftjob-stray'], 'the broken left as they are; the killed one removed');
});

t.test('a shutdown that fails part way releases the folder\'s lock: this process starts a server there again', async (t) => {
  const srv = await startServer(raw, dir);
  const close = FineTuningJobs.prototype.close;
  FineTuningJobs.prototype.close = async function (this: FineTuningJobs) {
    await close.call(this);
    throw new Error('a job did not stop');
  };
  // The batches still writing when the jobs' close fails: the folder is theirs until they stop.
  const closeBatches = Batches.prototype.close;
  let lockedWhileBatchesClosed = false;
  Batches.prototype.close = async function (this: Batches) {
    await closeBatches.call(this);
    await new Promise((r) => setTimeout(r, 200));
    lockedWhileBatchesClosed = fs.existsSync(path.join(dir, 'ft', '.dixie.lock'));
  };
  try {
    await t.rejects(srv.close(), /a job did not stop/);
  } finally {
    FineTuningJobs.prototype.close = close;
    Batches.prototype.close = closeBatches;
  }
  t.ok(lockedWhileBatchesClosed, 'the folder held until the batches stopped');
  t.notOk(fs.existsSync(path.join(dir, 'ft', '.dixie.lock')), 'the lock released');
  const again = await startServer(raw, dir);
  t.equal((await fetch(`${again.url}/v1/fine_tuning/jobs`)).status, 200);
  await again.close();
});

t.test('a job whose job.json cannot be written is answered 507 and is no job: not listed, not trained, no folder', async (t) => {
  const srv = await startServer(raw, dir);
  t.teardown(() => srv.close());
  const file = await uploadChats(srv.url);
  failWritesOf('job.json');
  let created: Response;
  try {
    created = await fetch(`${srv.url}/v1/fine_tuning/jobs`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'general', training_file: file.id }),
    });
  } finally {
    patched.writeTextAtomic = writeTextAtomic;
  }
  t.equal(created.status, 507);
  t.same((await (await fetch(`${srv.url}/v1/fine_tuning/jobs`)).json() as { data: unknown[] }).data, [], 'not listed');
  t.same(fs.readdirSync(path.join(dir, 'ft', 'jobs')), [], 'no folder left');

  const saved = await fetch(`${srv.url}/v1/fine_tuning/jobs`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'general', training_file: file.id }),
  });
  t.equal(saved.status, 200, 'once it can be written, a job is created');
  const { id } = (await saved.json()) as { id: string };
  t.ok(fs.existsSync(path.join(dir, 'ft', 'jobs', id, 'job.json')));
  await fetch(`${srv.url}/v1/fine_tuning/jobs/${id}/cancel`, { method: 'POST' });
});

// A change a client asks for is answered once job.json holds it: while its writes are held, no answer comes.
t.test('a job created, or cancelled, is answered only once its job.json is written', async (t) => {
  const srv = await startServer(raw, dir);
  t.teardown(() => srv.close());
  const file = await uploadChats(srv.url);
  let gate = Promise.resolve();
  let open = (): void => undefined;
  patched.writeTextAtomic = async (target, text) => {
    if (path.basename(target) === 'job.json') await gate;
    return writeTextAtomic(target, text);
  };
  t.teardown(() => {
    patched.writeTextAtomic = writeTextAtomic;
    open();
  });
  // Whether `send`'s answer comes while job.json's writes are held (300 ms), before they are let through.
  const answeredWhileHeld = async (send: () => Promise<Response>): Promise<{ early: boolean; answer: Response }> => {
    gate = new Promise((resolve) => (open = resolve));
    const answer = send();
    const early = await Promise.race([answer.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 300))]);
    open();
    return { early, answer: await answer };
  };

  const created = await answeredWhileHeld(() => fetch(`${srv.url}/v1/fine_tuning/jobs`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'general', training_file: file.id }),
  }));
  t.notOk(created.early, 'no answer to the create before job.json is written');
  const { id } = (await created.answer.json()) as { id: string };
  const jobFile = path.join(dir, 'ft', 'jobs', id, 'job.json');
  t.ok(fs.existsSync(jobFile));

  const cancelled = await answeredWhileHeld(() => fetch(`${srv.url}/v1/fine_tuning/jobs/${id}/cancel`, { method: 'POST' }));
  t.notOk(cancelled.early, 'no answer to the cancel before job.json is written');
  t.equal((await cancelled.answer.json() as { status: string }).status, 'cancelled');
  t.equal((JSON.parse(fs.readFileSync(jobFile, 'utf8')) as { job: { status: string } }).job.status, 'cancelled', 'on disk as answered');
});

// A pause, resume or cancel answered 507 changed nothing: the API says what job.json says, now and after a restart,
// and the job trains on (or stays paused) as it says.
t.test('a change to a job that cannot be saved is undone: the API says what job.json says', async (t) => {
  const srv = await startServer(raw, dir);
  t.teardown(() => srv.close());
  const { id, status, onDisk, nextStep } = await runningJob(srv.url);
  // Sends `change` while job.json cannot be written: it is answered 507.
  const unsaved = async (change: string): Promise<void> => {
    failWritesOf('job.json');
    let answer: Response;
    try {
      answer = await fetch(`${srv.url}/v1/fine_tuning/jobs/${id}/${change}`, { method: 'POST' });
    } finally {
      patched.writeTextAtomic = writeTextAtomic;
    }
    t.equal(answer.status, 507, `${change}: 507`);
  };

  await unsaved('pause');
  t.equal(onDisk(), 'running', 'job.json says running');
  if (t.equal(await status(), 'running', 'a pause not saved: the job is running, as job.json says')) {
    await nextStep();
    t.pass('and it trains on');
  }

  t.equal((await fetch(`${srv.url}/v1/fine_tuning/jobs/${id}/pause`, { method: 'POST' })).status, 200);
  await unsaved('resume');
  t.equal(await status(), 'paused', 'a resume not saved: the job is paused');
  t.equal(onDisk(), 'paused', 'as job.json says');

  await unsaved('cancel');
  t.equal(await status(), 'paused', 'a cancel not saved: the job is paused');
  t.equal(onDisk(), 'paused', 'as job.json says');
  t.equal((await fetch(`${srv.url}/v1/fine_tuning/jobs/${id}/cancel`, { method: 'POST' })).status, 200);
});

t.test('a batch whose batch.json cannot be written is answered 507 and is no batch: not listed, no folder', async (t) => {
  const srv = await startServer(raw, dir);
  t.teardown(() => srv.close());
  const file = await uploadBatchInput(srv.url);
  failWritesOf('batch.json');
  let created: Response;
  try {
    created = await createBatch(srv.url, file.id);
  } finally {
    patched.writeTextAtomic = writeTextAtomic;
  }
  t.equal(created.status, 507);
  t.same((await (await fetch(`${srv.url}/v1/batches`)).json() as { data: unknown[] }).data, [], 'not listed');
  t.same(fs.readdirSync(path.join(dir, 'ft', 'batches')), [], 'no folder left');
});

t.test('a fine-tuned model whose deletion cannot be saved is answered 507 and served on, as job.json says', async (t) => {
  const srv = await startServer(raw, dir);
  t.teardown(() => srv.close());
  const file = await uploadChats(srv.url);
  const created = await fetch(`${srv.url}/v1/fine_tuning/jobs`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'general', training_file: file.id, hyperparameters: { n_epochs: 1 } }),
  });
  const { id } = (await created.json()) as { id: string };
  let job: { status: string; fine_tuned_model: string };
  do {
    await new Promise((r) => setTimeout(r, 50));
    job = (await (await fetch(`${srv.url}/v1/fine_tuning/jobs/${id}`)).json()) as typeof job;
  } while (job.status !== 'succeeded' && job.status !== 'failed');
  t.equal(job.status, 'succeeded');
  failWritesOf('job.json');
  let deleted: Response;
  try {
    deleted = await fetch(`${srv.url}/v1/models/${encodeURIComponent(job.fine_tuned_model)}`, { method: 'DELETE' });
  } finally {
    patched.writeTextAtomic = writeTextAtomic;
  }
  t.equal(deleted.status, 507);
  const served = ((await (await fetch(`${srv.url}/v1/models`)).json()) as { data: { id: string }[] }).data.map((m) => m.id);
  t.ok(served.includes(job.fine_tuned_model), 'served on');
  t.notOk((JSON.parse(fs.readFileSync(path.join(dir, 'ft', 'jobs', id, 'job.json'), 'utf8')) as { modelDeleted?: boolean }).modelDeleted, 'as job.json says');
});

// Two changes in flight on one job, neither saved: the second's "before" is the first's unsaved state, and undoing to
// it would leave the job paused in memory while job.json says running (and a restart trains it).
t.test('a pause, then a cancel, neither saved: the job is as job.json has it, running, and trains on', async (t) => {
  const srv = await startServer(raw, dir);
  t.teardown(() => srv.close());
  const { id, status, until, onDisk, nextStep } = await runningJob(srv.url);
  // job.json's writes fail, the first once both changes are made.
  let release = (): void => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  patched.writeTextAtomic = (target, text) => (path.basename(target) === 'job.json'
    ? held.then(() => Promise.reject(noSpace()))
    : writeTextAtomic(target, text));
  let answers: Response[];
  try {
    const pause = fetch(`${srv.url}/v1/fine_tuning/jobs/${id}/pause`, { method: 'POST' });
    await until('paused');
    const cancel = fetch(`${srv.url}/v1/fine_tuning/jobs/${id}/cancel`, { method: 'POST' });
    await until('cancelled');
    release();
    answers = await Promise.all([pause, cancel]);
  } finally {
    patched.writeTextAtomic = writeTextAtomic;
  }
  t.same(answers.map((a) => a.status), [507, 507]);
  t.equal(onDisk(), 'running', 'job.json says running');
  t.equal(await status(), 'running', 'and so does the API');
  await nextStep();
  t.pass('and it trains on');
  t.equal((await fetch(`${srv.url}/v1/fine_tuning/jobs/${id}/cancel`, { method: 'POST' })).status, 200);
});

t.test('a batch cancelled while it waits its turn, whose files cannot be written, is failed at once, saying why', async (t) => {
  const srv = await startServer(raw, dir);
  t.teardown(() => srv.close());
  const file = await uploadBatchInput(srv.url);
  const create = async (): Promise<string> => ((await (await createBatch(srv.url, file.id)).json()) as { id: string }).id;
  const batchOf = async (id: string): Promise<{ status: string; errors: { data: { message: string }[] } | null }> => (await fetch(`${srv.url}/v1/batches/${id}`)).json() as never;
  // The first batch is held at its last writes, so that the second waits its turn; the second's writes fail once it
  // is cancelled (its creation's and its cancellation's are kept).
  let firstHeld = (): void => undefined;
  const held = new Promise<void>((resolve) => (firstHeld = resolve));
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  const ids: string[] = [];
  let secondWrites = 0;
  patched.writeTextAtomic = async (target, text) => {
    const id = path.basename(path.dirname(target));
    if (path.basename(target) === 'batch.json' && id === ids[0]) {
      firstHeld();
      await released;
    } else if (path.basename(target) === 'batch.json' && id === ids[1] && ++secondWrites > 2) {
      throw noSpace();
    }
    return writeTextAtomic(target, text);
  };
  try {
    ids.push(await create());
    await held;
    ids.push(await create());
    const cancelled = await fetch(`${srv.url}/v1/batches/${ids[1]}/cancel`, { method: 'POST' });
    t.equal(cancelled.status, 200, 'the cancellation is kept');
    const second = await batchOf(ids[1]);
    t.equal(second.status, 'failed', 'and the batch failed, not finalizing for ever');
    t.match(second.errors?.data[0].message, /ENOSPC/, 'saying why');
  } finally {
    release();
    patched.writeTextAtomic = writeTextAtomic;
  }
  while ((await batchOf(ids[0])).status !== 'completed') await new Promise((r) => setTimeout(r, 20));
});
