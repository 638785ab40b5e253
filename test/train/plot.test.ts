// The loss curve's SVG is written atomically: a plot that fails says which file and leaves no temporary file.
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { plotMetrics } from '../../lib/train/plot';

t.test('a plot that cannot land (loss.svg is a folder) names it and leaves no temporary file', async (t) => {
  const dir = t.testdir({ 'metrics.jsonl': `${JSON.stringify({ type: 'train', step: 1, loss: 6, avg: 6, lr: 0.001, grad_norm: 1, tokens_per_s: 100, time: 1 })}\n`, 'loss.svg': { 'keep.txt': 'x' } });
  await t.rejects(plotMetrics(path.join(dir, 'metrics.jsonl')), { message: new RegExp(`-> '${path.join(dir, 'loss.svg').replace(/[.]/g, '\\.')}'$`) });
  t.same(fs.readdirSync(dir).sort(), ['loss.svg', 'metrics.jsonl'], 'no temporary file beside it');
  t.same(fs.readdirSync(path.join(dir, 'loss.svg')), ['keep.txt'], 'the folder in the way is untouched');
  const svg = await plotMetrics(path.join(dir, 'metrics.jsonl'), path.join(dir, 'curve.svg'));
  t.match(fs.readFileSync(svg, 'utf8'), /<polyline /, 'elsewhere the same log plots');
});

// A run folder as training leaves it: the metrics log, and the checkpoint named `best` (when there is one).
function runFolder(t: Test, val: [number, number][], best: number | null): string {
  const train = Array.from({ length: 40 }, (_, i) => ({ type: 'train', step: i + 1, loss: 6 - i * 0.1, avg: 6 - i * 0.09, lr: 0.001, grad_norm: 1, tokens_per_s: 100, time: i + 1 }));
  const records = [...train, ...val.map(([step, loss]) => ({ type: 'val', step, loss, time: step }))].sort((a, b) => a.step - b.step);
  const files: Record<string, unknown> = { 'metrics.jsonl': records.map((r) => `${JSON.stringify(r)}\n`).join('') };
  if (best !== null) {
    files.best = `model-${best}\n`;
    files[`model-${best}`] = { 'state.json': JSON.stringify({ step: best, seed: 1, dataRng: [1, 2, 3, 4], sampleRng: [5, 6, 7, 8], lossAverage: [1, 1], tokens: 0, trainSeconds: best, audiences: [], best: { step: best, loss: 3.37, validationsSince: 0 }, options: { val_split: 0.1, val_every: 10, keep_best: true } }) };
  }
  return t.testdir(files as Parameters<Test['testdir']>[0]);
}

async function plotted(dir: string): Promise<string> {
  return fs.readFileSync(await plotMetrics(path.join(dir, 'metrics.jsonl')), 'utf8');
}

// The validation points in the order of the log, and the ring, as drawn.
function points(svg: string): { val: string[]; best: string[] } {
  return {
    val: [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)" r="3" fill="#d94801"\/>/g)].map((m) => `${m[1]},${m[2]}`),
    best: [...svg.matchAll(/<circle class="best" cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => `${m[1]},${m[2]}`),
  };
}

const VAL: [number, number][] = [[0, 6.2], [10, 4.1], [20, 3.37], [30, 3.5]];

t.test('the best checkpoint is ringed at its validation point, its step and loss in the legend', async (t) => {
  const svg = await plotted(runFolder(t, VAL, 20));
  const { val, best } = points(svg);
  t.equal(val.length, 4);
  t.same(best, [val[2]], 'one ring, on step 20\'s point');
  t.equal(new Set(val).size, 4, 'on no other point');
  t.match(svg, `<title>best checkpoint: step 20, loss ${(3.37).toFixed(4)}</title>`);
  t.match(svg, `>best checkpoint: step 20, loss ${(3.37).toFixed(4)}</text>`, 'in the legend');
});

t.test('no ring where the run names no best checkpoint', async (t) => {
  const svg = await plotted(runFolder(t, VAL, null));
  t.equal(points(svg).val.length, 4);
  t.same(points(svg).best, []);
  t.notMatch(svg, 'best checkpoint');
});
