// bin/merge-lora: merges a LoRA adapter in PEFT's format into its base model and writes the result as a plain model
// folder, which every dixie command, Hugging Face transformers and bin/export-gguf read without the adapter.
import fs from 'node:fs';
import path from 'node:path';
import { progressCallback } from '../../lib/download/progress';
import { Model } from '../../lib/engine/model';
import { adapterOverOtherBase, modelDir, resolveModel } from '../../lib/formats/resolve_model';
import { modelTokenizer } from '../../lib/tokenizer';
import { checkpointFolder } from '../../lib/train/checkpoint';
import { renameAtomic } from '../../lib/util/atomic_file';
import { isWithin } from '../../lib/util/paths';
import { commandLine } from './command_line';

// Writes `out` whole into a hidden folder beside it (every file fsynced) and renames it into place, as checkpoints
// are written (lib/train/checkpoint.ts): a kill at any moment leaves no half-written model under `out`'s name, and
// with `replace` the old folder stays until the new one is in place.
async function writeFolderAtomic(out: string, replace: boolean, fill: (dir: string) => Promise<void>): Promise<void> {
  const temp = path.join(path.dirname(out), `.${path.basename(out)}.tmp-${process.pid}`);
  const old = path.join(path.dirname(out), `.${path.basename(out)}.old-${process.pid}`);
  fs.mkdirSync(temp, { recursive: true });
  let moved = false;
  try {
    await fill(temp);
    if (replace && fs.existsSync(out)) {
      fs.renameSync(out, old);
      moved = true;
    }
    renameAtomic(temp, out);
  } catch (err) {
    fs.rmSync(temp, { recursive: true, force: true });
    if (moved && !fs.existsSync(out)) fs.renameSync(old, out);
    throw err;
  }
  if (moved) fs.rmSync(old, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const argv = await commandLine('merge-lora')
    .usage('$0 <base> <adapter> <out>\n\nMerges a LoRA adapter in Hugging Face PEFT\'s format (a folder of adapter_config.json + '
      + 'adapter_model.safetensors) into its base model: each matrix the adapter targets becomes W + scaling * (B A)^T. '
      + 'Writes <out> as a model folder (config.json, model.safetensors in float32, the base\'s vocabulary). <base> is a model '
      + 'name under models/, a model folder (safetensors or GGUF) or a training run folder; <adapter> a folder or a name under '
      + 'models/, or a training run folder (its latest checkpoint). To use an adapter without merging, give it to bin/generate or bin/chat with --adapter. See docs/lora.md.')
    .positional('base', { type: 'string', describe: 'the base model the adapter was trained on' })
    .positional('adapter', { type: 'string', describe: 'the PEFT adapter folder' })
    .positional('out', { type: 'string', describe: 'the model folder to write' })
    .option('force', { type: 'boolean', default: false, describe: 'replace <out> if it exists' })
    .example('$0 124M adapters/mom models/mom', '124M with the adapter merged, as models/mom')
    .example('$0 models/124M adapters/mom models/mom --force', 'write models/mom again')
    .demandCommand(3, 'give the base model, the adapter and the folder to write')
    .strict()
    .help()
    .parseAsync();
  const [baseName, adapterName, outName] = argv._.map(String);
  const folder = resolveModel(baseName);
  // A run folder (bin/train --lora_rank's) stands for its latest checkpoint, as it does for --adapter elsewhere.
  const adapterNamed = modelDir(adapterName);
  const adapterDir = checkpointFolder(adapterNamed);
  const out = path.resolve(outName);
  // A training run folder named as the base stands for its latest checkpoint: replacing the run would delete them all.
  const read: [string, string][] = [['base model', folder.dir], ['adapter', adapterDir], ['adapter', adapterNamed], ['base model', baseName]];
  for (const [what, source] of read) {
    if (fs.existsSync(source) && isWithin(source, out)) {
      throw new Error(`${out} ${isWithin(out, source) ? `is the ${what} itself` : `holds the ${what}, ${source}, which replacing it would delete`}; write the merged model to another folder`);
    }
  }
  if (fs.existsSync(out) && !argv.force) throw new Error(`${out} exists; give --force to replace it`);
  const tokenizer = modelTokenizer(folder);
  // An adapter trained on chat logs (or one over a chat model) makes a chat model, as the server serves the two
  // together: the model loaded keeps the adapter's chat record (or the base's), which its save writes.
  const model = await Model.load(folder, { trainable: false, device: 'cpu', adapter: adapterDir });
  try {
    await writeFolderAtomic(out, argv.force, (dir) => model.save(dir, { tokenizer, onProgress: progressCallback('model.safetensors') }));
  } finally {
    model.dispose();
  }
  const lora = model.adapter?.config;
  const otherBase = adapterOverOtherBase(adapterDir, lora?.baseModel ?? null, folder.dir);
  if (otherBase !== null) process.stderr.write(`merge-lora: warning: ${otherBase}\n`);
  process.stderr.write(`${folder.dir} + ${adapterDir} -> ${out}: LoRA of r ${lora?.r}, lora_alpha ${lora?.alpha}${lora?.useRslora ? ' (rsLoRA)' : ''}, target_modules ${JSON.stringify(lora?.targetModules)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`merge-lora: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
