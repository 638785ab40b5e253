// The loss curve as an SVG a browser opens: training loss per step (faint), its running average, and the
// validation loss, over steps, with the point of the best checkpoint (the lowest validation loss on held-out data)
// ringed. Written beside the metrics log while training runs, and by `bin/plot` for any run.
import path from 'node:path';
import { writeTextAtomic } from '../util/atomic_file';
import { bestCheckpoint, readTrainState } from './checkpoint';
import { MetricRecord, TrainRecord, ValRecord, readMetrics } from './metrics';
import { escapeXml } from '../util/xml';

const WIDTH = 900;
const HEIGHT = 500;
const MARGIN = { left: 64, right: 24, top: 40, bottom: 48 };
// Above this many steps the per-step loss is drawn as bucket means (an SVG of a million points helps no one).
const MAX_POINTS = 1500;
const BEST_COLOR = '#238b45';

// About `count` round tick values covering [lo, hi].
function ticks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo || 1;
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function bucketMeans(points: [number, number][]): [number, number][] {
  if (points.length <= MAX_POINTS) return points;
  const size = Math.ceil(points.length / MAX_POINTS);
  const out: [number, number][] = [];
  for (let i = 0; i < points.length; i += size) {
    const bucket = points.slice(i, i + size);
    out.push([bucket.reduce((s, p) => s + p[0], 0) / bucket.length, bucket.reduce((s, p) => s + p[1], 0) / bucket.length]);
  }
  return out;
}

// The validation record of the checkpoint the run names `best`, or null when it names none (no held-out data,
// --no-keep_best, no step below the model it started from).
function bestValidation(runDir: string, records: readonly MetricRecord[]): ValRecord | null {
  const best = bestCheckpoint(runDir);
  if (best === null) return null;
  const { step } = readTrainState(best);
  return records.find((r): r is ValRecord => r.type === 'val' && r.step === step) ?? null;
}

function renderLossSvg(records: readonly MetricRecord[], title: string, best: ValRecord | null = null): string {
  const train = records.filter((r): r is TrainRecord => r.type === 'train');
  const loss = bucketMeans(train.map((r) => [r.step, r.loss]));
  const avg = bucketMeans(train.map((r) => [r.step, r.avg]));
  const val = records.filter((r) => r.type === 'val').map((r): [number, number] => [r.step, r.loss]);
  const all = [...loss, ...avg, ...val];
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`,
  ];
  if (all.length === 0) {
    out.push(`<text x="${WIDTH / 2}" y="${HEIGHT / 2}" text-anchor="middle" fill="#666">no steps logged yet</text>`, '</svg>');
    return `${out.join('\n')}\n`;
  }
  const finite = all.filter((p) => Number.isFinite(p[1]));
  const x0 = Math.min(...all.map((p) => p[0]));
  const x1 = Math.max(x0 + 1, ...all.map((p) => p[0]));
  let y0 = Math.min(...finite.map((p) => p[1]));
  let y1 = Math.max(...finite.map((p) => p[1]));
  const pad = (y1 - y0) * 0.05 || 0.5;
  y0 = Math.max(0, y0 - pad);
  y1 += pad;
  const sx = (x: number): number => MARGIN.left + ((x - x0) / (x1 - x0)) * plotW;
  const sy = (y: number): number => MARGIN.top + (1 - (Math.min(Math.max(y, y0), y1) - y0) / (y1 - y0)) * plotH;
  const polyline = (points: [number, number][], style: string): string =>
    `<polyline fill="none" ${style} points="${points.filter((p) => Number.isFinite(p[1])).map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ')}"/>`;

  for (const t of ticks(y0, y1, 6)) {
    out.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  for (const t of ticks(x0, x1, 8).filter((t) => Number.isInteger(t))) {
    out.push(`<line x1="${sx(t).toFixed(1)}" x2="${sx(t).toFixed(1)}" y1="${MARGIN.top}" y2="${HEIGHT - MARGIN.bottom}" stroke="#eee"/>`);
    out.push(`<text x="${sx(t).toFixed(1)}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle">${t}</text>`);
  }
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`);
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 10}" text-anchor="middle">step</text>`);
  out.push(`<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">loss</text>`);
  if (loss.length > 0) out.push(polyline(loss, 'stroke="#9ecae1" stroke-width="1"'));
  if (avg.length > 0) out.push(polyline(avg, 'stroke="#08519c" stroke-width="2"'));
  if (val.length > 0) {
    out.push(polyline(val, 'stroke="#d94801" stroke-width="2"'));
    for (const p of val) out.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="3" fill="#d94801"/>`);
  }
  const bestLabel = best ? `best checkpoint: step ${best.step}, loss ${best.loss.toFixed(4)}` : '';
  if (best) {
    out.push(`<circle class="best" cx="${sx(best.step).toFixed(1)}" cy="${sy(best.loss).toFixed(1)}" r="7" fill="none" stroke="${BEST_COLOR}" stroke-width="2.5"><title>${bestLabel}</title></circle>`);
  }
  const legend: [string, string][] = [['#9ecae1', 'loss'], ['#08519c', 'running average'], ['#d94801', 'validation loss']];
  // Wide enough for the best checkpoint's label.
  const legendX = WIDTH - MARGIN.right - (best ? 250 : 150);
  legend.forEach(([color, label], i) => {
    const y = MARGIN.top + 16 + i * 18;
    out.push(`<line x1="${legendX}" x2="${legendX + 24}" y1="${y - 4}" y2="${y - 4}" stroke="${color}" stroke-width="3"/>`);
    out.push(`<text x="${legendX + 30}" y="${y}">${label}</text>`);
  });
  if (best) {
    const y = MARGIN.top + 16 + legend.length * 18;
    out.push(`<circle cx="${legendX + 12}" cy="${y - 4}" r="6" fill="none" stroke="${BEST_COLOR}" stroke-width="2.5"/>`);
    out.push(`<text x="${legendX + 30}" y="${y}">${bestLabel}</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// Renders a metrics log into an SVG (by default loss.svg beside it), the best checkpoint that the run folder holding
// the log keeps ringed; returns the SVG's path.
export async function plotMetrics(metricsFile: string, svgFile = path.join(path.dirname(metricsFile), 'loss.svg')): Promise<string> {
  const runDir = path.dirname(path.resolve(metricsFile));
  const records = readMetrics(metricsFile);
  await writeTextAtomic(svgFile, renderLossSvg(records, `${path.basename(runDir)}: loss`, bestValidation(runDir, records)));
  return svgFile;
}
