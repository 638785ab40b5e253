// The training loop in-process (lib/train): a tiny fresh model learns a chat dataset, writes checkpoints,
// samples, metrics and a loss curve; training on a token file equals training on its text; the options that
// shape a step (frozen embeddings, SGD, gradient clipping, pruning) do what they say.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Template } from '@huggingface/jinja';
import { chatTemplate } from '../../lib/data/chat_format';
import { encodeDataset } from '../../lib/data/dataset';
import { Model } from '../../lib/engine/model';
import { bestCheckpoint, checkpointFolder, latestCheckpoint, listCheckpoints, readTrainState } from '../../lib/train/checkpoint';
import { resolveModel } from '../../lib/formats/resolve_model';
import { readMetrics } from '../../lib/train/metrics';
import { learningRate, train, DEFAULT_TRAIN_OPTIONS, TrainOptions, TrainResult } from '../../lib/train/train';
import { loadTokenizer } from '../../lib/tokenizer';
import { CHAT, TINY_VOCAB, collect, tinyRun } from './helpers';
import { holdLock } from '../helpers/folder_lock';
import { LOCK_FILE } from '../../lib/util/folder_lock';

function weightBytes(checkpoint: string): Buffer {
  return fs.readFileSync(path.join(checkpoint, 'model.safetensors'));
}

t.test('a tiny fresh model learns the chat dataset: checkpoints, samples, validation, metrics, plot', async (t) => {
  const dir = t.testdir();
  const lines: string[] = [];
  const result = await train(
    tinyRun(dir, {
      dataset: path.join(CHAT, 'train'),
      learning_rate: 0.01,
      stop_after: 60,
      save_every: 30,
      sample_every: 30,
      sample_length: 40,
      sample_num: 2,
      val_dataset: path.join(CHAT, 'valid.train'),
      val_every: 20,
      val_batch_count: 3,
      val_batch_size: 6,
    }),
    { log: collect(lines) },
  );
  t.equal(result.step, 60);
  t.equal(result.stoppedBy, 'stop_after');
  const records = readMetrics(path.join(result.runDir, 'metrics.jsonl'));
  const train_ = records.filter((r) => r.type === 'train');
  const val = records.filter((r) => r.type === 'val');
  t.same(train_.map((r) => r.step), Array.from({ length: 60 }, (_, i) => i + 1), 'one record per step');
  t.ok(result.firstLoss > 5.5, `the first loss ${result.firstLoss} is about ln(457) = 6.1`);
  const last = train_.slice(-10).reduce((s, r) => s + r.loss, 0) / 10;
  t.ok(last < result.firstLoss - 2, `the loss fell from ${result.firstLoss.toFixed(3)} to ${last.toFixed(3)}`);
  t.same(val.map((r) => r.step), [0, 20, 40, 60], 'validation before training and every 20 steps');
  t.ok(val[3].loss < val[0].loss - 2, `validation loss fell from ${val[0].loss} to ${val[3].loss}`);
  t.equal(result.valLoss, val[3].loss);

  // Each validation below the lowest before it is saved too (--keep_best, on by default with --val_dataset).
  const lows = val.slice(1).filter((r, i) => val.slice(0, i + 1).every((before) => r.loss < before.loss)).map((r) => r.step);
  t.ok(lows.length > 0, `validation losses ${val.map((r) => r.loss.toFixed(3)).join(', ')}`);
  t.same(listCheckpoints(result.runDir).map((c) => c.step), [...new Set([...lows, 30, 60])].sort((a, b) => a - b));
  const bestStep = lows[lows.length - 1];
  t.equal(fs.readFileSync(path.join(result.runDir, 'best'), 'utf8'), `model-${bestStep}\n`);
  const validationsSince = val.length - 1 - val.findIndex((r) => r.step === bestStep);
  t.same(result.best, { step: bestStep, loss: Math.min(...val.map((r) => r.loss)), validationsSince, checkpoint: path.join(result.runDir, `model-${bestStep}`) });
  t.equal(latestCheckpoint(result.runDir), path.join(result.runDir, 'model-60'));
  t.equal(fs.readFileSync(path.join(result.runDir, 'latest'), 'utf8'), 'model-60\n');
  const checkpoint = path.join(result.runDir, 'model-60');
  t.same(fs.readdirSync(checkpoint).sort(), ['config.json', 'merges.txt', 'model.safetensors', 'optimizer.safetensors', 'state.json', 'tokenizer_config.json', 'vocab.json']);
  const state = readTrainState(checkpoint);
  t.equal(state.step, 60);
  t.equal(state.seed, 1234);
  t.equal(state.tokens, 60 * 4 * 32);
  t.same(state.audiences.map((a) => a.audience), ['mom', 'alex', 'sam', 'team', 'grandma', 'dad'], 'the audiences, for bin/chat');
  // The tokenizer as Hugging Face's tools read it (AutoTokenizer, vLLM), with the chat format as its chat template.
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(checkpoint, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  t.same(tokenizerConfig, {
    tokenizer_class: 'GPT2Tokenizer', bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', add_prefix_space: false,
    model_max_length: 64, chat_template: chatTemplate('mom'),
    added_tokens_decoder: { [loadTokenizer(TINY_VOCAB).eotToken]: { content: '<|endoftext|>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true } },
  });
  t.equal(new Template(tokenizerConfig.chat_template as string).render({ messages: [{ role: 'user', content: 'Hi!' }], add_generation_prompt: true }), '1|mom|Hi! <EOM>\n0|mom|',
    'rendered by Hugging Face\'s Jinja: the prompt dixie makes, answering as the audience talked to most');
  t.equal(checkpointFolder(result.runDir), checkpoint, 'the run folder stands for its latest checkpoint');
  t.equal(checkpointFolder(checkpoint), checkpoint);
  // The checkpoint is a model folder: it loads, with its tokenizer, and computes the loss training reported.
  const model = await Model.load(checkpoint, { maxBatch: 1, maxSeq: 32 });
  t.teardown(() => model.dispose());
  t.same(model.config, { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 457 });
  const tokenizer = loadTokenizer(checkpoint);
  const ids = tokenizer.encode('1|team|Morning! <EOM>\n0|team|Standup moved to 9. <EOM>\n1|team|Works for me. <EOM>\n', { allowSpecial: false });
  const loss = await model.forward(ids.subarray(0, 32), ids.subarray(1, 33), 1, 32);
  t.ok(loss < 4, `the trained model predicts chat lines (loss ${loss.toFixed(3)}; ln 457 = 6.1 for a random one)`);

  for (const step of [30, 60]) {
    const samples = fs.readFileSync(path.join(dir, 'samples', 'run1', `samples-${step}`), 'utf8');
    t.match(samples, /^={20} SAMPLE 1 ={20}\n[^]*\n={20} SAMPLE 2 ={20}\n/, `samples-${step} holds two samples`);
  }
  t.match(fs.readFileSync(path.join(dir, 'samples', 'run1', 'samples-60'), 'utf8'), /<EOM>/, 'the samples look like chat');
  t.ok(lines.some((l) => /^\[60 \| \S+\] loss \d+\.\d{4} avg \d+\.\d{4} \| lr 1\.00e-2 \| [\d,]+ tok\/s \| ETA 0s$/.test(l)), 'a progress line per step');
  t.ok(lines.some((l) => /^\[20 \| \S+\] validation loss \d+\.\d{4}( \(the lowest yet\))?$/.test(l)), 'validation lines');
  t.ok(lines.some((l) => /^chat check: 3 files, 7,753 messages/.test(l)), 'the chat check ran first');
  const svg = fs.readFileSync(path.join(result.runDir, 'loss.svg'), 'utf8');
  t.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.equal((svg.match(/<polyline /g) ?? []).length, 3, 'loss, running average and validation curves');
  t.equal((svg.match(/<circle cx="[\d.]+" cy="[\d.]+" r="3"/g) ?? []).length, 4, 'a point per validation');
  const best = val.find((r) => r.step === bestStep) as (typeof val)[number];
  t.match(svg, `<title>best checkpoint: step ${bestStep}, loss ${best.loss.toFixed(4)}</title>`, 'the best checkpoint ringed');
});

t.test('--keep_best keeps the checkpoint of the lowest validation loss past pruning; --early_stopping stops when it is not beaten', async (t) => {
  const dir = t.testdir();
  const run = (overrides: Partial<TrainOptions>, lines: string[] = []): Promise<TrainResult> => train(
    tinyRun(dir, { dataset: path.join(CHAT, 'train'), val_dataset: path.join(CHAT, 'valid.train'), val_every: 5, val_batch_count: 2, val_batch_size: 4, learning_rate: 0.01, ...overrides }),
    { log: collect(lines) },
  );
  const learning = await run({ stop_after: 20, max_to_keep: 2 });
  const runDir = learning.runDir;
  const val = readMetrics(path.join(runDir, 'metrics.jsonl')).filter((r) => r.type === 'val');
  t.same(val.map((r) => r.step), [0, 5, 10, 15, 20]);
  const lowest = val.reduce((a, b) => (b.loss < a.loss ? b : a));
  t.not(lowest.step, 0, `the loss fell: ${val.map((r) => r.loss.toFixed(3)).join(', ')}`);
  t.equal(learning.best?.step, lowest.step);
  t.equal(bestCheckpoint(runDir), path.join(runDir, `model-${lowest.step}`));

  // A learning rate far too high: every validation after is above the lowest, and the second in a row stops the run.
  const lines: string[] = [];
  const diverging = await run({ stop_after: 100, max_to_keep: 1, learning_rate: 3, early_stopping: 2 }, lines);
  t.equal(diverging.stoppedBy, 'early_stopping');
  t.equal(diverging.step, 30, 'two validations (steps 25 and 30) above the lowest');
  t.same(readMetrics(path.join(runDir, 'metrics.jsonl')).filter((r) => r.type === 'val').map((r) => r.step), [0, 5, 10, 15, 20, 25, 30]);
  t.ok(lines.includes(`stopping early: 2 validations in a row above step ${lowest.step}'s loss of ${lowest.loss.toFixed(4)} (--early_stopping 2)`), lines.slice(-4).join('\n'));
  t.same(listCheckpoints(runDir).map((c) => c.step), [lowest.step, 30].filter((s, i, a) => a.indexOf(s) === i), 'max_to_keep 1 keeps the latest, and spares the best');
  t.equal(latestCheckpoint(runDir), path.join(runDir, 'model-30'));
  t.same(diverging.best, { step: lowest.step, loss: lowest.loss, validationsSince: 2, checkpoint: path.join(runDir, `model-${lowest.step}`) }, 'the best carried over from the checkpoint resumed');
  t.ok(lines.includes(`lowest validation loss ${lowest.loss.toFixed(4)}, at step ${lowest.step}: ${path.join(runDir, `model-${lowest.step}`)} (also ${path.join(runDir, 'best')})`));

  // The pointer files name models wherever a model folder goes.
  t.equal(checkpointFolder(path.join(runDir, 'best')), path.join(runDir, `model-${lowest.step}`));
  t.equal(checkpointFolder(path.join(runDir, 'latest')), path.join(runDir, 'model-30'));
  t.equal(resolveModel(path.join(runDir, 'best')).dir, path.join(runDir, `model-${lowest.step}`));
  fs.writeFileSync(path.join(dir, 'best'), 'model-7\n');
  t.throws(() => checkpointFolder(path.join(dir, 'best')), new RegExp(`best names "model-7", which is no complete checkpoint of ${dir.replace(/[/\\]/g, '.')}`));

  // Resumed with the same flags it trains nothing, and says why.
  const again: string[] = [];
  const resumed = await run({ stop_after: 100, max_to_keep: 1, learning_rate: 3, early_stopping: 2 }, again);
  t.equal(resumed.stepsThisRun, 0);
  t.notOk(again.some((l) => l.startsWith('training from step')));
  t.ok(again.some((l) => l.startsWith('stopping early: 2 validations in a row')));

  await t.rejects(train(tinyRun(dir, { run_name: 'nothing_held_out', val_every: 5, early_stopping: 2 })), /--early_stopping watches the validation loss of held-out data: give --val_dataset \(or --val_split\) and --val_every too/);
});

t.test('--val_split holds the end of every chunk of the dataset out for validation, which then keeps the best', async (t) => {
  const dir = t.testdir();
  const lines: string[] = [];
  const result = await train(tinyRun(dir, { dataset: path.join(CHAT, 'train'), val_split: 0.1, val_every: 5, val_batch_count: 2, val_batch_size: 4, learning_rate: 0.01, stop_after: 10, early_stopping: 3 }), { log: collect(lines) });
  const count = (pattern: RegExp): number => Number((lines.map((l) => pattern.exec(l)).find((m) => m !== null) as RegExpExecArray)[1].replace(/,/g, ''));
  const total = count(/^dataset: ([\d,]+) tokens in 3 chunks from 3 files$/);
  const held = count(/^held out for validation: the last 10% of each chunk, ([\d,]+) tokens$/);
  t.ok(held >= total * 0.1 && held <= total * 0.1 + 3, `${held} of ${total} tokens held out: each chunk's last tenth, rounded up`);
  t.not(result.best, null, 'the held-out loss is watched');
  t.equal(bestCheckpoint(result.runDir), result.best?.checkpoint);
  for (const [overrides, message] of [
    [{ val_split: 0.1, val_dataset: path.join(CHAT, 'valid.train') }, /--val_split holds part of --dataset out for validation, and --val_dataset is held-out data already/],
    [{ val_split: 0.1 }, /--val_split holds data out for validation: give --val_every too/],
    [{ val_split: 0.6, val_every: 5 }, /--val_split must be in \[0, 0\.5\], got 0\.6/],
  ] as const) {
    await t.rejects(train(tinyRun(dir, { run_name: 'refused', ...overrides })), message);
  }
});

t.test('training on a bin/encode token file equals training on its text', async (t) => {
  const dir = t.testdir();
  const tokens = path.join(dir, 'work.tokens');
  await encodeDataset(path.join(CHAT, 'train'), tokens, { tokenizer: loadTokenizer(TINY_VOCAB), combine: 20000 });
  const fromText = await train(tinyRun(dir, { dataset: path.join(CHAT, 'train'), combine: 20000, stop_after: 4, run_name: 'text' }), { log: () => undefined });
  const fromFile = await train(tinyRun(dir, { dataset: tokens, stop_after: 4, run_name: 'file' }), { log: () => undefined });
  t.ok(weightBytes(fromText.checkpoint as string).equals(weightBytes(fromFile.checkpoint as string)), 'the same weights, byte for byte');
  t.equal(fromText.firstLoss, fromFile.firstLoss);
});

t.test('a loss plot that cannot be written is warned of, and the run trains and saves to its end', async (t) => {
  const dir = t.testdir({ checkpoint: { run1: { 'loss.svg': { 'in the way.txt': 'a folder where the plot goes' } } } });
  const lines: string[] = [];
  const result = await train(tinyRun(dir, { stop_after: 4, save_every: 2 }), { log: collect(lines) });
  t.equal(result.step, 4);
  t.equal(latestCheckpoint(result.runDir), path.join(result.runDir, 'model-4'), 'every checkpoint saved');
  const svg = path.join(result.runDir, 'loss.svg');
  t.match(lines.filter((l) => l.startsWith('warning: the loss plot')), [new RegExp(`^warning: the loss plot was not written \\(EISDIR: .*'${svg.replace(/[.]/g, '\\.')}'\\); training goes on$`)]);
  t.same(fs.readdirSync(svg), ['in the way.txt'], 'the folder in the way left alone');
});

t.test('a resumed run whose metrics log is a folder fails at start, naming it, and leaves it as it was', async (t) => {
  const dir = t.testdir();
  const first = await train(tinyRun(dir, { stop_after: 2 }), { log: () => undefined });
  const log = path.join(first.runDir, 'metrics.jsonl');
  fs.rmSync(log);
  fs.mkdirSync(log);
  fs.writeFileSync(path.join(log, 'notes.txt'), 'a folder where the log goes');
  await t.rejects(train(tinyRun(dir, { stop_after: 4 }), { log: () => undefined }), { message: `${log}: EISDIR: illegal operation on a directory, read` });
  t.same(fs.readdirSync(log), ['notes.txt']);
  t.equal(latestCheckpoint(first.runDir), path.join(first.runDir, 'model-2'));
});

t.test('--only_train_transformer_layers freezes the embeddings; SGD steps; --max_to_keep prunes', async (t) => {
  const dir = t.testdir();
  const base = await train(tinyRun(dir, { stop_after: 1, run_name: 'base' }), { log: () => undefined });
  const start = await Model.load(base.checkpoint as string);
  t.teardown(() => start.dispose());
  const frozen = await train(tinyRun(dir, { restore_from: base.checkpoint as string, stop_after: 3, run_name: 'frozen', only_train_transformer_layers: true, optimizer: 'sgd', learning_rate: 0.1, save_every: 1, max_to_keep: 2 }), { log: () => undefined });
  t.same(listCheckpoints(frozen.runDir).map((c) => c.step), [2, 3], 'only the newest two checkpoints are kept');
  t.notOk(fs.existsSync(path.join(frozen.checkpoint as string, 'optimizer.safetensors')), 'SGD has no optimizer state to save');
  const after = await Model.load(frozen.checkpoint as string);
  t.teardown(() => after.dispose());
  const same = (name: string): boolean => Buffer.from(after.getParam(name).buffer).equals(Buffer.from(start.getParam(name).buffer));
  for (const name of ['wte.weight', 'wpe.weight', 'ln_f.weight']) t.ok(same(name), `${name} unchanged`);
  t.notOk(same('h.0.attn.c_attn.weight'), 'the blocks trained');
});

t.test('--grad_clip scales an SGD step down by clip / norm where the norm exceeds it, and leaves one below alone', async (t) => {
  const dir = t.testdir();
  const base = await train(tinyRun(dir, { stop_after: 1, run_name: 'base' }), { log: () => undefined });
  const step = (run_name: string, grad_clip: number): Promise<TrainResult> => train(tinyRun(dir, { restore_from: base.checkpoint as string, stop_after: 1, run_name, optimizer: 'sgd', learning_rate: 0.1, grad_clip }), { log: () => undefined });
  const free = await step('free', 0);
  const unreached = await step('unreached', 1e6);
  const clipped = await step('clipped', 0.05);
  t.ok(weightBytes(unreached.checkpoint as string).equals(weightBytes(free.checkpoint as string)), 'a norm the gradients never reach: the same weights, byte for byte');
  const [record] = readMetrics(path.join(clipped.runDir, 'metrics.jsonl')).filter((r) => r.type === 'train');
  const norm = record.type === 'train' ? record.grad_norm : NaN;
  t.ok(norm > 0.05, `the gradients' norm, ${norm}, exceeds the clip`);
  const models = await Promise.all([base, free, clipped].map((r) => Model.load(r.checkpoint as string)));
  t.teardown(() => models.forEach((m) => m.dispose()));
  const [w0, wFree, wClipped] = models.map((m) => m.getParam('h.0.attn.c_attn.weight'));
  let worst = 0;
  let largest = 0;
  for (let i = 0; i < w0.length; i++) {
    const expected = ((wFree[i] - w0[i]) * 0.05) / norm;
    worst = Math.max(worst, Math.abs(wClipped[i] - w0[i] - expected));
    largest = Math.max(largest, Math.abs(expected));
  }
  t.ok(largest > 0 && worst < 1e-3 * largest + 1e-7, `each weight moved clip / norm as far: worst error ${worst.toExponential(2)} of steps up to ${largest.toExponential(2)}`);
  await t.rejects(train(tinyRun(dir, { grad_clip: -1, run_name: 'bad' })), /--grad_clip must be a norm >= 0 \(0: no clipping\), got -1/);
});

t.test('a run that would mix into existing checkpoints is refused', async (t) => {
  const dir = t.testdir();
  await train(tinyRun(dir, { stop_after: 1 }), { log: () => undefined });
  await t.rejects(train(tinyRun(dir, { stop_after: 2, restore_from: 'fresh' }), { log: () => undefined }), /already holds checkpoints \(model-1\)/);
  await t.rejects(train(tinyRun(dir, { dataset: path.join(dir, 'nothing.txt') }), { log: () => undefined }), /nothing\.txt: no such file or folder/);
  await t.rejects(train(tinyRun(dir, { dataset: path.join(dir, 'nothing.txt'), fresh_model: false, model_name: 'not-downloaded', run_name: 'elsewhere' }), { log: () => undefined }), /nothing\.txt: no such file or folder/, 'a missing dataset is said before the model is looked for');
  await t.rejects(train(tinyRun(dir, { val_dataset: path.join(dir, 'valid', '*.train'), run_name: 'valid', stop_after: 1 }), { log: () => undefined }), /valid\/\*\.train: the pattern matches no files/, 'and a missing validation set');
  const bad = path.join(dir, 'bad.train');
  fs.writeFileSync(bad, '1|mom|Hi <EOM>\n0|mom|\n');
  await t.rejects(train(tinyRun(dir, { dataset: bad, run_name: 'bad' }), { log: () => undefined }), /bad\.train:2: no <EOM> at the end; empty message/);
  await t.rejects(train(tinyRun(dir, { batch_size: 0 })), /--batch_size must be a whole number >= 1, got 0/);

  // A run folder of the original tools, and one that bin/import-tf converted in place: no dixie checkpoint to resume,
  // and weights that a run starting from --model_name would save beside.
  const tfRun = path.join(dir, 'checkpoint', 'tf');
  fs.mkdirSync(tfRun);
  fs.writeFileSync(path.join(tfRun, 'checkpoint'), 'model_checkpoint_path: "model-1000"\nall_model_checkpoint_paths: "model-1000"\n');
  for (const file of ['counter', 'model-1000.index', 'model-1000.data-00000-of-00001', 'model-1000.meta']) fs.writeFileSync(path.join(tfRun, file), '1000\n');
  const imported = path.join(dir, 'checkpoint', 'imported');
  fs.mkdirSync(imported);
  for (const file of ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt']) fs.copyFileSync(path.join(latestCheckpoint(path.join(dir, 'checkpoint', 'run1')) as string, file), path.join(imported, file));
  const foreign = [
    ['tf', `${tfRun} holds a TensorFlow checkpoint (model-1000) of the original tools, which bin/train does not resume or write beside: convert it with \`bin/import-tf ${tfRun} <out>\`, then train from it in a new run: \`--model_name <out> --run_name <new name>\``],
    ['imported', `${imported} holds a model (model.safetensors), not dixie's checkpoints, and a run there would write beside it: to train from it, give \`--model_name ${imported} --run_name <new name>\``],
  ];
  for (const [run_name, message] of foreign) {
    const before = fs.readdirSync(path.join(dir, 'checkpoint', run_name)).sort();
    for (const restore_from of ['latest', 'fresh']) {
      await t.rejects(train(tinyRun(dir, { run_name, restore_from, stop_after: 1 }), { log: () => undefined }), { message }, `${run_name}, --restore_from ${restore_from}`);
    }
    t.same(fs.readdirSync(path.join(dir, 'checkpoint', run_name)).sort(), before, `nothing written into ${run_name}`);
  }
  const fromImported = await train(tinyRun(dir, { fresh_model: false, model_name: imported, run_name: 'from-imported', stop_after: 1 }), { log: () => undefined });
  t.equal(fromImported.step, 1, 'trained from in a new run, as the error says');
});

t.test('a run folder another run holds is refused, naming the lock and its process, with nothing written; a killed one\'s lock is taken over', async (t) => {
  const dir = t.testdir();
  const runDir = path.join(dir, 'checkpoint', 'run1');
  const holder = await holdLock(t, runDir, 'a training run');
  const lock = path.join(runDir, LOCK_FILE);
  await t.rejects(train(tinyRun(dir, { stop_after: 1 }), { log: () => undefined }), {
    message: `${runDir} is in use by process ${holder.pid} (a training run), which is writing there: a training run is refused (run it again when that is done; the lock is ${lock}: remove it if that process is not dixie's)`,
  });
  t.same(fs.readdirSync(runDir), [LOCK_FILE], 'nothing written beside the lock');
  await holder.stop();
  const result = await train(tinyRun(dir, { stop_after: 1 }), { log: () => undefined });
  t.equal(result.step, 1, 'the run trains once that process is gone');
  t.same(fs.readdirSync(runDir).sort(), ['latest', 'loss.svg', 'metrics.jsonl', 'model-1'], 'its lock taken over, and released');
});

t.test("--restore_from another run's checkpoint starts from its weights at step 0, as --model_name does; the run's own resumes", async (t) => {
  const dir = t.testdir();
  const held = { val_dataset: path.join(CHAT, 'valid.train'), val_every: 2, val_batch_count: 2, learning_rate: 0.01 };
  const other = await train(tinyRun(dir, { ...held, run_name: 'other', stop_after: 6 }), { log: () => undefined });
  const otherCheckpoint = other.checkpoint as string;
  // The other run's best, as if its held-out data had been far easier than this run's: no loss of this run is below it.
  const stateFile = path.join(otherCheckpoint, 'state.json');
  fs.writeFileSync(stateFile, JSON.stringify({ ...readTrainState(otherCheckpoint), best: { step: 6, loss: 0.001, validationsSince: 0 } }));

  const lines: string[] = [];
  const fromCheckpoint = { ...held, dataset: path.join(CHAT, 'train', 'friends.train'), seed: 99, early_stopping: 1, stop_after: 4 };
  const started = await train(tinyRun(dir, { ...fromCheckpoint, run_name: 'new', restore_from: otherCheckpoint }), { log: collect(lines) });
  t.ok(lines.includes(`starting from the weights of ${otherCheckpoint}, a checkpoint of another run, at step 0`), lines.slice(0, 3).join('\n'));
  t.equal(started.step, 4, '--stop_after counts this run\'s steps');
  t.equal(started.stepsThisRun, 4);
  t.equal(started.stoppedBy, 'stop_after', 'never stopped early by the other run\'s best');
  t.not(started.best?.loss, 0.001);
  t.same(readMetrics(path.join(started.runDir, 'metrics.jsonl')).filter((r) => r.type === 'val').map((r) => r.step), [0, 2, 4], 'validated from its own step 0');
  const named = await train(tinyRun(dir, { ...fromCheckpoint, run_name: 'named', fresh_model: false, model_name: otherCheckpoint }), { log: () => undefined });
  t.ok(weightBytes(started.checkpoint as string).equals(weightBytes(named.checkpoint as string)), 'the weights of a run given it as --model_name: fresh Adam, data order from its own seed');

  const own = await train(tinyRun(dir, { ...held, run_name: 'other', restore_from: otherCheckpoint, stop_after: 8 }), { log: collect(lines) });
  t.ok(lines.includes(`resuming from ${otherCheckpoint} at step 6`));
  t.equal(own.stepsThisRun, 2, 'its own checkpoint resumes the run');
});

t.test('the learning rate schedule: constant, or warmup then cosine cycles', async (t) => {
  const o = { ...DEFAULT_TRAIN_OPTIONS, dataset: '', learning_rate: 1e-3, learning_rate_min: 1e-4, learning_rate_warmup: 10, learning_rate_period: 100 };
  t.equal(learningRate(o, 50), 1e-3);
  const cos = { ...o, learning_rate_cos: true };
  t.equal(learningRate(cos, 0), 1e-4, 'warmup starts at lr / warmup');
  t.equal(learningRate(cos, 9), 1e-3);
  t.equal(learningRate(cos, 10), 1e-3, 'the cycle starts at the top');
  t.ok(Math.abs(learningRate(cos, 60) - 5.5e-4) < 1e-12, 'half way: the mean of top and bottom');
  t.equal(learningRate(cos, 110), 1e-3, 'and restarts');
});

t.test('training warns of invalid UTF-8 by file:line, and refuses a binary file in the dataset', async (t) => {
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  const chat = fs.readFileSync(path.join(CHAT, 'train', 'work.train'));
  fs.writeFileSync(path.join(data, 'a.train'), Buffer.concat([Buffer.from('1|mom|caf'), Buffer.from([0xe9]), Buffer.from(' au lait <EOM>\n'), chat]));
  const lines: string[] = [];
  const result = await train(tinyRun(dir, { dataset: data, stop_after: 1 }), { log: collect(lines) });
  t.equal(result.step, 1, 'trained');
  t.ok(lines.includes(`warning: ${path.join(data, 'a.train')}:1: invalid UTF-8 (read as U+FFFD)`), lines.slice(0, 3).join('\n'));

  fs.writeFileSync(path.join(data, 'photo.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46]));
  await t.rejects(train(tinyRun(dir, { dataset: data, stop_after: 1, run_name: 'binary' }), { log: () => undefined }), {
    message: `${path.join(data, 'photo.jpg')}:1: a NUL byte (at byte 4): a binary file (or UTF-16 text), not UTF-8 text; take it out of the dataset`,
  });
  t.notOk(fs.existsSync(path.join(dir, 'checkpoint', 'binary', 'model-1')), 'nothing trained on it');
});
