// bin/plot: draws a run's loss curve (training loss, running average, validation loss, its best checkpoint) as an SVG.
import fs from 'node:fs';
import path from 'node:path';
import { plotMetrics } from '../../lib/train/plot';
import { commandLine } from './command_line';

async function main(): Promise<void> {
  const argv = await commandLine('plot')
    .usage('$0 <run> [options]\n\nWrites the loss curve of a training run as an SVG (by default loss.svg beside its metrics.jsonl), the validation point of the run\'s best checkpoint (--keep_best) ringed.\n<run> is a run name (checkpoint/<run>), a run folder, or a metrics.jsonl file.')
    .demandCommand(1, 1, 'give the run')
    .option('checkpoint_dir', { type: 'string', default: 'checkpoint', describe: 'folder of the runs' })
    .option('out', { type: 'string', describe: 'the SVG to write (default: loss.svg in the run folder)' })
    .example('$0 run1', 'writes checkpoint/run1/loss.svg')
    .strict()
    .help()
    .parseAsync();
  const run = String(argv._[0]);
  const candidates = [run, path.join(run, 'metrics.jsonl'), path.join(argv.checkpoint_dir, run, 'metrics.jsonl')];
  const metrics = candidates.find((c) => fs.existsSync(c) && fs.statSync(c).isFile());
  if (!metrics) throw new Error(`no metrics log for ${JSON.stringify(run)} (looked for ${candidates.slice(1).join(' and ')})`);
  console.log(await plotMetrics(metrics, argv.out));
}

main().catch((err: unknown) => {
  process.stderr.write(`plot: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
