// GGUF export in llama-quantize's file types (native/core/ggml_quantize.h, tensorTypeOf in lib/formats/gguf.ts):
// the blocks are the bytes ggml itself writes for the same values (test/fixtures/ggml-quants, README there); every
// tensor gets the ggml type llama-quantize gave it in GPT-2 models of 12 layers by 256 channels and 2 by 1600 (tables
// written by the bench gguf_quants with llama.cpp); an exported file loads back with weights near the model's; and
// bin/export-gguf takes the types as llama.cpp's tools spell them.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { loadAddon } from '../../lib/engine/native';
import { GGML_QUANTS } from '../../lib/formats/ggml_quants';
import { GGML_TYPE, GGUF_WEIGHT_TYPES, ggmlTypeName, openGguf, tensorTypeOf, writeGguf } from '../../lib/formats/gguf';
import { loadTokenizer } from '../../lib/tokenizer';
import { asBytes, llamaCppName, TINY_VOCAB } from './gguf_writer';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'ggml-quants');
const WRITTEN = ['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0', 'q4_K', 'q5_K', 'q6_K'] as const;

function input(): Float32Array {
  const bytes = fs.readFileSync(path.join(FIXTURES, 'input.bin'));
  const values = new Float32Array(bytes.length / 4);
  asBytes(values).set(bytes);
  return values;
}

t.test("every type dixie writes is, block for block, the bytes of ggml's own quantizer", async (t) => {
  const values = input();
  for (const name of WRITTEN) {
    const q = GGML_QUANTS.get(GGML_TYPE[name]);
    if (!q) throw new Error(`no reader for ${name}`);
    const expected = fs.readFileSync(path.join(FIXTURES, `${name}.bin`)).subarray(0, (values.length / q.block) * q.bytes);
    const got = Buffer.from(await loadAddon().quantizeGgml(name, values, 2));
    t.equal(got.length, expected.length, `${name}: ${got.length} bytes`);
    let differ = 0;
    for (let b = 0; b < values.length / q.block; b++) {
      if (!got.subarray(b * q.bytes, (b + 1) * q.bytes).equals(expected.subarray(b * q.bytes, (b + 1) * q.bytes))) differ++;
    }
    t.equal(differ, 0, `${name}: ${values.length / q.block} blocks (rows at scales 1e-3 to 1e2, zeros, a constant, all negative, GPT-2-like): ${differ} differ`);
  }
});

t.test('the quantizer refuses what it cannot write, naming it', async (t) => {
  const addon = loadAddon();
  t.throws(() => addon.quantizeGgml('q3_K', new Float32Array(256), 1), /quantizeGgml: type must be one of q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K, got "q3_K"/);
  t.throws(() => addon.quantizeGgml('q4_K', new Float32Array(320), 1), /quantizeGgml: 320 values are no whole number of q4_K blocks of 256/);
});

// A GGUF tensor name's layer and its name within the layer, and its row length in a model of C channels.
function roleOf(name: string, channels: number): { tensor: string; layer: number; rowLength: number } {
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  const tensor = m ? m[2] : name;
  return { tensor, layer: m ? Number(m[1]) : 0, rowLength: tensor === 'ffn_down.weight' ? 4 * channels : channels };
}

interface TypeTable {
  layers: number;
  channels: number;
  types: Record<string, Record<string, string>>;  // llama-quantize's file type -> tensor -> its ggml type
}

for (const table of ['llama-quantize-12x256.json', 'llama-quantize-2x1600.json']) {
  t.test(`every quantized tensor gets the type llama-quantize gave it (${table})`, async (t) => {
    const { layers, channels, types } = JSON.parse(fs.readFileSync(path.join(FIXTURES, table), 'utf8')) as TypeTable;
    const quantized = GGUF_WEIGHT_TYPES.filter((w) => !['f32', 'f16', 'bf16'].includes(w));
    for (const weightType of quantized) {
      const theirs = types[weightType.toUpperCase()];
      t.ok(theirs, `${weightType} is in the table`);
      const wrong = Object.entries(theirs).filter(([name, type]) => {
        const { tensor, layer, rowLength } = roleOf(name, channels);
        return tensorTypeOf(weightType, tensor, layer, layers, rowLength) !== type;
      });
      t.same(wrong, [], `${weightType}: the types of all ${Object.keys(theirs).length} of ${layers} layers x ${channels} channels`);
    }
  });
}

// Root-mean-square of a - b over that of b.
function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

// The relative error a matrix of normally distributed weights has in each type (measured: q4_0 0.086, q4_1 0.078,
// q5_0 0.043, q5_1 0.038, q8_0 0.0054, q4_K 0.071, q5_K 0.036, q6_K 0.018), and a fifth more: a matrix written in a
// type of fewer bits than the one it should have, or with blocks misplaced, is past it.
const ERROR_BOUND: Readonly<Record<string, number>> = { q4_0: 0.1, q4_1: 0.095, q5_0: 0.052, q5_1: 0.046, q8_0: 0.0065, q4_K: 0.085, q5_K: 0.044, q6_K: 0.022 };

t.test('a model exported in each quantized type loads back with its weights within the type\'s error, tensors typed as the file says', async (t) => {
  const config = { nLayer: 3, nHead: 4, nEmbd: 256, nCtx: 32, vocabSize: 457 };  // rows of whole 256-value blocks
  const model = Model.create(config, { seed: 5, trainable: false });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-ggml-quantize-'));
  t.teardown(() => {
    model.dispose();
    fs.rmSync(work, { recursive: true, force: true });
  });
  const vocabulary = loadTokenizer(TINY_VOCAB).vocab;
  for (const weightType of ['q4_0', 'q5_1', 'q4_K_M', 'q5_K_S', 'q6_K'] as const) {
    const dir = path.join(work, weightType);
    fs.mkdirSync(dir);
    await writeGguf(path.join(dir, 'model.gguf'), model, vocabulary, { weightType, name: 'tiny' });
    const g = openGguf(path.join(dir, 'model.gguf'));
    const fileTypes = new Map(g.tensors.map((x) => [x.name, ggmlTypeName(x.type)]));
    g.close();
    const loaded = await Model.load(dir, { trainable: false });
    const far: string[] = [];
    for (const info of model.tensors) {
      const isMatrix = info.shape.length === 2 && info.name !== 'wpe.weight';
      const name = llamaCppName(info.name);
      const got = loaded.getParam(info.name), want = model.getParam(info.name);
      if (!isMatrix) {
        if (got.some((v, i) => !Object.is(v, want[i]))) far.push(`${info.name}: not its float32 values`);
        continue;
      }
      const { tensor, layer: l, rowLength } = roleOf(name, config.nEmbd);
      const type = tensorTypeOf(weightType, tensor, l, config.nLayer, rowLength);
      if (fileTypes.get(name) !== type) far.push(`${name}: ${fileTypes.get(name)}, not ${type}`);
      const error = relativeError(got, want);
      if (!(error > 0 && error < ERROR_BOUND[type])) far.push(`${info.name} (${type}): relative error ${error.toFixed(4)}`);
    }
    t.same(far, [], `${weightType}: ${new Set(fileTypes.values()).size} ggml types; every weight as it should be`);
    loaded.dispose();
  }
});

t.test('bin/export-gguf writes llama-quantize\'s types, spelt as llama.cpp\'s tools spell them', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-export-quantized-'));
  const model = Model.create({ nLayer: 2, nHead: 4, nEmbd: 256, nCtx: 32, vocabSize: 457 }, { seed: 9, trainable: false });
  t.teardown(() => {
    model.dispose();
    fs.rmSync(work, { recursive: true, force: true });
  });
  const modelDir = path.join(work, 'tiny');
  await model.save(modelDir);
  for (const f of ['encoder.json', 'vocab.bpe']) fs.copyFileSync(path.join(TINY_VOCAB, f), path.join(modelDir, f));
  const out = path.join(work, 'tiny-q4_K_M.gguf');
  const run = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'export-gguf'), modelDir, out, '--type', 'Q4_K_M'], { encoding: 'utf8' });
  t.equal(run.status, 0, run.stderr);
  t.match(run.stderr, /tiny -> .*tiny-q4_K_M\.gguf: q4_K_M \(2 layers, 4 heads, 256 channels, context 32, vocabulary 457\)/);
  const g = openGguf(out);
  t.equal(g.metadata.get('general.file_type'), 15, "llama.cpp's file type: mostly q4_K_M");
  t.equal(g.metadata.get('general.quantization_version'), 2);
  t.same([...new Set(g.tensors.map((x) => ggmlTypeName(x.type)))].sort(), ['f32', 'q4_K', 'q6_K'], 'q4_K, q6_K for the embedding and the layers with more bits, f32 vectors');
  g.close();
  const bad = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'export-gguf'), modelDir, out, '--type', 'q3_K_M'], { encoding: 'utf8' });
  t.not(bad.status, 0);
  t.match(bad.stderr, /--type q3_K_M: the types are f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K_S, q4_K_M, q5_K_S, q5_K_M, q6_K/);
});
