// What bin/train says of its options and data before and as it trains: a context longer than the model's named by
// its flags, the chat check turned off for text that only looks like chat, chunks too short to ever be drawn, the
// releases' old names.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { TrainOptions, checkDataset, train } from '../../lib/train/train';
import { CHAT, TINY_VOCAB, collect, tinyRun } from './helpers';

t.test('--context_length longer than --n_ctx is named by its flags', async (t) => {
  const dir = t.testdir();
  await t.rejects(train(tinyRun(dir, { n_ctx: 16, context_length: 200 })), { message: "--context_length 200 is longer than the model's context (16, of --n_ctx): give at most 16" });
});

t.test('short chunks are warned of; --chat_check off trains on text that looks like chat', async (t) => {
  const dir = t.testdir({ data: { 'long.txt': 'the quick brown fox jumps over the lazy dog. '.repeat(40), 'scores.txt': '1|2|3\n0|4|5\n' } });
  const dataset = path.join(dir, 'data');
  await t.rejects(train(tinyRun(dir, { dataset, combine: 0, stop_after: 1 })), /scores\.txt:1: no <EOM> at the end.*\n[^]*give --chat_check off/);
  const lines: string[] = [];
  const result = await train(tinyRun(dir, { dataset, combine: 0, chat_check: 'off', stop_after: 1 }), { log: collect(lines) });
  t.equal(result.stepsThisRun, 1);
  t.ok(lines.some((l) => /^warning: 1 of the 2 chunks of .*data \(12 of [\d,]+ tokens\) are shorter than a window of 33 tokens and are never read/.test(l)), lines.join('\n'));
  await t.rejects(train(tinyRun(dir, { dataset, run_name: 'bad', chat_check: 'maybe' as never })), /--chat_check must be one of auto, all, off, got "maybe"/);
  t.ok(fs.existsSync(result.runDir));
});

t.test("--model_name 117M, the original tools' name of 124M, trains 124M and says so", async (t) => {
  const dir = t.testdir();
  const base = await train(tinyRun(dir, { run_name: 'base', stop_after: 1 }), { log: () => undefined });
  const models = path.join(dir, 'models');
  fs.cpSync(base.checkpoint as string, path.join(models, '124M'), { recursive: true });
  const before = process.env.DIXIE_MODELS_DIR;
  process.env.DIXIE_MODELS_DIR = models;
  t.teardown(() => (before === undefined ? delete process.env.DIXIE_MODELS_DIR : (process.env.DIXIE_MODELS_DIR = before)));
  const lines: string[] = [];
  const result = await train(tinyRun(dir, { fresh_model: false, model_name: '117M', run_name: 'old-name', stop_after: 1 }), { log: collect(lines) });
  t.equal(result.stepsThisRun, 1);
  t.ok(lines.includes("117M is OpenAI's old name of the release now called 124M: taking 124M"), lines.join('\n'));
  t.ok(lines.includes(`loaded 117M from ${path.join(models, '124M')}`));
});

t.test("the library refuses the options bin/train refuses, given ones alone, before it loads anything; a resumed fresh run says what it passes over", async (t) => {
  const dir = t.testdir();
  const dataset = path.join(CHAT, 'valid.train');
  const refused = async (options: Partial<TrainOptions>, message: string): Promise<void> => {
    await t.rejects(train({ dataset, threads: 1, checkpoint_dir: path.join(dir, 'checkpoint'), ...options }), { message }, JSON.stringify(options));
  };
  await refused({ tokenizer: TINY_VOCAB }, '--tokenizer is for a --fresh_model, and --model_name 124M (or the run resumed) has its own vocabulary and shape: add --fresh_model, or drop --tokenizer');
  await refused({ model_name: '355M', n_layer: 12, n_ctx: 1024 }, '--n_layer, --n_ctx are for a --fresh_model, and --model_name 355M (or the run resumed) has its own vocabulary and shape: add --fresh_model, or drop --n_layer, --n_ctx');
  await refused({ fresh_model: true, restore_from: path.join(dir, 'elsewhere') }, `--fresh_model starts from random weights, and --restore_from ${path.join(dir, 'elsewhere')} from that checkpoint's: drop one of them`);
  await refused({ lora_targets: 'attn,mlp' }, '--lora_targets is for a LoRA adapter, and the run trains every weight: give --lora_rank too, or drop --lora_targets');
  await t.rejects(checkDataset(dataset, { n_layer: 2 }), /--n_layer is for a --fresh_model/, 'checkDataset too');
  t.same(fs.readdirSync(dir), [], 'no run begun');
  // An option left undefined is one not given.
  const run = await train(tinyRun(dir, { stop_after: 1, lora_alpha: undefined, lora_targets: undefined }), { log: () => undefined });
  t.equal(run.stepsThisRun, 1);

  const lines: string[] = [];
  await train(tinyRun(dir, { stop_after: 2 }), { log: collect(lines) });
  t.ok(lines.includes(`--fresh_model (--tokenizer, --n_layer, --n_head, --n_embd, --n_ctx with it) starts a new run; ${run.runDir} has one, resumed instead with its own vocabulary and shape (for a new model: another --run_name, or move ${run.runDir} away)`), lines.join('\n'));
});
