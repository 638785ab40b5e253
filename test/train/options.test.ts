// What bin/train says of its options and data before and as it trains: a context longer than the model's named by
// its flags, the chat check turned off for text that only looks like chat, chunks too short to ever be drawn, the
// releases' old names.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { train } from '../../lib/train/train';
import { collect, tinyRun } from './helpers';

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
