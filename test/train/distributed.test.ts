// Data-parallel bin/train under Open MPI's mpirun, on the CPU with the tiny model: 2 ranks x batch 2 (and 4 x 1)
// train to the very weights of 1 rank x batch 4; ZeRO-1 gives the same weights as no sharding; a run killed after a
// checkpoint (which ends the whole job within seconds) resumes to where an uninterrupted run ends, also on another
// number of ranks; one rank's error ends the job naming the rank, as a rank that stops without dying does at the
// collective timeout (a paused job goes on); ranks given other flags or other data than rank 0's (or other weights
// under the same --model_name) end the job at start, naming which, as a run folder another run holds does on every
// rank; ranks that share the encoding of a dataset end with one process's tokens; SIGUSR1 to mpirun stops every rank
// after the same step, as rank 0's metrics log that cannot be written does, with a save.
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { openSafetensors } from '../../lib/formats/safetensors';
import { latestCheckpoint, listCheckpoints, readTrainState } from '../../lib/train/checkpoint';
import { readMetrics } from '../../lib/train/metrics';
import { TrainOptions, train } from '../../lib/train/train';
import { TINY_VOCAB, collect, tinyRun } from './helpers';
import { withFileSizeLimit } from '../helpers/file_size_limit';
import { LOCK_FILE, lockFolder } from '../../lib/util/folder_lock';

const TRAIN = path.join(__dirname, '..', '..', 'bin', 'commands', 'train.js');
// As root (CI), mpirun wants to be told; two ranks on two cores need --oversubscribe where cores are fewer.
const ENV = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' };
const quiet = { log: (): void => undefined };

if (spawnSync('mpirun', ['--version'], { env: ENV }).status !== 0) {
  t.fail('mpirun not found: `npm test` installs Open MPI (test/setup/ensure-package.sh), or run `apt-get install openmpi-bin`');
  process.exit(1);
}

// The command line of a tinyRun's options.
function flags(options: Partial<TrainOptions>): string[] {
  return Object.entries(options).flatMap(([key, value]) => (typeof value === 'boolean' ? (value ? [`--${key}`] : []) : [`--${key}`, String(value)]));
}

interface Job {
  child: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  output: () => string;
}

// mpirun -np <ranks> bin/train, each rank given the flags of its options (MPMD: one app context per rank), and run in
// its folder of workDirs where given (as ranks on machines of their own, each with its own copy of a file); the ranks
// (not mpirun, whose shared memory is files) under a file size limit where one is given.
function mpirun(perRank: Partial<TrainOptions>[], workDirs: string[] = [], fileSizeLimitKib?: number): Job {
  const rankCommand = (command: string[]): string[] => {
    if (fileSizeLimitKib === undefined) return command;
    const limited = withFileSizeLimit(fileSizeLimitKib, command);
    return [limited.file, ...limited.args];
  };
  // threads 0: each rank takes its share of the cores.
  const contexts = perRank.flatMap((o, i) => [
    ...(i > 0 ? [':'] : []),
    '-np', '1',
    ...(workDirs[i] ? ['-wdir', workDirs[i]] : []),
    ...rankCommand([process.execPath, TRAIN, ...flags({ ...o, threads: 0 })]),
  ]);
  const child = spawn('mpirun', ['--oversubscribe', ...contexts], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
  return { child, done, output: () => stdout };
}

async function ranks(n: number, options: Partial<TrainOptions>): Promise<{ stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await mpirun(new Array<Partial<TrainOptions>>(n).fill(options)).done;
  if (code !== 0) throw new Error(`mpirun exited with ${code}:\n${stdout}\n${stderr}`);
  return { stdout, stderr };
}

function until(job: Job, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      if (pattern.test(job.output())) {
        clearInterval(timer);
        resolve();
      }
    }, 20);
    void job.done.then((r) => {
      clearInterval(timer);
      reject(new Error(`mpirun ended (${r.code}) before ${pattern}: ${r.stdout}${r.stderr}`));
    });
  });
}

// The largest difference of two checkpoints' weights, and the tensor it is in: what a failed byte comparison says.
function worstDifference(a: string, b: string): string {
  const fa = openSafetensors(path.join(a, 'model.safetensors'));
  const fb = openSafetensors(path.join(b, 'model.safetensors'));
  let worst = { diff: 0, tensor: '' };
  for (const entry of fa.tensors) {
    const x = fa.readF32(entry.name);
    const y = fb.readF32(entry.name);
    for (let i = 0; i < x.length; i++) if (Math.abs(x[i] - y[i]) > worst.diff) worst = { diff: Math.abs(x[i] - y[i]), tensor: entry.name };
  }
  fa.close();
  fb.close();
  return `worst difference ${worst.diff} in ${worst.tensor || 'none'}`;
}

function same(a: string, b: string, file: string): boolean {
  return fs.readFileSync(path.join(a, file)).equals(fs.readFileSync(path.join(b, file)));
}

function losses(runDir: string): number[] {
  return readMetrics(path.join(runDir, 'metrics.jsonl')).filter((r) => r.type === 'train').map((r) => r.loss as number);
}

t.test('2 ranks x batch 2 train as 1 rank x batch 4; ZeRO-1 gives the same weights as no sharding', async (t) => {
  const dir = t.testdir();
  const common = { stop_after: 5 };
  const checkpoints = path.join(dir, 'checkpoint');
  for (const optimizer of ['adam', 'sgd'] as const) {
    const one = await train(tinyRun(dir, { ...common, optimizer, run_name: `${optimizer}-1`, batch_size: 4 }), quiet);
    const { stdout } = await ranks(2, tinyRun(dir, { ...common, optimizer, run_name: `${optimizer}-2`, batch_size: 2 }));
    t.match(stdout, /data-parallel: 2 ranks .* over Open MPI v[\d.]+ .*; global batch 2 x 1 x 2 = 4 sequences of 32 tokens per step/);
    t.equal((stdout.match(/^\[1 \| /gm) ?? []).length, 1, 'one progress line a step: rank 0 alone reports');
    const a = losses(one.runDir);
    const b = losses(path.join(checkpoints, `${optimizer}-2`));
    t.equal(b.length, 5);
    t.ok(a.every((x, i) => Math.abs(x - b[i]) <= 1e-6 * Math.abs(x)), `${optimizer}: the losses agree within 1e-6 relative (${a} vs ${b})`);
    // Every gradient is a fixed tree over sequences (native/cpu/kernels.h), and each rank holds a subtree of it.
    const two = latestCheckpoint(path.join(checkpoints, `${optimizer}-2`)) as string;
    t.ok(same(one.checkpoint as string, two, 'model.safetensors'), `${optimizer}: every parameter bit for bit (${worstDifference(one.checkpoint as string, two)})`);
  }

  const { stdout } = await ranks(2, tinyRun(dir, { ...common, run_name: 'zero', batch_size: 2, zero: 1 }));
  t.match(stdout, /ZeRO-1: each rank keeps Adam's moments of 1\/2 of the parameters/);
  const plain = latestCheckpoint(path.join(checkpoints, 'adam-2')) as string;
  const zero = latestCheckpoint(path.join(checkpoints, 'zero')) as string;
  t.ok(same(plain, zero, 'model.safetensors'), 'ZeRO-1: the weights are bit for bit those of the unsharded run');
  t.ok(same(plain, zero, 'optimizer.safetensors'), "ZeRO-1: the checkpoint's gathered Adam state too");

  // Four ranks add their sums pairwise, then the pairs: the tree one process takes over four sequences.
  await ranks(4, tinyRun(dir, { ...common, run_name: 'zero-4', batch_size: 1, zero: 1 }));
  const four = latestCheckpoint(path.join(checkpoints, 'zero-4')) as string;
  t.ok(same(plain, four, 'model.safetensors'), '4 ranks x batch 1 with ZeRO-1: the weights of 1 rank x batch 4, bit for bit');
  t.ok(same(plain, four, 'optimizer.safetensors'), 'and its Adam state');
});

t.test('a 2-rank run killed after a checkpoint ends at once, and resumes to where an uninterrupted run ends', async (t) => {
  const dir = t.testdir();
  const options = (run: string): Partial<TrainOptions> & { dataset: string } => tinyRun(dir, { run_name: run, batch_size: 2, zero: 1, save_every: 2, stop_after: 8, max_to_keep: 0 });
  await ranks(2, options('whole'));

  const job = mpirun([options('killed'), options('killed')]);
  await until(job, /saved .*model-4/);
  const rank1 = Number(execFileSync('pgrep', ['-P', String(job.child.pid)]).toString().trim().split('\n')[1]);
  const killed = Date.now();
  process.kill(rank1, 'SIGKILL');
  const { code } = await job.done;
  const seconds = (Date.now() - killed) / 1000;
  t.not(code, 0, `the job ends with a failure status (${code})`);
  t.ok(seconds < 30, `within ${seconds.toFixed(1)} s of the kill`);
  const runDir = path.join(dir, 'checkpoint', 'killed');
  t.ok(listCheckpoints(runDir).some((c) => c.step === 4), 'model-4 is there');

  const resumed = await ranks(2, options('killed'));
  t.match(resumed.stdout, /resuming from .*model-\d+ at step \d+/);
  const a = latestCheckpoint(path.join(dir, 'checkpoint', 'whole')) as string;
  const b = latestCheckpoint(runDir) as string;
  t.equal(path.basename(b), 'model-8');
  t.ok(same(a, b, 'model.safetensors'), 'the weights are bit for bit those of the uninterrupted run');
  t.ok(same(a, b, 'optimizer.safetensors'), 'and so is the Adam state');

  // One rank of batch 4 goes on from the 2-rank checkpoint on the same sequences (the global batch is the same): the
  // checkpoint copied into a run of its own, which resumes it.
  fs.cpSync(path.join(runDir, 'model-4'), path.join(dir, 'checkpoint', 'single', 'model-4'), { recursive: true });
  const single = await train({ ...options('killed'), batch_size: 4, zero: 0, run_name: 'single' }, quiet);
  t.equal(single.step, 8);
  const x = losses(path.join(dir, 'checkpoint', 'whole')).slice(4);
  const y = losses(single.runDir).slice(-4);
  t.ok(x.every((v, i) => Math.abs(v - y[i]) <= 1e-6 * v), `1 rank resumes a 2-rank run: losses ${y} match ${x}`);
  t.ok(same(a, single.checkpoint as string, 'model.safetensors'), 'and ends with the weights of the 2-rank run, bit for bit');
});

t.test('a rank that stops without dying ends the job at the collective timeout, the other naming it', async (t) => {
  const dir = t.testdir();
  const job = mpirun(new Array(2).fill(tinyRun(dir, { batch_size: 2, collective_timeout: 5 })));
  await until(job, /^\[3 \| /m);
  const rank1 = Number(execFileSync('pgrep', ['-P', String(job.child.pid)]).toString().trim().split('\n')[1]);
  process.kill(rank1, 'SIGSTOP');
  const { code, stderr } = await job.done;
  t.not(code, 0, `the job ends with a failure status (${code})`);
  t.match(stderr, /dixie: rank 0: \S+ has waited \d+ s for rank 1 \(--collective_timeout\); it has stopped without dying: ending the job/);
  t.notMatch(stderr, /dixie: rank 1: .* has waited/, "rank 1, woken by mpirun to be ended, does not count the time it was stopped as waiting for rank 0's");
});

t.test('a job whose ranks are paused (SIGSTOP, as a batch system suspends a job) longer than the collective timeout goes on when continued', async (t) => {
  const dir = t.testdir();
  const job = mpirun(new Array(2).fill(tinyRun(dir, { batch_size: 2, save_on_ctrlc: true, collective_timeout: 5 })));
  await until(job, /^\[3 \| /m);
  const [rank0, rank1] = execFileSync('pgrep', ['-P', String(job.child.pid)]).toString().trim().split('\n').map(Number);
  // A rank this test leaves stopped would hold mpirun, and the test, forever.
  t.teardown(() => {
    for (const pid of [rank0, rank1]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // ended
      }
    }
  });
  const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  // Rank 1 comes to a collective meanwhile and waits there for rank 0: paused, it has waited 12 s by the clock.
  process.kill(rank0, 'SIGSTOP');
  await pause(500);
  process.kill(rank1, 'SIGSTOP');
  await pause(12_000);
  const before = job.output().length;
  process.kill(rank0, 'SIGCONT');
  process.kill(rank1, 'SIGCONT');
  await until({ ...job, output: () => job.output().slice(before) }, /^\[\d+ \| /m);
  job.child.kill('SIGUSR1');
  const { code, stdout } = await job.done;
  t.equal(code, 0, 'trained on after the pause, and stopped when asked');
  const step = Number(/stopped at step (\d+)/.exec(stdout)?.[1]);
  t.equal(path.basename(latestCheckpoint(path.join(dir, 'checkpoint', 'run1')) as string), `model-${step}`, 'with a save');
});

t.test("rank 0 waits for a rank that stopped before a barrier within the collective timeout, as in any collective", async (t) => {
  // Rank 0 comes to the barrier after its save or samples, the others wait there for it: rank 1 here stays away
  // (for a minute, then ends) as a rank stopped before the barrier does.
  const native = path.join(__dirname, '..', '..', 'lib', 'engine', 'native.js');
  const script = `const ranks = require(${JSON.stringify(native)}).loadAddon().initDistributed(); ranks.setTimeout(2);
    if (ranks.rank === 0) void ranks.barrier(true).then(() => console.log('rank 0 passed the barrier'));
    else setTimeout(() => process.exit(3), 60_000);`;
  const r = spawnSync('mpirun', ['--oversubscribe', '-np', '2', process.execPath, '-e', script], { env: ENV, encoding: 'utf8' });
  t.not(r.status, 0);
  t.notMatch(r.stdout, 'passed');
  t.match(r.stderr, /dixie: rank 0: MPI_Ibarrier has waited \d+ s for rank 1 \(--collective_timeout\); it has stopped without dying: ending the job/);
});

t.test('a run resumed on another number of ranks says when that changes its global batch, and how to keep it', async (t) => {
  const dir = t.testdir();
  const options = tinyRun(dir, { batch_size: 2, zero: 1, stop_after: 2 });
  await ranks(2, options);
  const runDir = path.join(dir, 'checkpoint', 'run1');
  fs.cpSync(path.join(runDir, 'model-2'), path.join(dir, 'checkpoint', 'single', 'model-2'), { recursive: true });

  const { stdout } = await ranks(4, { ...options, stop_after: 3 });
  t.match(stdout, 'warning: the run trained with a global batch of 4 sequences a step (2 x 1 x 2 ranks) and goes on with 8 (2 x 1 x 4): it draws other sequences from step 2 on than an uninterrupted run; --batch_size 1 keeps it');
  const lines: string[] = [];
  await train({ ...options, zero: 0, batch_size: 4, stop_after: 3, run_name: 'single' }, { log: collect(lines) });
  t.notOk(lines.some((l) => l.includes('global batch')), `1 rank x batch 4 keeps the global batch of 2 x 2, and says nothing of it (${lines.find((l) => l.includes('global batch'))})`);
});

t.test('a run that diverges validates to NaN on every rank and goes on, as one process does', async (t) => {
  const dir = t.testdir();
  const { stdout } = await ranks(2, tinyRun(dir, { optimizer: 'sgd', learning_rate: 1e30, stop_after: 2, val_every: 1, val_batch_count: 1 }));
  t.match(stdout, /\[2 \| .*\] validation loss NaN/, "rank 0's NaN reached every rank as a number");
});

t.test('ranks that disagree on the device end at once, saying so, rather than wait on each other', async (t) => {
  const dir = t.testdir();
  const cpu = { ...tinyRun(dir, { stop_after: 1 }), device: 'cpu' } as Partial<TrainOptions>;
  const { code, stderr } = await mpirun([cpu, { ...cpu, device: 'cuda' } as Partial<TrainOptions>]).done;
  t.not(code, 0);
  t.match(stderr, /the ranks disagree on the device: 1 of 2 train on a GPU, the others on the CPU \(this one on (a GPU|the CPU)\): give every rank the same --device/);
});

t.test("one rank's error ends the job, naming the rank", async (t) => {
  const dir = t.testdir();
  const good = tinyRun(dir, { batch_size: 2, stop_after: 1000 });
  const started = Date.now();
  const missing = path.join(dir, 'missing.train');
  const { code, stderr } = await mpirun([good, { ...good, dataset: missing }]).done;
  t.not(code, 0);
  t.ok(Date.now() - started < 30_000, 'within seconds');
  t.match(stderr, `train: rank 1 of 2: dataset ${missing}: no such file or folder`);
});

t.test('ranks given other flags than rank 0 end at once, naming the flag, rather than stop at other steps and wait', async (t) => {
  const dir = t.testdir();
  // A timeout short enough that ranks left waiting on each other would end the test: the refusal comes before it.
  const options = tinyRun(dir, { batch_size: 2, collective_timeout: 60 });
  const started = Date.now();
  const { code, stderr } = await mpirun([{ ...options, stop_after: 2 }, { ...options, stop_after: 4 }]).done;
  t.not(code, 0);
  t.ok(Date.now() - started < 45_000, 'within seconds, not at the collective timeout');
  t.match(stderr, "train: rank 1 of 2: the ranks disagree on --stop_after: rank 1 has another than rank 0's 2 (this one: 4): give every rank the same flags");
  t.notOk(fs.existsSync(path.join(dir, 'checkpoint', 'run1')), 'nothing trained, nothing saved');
});

t.test('a run folder that another run holds refuses every rank at once, each saying why', async (t) => {
  const dir = t.testdir();
  const runDir = path.join(dir, 'checkpoint', 'run1');
  const release = lockFolder(runDir, 'a training run');
  t.teardown(release);
  const options = tinyRun(dir, { batch_size: 2, stop_after: 2, collective_timeout: 60 });
  const { code, stderr } = await mpirun([options, options]).done;
  t.not(code, 0);
  for (const rank of [0, 1]) {
    t.match(stderr, `train: rank ${rank} of 2: ${runDir} is in use by process ${process.pid} (a training run), which is writing there: a training run is refused`);
  }
  t.same(fs.readdirSync(runDir), [LOCK_FILE], 'nothing written beside the lock, which is still the holder\'s');
});

t.test('ranks that read other data under the same --dataset end at once, naming it, rather than train on it', async (t) => {
  const dir = t.testdir();
  // Each rank in a folder of its own with its own copy of data.train, as on machines of their own; rank 1's copy has
  // one word more.
  const text = fs.readFileSync(tinyRun(dir).dataset, 'utf8');
  const workDirs = ['machine0', 'machine1'].map((name) => path.join(dir, name));
  workDirs.forEach((d, i) => {
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'data.train'), i === 0 ? text : text.replace('Can we', 'Could we'));
  });
  const options = tinyRun(dir, { dataset: 'data.train', batch_size: 2, stop_after: 2 });
  const { code, stderr } = await mpirun([options, options], workDirs).done;
  t.not(code, 0);
  // Before either encodes its share of the text, which would give both the same tokens.
  t.match(stderr, /train: rank 1 of 2: the ranks disagree on the text of --dataset: rank 1 has another than rank 0's 60,383 characters of text up to the end of \S*data\.train, digest [0-9a-f]{12} \(this one: 60,385 characters of text up to the end of \S*data\.train, digest [0-9a-f]{12}\): give every rank the same files/);
  t.notOk(fs.existsSync(path.join(dir, 'checkpoint', 'run1')), 'nothing trained, nothing saved');
});

t.test('ranks that hold other vocabularies under the same --tokenizer end at once, naming it, rather than share their tokens', async (t) => {
  const dir = t.testdir();
  // Each rank with its own copy of the tiny vocabulary, as on machines of their own; rank 1's has its last two merges
  // in the other order: the same size, so the same fresh weights, but other tokens.
  const workDirs = ['machine0', 'machine1'].map((name) => path.join(dir, name));
  workDirs.forEach((d, i) => {
    fs.cpSync(TINY_VOCAB, path.join(d, 'vocab'), { recursive: true });
    if (i === 0) return;
    const merges = path.join(d, 'vocab', 'vocab.bpe');
    const lines = fs.readFileSync(merges, 'utf8').trimEnd().split('\n');
    lines.push(...lines.splice(-2).reverse());
    fs.writeFileSync(merges, `${lines.join('\n')}\n`);
  });
  const options = tinyRun(dir, { tokenizer: 'vocab', batch_size: 2, stop_after: 2 });
  const { code, stderr } = await mpirun([options, options], workDirs).done;
  t.not(code, 0);
  t.match(stderr, /train: rank 1 of 2: the ranks disagree on the vocabulary that encodes --dataset: rank 1 has another than rank 0's \S*vocab, fingerprint [0-9a-f]{12} \(this one: \S*vocab, fingerprint [0-9a-f]{12}\): give every rank the same files/);
  t.notOk(fs.existsSync(path.join(dir, 'checkpoint', 'run1')), 'nothing trained, nothing saved');
});

t.test('ranks that share the encoding of a dataset end with the tokens one process encodes', async (t) => {
  const dir = t.testdir();
  // Two files over --combine (friends.train, work.train): two texts, one a rank.
  const dataset = path.join(path.dirname(tinyRun(dir).dataset), '*r*.train');
  const common = { dataset, stop_after: 1 };
  const one = await train(tinyRun(dir, { ...common, run_name: 'one', batch_size: 4 }), quiet);
  await ranks(2, tinyRun(dir, { ...common, run_name: 'two', batch_size: 2 }));
  const two = latestCheckpoint(path.join(dir, 'checkpoint', 'two')) as string;
  const record = readTrainState(one.checkpoint as string).dataset;
  t.ok(record !== undefined && record.files === 2);
  t.same(readTrainState(two).dataset, record, 'the same tokens, chunks and digest');
  t.ok(same(one.checkpoint as string, two, 'model.safetensors'), `the same weights, bit for bit (${worstDifference(one.checkpoint as string, two)})`);
});

t.test('ranks that load other weights under the same --model_name end at once, naming it', async (t) => {
  const dir = t.testdir();
  // Two tiny models of other seeds, each rank's ./model in a folder of its own, as on machines of their own.
  const workDirs = await Promise.all([1, 2].map(async (seed) => {
    const made = await train(tinyRun(dir, { seed, stop_after: 1, run_name: `seed-${seed}` }), quiet);
    const workDir = path.join(dir, `machine-${seed}`);
    fs.cpSync(made.checkpoint as string, path.join(workDir, 'model'), { recursive: true });
    return workDir;
  }));
  // The fresh model's flags left out: a model loaded has its own vocabulary and shape.
  const { fresh_model: _fresh, tokenizer: _vocab, n_layer: _layers, n_head: _heads, n_embd: _width, n_ctx: _context, ...options } = tinyRun(dir, { model_name: './model', batch_size: 2, stop_after: 2 });
  const { code, stderr } = await mpirun([options, options], workDirs).done;
  t.not(code, 0);
  t.match(stderr, "train: rank 1 of 2: at start: the weights of rank 1 differ from rank 0's, loaded from --model_name ./model: give every rank the same model files");
});

t.test('SIGUSR1 to mpirun stops every rank after the same step; rank 0 saves once', async (t) => {
  const dir = t.testdir();
  const options = tinyRun(dir, { batch_size: 2, save_on_ctrlc: true, zero: 1 });
  const job = mpirun([options, options]);
  await until(job, /^\[3 \| /m);
  t.match(job.output(), /Ctrl-C on Open MPI's mpirun ends the ranks at once, without a save: .*kill -USR1 <pid of mpirun>/, 'what Ctrl-C does under Open MPI is said at start');
  job.child.kill('SIGUSR1');
  const { code, stdout, stderr } = await job.done;
  t.equal(code, 0, 'mpirun exits 0');
  t.equal((stderr.match(/stopping after this step, then saving/g) ?? []).length, 1, 'said once');
  t.equal((stdout.match(/^saved /gm) ?? []).length, 1, 'saved once');
  const step = Number(/stopped at step (\d+)/.exec(stdout)?.[1]);
  t.equal(path.basename(latestCheckpoint(path.join(dir, 'checkpoint', 'run1')) as string), `model-${step}`);
});

t.test('SIGTERM to one rank stops every rank after the same step, and rank 0 says which rank was asked', async (t) => {
  const dir = t.testdir();
  const options = tinyRun(dir, { batch_size: 2, save_on_ctrlc: true, zero: 1 });
  const job = mpirun([options, options]);
  await until(job, /^\[3 \| /m);
  const rank1 = Number(execFileSync('pgrep', ['-P', String(job.child.pid)]).toString().trim().split('\n')[1]);
  process.kill(rank1, 'SIGTERM');
  const { code, stdout } = await job.done;
  t.equal(code, 0, 'mpirun exits 0');
  const step = Number(/stopping at step (\d+): rank 1 was asked to stop \(a signal\), then saving/.exec(stdout)?.[1]);
  t.ok(step >= 3, `rank 0 says why it stops (${step})`);
  t.equal((stdout.match(/^saved /gm) ?? []).length, 1, 'saved once');
  t.equal(path.basename(latestCheckpoint(path.join(dir, 'checkpoint', 'run1')) as string), `model-${step}`);
});

t.test("rank 0's metrics log that cannot be appended to stops every rank after the same step, which is saved", async (t) => {
  const dir = t.testdir();
  // 46 KB of weights and 92 KB of Adam's moments fit in 128 KiB; the log of some 200 bytes a step outgrows it first.
  const options = tinyRun(dir, { n_layer: 1, n_head: 2, n_embd: 16, n_ctx: 32, context_length: 16, batch_size: 2, zero: 1 });
  const { code, stdout, stderr } = await mpirun([options, options], [], 128).done;
  t.not(code, 0);
  const runDir = path.join(dir, 'checkpoint', 'run1');
  const step = Number(/training stopped at step (\d+)/.exec(stderr)?.[1]);
  t.match(stderr, `train: rank 0 of 2: ${path.join(runDir, 'metrics.jsonl')}: EFBIG: file too large, write: training stopped at step ${step}; ${path.join(runDir, `model-${step}`)} is saved`);
  t.match(stderr, `train: rank 1 of 2: rank 0 could not write its metrics log: stopped at step ${step}`);
  t.equal((stdout.match(/^saved /gm) ?? []).length, 1, 'saved once');
  t.equal(latestCheckpoint(runDir), path.join(runDir, `model-${step}`));
  t.equal(readTrainState(path.join(runDir, `model-${step}`)).step, step);
});

t.test('without mpirun: --zero 1 is refused; a missing MPI library names what to install', async (t) => {
  const dir = t.testdir();
  await t.rejects(train(tinyRun(dir, { zero: 1, stop_after: 1 }), quiet), /--zero 1 shards the optimizer state across the ranks of an MPI job: start bin\/train with mpirun/);
  const r = spawnSync(process.execPath, [TRAIN, ...flags(tinyRun(dir, { stop_after: 1 }))], {
    encoding: 'utf8',
    env: { ...process.env, OMPI_COMM_WORLD_SIZE: '1', DIXIE_LIBMPI: path.join(dir, 'libmpi.so.40') },
  });
  t.equal(r.status, 1);
  t.match(r.stderr, /train: data-parallel training: started by Open MPI's mpirun but no MPI library could be loaded \(.*libmpi\.so\.40.*\): install Open MPI \(Debian and Ubuntu: apt-get install openmpi-bin/);
});
