// bin/encode: encodes a dataset once into a token file that bin/train reads in place (no re-encoding, and
// the tokens are never all in memory). See lib/data/token_file.ts for the format.
import os from 'node:os';
import { formatChatReport } from '../../lib/data/chat_check';
import { CHAT_CHECK_HELP, CHAT_CHECK_MODES, DEFAULT_COMBINE, describeTokens, encodeDataset } from '../../lib/data/dataset';
import { progressCallback } from '../../lib/download/progress';
import { resolveModel } from '../../lib/formats/resolve_model';
import { loadTokenizer, modelTokenizer } from '../../lib/tokenizer';
import { commandLine } from './command_line';

async function main(): Promise<void> {
  const argv = await commandLine('encode')
    .usage(
      '$0 <dataset> <out> [options]\n\n' +
        'Encodes a dataset (a file, a folder recursively, or a glob of text, chat logs, CSV or JSONL documents, or .npz) into a token file for ' +
        '`bin/train --dataset <out>`, on every core. Text files and documents are joined with <|endoftext|> into chunks of at least ' +
        '--combine characters, exactly as bin/train does on text. Chat files are checked; malformed lines stop it. ' +
        'The output may replace a token file, never a file of the dataset or any other file.',
    )
    .positional('dataset', { type: 'string', describe: 'input file, folder or glob' })
    .positional('out', { type: 'string', describe: 'the token file to write' })
    .demandCommand(2, 2, 'give the dataset and the output file')
    .option('combine', { type: 'number', default: DEFAULT_COMBINE, describe: 'join text files into chunks of at least this many characters' })
    .option('chat_check', { choices: CHAT_CHECK_MODES, default: 'auto' as const, describe: CHAT_CHECK_HELP })
    .option('model_name', { alias: 'model', type: 'string', describe: "encode with this model's vocabulary (default: GPT-2's)" })
    .option('tokenizer', { type: 'string', describe: 'encode with the vocabulary in this folder (encoder.json + vocab.bpe)' })
    .option('threads', { type: 'number', default: os.availableParallelism(), describe: 'encoding threads' })
    .example('$0 data/chat/ data/chat.tokens', 'encode a folder of chat logs')
    .wrap(Math.min(120, process.stdout.columns || 100))
    .strict()
    .help()
    .parseAsync();
  const [dataset, out] = argv._.map(String);
  const tokenizer = argv.tokenizer ? loadTokenizer(argv.tokenizer) : argv.model_name ? modelTokenizer(resolveModel(argv.model_name)) : loadTokenizer();
  // The original encode.py wrote a NumPy .npz; what is written here is read by bin/train alone, whatever its name.
  if (out.toLowerCase().endsWith('.npz')) {
    console.log(`warning: ${out} will be dixie's token file, which bin/train reads, not a NumPy .npz as encode.py wrote (numpy.load cannot read it): name it .tokens to say so`);
  }
  const started = performance.now();
  // On a terminal a bar redrawn in place; in a log, a line every ten seconds.
  const result = await encodeDataset(dataset, out, { tokenizer, combine: argv.combine, chatCheck: argv.chat_check, threads: argv.threads, onProgress: progressCallback('encoding') });
  const seconds = (performance.now() - started) / 1000;
  for (const warning of result.warnings) console.log(`warning: ${warning}`);
  if (result.chat) console.log(formatChatReport(result.chat, null));
  console.log(
    `${out}: ${describeTokens(result.tokens, result.chunks, result.files.length)} ` +
      `(${(result.bytes / 1e6).toFixed(1)} MB of text in ${seconds.toFixed(1)}s: ${(result.bytes / 1e6 / seconds).toFixed(1)} MB/s)`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`encode: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
