// What bin/train says of its options and data before and as it trains: a context longer than the model's named by
// its flags, the chat check turned off for text that only looks like chat, chunks too short to ever be drawn.
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
