// Run by checkpoint.test.ts as a child process that the test kills with SIGKILL in the middle of a save:
// trains with the options given as JSON in argv[2]; when the save of step argv[4] reaches phase argv[3], prints
// "PAUSED <folder>" and waits to be killed.
import { SavePhase } from '../../lib/train/checkpoint';
import { TrainOptions, train } from '../../lib/train/train';

const options = JSON.parse(process.argv[2]) as Partial<TrainOptions> & { dataset: string };
const phase = process.argv[3] as SavePhase;
const step = Number(process.argv[4]);

train(options, {
  log: () => undefined,
  onSavePhase: async (at, dir) => {
    if (at !== phase || !dir.includes(`model-${step}`)) return;
    process.stdout.write(`PAUSED ${dir}\n`);
    setInterval(() => undefined, 1000);
    await new Promise<never>(() => undefined);
  },
}).then(
  () => process.stdout.write('FINISHED\n'),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exitCode = 1;
  },
);
