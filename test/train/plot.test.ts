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

// A run folder as training leaves it: the metrics log, and the newest checkpoint's state (what the best was when it
// was saved), named by `latest`.
function runFolder(t: Test, val: [number, number][], state: { best: { step: number; loss: number; validationsSince: number } | null; options: Record<string, unknown> } | null): string {
  const train = Array.from({ length: 40 }, (_, i) => ({ type: 'train', step: i + 1, loss: 6 - i * 0.1, avg: 6 - i * 0.09, lr: 0.001, grad_norm: 1, tokens_per_s: 100, time: i + 1 }));
  const records = [...train, ...val.map(([step, loss]) => ({ type: 'val', step, loss, time: step }))].sort((a, b) => a.step - b.step);
  const files: Record<string, unknown> = { 'metrics.jsonl': records.map((r) => `${JSON.stringify(r)}\n`).join('') };
  if (state) {
    files.latest = 'model-30\n';
    files['model-30'] = { 'state.json': JSON.stringify({ step: 30, seed: 1, dataRng: [1, 2, 3, 4], sampleRng: [5, 6, 7, 8], lossAverage: [1, 1], tokens: 0, trainSeconds: 30, audiences: [], ...state }) };
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
const HELD_OUT = { val_split: 0.1, val_every: 10, keep_best: true };

t.test('the best checkpoint is ringed at its validation point, its step and loss in the legend', async (t) => {
  const svg = await plotted(runFolder(t, VAL, { best: { step: 20, loss: 3.37, validationsSince: 1 }, options: HELD_OUT }));
  const { val, best } = points(svg);
  t.equal(val.length, 4);
  t.same(best, [val[2]], 'one ring, on step 20\'s point');
  t.equal(new Set(val).size, 4, 'on no other point');
  t.match(svg, `<title>best checkpoint: step 20, loss ${(3.37).toFixed(4)}</title>`);
  t.match(svg, `>best checkpoint: step 20, loss ${(3.37).toFixed(4)}</text>`, 'in the legend');
});

t.test('a validation lower than the newest checkpoint\'s best, logged since, is the best: it is being saved', async (t) => {
  const val: [number, number][] = [...VAL, [40, 3.2]];
  const svg = await plotted(runFolder(t, val, { best: { step: 20, loss: 3.37, validationsSince: 1 }, options: HELD_OUT }));
  t.same(points(svg).best, [points(svg).val[4]], 'on step 40\'s point');
  t.match(svg, '>best checkpoint: step 40, loss 3.2000</text>');
  const higher = await plotted(runFolder(t, [...VAL, [40, 3.4]], { best: { step: 20, loss: 3.37, validationsSince: 2 }, options: HELD_OUT }));
  t.same(points(higher).best, [points(higher).val[2]], 'one above it leaves the best where it was');
});

t.test('no ring without a best checkpoint', async (t) => {
  const startBest: [number, number][] = VAL.map(([step, loss]) => [step, step === 0 ? 3 : loss]);
  for (const [why, val, state] of [
    ['no checkpoint yet', VAL, null],
    ['validation on training data (no held-out data)', VAL, { best: null, options: { val_every: 10, keep_best: true } }],
    ['--no-keep_best', VAL, { best: { step: 20, loss: 3.37, validationsSince: 1 }, options: { ...HELD_OUT, keep_best: false } }],
    ['no validation below the starting model\'s', startBest, { best: { step: 0, loss: 3, validationsSince: 3 }, options: HELD_OUT }],
  ] as const) {
    const svg = await plotted(runFolder(t, val, state));
    t.equal(points(svg).val.length, 4, why);
    t.same(points(svg).best, [], why);
    t.notMatch(svg, 'best checkpoint', why);
  }
});
