// bin/download-model: fetches OpenAI's GPT-2 weights from the Hugging Face hub (or a mirror) into models/<name>/.
import { DEFAULT_HUB, downloadModel } from '../../lib/download/download_model';
import { renamedReleaseNotice } from '../../lib/formats/resolve_model';
import { commandLine } from './command_line';

async function main(): Promise<void> {
  const argv = await commandLine('download-model')
    .usage('$0 <model...>\n\nDownloads GPT-2 (config.json, model.safetensors, vocab.json, merges.txt) into models/<model>/ '
      + '(or $DIXIE_MODELS_DIR/<model>/). Models: 124M, 355M, 774M, 1558M, or gpt2, gpt2-medium, gpt2-large, gpt2-xl (117M and 345M, their old names, are 124M and 355M). '
      + 'An interrupted download resumes where it stopped when run again.')
    .option('mirror', { type: 'string', describe: `hub or mirror base URL (default $DIXIE_MIRROR, $HF_ENDPOINT, ${DEFAULT_HUB}); $HF_TOKEN is sent to it if set` })
    .option('force', { type: 'boolean', default: false, describe: 'download files again even if present' })
    .option('retries', { type: 'number', default: 5, describe: 'retries after a dropped connection' })
    .example('$0 124M', 'the smallest GPT-2, into models/124M')
    .example('$0 gpt2-medium --mirror https://hf-mirror.com', 'the 355M model from a mirror')
    .demandCommand(1, 'name the model to download (e.g. 124M)')
    .strict()
    .help()
    .parseAsync();
  for (const name of argv._.map(String)) {
    const renamed = renamedReleaseNotice(name, 'downloading');
    if (renamed) process.stderr.write(`${renamed}\n`);
    const folder = await downloadModel(name, { mirror: argv.mirror, force: argv.force, retries: argv.retries });
    const c = folder.config;
    process.stderr.write(`${folder.dir}: GPT-2 with ${c?.nLayer} layers, ${c?.nHead} heads, ${c?.nEmbd} channels, context ${c?.nCtx}, vocabulary ${c?.vocabSize}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`download-model: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
