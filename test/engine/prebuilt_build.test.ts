// The most portable prebuilt variant (x86-64 with SSE2 alone on x64), compiled as `npm run build:prebuilds`
// compiles it, into a temporary folder, and loaded through DIXIE_ADDON in a process of its own: its logits on the
// gpt2-tiny model are the source build's, within rounding.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { loadAddon } from '../../lib/engine/native';
import { FIXTURE_DIR, loadExpected, maxAbsDiff } from './helpers';

type Prebuilds = typeof import('../../native/prebuilds');

const ROOT = path.join(__dirname, '..', '..', '..');
const prebuilds = require(path.join(ROOT, 'native', 'prebuilds.js')) as Prebuilds;
const platform = prebuilds.platformKey();
const portable = prebuilds.VARIANTS[platform]?.at(-1);

// The logits of the gpt2-tiny model on its reference inputs, from the addon DIXIE_ADDON names, as base64 float32s.
const CHILD = `
  const { Model } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'engine', 'model.js'))});
  const { loadAddon } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'engine', 'native.js'))});
  const [B, T, V] = JSON.parse(process.argv[1]);
  const inputs = Int32Array.from(JSON.parse(process.argv[2]));
  (async () => {
    const model = await Model.load(${JSON.stringify(FIXTURE_DIR)}, { maxBatch: B, maxSeq: T, threads: 2 });
    const logits = new Float32Array(B * T * V);
    await model.forward(inputs, null, B, T, logits);
    model.dispose();
    process.stdout.write(JSON.stringify({ features: loadAddon().cpuFeatures(), logits: Buffer.from(logits.buffer).toString('base64') }));
  })();`;

t.test(`the ${portable?.name ?? ''} prebuilt addon gives the source build's logits`, { skip: !portable && `nothing is prebuilt for ${platform}` }, async (t) => {
  const variant = portable as NonNullable<typeof portable>;
  const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-prebuilt-'));
  t.teardown(() => fs.rmSync(buildDir, { recursive: true, force: true }));
  const addonFile = await prebuilds.compileVariant(ROOT, variant, buildDir, 'pipe');

  const ex = loadExpected();
  const V = 256;
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', CHILD, JSON.stringify([ex.B, ex.T, V]), JSON.stringify([...ex.inputs])], {
    env: { ...process.env, DIXIE_ADDON: addonFile },
    maxBuffer: 64 << 20,
  });
  const child = JSON.parse(stdout) as { features: string[]; logits: string };
  const bytes = Buffer.from(child.logits, 'base64');
  const portableLogits = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  if (platform === 'linux-x64') t.notOk(child.features.some((f) => f.startsWith('avx')), `the child ran the portable build: compiled for [${child.features.join(' ')}]`);

  const model = await Model.load(FIXTURE_DIR, { maxBatch: ex.B, maxSeq: ex.T, threads: 2 });
  const sourceLogits = new Float32Array(ex.B * ex.T * V);
  await model.forward(ex.inputs, null, ex.B, ex.T, sourceLogits);
  model.dispose();
  const diff = maxAbsDiff(portableLogits, sourceLogits);
  t.ok(diff <= 1e-5, `logits within 1e-5 of the source build's, compiled for [${loadAddon().cpuFeatures().join(' ')}] (max diff ${diff.toExponential(2)})`);
});
