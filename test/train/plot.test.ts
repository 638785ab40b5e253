// The loss curve's SVG is written atomically: a plot that fails says which file and leaves no temporary file.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { plotMetrics } from '../../lib/train/plot';

t.test('a plot that cannot land (loss.svg is a folder) names it and leaves no temporary file', async (t) => {
  const dir = t.testdir({ 'metrics.jsonl': `${JSON.stringify({ type: 'train', step: 1, loss: 6, avg: 6, lr: 0.001, grad_norm: 1, tokens_per_s: 100, time: 1 })}\n`, 'loss.svg': { 'keep.txt': 'x' } });
  await t.rejects(plotMetrics(path.join(dir, 'metrics.jsonl')), { message: new RegExp(`-> '${path.join(dir, 'loss.svg').replace(/[.]/g, '\\.')}'$`) });
  t.same(fs.readdirSync(dir).sort(), ['loss.svg', 'metrics.jsonl'], 'no temporary file beside it');
  t.same(fs.readdirSync(path.join(dir, 'loss.svg')), ['keep.txt'], 'the folder in the way is untouched');
  const svg = await plotMetrics(path.join(dir, 'metrics.jsonl'), path.join(dir, 'curve.svg'));
  t.match(fs.readFileSync(svg, 'utf8'), /<polyline /, 'elsewhere the same log plots');
});
