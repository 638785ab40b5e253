// bin/export-gguf and lib/formats/gguf: a small model written as GGUF in each weight type, read back by an
// independent reader written from the GGUF specification below, and compared with the model tensor by tensor.
// (That llama.cpp itself loads these files and predicts what dixie predicts is checked by the decode bench when
// node-llama-cpp is installed: bench/llama_cpp.ts, figures in bench/NOTES.md.)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { f32ToBf16, f32ToF16 } from '../../lib/formats/safetensors';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const VOCAB = path.join(ROOT, 'test', 'fixtures', 'tiny-vocab');
const CONFIG = { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 457 };

type Value = number | bigint | string | boolean | Value[];
interface TensorInfo { name: string; dims: number[]; type: number; offset: number }
interface Gguf { version: number; metadata: Map<string, Value>; tensors: TensorInfo[]; dataStart: number; bytes: Buffer }

function readGguf(file: string): Gguf {
  const bytes = fs.readFileSync(file);
  let at = 0;
  const u32 = (): number => { at += 4; return bytes.readUInt32LE(at - 4); };
  const u64 = (): number => { at += 8; return Number(bytes.readBigUInt64LE(at - 8)); };
  const str = (): string => { const n = u64(); at += n; return bytes.toString('utf8', at - n, at); };
  const value = (type: number): Value => {
    switch (type) {
      case 0: at += 1; return bytes.readUInt8(at - 1);
      case 4: return u32();
      case 5: at += 4; return bytes.readInt32LE(at - 4);
      case 6: at += 4; return bytes.readFloatLE(at - 4);
      case 7: at += 1; return bytes.readUInt8(at - 1) !== 0;
      case 8: return str();
      case 9: { const elem = u32(); const n = u64(); return Array.from({ length: n }, () => value(elem)); }
      case 10: at += 8; return bytes.readBigUInt64LE(at - 8);
      default: throw new Error(`value type ${type} not expected at byte ${at}`);
    }
  };
  if (bytes.toString('latin1', 0, 4) !== 'GGUF') throw new Error('no GGUF magic');
  at = 4;
  const version = u32();
  const nTensors = u64();
  const nMeta = u64();
  const metadata = new Map<string, Value>();
  for (let i = 0; i < nMeta; i++) { const key = str(); metadata.set(key, value(u32())); }
  const tensors: TensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const alignment = Number(metadata.get('general.alignment') ?? 32);
  return { version, metadata, tensors, dataStart: Math.ceil(at / alignment) * alignment, bytes };
}

function elementBytes(type: number): number {
  return type === 0 ? 4 : 2;
}

function tensorBytes(g: Gguf, name: string): Buffer {
  const info = g.tensors.find((x) => x.name === name);
  if (!info) throw new Error(`no tensor ${name}`);
  const begin = g.dataStart + info.offset;
  return g.bytes.subarray(begin, begin + info.dims.reduce((n, d) => n * d, elementBytes(info.type)));
}

// [rows, cols] row-major -> [cols, rows] row-major.
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

function asBytes(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-gguf-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
const modelDir = path.join(work, 'tiny');
let model: Model;

t.before(async () => {
  model = Model.create(CONFIG, { seed: 11, device: 'cpu' });
  await model.save(modelDir);
  for (const f of ['encoder.json', 'vocab.bpe']) fs.copyFileSync(path.join(VOCAB, f), path.join(modelDir, f));
});
t.teardown(() => model.dispose());

function exportGguf(...args: string[]): ReturnType<typeof spawnSync> {
  return spawnSync(process.execPath, [path.join(ROOT, 'bin', 'export-gguf'), ...args], { encoding: 'utf8' });
}

for (const [type, ggmlType, fileType] of [['f32', 0, 0], ['f16', 1, 1], ['bf16', 30, 32]] as const) {
  t.test(`${type}: the header, the vocabulary and every tensor`, async (t) => {
    const out = path.join(work, `tiny-${type}.gguf`);
    const run = exportGguf(modelDir, out, '--type', type);
    t.equal(run.status, 0, String(run.stderr));
    t.match(String(run.stderr), new RegExp(`tiny -> .*tiny-${type}\\.gguf: ${type} \\(2 layers, 4 heads, 64 channels, context 64, vocabulary 457\\)`));
    t.same(fs.readdirSync(work).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left behind');
    const g = readGguf(out);
    t.equal(g.version, 3);
    const meta = Object.fromEntries(g.metadata);
    t.match(meta, {
      'general.architecture': 'gpt2', 'general.name': 'tiny', 'general.file_type': fileType, 'general.alignment': 32,
      'gpt2.context_length': 64, 'gpt2.embedding_length': 64, 'gpt2.feed_forward_length': 256, 'gpt2.block_count': 2,
      'gpt2.attention.head_count': 4, 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'gpt-2',
      'tokenizer.ggml.bos_token_id': 456, 'tokenizer.ggml.eos_token_id': 456,
    });
    t.ok(Math.abs(Number(meta['gpt2.attention.layer_norm_epsilon']) - 1e-5) < 1e-12);
    const encoder = JSON.parse(fs.readFileSync(path.join(VOCAB, 'encoder.json'), 'utf8')) as Record<string, number>;
    const tokens = meta['tokenizer.ggml.tokens'] as string[];
    t.equal(tokens.length, 457);
    t.ok(Object.entries(encoder).every(([tok, id]) => tokens[id] === tok), 'tokens in id order, as encoder.json spells them');
    const types = meta['tokenizer.ggml.token_type'] as number[];
    t.same([types[456], types[0], new Set(types).size], [3, 1, 2], '<|endoftext|> is the one control token');
    const mergeLines = fs.readFileSync(path.join(VOCAB, 'vocab.bpe'), 'utf8').split('\n').slice(1).filter(Boolean);
    t.same(meta['tokenizer.ggml.merges'], mergeLines);

    t.equal(g.tensors.length, 2 + 12 * 2 + 2, 'token and position embeddings, 12 per layer, the final norm; no output.weight (tied)');
    t.ok(g.tensors.every((x) => x.offset % 32 === 0), 'every tensor aligned');
    const last = g.tensors[g.tensors.length - 1];
    t.equal(g.bytes.length, g.dataStart + Math.ceil((last.offset + last.dims.reduce((n, d) => n * d, elementBytes(last.type))) / 32) * 32);
    const matrix = (w: Float32Array): Buffer => asBytes(type === 'f32' ? w : type === 'f16' ? f32ToF16(w) : f32ToBf16(w));
    const C = 64;
    t.same(g.tensors.find((x) => x.name === 'token_embd.weight'), { name: 'token_embd.weight', dims: [C, 457], type: ggmlType, offset: 0 });
    t.ok(tensorBytes(g, 'token_embd.weight').equals(matrix(model.getParam('wte.weight'))), 'token_embd = wte');
    t.ok(tensorBytes(g, 'position_embd.weight').equals(asBytes(model.getParam('wpe.weight'))), 'position_embd = wpe, float32');
    const conv1d: [string, string, number, number][] = [
      ['attn_qkv', 'attn.c_attn', C, 3 * C], ['attn_output', 'attn.c_proj', C, C],
      ['ffn_up', 'mlp.c_fc', C, 4 * C], ['ffn_down', 'mlp.c_proj', 4 * C, C],
    ];
    for (const l of [0, 1]) {
      for (const [gg, hf, inputs, outputs] of conv1d) {
        const info = g.tensors.find((x) => x.name === `blk.${l}.${gg}.weight`);
        t.same(info && [info.dims, info.type], [[inputs, outputs], ggmlType], `blk.${l}.${gg}.weight: dims and type`);
        const w = transpose(model.getParam(`h.${l}.${hf}.weight`), inputs, outputs);
        t.ok(tensorBytes(g, `blk.${l}.${gg}.weight`).equals(matrix(w)), `blk.${l}.${gg}.weight = h.${l}.${hf}.weight transposed to [out][in]`);
        t.ok(tensorBytes(g, `blk.${l}.${gg}.bias`).equals(asBytes(model.getParam(`h.${l}.${hf}.bias`))), `blk.${l}.${gg}.bias`);
      }
      for (const [gg, hf] of [['attn_norm', 'ln_1'], ['ffn_norm', 'ln_2']]) {
        for (const p of ['weight', 'bias']) {
          t.ok(tensorBytes(g, `blk.${l}.${gg}.${p}`).equals(asBytes(model.getParam(`h.${l}.${hf}.${p}`))), `blk.${l}.${gg}.${p}`);
        }
      }
    }
    t.ok(tensorBytes(g, 'output_norm.bias').equals(asBytes(model.getParam('ln_f.bias'))), 'output_norm = ln_f');
  });
}

t.test('a vocabulary that does not fit the model is refused, and nothing is written', async (t) => {
  const out = path.join(work, 'refused.gguf');
  const fixture = path.join(ROOT, 'test', 'fixtures', 'gpt2-tiny');  // vocabulary 256, no vocabulary files
  const run = exportGguf(fixture, out);
  t.equal(run.status, 1);
  t.match(String(run.stderr), /^export-gguf: .*gpt2-tiny has no vocabulary \(encoder\.json \+ vocab\.bpe, or vocab\.json \+ merges\.txt\), and its vocab_size is 256, not GPT-2's 50257: copy in the vocabulary it was trained with\n$/);
  t.notOk(fs.existsSync(out));
  // With GPT-2's vocabulary copied in, the writer's own check: one token per id.
  const copy = path.join(work, 'gpt2-tiny-vocab');
  fs.cpSync(fixture, copy, { recursive: true });
  for (const f of ['encoder.json', 'vocab.bpe']) fs.copyFileSync(path.join(ROOT, 'lib', 'tokenizer', 'gpt2', f), path.join(copy, f));
  const mismatched = exportGguf(copy, out);
  t.equal(mismatched.status, 1);
  t.match(String(mismatched.stderr), /^export-gguf: .*encoder\.json: has 50257 tokens, the model's vocab_size is 256; GGUF needs exactly one token per id\n$/);
  t.notOk(fs.existsSync(out));
  const missing = exportGguf(path.join(work, 'no-such-model'), out);
  t.equal(missing.status, 1);
  t.match(String(missing.stderr), /^export-gguf: .*no-such-model/);
  const badType = exportGguf(modelDir, out, '--type', 'q4');
  t.not(badType.status, 0);
  t.match(String(badType.stderr), /Invalid values:\s+Argument: type, Given: "q4", Choices: "f32", "f16", "bf16"/);
});
