// A LoRA adapter written by bin/export-gguf (writeGgufAdapter) over its base's GGUF in llama.cpp, against dixie with
// the same PEFT adapter: a small random GPT-2 (2 layers, 256 channels, GPT-2's vocabulary, its final norm's gain
// raised so that the next token is no near tie), and an adapter of rank 8 on all four matrices of both layers whose
// factors move the predictions far, with per-module alphas (alpha_pattern) so that the modules' scalings differ.
// Printed: the largest difference between llama.cpp's and dixie's next-token probabilities without the adapter and
// with it, and how far the adapter moved llama.cpp's. Needs node-llama-cpp (`npm install --no-save
// node-llama-cpp@3.21.1`).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model } from '../lib/engine/model';
import { writeGgufAdapter } from '../lib/formats/gguf';
import { readPeftAdapter, writePeftAdapter } from '../lib/formats/peft';
import { Rng } from '../lib/util/rng';
import { prompt } from './decode.bench';
import { GgufExport, LlamaCppModel, dixieNextTokenProbabilities, largestDifference, loadLlamaCpp } from './llama_cpp';

const THREADS = 2;
const RANK = 8;

export async function run(): Promise<void> {
  if (!(await loadLlamaCpp())) {
    console.log('skipped: needs node-llama-cpp (npm install --no-save node-llama-cpp@3.21.1)');
    return;
  }
  const C = 256;
  const config = { nLayer: 2, nHead: 4, nEmbd: C, nCtx: 128, vocabSize: 50257 };
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-gguf-lora-'));
  const base = Model.create(config, { seed: 7, threads: THREADS, trainable: false });
  base.setParam('ln_f.weight', new Float32Array(C).fill(12));
  const baseDir = path.join(work, 'base');
  await base.save(baseDir);
  const f32 = await GgufExport.write(base, 'f32');
  base.dispose();
  const rng = new Rng(11);
  const factor = (n: number, scale: number): Float32Array => Float32Array.from({ length: n }, () => scale * rng.normal());
  const tensors: Record<string, { a: Float32Array; b: Float32Array }> = {};
  for (let l = 0; l < config.nLayer; l++) {
    for (const [kind, inputs, outputs] of [['attn.c_attn', C, 3 * C], ['attn.c_proj', C, C], ['mlp.c_fc', C, 4 * C], ['mlp.c_proj', 4 * C, C]] as const) {
      tensors[`h.${l}.${kind}`] = { a: factor(RANK * inputs, 0.1), b: factor(outputs * RANK, 0.1) };
    }
  }
  const adapterDir = path.join(work, 'adapter');
  await writePeftAdapter(adapterDir, { baseModel: null, r: RANK, alpha: 16, targets: ['c_attn', 'c_proj', 'c_fc'], tensors, alphaPattern: { c_fc: 4 } });
  const adapterFile = path.join(work, 'adapter.gguf');
  const tokens = prompt(13, 5);
  try {
    console.log('| adapter file | dixie vs llama.cpp, base | dixie vs llama.cpp, base + adapter | what the adapter moved (llama.cpp) | llama.cpp\'s top probability |');
    console.log('|---|---|---|---|---|');
    for (const type of ['f32', 'f16'] as const) {
      await writeGgufAdapter(adapterFile, readPeftAdapter(adapterDir), { weightType: type, name: 'bench' });
      const plain = await Model.load(baseDir, { trainable: false, threads: THREADS });
      const dixieBase = await dixieNextTokenProbabilities(plain, tokens);
      plain.dispose();
      const adapted = await Model.load(baseDir, { trainable: false, threads: THREADS, adapter: adapterDir });
      const dixieAdapted = await dixieNextTokenProbabilities(adapted, tokens);
      adapted.dispose();
      const llama = (await LlamaCppModel.open(f32.file, config.nCtx, THREADS)) as LlamaCppModel;
      const llamaBase = await llama.nextTokenProbabilities(tokens);
      const llamaAdapted = await llama.nextTokenProbabilities(tokens, adapterFile);
      await llama.close();
      const moved = largestDifference(llamaAdapted, Float32Array.from({ length: config.vocabSize }, (_, t) => llamaBase.get(t) ?? 0));
      const top = Math.max(...llamaAdapted.values());
      console.log(`| ${type}, ${(fs.statSync(adapterFile).size / 1e6).toFixed(2)} MB | ${largestDifference(llamaBase, dixieBase).toExponential(1)} | ${largestDifference(llamaAdapted, dixieAdapted).toExponential(1)} | ${moved.toExponential(1)} | ${top.toFixed(2)} |`);
    }
  } finally {
    f32.remove();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
