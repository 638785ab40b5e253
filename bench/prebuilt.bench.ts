// The prebuilt addons beside the one compiled for this machine: GPT-2 124M shapes (random weights) decoded at batch 1
// on 2 threads with the source build (build/Release, -march=native) and with each prebuilt variant this CPU can run
// (prebuilds/<platform>/, native/prebuilds.js), each addon in a process of its own (bench/addon_decode.ts). The
// addons take turns, round after round, so that a change in the machine's memory bandwidth meets them all alike;
// each figure is the median over the rounds. An addon over three times slower than the source build in the first
// round (the SSE2 fallback) keeps that round's figures alone: more rounds would not change the story, and it takes
// minutes a round. `npm run bench -- prebuilt --quick`: f32 only, two rounds.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model } from '../lib/engine/model';
import type { WeightDType } from '../lib/engine/native';
import { THREADS, type AddonFigures } from './addon_decode';
import { median } from './stats';

type Prebuilds = typeof import('../native/prebuilds');

const ROOT = path.join(__dirname, '..', '..');
const CONFIG = { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 };
const RUNS = 3;
const SLOW = 3;

interface Addon {
  label: string;
  file: string;
  rounds: AddonFigures[];
}

function measure(addon: Addon, dir: string, dtypes: readonly WeightDType[]): AddonFigures {
  const out = execFileSync(process.execPath, [path.join(__dirname, 'addon_decode.js'), dir, String(RUNS), ...dtypes], {
    encoding: 'utf8',
    env: { ...process.env, DIXIE_ADDON: addon.file },
  });
  return JSON.parse(out) as AddonFigures;
}

function figure(addon: Addon, dtype: WeightDType, key: 'tokensPerSecond' | 'firstTokenMs'): number {
  return median(addon.rounds.map((r) => r.byDtype[dtype]?.[key] ?? NaN));
}

const loadAverage = (): string => os.loadavg().map((x) => x.toFixed(1)).join(' ');

export async function run(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const dtypes: readonly WeightDType[] = quick ? ['f32'] : ['f32', 'f16', 'q8_0'];
  const rounds = quick ? 2 : 5;
  const prebuilds = require(path.join(ROOT, 'native', 'prebuilds.js')) as Prebuilds;
  const platform = prebuilds.platformKey();
  const present = prebuilds.presentVariants(ROOT, platform);
  if (present.length === 0) {
    console.log(`(No prebuilt addons in ${path.join(ROOT, prebuilds.PREBUILDS_DIR, platform)}: \`npm run build:prebuilds\` compiles them, a minute or two each; then run this again.)`);
    return;
  }
  const cpuFlags = prebuilds.readCpuFlags();
  const addons: Addon[] = [];
  const notes: string[] = [];
  const source = path.join(ROOT, prebuilds.SOURCE_BUILD);
  if (fs.existsSync(source)) addons.push({ label: 'source build (build/Release)', file: source, rounds: [] });
  else notes.push(`no source build (${source}): \`npm run build:native\` compiles one for this machine`);
  for (const variant of prebuilds.VARIANTS[platform] ?? []) {
    if (!present.includes(variant.name)) continue;
    const lacking = variant.needs.filter((f) => !cpuFlags.has(f));
    if (lacking.length > 0) notes.push(`prebuilt ${platform}/${variant.name} (${variant.describe}) not run: this CPU lacks ${lacking.join(', ')}`);
    else addons.push({ label: `prebuilt ${variant.name} (\`${variant.flags}\`)`, file: prebuilds.prebuiltFile(ROOT, platform, variant.name), rounds: [] });
  }
  if (addons.length > 0) {
    const before = loadAverage();
    const reference = addons[0];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-prebuilt-bench-'));
    try {
      const model = Model.create(CONFIG, { seed: 1, threads: THREADS, trainable: false });
      await model.save(dir);
      model.dispose();
      for (let round = 0; round < rounds; round++) {
        const measured = round === 0 ? addons : addons.filter((a) => figure(a, 'f32', 'tokensPerSecond') * SLOW >= figure(reference, 'f32', 'tokensPerSecond'));
        // Each round starts with another addon, so that none always runs first (or last) after the others.
        for (let i = 0; i < measured.length; i++) {
          const addon = measured[(round + i) % measured.length];
          addon.rounds.push(measure(addon, dir, dtypes));
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const ratio = (addon: Addon, key: 'tokensPerSecond' | 'firstTokenMs'): string => `${(figure(addon, 'f32', key) / figure(reference, 'f32', key)).toFixed(2)}x`;
    console.log([
      `| addon (GPT-2 124M, batch 1, ${THREADS} threads) | compiled for | rounds | ${dtypes.map((d) => `${d} decode`).join(' | ')} | ` +
        `${dtypes.map((d) => `${d} first token (64-token prompt)`).join(' | ')} | f32 decode / ${reference.label} | f32 first token / ${reference.label} |`,
      `|---|---|---|${dtypes.map(() => '---|').join('')}${dtypes.map(() => '---|').join('')}---|---|`,
      ...addons.map((addon) => `| ${addon.label} | ${addon.rounds[0].features.join(' ') || 'no vector extensions'} | ${addon.rounds.length} | ` +
        `${dtypes.map((d) => `${figure(addon, d, 'tokensPerSecond').toFixed(1)} tok/s`).join(' | ')} | ` +
        `${dtypes.map((d) => `${figure(addon, d, 'firstTokenMs').toFixed(0)} ms`).join(' | ')} | ` +
        `${ratio(addon, 'tokensPerSecond')} | ${ratio(addon, 'firstTokenMs')} |`),
    ].join('\n'));
    notes.unshift(`load average (1, 5, 15 min) before: ${before}; after: ${loadAverage()}`);
  }
  for (const note of notes) console.log(`\n(${note}.)`);
}
