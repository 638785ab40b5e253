// bin/export-gguf of a LoRA adapter: llama.cpp's adapter file (general.type "adapter", adapter.type "lora"), each
// adapted matrix's factors under its GGUF name with ".lora_a" [in, r] and ".lora_b" [r, out], each module's own
// scaling (here alpha_pattern makes them differ) multiplied into B with the file's alpha 0, as llama.cpp reads it
// (`npm run bench -- gguf_lora` compares its predictions with dixie's); quantized types refused; the file taken for a
// model is named as an adapter.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { openGguf } from '../../lib/formats/gguf';
import { inspectModelFolder } from '../../lib/formats/model_folder';
import { writePeftAdapter } from '../../lib/formats/peft';
import { lcg } from '../engine/helpers';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const C = 32;
const RANK = 4;

function exportGguf(...args: string[]): ReturnType<typeof spawnSync> {
  return spawnSync(process.execPath, [path.join(ROOT, 'bin', 'export-gguf'), ...args], { encoding: 'utf8' });
}

t.test("an adapter as llama.cpp's LoRA file: names, shapes, and each module's scaling in its B", async (t) => {
  const dir = t.testdir({});
  const next = lcg(3);
  const factor = (n: number): Float32Array => Float32Array.from({ length: n }, () => next() - 0.5);
  const tensors = {
    'h.0.attn.c_attn': { a: factor(RANK * C), b: factor(3 * C * RANK) },
    'h.1.mlp.c_fc': { a: factor(RANK * C), b: factor(4 * C * RANK) },
    'h.1.mlp.c_proj': { a: factor(RANK * 4 * C), b: factor(C * RANK) },
  };
  const adapterDir = path.join(dir, 'family');
  await writePeftAdapter(adapterDir, { baseModel: 'gpt2', r: RANK, alpha: 16, targets: ['c_attn', 'c_fc', 'c_proj'], tensors, alphaPattern: { c_fc: 2 } });
  const out = path.join(dir, 'family-lora.gguf');
  const run = exportGguf(adapterDir, out, '--type', 'f32');
  t.equal(run.status, 0, String(run.stderr));
  t.match(String(run.stderr), /family -> .*family-lora\.gguf: LoRA adapter, f32 \(3 matrices, rank 4\)\nover its base's GGUF \(bin\/export-gguf of the base, gpt2\): llama-server -m base\.gguf --lora /);
  const g = openGguf(out);
  const bytes = fs.readFileSync(out);
  t.teardown(() => g.close());
  t.match(Object.fromEntries(g.metadata), { 'general.architecture': 'gpt2', 'general.type': 'adapter', 'adapter.type': 'lora', 'adapter.lora.alpha': 0, 'general.file_type': 0 });
  const expected: [string, number[], Float32Array][] = [
    ['blk.0.attn_qkv.weight.lora_a', [C, RANK], tensors['h.0.attn.c_attn'].a],
    ['blk.0.attn_qkv.weight.lora_b', [RANK, 3 * C], tensors['h.0.attn.c_attn'].b.map((v) => v * (16 / RANK))],
    ['blk.1.ffn_up.weight.lora_a', [C, RANK], tensors['h.1.mlp.c_fc'].a],
    ['blk.1.ffn_up.weight.lora_b', [RANK, 4 * C], tensors['h.1.mlp.c_fc'].b.map((v) => v * (2 / RANK))],
    ['blk.1.ffn_down.weight.lora_a', [4 * C, RANK], tensors['h.1.mlp.c_proj'].a],
    ['blk.1.ffn_down.weight.lora_b', [RANK, C], tensors['h.1.mlp.c_proj'].b.map((v) => v * (16 / RANK))],
  ];
  t.same(g.tensors.map((x) => [x.name, x.dims]), expected.map(([name, dims]) => [name, dims]), 'a and b of each matrix, as llama.cpp names and shapes them');
  for (const [name, , values] of expected) {
    const info = g.tensors.find((x) => x.name === name);
    const got = info ? new Float32Array(bytes.buffer.slice(bytes.byteOffset + info.begin, bytes.byteOffset + info.end)) : new Float32Array();
    t.same(Array.from(got), Array.from(values), `${name}: the factor${name.endsWith('lora_b') ? ', times its module\'s alpha / r' : ''}`);
  }
  // Alone in a folder, the file is that folder's GGUF, and is named for what it is rather than a model lacking sizes.
  const alone = path.join(dir, 'alone');
  fs.mkdirSync(alone);
  fs.copyFileSync(out, path.join(alone, 'family-lora.gguf'));
  t.throws(() => inspectModelFolder(alone), { message: `${path.join(alone, 'family-lora.gguf')}: metadata "general.type" is "adapter": a LoRA adapter for llama.cpp's --lora, not a model; dixie reads adapters as PEFT folders (adapter_config.json + adapter_model.safetensors)` });

  const quantized = exportGguf(adapterDir, path.join(dir, 'q.gguf'), '--type', 'q4_K_M');
  t.equal(quantized.status, 1);
  t.match(String(quantized.stderr), /^export-gguf: an adapter's factors are written in f32, f16, bf16, not q4_K_M/);
  t.notOk(fs.existsSync(path.join(dir, 'q.gguf')));
});
