// Resuming is exact (N steps, stop, N more == 2N steps, bit for bit); a kill -9 in the middle of a save leaves
// the last complete checkpoint loadable; a resumed run outlives the checkpoint it resumed from; a save that fails
// says where and leaves nothing behind.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { resolveModel } from '../../lib/formats/resolve_model';
import { loadTokenizer, modelTokenizer } from '../../lib/tokenizer';
import { TrainState, latestCheckpoint, listCheckpoints, readTrainState, saveCheckpoint } from '../../lib/train/checkpoint';
import { MetricsLog, readMetrics } from '../../lib/train/metrics';
import { train } from '../../lib/train/train';
import { NO_DEV_FULL, diskFull, isTemporaryOf } from '../helpers/full_disk';
import { CHAT, REPO, TINY_VOCAB, tinyRun } from './helpers';

const quiet = { log: (): void => undefined };

function bytes(dir: string, file: string): Buffer {
  return fs.readFileSync(path.join(dir, file));
}

t.test('N steps, stop, resume, N more == 2N steps in one run, bit for bit', async (t) => {
  const dir = t.testdir();
  // Accumulation, a cosine schedule, samples and validation in between: none may disturb the resumed run. The first
  // half ends on a step that both saves and samples, the save in the loop.
  const common = { accumulate_gradients: 2, learning_rate_cos: true, learning_rate_warmup: 3, learning_rate_period: 5, sample_every: 3, sample_length: 10, val_every: 4, val_batch_count: 2, save_every: 6 };
  const whole = await train(tinyRun(dir, { ...common, run_name: 'whole', stop_after: 12 }), quiet);
  const first = await train(tinyRun(dir, { ...common, run_name: 'halves', stop_after: 6 }), quiet);
  t.equal(first.step, 6);
  const second = await train(tinyRun(dir, { ...common, run_name: 'halves', stop_after: 12 }), quiet);
  t.equal(second.step, 12);
  t.equal(second.stepsThisRun, 6);
  const a = whole.checkpoint as string;
  const b = second.checkpoint as string;
  t.ok(bytes(a, 'model.safetensors').equals(bytes(b, 'model.safetensors')), 'weights identical');
  t.ok(bytes(a, 'optimizer.safetensors').equals(bytes(b, 'optimizer.safetensors')), 'Adam state identical');
  const sa = readTrainState(a);
  const sb = readTrainState(b);
  t.same(sb.dataRng, sa.dataRng, 'the batch sampler is where the whole run left it');
  t.same(sb.sampleRng, sa.sampleRng);
  t.equal(sb.tokens, sa.tokens);
  t.same(
    readMetrics(path.join(second.runDir, 'metrics.jsonl')).map((r) => [r.type, r.step, r.loss]),
    readMetrics(path.join(whole.runDir, 'metrics.jsonl')).map((r) => [r.type, r.step, r.loss]),
    'the log of the resumed run tells the same history',
  );
  t.equal(fs.readFileSync(path.join(dir, 'samples', 'halves', 'samples-9'), 'utf8'), fs.readFileSync(path.join(dir, 'samples', 'whole', 'samples-9'), 'utf8'), 'even the samples agree');

  // Going back to an older checkpoint of the run is refused while a later one is there, which it would overwrite;
  // moved aside as the error says, the later one is out of the run, which then resumes from the older.
  const back = tinyRun(dir, { ...common, run_name: 'halves', restore_from: path.join(second.runDir, 'model-6'), stop_after: 12 });
  const before = fs.readdirSync(second.runDir).sort();
  const weights12 = bytes(b, 'model.safetensors');
  const refused = await train(back, quiet).then(() => null, (err: Error) => err.message);
  const aside = path.join(second.runDir, 'after-model-6');
  t.equal(
    refused,
    `--restore_from ${back.restore_from}: model-6 is not the newest checkpoint of ${second.runDir}: model-12 came after it, and resuming from it would overwrite it: ` +
      `move it out of the run first, with a copy of the metrics log, whose later records the resumed run drops (\`mkdir -p ${aside} && mv ${b} ${aside}/ && cp ${path.join(second.runDir, 'metrics.jsonl')} ${aside}/\`), ` +
      `or start a new run from its weights (\`--restore_from ${back.restore_from} --run_name <new name>\`)`,
  );
  t.same(fs.readdirSync(second.runDir).sort(), before, 'nothing written');
  t.ok(bytes(b, 'model.safetensors').equals(weights12), 'model-12 untouched');
  const history = readMetrics(path.join(second.runDir, 'metrics.jsonl'));
  fs.mkdirSync(aside);
  fs.renameSync(b, path.join(aside, 'model-12'));
  fs.copyFileSync(path.join(second.runDir, 'metrics.jsonl'), path.join(aside, 'metrics.jsonl'));
  t.same(listCheckpoints(second.runDir).map((c) => c.step), [6], 'a checkpoint in a subfolder is no longer the run\'s');
  const again = await train(back, quiet);
  t.equal(again.stepsThisRun, 6, 'resumed at step 6');
  t.ok(bytes(again.checkpoint as string, 'model.safetensors').equals(bytes(a, 'model.safetensors')), 'and ends where the uninterrupted run ends');
  t.ok(bytes(path.join(aside, 'model-12'), 'model.safetensors').equals(weights12), 'the one moved aside kept');
  t.same(readMetrics(path.join(aside, 'metrics.jsonl')), history, 'and its history up to step 12');
});

// Starts kill_child.js to train, waits until the save of `step` reaches `phase`, and SIGKILLs it there.
function killDuringSave(options: object, phase: string, step: number): Promise<string> {
  const child = spawn(process.execPath, [path.join(__dirname, 'kill_child.js'), JSON.stringify(options), phase, String(step)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const paused = /PAUSED (.*)\n/.exec(out);
      if (paused) {
        child.kill('SIGKILL');
        child.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve(paused[1]) : reject(new Error(`exited with ${signal}`))));
      }
    });
    child.on('exit', (code) => {
      if (!/PAUSED/.test(out)) reject(new Error(`the child ended (${code}) before pausing: ${out}${err}`));
    });
  });
}

t.test('SIGKILL in the middle of a save leaves the last complete checkpoint loadable', async (t) => {
  const dir = t.testdir();
  const options = tinyRun(dir, { save_every: 2, stop_after: 6, max_to_keep: 2 });
  const runDir = path.join(dir, 'checkpoint', 'run1');

  // Killed with model-4 written in its temporary folder: model-2 is the latest.
  const temp = await killDuringSave(options, 'written', 4);
  t.match(path.basename(temp), /^\.model-4\.tmp-\d+$/);
  t.ok(fs.existsSync(path.join(temp, 'state.json')), 'the temporary folder was complete but never renamed');
  t.same(listCheckpoints(runDir).map((c) => c.step), [2]);
  t.equal(latestCheckpoint(runDir), path.join(runDir, 'model-2'));
  const model = await Model.load(path.join(runDir, 'model-2'));
  model.dispose();
  t.equal(readTrainState(path.join(runDir, 'model-2')).step, 2);

  // Resumed and killed again after model-4's rename, before `latest` names it: both are complete, and the run
  // resumes from the newer.
  const renamed = await killDuringSave(options, 'renamed', 4);
  t.equal(renamed, path.join(runDir, 'model-4'));
  t.equal(fs.readFileSync(path.join(runDir, 'latest'), 'utf8'), 'model-2\n');
  t.same(listCheckpoints(runDir).map((c) => c.step), [2, 4]);
  t.equal(latestCheckpoint(runDir), path.join(runDir, 'model-4'), 'the newest complete checkpoint, not the one `latest` still names');
  (await Model.load(path.join(runDir, 'model-4'))).dispose();

  // The run goes on from model-4 to the end; the stray temporary folder is swept.
  const result = await train(options, quiet);
  t.equal(result.stepsThisRun, 2, 'steps 3 and 4 are not trained again');
  t.equal(result.step, 6);
  t.same(listCheckpoints(runDir).map((c) => c.step), [4, 6]);
  t.same(fs.readdirSync(runDir).filter((n) => n.startsWith('.')), [], 'no temporary folders left');
  const whole = await train(tinyRun(dir, { save_every: 2, stop_after: 6, run_name: 'uninterrupted' }), quiet);
  t.ok(bytes(result.checkpoint as string, 'model.safetensors').equals(bytes(whole.checkpoint as string, 'model.safetensors')), 'and ends where an uninterrupted run ends');
});

t.test('a kill before `best` names a new best checkpoint: the resumed run names it and keeps it', async (t) => {
  const dir = t.testdir();
  const runDir = path.join(dir, 'checkpoint', 'run1');
  const options = tinyRun(dir, { val_dataset: path.join(CHAT, 'valid.train'), val_every: 2, val_batch_count: 2, max_to_keep: 1, stop_after: 5 });
  const renamed = await killDuringSave(options, 'renamed', 4);
  t.equal(readTrainState(renamed).best?.step, 4, 'model-4 is the lowest validation loss yet');
  t.equal(fs.readFileSync(path.join(runDir, 'best'), 'utf8'), 'model-2\n', 'killed before `best` named it');
  // A temporary file of a write that a kill cut short (by a process long gone) is swept with the folders.
  const stray = path.join(runDir, '.latest.4194305.0123456789ab.tmp');
  fs.writeFileSync(stray, 'model-');

  const resumed = await train(options, quiet);
  t.equal(resumed.step, 5);
  t.equal(fs.readFileSync(path.join(runDir, 'best'), 'utf8'), 'model-4\n', '`best` names it');
  t.same(listCheckpoints(runDir).map((c) => c.step), [4, 5], 'and --max_to_keep 1 spares it');
  t.notOk(fs.existsSync(stray), 'the stray temporary file is gone');
  const whole = await train({ ...options, run_name: 'uninterrupted' }, quiet);
  t.equal(fs.readFileSync(path.join(whole.runDir, 'best'), 'utf8'), 'model-4\n', 'as in a run never killed');
  const shorter = await train({ ...options, run_name: 'to-4', stop_after: 4 }, quiet);
  t.same(listCheckpoints(shorter.runDir).map((c) => c.step), [4], 'a new best no longer spares the one before it');
});

t.test('a sample that a stop cuts short says so', async (t) => {
  const dir = t.testdir();
  const stop = new AbortController();
  const options = tinyRun(dir, { sample_every: 3, sample_length: 20 });
  await train(options, { ...quiet, signal: stop.signal, onMetrics: (r) => r.type === 'train' && r.step === 3 && stop.abort() });
  const samples = fs.readFileSync(path.join(dir, 'samples', 'run1', 'samples-3'), 'utf8');
  t.match(samples, /^={20} SAMPLE 1 ={20}\n[^]*\(cut short: the run was stopped while drawing it\)\n$/);
});

t.test('a resumed run saves past --max_to_keep twice over: the vocabulary it writes comes from memory', async (t) => {
  const dir = t.testdir();
  const options = { save_every: 5, max_to_keep: 2 };
  await train(tinyRun(dir, { ...options, stop_after: 10 }), quiet);
  // Resumed from model-10, which the save at step 20 prunes; the saves after it still need a vocabulary.
  const result = await train(tinyRun(dir, { ...options, stop_after: 30 }), quiet);
  t.equal(result.step, 30);
  const runDir = path.join(dir, 'checkpoint', 'run1');
  t.same(listCheckpoints(runDir).map((c) => c.step), [25, 30]);
  for (const step of [25, 30]) {
    for (const [file, source] of [['vocab.json', 'encoder.json'], ['merges.txt', 'vocab.bpe']]) {
      t.ok(bytes(path.join(runDir, `model-${step}`), file).equals(bytes(TINY_VOCAB, source)), `model-${step}/${file} is the vocabulary trained with, under Hugging Face's name`);
    }
  }
  t.same(fs.readdirSync(runDir).filter((n) => n.startsWith('.')), [], 'no temporary folders left');
});

t.test('a run from a GGUF model writes its vocabulary as vocab.json and merges.txt, and resumes from them', async (t) => {
  const dir = t.testdir();
  const base = await train(tinyRun(dir, { run_name: 'base', stop_after: 1 }), quiet);
  const ggufDir = path.join(dir, 'gguf');
  fs.mkdirSync(ggufDir);
  const exported = spawnSync(process.execPath, [path.join(REPO, 'bin', 'export-gguf'), base.checkpoint as string, path.join(ggufDir, 'model.gguf')], { encoding: 'utf8' });
  t.equal(exported.status, 0, exported.stderr);
  const fromGguf = { fresh_model: false, model_name: ggufDir, run_name: 'from-gguf', save_every: 1 };
  const first = await train(tinyRun(dir, { ...fromGguf, stop_after: 1 }), quiet);
  t.same(fs.readdirSync(first.checkpoint as string).filter((f) => !f.endsWith('.safetensors')).sort(), ['config.json', 'merges.txt', 'state.json', 'tokenizer_config.json', 'vocab.json'], 'no model.gguf written over with vocabulary text');
  const original = loadTokenizer(TINY_VOCAB);
  const saved = modelTokenizer(resolveModel(first.checkpoint as string));
  t.same(saved.encode('How are you, grandma?', { allowSpecial: false }), original.encode('How are you, grandma?', { allowSpecial: false }), 'the vocabulary the GGUF file held');
  const resumed = await train(tinyRun(dir, { ...fromGguf, stop_after: 2 }), quiet);
  t.equal(resumed.step, 2, 'and the run resumes from its checkpoint');
});

t.test('a save that fails midway (a full disk) names the file and the checkpoint kept, and leaves no temporary folder', { skip: NO_DEV_FULL }, async (t) => {
  const dir = t.testdir();
  const runDir = path.join(dir, 'run');
  const model = Model.create({ nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 457 }, { seed: 1 });
  t.teardown(() => model.dispose());
  const tokenizer = loadTokenizer(TINY_VOCAB);
  const state = (step: number): TrainState => ({
    step, seed: 1, dataRng: [1, 2, 3, 4], sampleRng: [5, 6, 7, 8], lossAverage: [0, 0], tokens: 0, trainSeconds: 0, audiences: [], options: {},
  });
  await saveCheckpoint(runDir, model, tokenizer, state(1), { maxToKeep: 0, withOptimizer: false, keepBest: false });

  for (const file of ['model.safetensors', 'merges.txt']) {
    await t.test(`the disk fills up writing ${file}`, async (t) => {
      diskFull(t, isTemporaryOf(path.join(runDir, `.model-2.tmp-${process.pid}`, file)));
      await t.rejects(saveCheckpoint(runDir, model, tokenizer, state(2), { maxToKeep: 0, withOptimizer: false, keepBest: false }), {
        code: 'ENOSPC',
        message: new RegExp(`^model-2 was not saved: ${path.join(runDir, `.model-2.tmp-${process.pid}`, file).replace(/[.]/g, '\\.')}: ENOSPC: no space left on device, write; model-1, saved before, is kept$`),
      });
    });
    t.same(fs.readdirSync(runDir).sort(), ['latest', 'model-1'], `after ${file}: no temporary folder, the last checkpoint untouched`);
    t.equal(latestCheckpoint(runDir), path.join(runDir, 'model-1'));
  }

  await t.test('the disk fills up writing `latest`, after the checkpoint is in place', async (t) => {
    diskFull(t, isTemporaryOf(path.join(runDir, 'latest')));
    await t.rejects(saveCheckpoint(runDir, model, tokenizer, state(2), { maxToKeep: 0, withOptimizer: false, keepBest: false }), {
      code: 'ENOSPC',
      message: `model-2 is saved, but ${path.join(runDir, 'latest')}: ENOSPC: no space left on device, write; --restore_from latest resumes from model-2 all the same`,
    });
  });
  t.equal(fs.readFileSync(path.join(runDir, 'latest'), 'utf8'), 'model-1\n', '`latest` as it was');
  t.equal(latestCheckpoint(runDir), path.join(runDir, 'model-2'), 'the run resumes from the checkpoint saved');

  await t.test('the disk fills up appending to metrics.jsonl', async (t) => {
    const file = path.join(dir, 'metrics.jsonl');
    diskFull(t, (name) => name === file);
    const log = await MetricsLog.open(file, null);
    t.teardown(() => log.close());
    t.throws(() => log.append({ type: 'val', step: 1, loss: 1, time: 1 }), { code: 'ENOSPC', message: `${file}: ENOSPC: no space left on device, write` });
  });
});
