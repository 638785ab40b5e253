// GGUF files written here from the specification, independently of lib/formats/gguf.ts, as llama.cpp's tools lay
// out a GPT-2 (convert_hf_to_gguf.py, llama-quantize): tensors under llama.cpp's names in Hugging Face's order,
// alignment 64, metadata keys dixie does not use (u64 and bool values among them), the vocabulary of
// test/fixtures/tiny-vocab.
import fs from 'node:fs';
import path from 'node:path';

export const TINY_VOCAB = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'tiny-vocab');

export interface RawTensor {
  name: string;
  dims: number[];  // innermost first
  type: number;    // ggml's
  data: Buffer;
}

// [rows, cols] row-major -> [cols, rows] row-major.
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

export function asBytes(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

// llama.cpp's name of a Hugging Face GPT-2 tensor.
export function llamaCppName(hf: string): string {
  const names: Record<string, string> = {
    'ln_1.weight': 'attn_norm.weight', 'ln_1.bias': 'attn_norm.bias', 'attn.c_attn.weight': 'attn_qkv.weight', 'attn.c_attn.bias': 'attn_qkv.bias',
    'attn.c_proj.weight': 'attn_output.weight', 'attn.c_proj.bias': 'attn_output.bias', 'ln_2.weight': 'ffn_norm.weight', 'ln_2.bias': 'ffn_norm.bias',
    'mlp.c_fc.weight': 'ffn_up.weight', 'mlp.c_fc.bias': 'ffn_up.bias', 'mlp.c_proj.weight': 'ffn_down.weight', 'mlp.c_proj.bias': 'ffn_down.bias',
    'wte.weight': 'token_embd.weight', 'wpe.weight': 'position_embd.weight', 'ln_f.weight': 'output_norm.weight', 'ln_f.bias': 'output_norm.bias',
  };
  const layer = /^h\.(\d+)\.(.*)$/.exec(hf);
  return layer ? `blk.${layer[1]}.${names[layer[2]]}` : names[hf];
}

export function writeGgufFile(file: string, config: { nLayer: number; nHead: number; nEmbd: number; nCtx: number }, fileType: number, tensors: RawTensor[]): void {
  const parts: Buffer[] = [];
  const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
  const u64 = (v: number | bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
  const str = (v: string): Buffer => Buffer.concat([u64(Buffer.byteLength(v)), Buffer.from(v)]);
  const encoder = JSON.parse(fs.readFileSync(path.join(TINY_VOCAB, 'encoder.json'), 'utf8')) as Record<string, number>;
  const tokens = Object.keys(encoder).sort((a, b) => encoder[a] - encoder[b]);
  const merges = fs.readFileSync(path.join(TINY_VOCAB, 'vocab.bpe'), 'utf8').split('\n').slice(1).filter(Boolean);
  const meta: [string, Buffer][] = [
    ['general.architecture', Buffer.concat([u32(8), str('gpt2')])],
    ['general.type', Buffer.concat([u32(8), str('model')])],
    ['general.alignment', Buffer.concat([u32(4), u32(64)])],
    ['gpt2.block_count', Buffer.concat([u32(4), u32(config.nLayer)])],
    ['gpt2.context_length', Buffer.concat([u32(10), u64(config.nCtx)])],
    ['gpt2.embedding_length', Buffer.concat([u32(4), u32(config.nEmbd)])],
    ['gpt2.feed_forward_length', Buffer.concat([u32(4), u32(4 * config.nEmbd)])],
    ['gpt2.attention.head_count', Buffer.concat([u32(4), u32(config.nHead)])],
    ['gpt2.attention.layer_norm_epsilon', Buffer.concat([u32(6), (() => { const b = Buffer.alloc(4); b.writeFloatLE(1e-5); return b; })()])],
    ['general.file_type', Buffer.concat([u32(4), u32(fileType)])],
    ['general.quantization_version', Buffer.concat([u32(4), u32(2)])],
    ['tokenizer.ggml.model', Buffer.concat([u32(8), str('gpt2')])],
    ['tokenizer.ggml.tokens', Buffer.concat([u32(9), u32(8), u64(tokens.length), ...tokens.map(str)])],
    ['tokenizer.ggml.merges', Buffer.concat([u32(9), u32(8), u64(merges.length), ...merges.map(str)])],
    ['tokenizer.ggml.add_bos_token', Buffer.concat([u32(7), Buffer.from([0])])],
  ];
  parts.push(Buffer.from('GGUF'), u32(3), u64(tensors.length), u64(meta.length));
  for (const [key, value] of meta) parts.push(str(key), value);
  let offset = 0;
  for (const x of tensors) {
    parts.push(str(x.name), u32(x.dims.length), ...x.dims.map(u64), u32(x.type), u64(offset));
    offset += Math.ceil(x.data.length / 64) * 64;
  }
  const header = Buffer.concat(parts);
  const body = tensors.map((x) => Buffer.concat([x.data, Buffer.alloc(Math.ceil(x.data.length / 64) * 64 - x.data.length)]));
  fs.writeFileSync(file, Buffer.concat([header, Buffer.alloc(Math.ceil(header.length / 64) * 64 - header.length), ...body]));
}
