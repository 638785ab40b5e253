// llama.cpp's quantized tensor types (lib/formats/ggml_quants.ts) against ggml itself: rows that ggml quantized and
// expanded again with its own dequantize_row_* (test/fixtures/ggml-quants, README there) come out of dixie's
// expansion bit for bit; and a GGUF whose every matrix is of one of these types loads with those very values, the
// Conv1D matrices transposed, as weights of inference only.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { GGML_QUANTS, type GgmlQuant } from '../../lib/formats/ggml_quants';
import { asBytes, llamaCppName, transpose, writeGgufFile, type RawTensor } from './gguf_writer';

const FIXTURES = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'ggml-quants');
const ROWS = 16;
const COLS = 512;

// A fixture: ROWS x COLS values as ggml quantized them, then as ggml's dequantize_row_* expanded them.
function reference(q: GgmlQuant): { raw: Buffer; values: Float32Array } {
  const file = fs.readFileSync(path.join(FIXTURES, `${q.name}.bin`));
  const rawBytes = ((ROWS * COLS) / q.block) * q.bytes;
  const values = new Float32Array(ROWS * COLS);
  asBytes(values).set(file.subarray(rawBytes));
  return { raw: file.subarray(0, rawBytes), values };
}

t.test("every type expands as ggml's own dequantizer expands it, bit for bit", async (t) => {
  t.same(fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.bin') && f !== 'input.bin').sort(), [...GGML_QUANTS.values()].map((q) => `${q.name}.bin`).sort(), 'a reference for each type read');
  for (const q of GGML_QUANTS.values()) {
    const { raw, values } = reference(q);
    const got = new Float32Array(values.length);
    q.dequantize(raw, got);
    const differ = got.filter((v, i) => !Object.is(v, values[i])).length;
    t.equal(differ, 0, `${q.name}: ${values.length} values (rows at scales 1e-3 to 1e2, zeros, a constant, all negative, GPT-2-like): ${differ} differ`);
  }
});

// Values for a tensor of n values of type q: the reference's blocks over and over.
function tiled(q: GgmlQuant, n: number): { data: Buffer; values: Float32Array } {
  const { raw, values } = reference(q);
  const blocks = n / q.block, have = (ROWS * COLS) / q.block;
  const data = Buffer.alloc(blocks * q.bytes);
  const out = new Float32Array(n);
  for (let b = 0; b < blocks; b++) {
    raw.copy(data, b * q.bytes, (b % have) * q.bytes, ((b % have) + 1) * q.bytes);
    out.set(values.subarray((b % have) * q.block, ((b % have) + 1) * q.block), b * q.block);
  }
  return { data, values: out };
}

t.test('a GGUF whose matrices are of each type loads with the values ggml gives them, for inference', async (t) => {
  const config = { nLayer: 1, nHead: 4, nEmbd: 256, nCtx: 32, vocabSize: 457 };  // rows of whole 256-value blocks
  const shapes = Model.create(config, { trainable: false });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-ggml-quants-'));
  t.teardown(() => {
    shapes.dispose();
    fs.rmSync(work, { recursive: true, force: true });
  });
  for (const [type, q] of GGML_QUANTS) {
    const tensors: RawTensor[] = [];
    const expected = new Map<string, Float32Array>();
    for (const info of shapes.tensors) {
      const name = llamaCppName(info.name);
      if (info.shape.length === 1 || info.name === 'wpe.weight') {
        const w = Float32Array.from({ length: info.numel }, (_, i) => Math.sin(i + info.name.length));
        tensors.push({ name, dims: [...info.shape].reverse(), type: 0, data: asBytes(w) });
        expected.set(info.name, w);
        continue;
      }
      // The token embeddings are stored as Hugging Face has them; a Conv1D matrix [in, out] as [out][in].
      const [rows, cols] = info.shape;
      const conv1d = info.name !== 'wte.weight';
      const { data, values } = tiled(q, info.numel);
      tensors.push({ name, dims: conv1d ? [rows, cols] : [cols, rows], type, data });
      expected.set(info.name, conv1d ? transpose(values, cols, rows) : values);
    }
    const dir = path.join(work, q.name);
    fs.mkdirSync(dir);
    writeGgufFile(path.join(dir, 'model.gguf'), config, 15, tensors);
    const loaded = await Model.load(dir, { trainable: false });
    const wrong = shapes.tensors.filter((info) => {
      const got = loaded.getParam(info.name), want = expected.get(info.name) as Float32Array;
      return got.some((v, i) => !Object.is(v, want[i]));
    });
    t.same(wrong.map((x) => x.name), [], `${q.name}: every tensor as ggml expands it`);
    loaded.dispose();
    if (q.name === 'q4_K') {
      await t.rejects(Model.load(dir), /model\.gguf: tensor "token_embd\.weight" is q4_K: quantized weights are for inference, or the frozen base of a LoRA adapter/, 'not fine-tuned whole');
    }
  }
});
