// GGUF files that llama.cpp's own quantizer wrote, in dixie and in llama.cpp, and the files dixie writes in the same
// types: a small random GPT-2 (2 layers, 256 channels, so that every matrix row is whole 256-value blocks; GPT-2's
// vocabulary; its final norm's gain raised so that the next token is no near tie) written as f32 GGUF, quantized by
// libllama's llama_model_quantize into each of llama-quantize's file types, then loaded by dixie
// (lib/formats/ggml_quants.ts expands the blocks) and by llama.cpp. For each: the ggml types the file holds, the
// largest difference between the two's next-token probabilities, and beside it the largest difference between
// llama.cpp on the file and dixie's unquantized model (what the quantization moved). llama.cpp also quantizes the
// activations of its matrix products (to 8 bits), so the two never agree exactly; the q8_0 row, whose blocks dixie
// expands exactly, shows how far that alone goes. That the blocks expand as ggml expands them, bit for bit,
// test/formats/ggml_quants.test.ts checks against ggml itself. For the types bin/export-gguf writes, the last columns
// compare its file (writeGguf of the same model) with llama-quantize's, tensor by tensor, and time both.
// `--type Q4_K_M` (repeatable) runs the types named; `--channels 1600` makes the model 1558M's width, whose rows are
// no whole number of 256-value blocks (llama.cpp then falls back to other types for those tensors); `--layers 12`
// gives it more layers (the _M mixes treat layers differently); `--type-table FILE` also writes the ggml type
// llama-quantize gave each quantized tensor, as JSON (test/fixtures/ggml-quants/llama-quantize-*.json are such
// tables). Needs node-llama-cpp (`npm install --no-save node-llama-cpp@3.21.1`) and a C compiler (`cc`) for
// bench/llama_quantize.c.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model } from '../lib/engine/model';
import { GGUF_WEIGHT_TYPES, ggmlTypeName, openGguf, writeGguf } from '../lib/formats/gguf';
import { loadTokenizer } from '../lib/tokenizer';
import { writeTextAtomic } from '../lib/util/atomic_file';
import { optionValues, prompt } from './decode.bench';
import { GgufExport, LlamaCppModel, dixieNextTokenProbabilities, largestDifference, loadLlamaCpp } from './llama_cpp';

const THREADS = 2;
// llama.cpp's file types (llama.h's llama_ftype) as llama-quantize names them.
const FILE_TYPES: readonly (readonly [string, number])[] = [
  ['Q4_0', 2], ['Q4_1', 3], ['Q5_0', 8], ['Q5_1', 9], ['Q8_0', 7], ['Q2_K', 10], ['Q3_K_S', 11], ['Q3_K_M', 12], ['Q3_K_L', 13],
  ['Q4_K_S', 14], ['Q4_K_M', 15], ['Q5_K_S', 16], ['Q5_K_M', 17], ['Q6_K', 18], ['IQ4_NL', 25], ['IQ4_XS', 30],
];

// libllama of the node-llama-cpp build for this platform, where npm put it; null if there is none.
function libllama(): string | null {
  const platform = `${process.platform}-${process.arch}`;
  const dir = path.resolve(__dirname, '..', '..', 'node_modules', '@node-llama-cpp', platform, 'bins', platform);
  const file = fs.existsSync(dir) ? fs.readdirSync(dir).find((f) => /^libllama(\.v[\d.]+)?\.so$/.test(f)) : undefined;
  return file ? path.join(dir, file) : null;
}

// The raw data of each tensor of a GGUF file, by name, and its ggml type.
function tensorData(file: string): Map<string, { type: string; data: Buffer }> {
  const g = openGguf(file);
  const bytes = fs.readFileSync(file);
  const out = new Map(g.tensors.map((t) => [t.name, { type: ggmlTypeName(t.type), data: bytes.subarray(t.begin, t.end) }]));
  g.close();
  return out;
}

function positiveInteger(flag: string, fallback: number, rule: (n: number) => boolean, ruleText: string): number {
  const n = Number(optionValues(flag)[0] ?? fallback);
  if (!(Number.isInteger(n) && n > 0 && rule(n))) throw new Error(`${flag} must be ${ruleText}, got ${optionValues(flag)[0]}`);
  return n;
}

export async function run(): Promise<void> {
  const named = optionValues('--type');
  const unknown = named.find((n) => !FILE_TYPES.some(([name]) => name === n));
  if (unknown) throw new Error(`--type ${unknown}: the types are ${FILE_TYPES.map(([name]) => name).join(', ')}`);
  const types = named.length > 0 ? FILE_TYPES.filter(([name]) => named.includes(name)) : FILE_TYPES;
  const channels = positiveInteger('--channels', 256, (n) => n % 4 === 0, 'a positive multiple of 4 (the heads)');
  const layers = positiveInteger('--layers', 2, () => true, 'a positive integer');
  const typeTable = optionValues('--type-table')[0];
  const config = { nLayer: layers, nHead: 4, nEmbd: channels, nCtx: 128, vocabSize: 50257 };
  const lib = libllama();
  if (!(await loadLlamaCpp()) || !lib) {
    console.log('skipped: needs node-llama-cpp (npm install --no-save node-llama-cpp@3.21.1)');
    return;
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-gguf-quants-'));
  const quantize = path.join(work, 'llama_quantize');
  const built = spawnSync('cc', ['-O1', '-o', quantize, path.resolve(__dirname, '..', '..', 'bench', 'llama_quantize.c'), lib, `-Wl,-rpath,${path.dirname(lib)}`], { encoding: 'utf8' });
  if (built.status !== 0) {
    console.log(`skipped: bench/llama_quantize.c did not build: ${built.error?.message ?? built.stderr}`);
    fs.rmSync(work, { recursive: true, force: true });
    return;
  }
  const source = Model.create(config, { seed: 7, threads: THREADS, trainable: false });
  source.setParam('ln_f.weight', new Float32Array(channels).fill(12));
  const f32 = await GgufExport.write(source, 'f32');
  const tokens = prompt(13, 5);
  const unquantized = await dixieNextTokenProbabilities(source, tokens);
  const table: Record<string, Record<string, string>> = {};
  console.log(`${layers} layers, ${channels} channels\n`);
  console.log('| llama-quantize type | ggml types of its tensors | dixie vs llama.cpp | unquantized vs llama.cpp | llama.cpp\'s top probability | export-gguf\'s tensors identical | llama-quantize s | export-gguf s |');
  console.log('|---|---|---|---|---|---|---|---|');
  try {
    for (const [name, fileType] of types) {
      const dir = path.join(work, name);
      fs.mkdirSync(dir);
      const file = path.join(dir, 'model.gguf');
      let started = performance.now();
      const q = spawnSync(quantize, [f32.file, file, String(fileType)], { encoding: 'utf8' });
      if (q.status !== 0) throw new Error(`llama_model_quantize to ${name} failed: ${q.stderr.slice(-500)}`);
      const llamaSeconds = (performance.now() - started) / 1000;
      const theirs = tensorData(file);
      const types = new Map<string, number>();
      for (const t of theirs.values()) types.set(t.type, (types.get(t.type) ?? 0) + 1);
      table[name] = Object.fromEntries([...theirs].filter(([, t]) => t.type !== 'f32').map(([tensor, t]) => [tensor, t.type]));
      const model = await Model.load(dir, { trainable: false, threads: THREADS });
      const dixie = await dixieNextTokenProbabilities(model, tokens);
      model.dispose();
      const llama = (await LlamaCppModel.open(file, config.nCtx, THREADS)) as LlamaCppModel;
      const probabilities = await llama.nextTokenProbabilities(tokens);
      await llama.close();
      const top = Math.max(...probabilities.values());
      const mix = [...types].map(([type, n]) => `${type} ${n}`).join(', ');
      // bin/export-gguf's file of the same model in the same type, where it writes the type.
      const ours = GGUF_WEIGHT_TYPES.find((t) => t.toLowerCase() === name.toLowerCase());
      let identical = '-', exportSeconds = '-';
      if (ours) {
        const exported = path.join(dir, 'export.gguf');
        started = performance.now();
        await writeGguf(exported, source, loadTokenizer().vocab, { weightType: ours, name: 'bench' });
        exportSeconds = ((performance.now() - started) / 1000).toFixed(2);
        const mine = tensorData(exported);
        const same = [...theirs].filter(([tensor, t]) => mine.get(tensor)?.type === t.type && mine.get(tensor)?.data.equals(t.data)).length;
        identical = `${same} of ${theirs.size}`;
      }
      console.log(`| ${name} | ${mix} | ${largestDifference(probabilities, dixie).toExponential(1)} | ${largestDifference(probabilities, unquantized).toExponential(1)} | ${top.toFixed(2)} | ${identical} | ${llamaSeconds.toFixed(2)} | ${exportSeconds} |`);
    }
    if (typeTable) {
      await writeTextAtomic(typeTable, `${JSON.stringify({ layers, channels, types: table }, null, 1)}\n`);
      console.log(`\nllama-quantize's tensor types: ${typeTable}`);
    }
  } finally {
    source.dispose();
    f32.remove();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
