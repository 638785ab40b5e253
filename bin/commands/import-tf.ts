// bin/import-tf: converts a GPT-2 TensorFlow checkpoint (OpenAI's release, or a TensorFlow training run)
// into a dixie model folder (config.json + model.safetensors + vocabulary).
import { importTFCheckpoint } from '../../lib/formats/import_tf';
import { progressCallback } from '../../lib/download/progress';
import { openTFCheckpoint } from '../../lib/formats/tf_checkpoint';
import { inspectModelFolder } from '../../lib/formats/model_folder';
import fs from 'node:fs';
import { commandLine } from './command_line';

function listCheckpoint(src: string): void {
  // `import-tf --list … | head` closes stdout early: stop quietly.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(0);
  });
  const prefix = fs.existsSync(`${src}.index`) ? src : inspectModelFolder(src).weights;
  const ckpt = openTFCheckpoint(prefix);
  try {
    for (const t of ckpt.tensors) {
      if (t.dtype !== 'DT_STRING') ckpt.readInto(t, new Uint8Array(t.size));  // checks its crc32c
      process.stdout.write(`${t.name}\t${t.dtype}\t[${t.shape.join(', ')}]\n`);
    }
    process.stderr.write(`${ckpt.tensors.length} variables in ${ckpt.numShards} shard(s), every crc32c checked\n`);
  } finally {
    ckpt.close();
  }
}

async function main(): Promise<void> {
  const argv = await commandLine('import-tf')
    .usage('$0 <checkpoint> [out]\n\nConverts a GPT-2 TensorFlow checkpoint into a model folder that every dixie command reads. '
      + '<checkpoint> is OpenAI\'s release folder (hparams.json, encoder.json, vocab.bpe, model.ckpt.*), a run folder of '
      + 'TensorFlow training (checkpoint/run1: a `checkpoint` file naming model-N), or a checkpoint prefix (…/model-1000).')
    .positional('checkpoint', { type: 'string', describe: 'checkpoint folder or prefix' })
    .positional('out', { type: 'string', describe: 'model folder to write (may be the checkpoint folder itself)' })
    .option('hparams', { type: 'string', describe: 'hparams.json (or config.json) of the base model, when the run folder has none' })
    .option('vocab', { type: 'string', describe: 'folder with encoder.json + vocab.bpe, when the run folder has none' })
    .option('list', { type: 'boolean', default: false, describe: 'only list the variables (name, dtype, shape), checking every crc32c' })
    .example('$0 models/124M models/124M', "convert OpenAI's release in place")
    .example('$0 checkpoint/run1 models/mom --hparams models/124M/hparams.json --vocab models/124M', 'a fine-tuned run')
    .demandCommand(1, 'give the checkpoint folder')
    .strict()
    .help()
    .parseAsync();
  const [src, out] = argv._.map(String);
  if (argv.list) {
    listCheckpoint(src);
    return;
  }
  if (out === undefined) throw new Error('give the model folder to write (see --help)');
  const result = await importTFCheckpoint(src, out, {
    hparams: argv.hparams,
    vocab: argv.vocab,
    onProgress: progressCallback('model.safetensors'),
  });
  const c = result.config;
  process.stderr.write(`${result.checkpoint} -> ${out}: ${result.tensors} tensors (${c.nLayer} layers, ${c.nHead} heads, ${c.nEmbd} channels, context ${c.nCtx}, vocabulary ${c.vocabSize}); skipped ${result.skipped.length} training variables\n`);
  if (result.vocab === null) process.stderr.write(`warning: no vocabulary found beside the checkpoint; copy encoder.json + vocab.bpe into ${out} or rerun with --vocab <folder>\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`import-tf: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
