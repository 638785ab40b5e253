// bin/chat: a conversation in the terminal with a model fine-tuned on chat logs. You write as yourself, the
// model answers as the audience; /reset starts over, /quit (or Ctrl-D, Ctrl-C) leaves.
import readline from 'node:readline';
import { ChatSession, Generator, isAudience, seedOf } from '../../lib/generate';
import { MessageTooLongError } from '../../lib/generate/chat';
import { AUDIENCE_RULE } from '../../lib/data/chat_format';
import { trainedAudiences } from '../../lib/formats/chat_record';
import { untrainedAudience } from '../../lib/train/checkpoint';
import { COMPUTE_FLAGS, applyComputeFlags } from './compute_flags';
import { checkSeed, commandError, DEFAULT_MODEL, modelDefault, modelToLoad, samplingFlags, samplingOptions, type SamplingDefaults } from './sampling_flags';
import { adapterOverOtherBase, resolveModel } from '../../lib/formats/resolve_model';
import { commandLine } from './command_line';
import { quoted } from '../../lib/util/quoted';

const SAMPLING_DEFAULTS: SamplingDefaults = { temperature: 0.8, top_k: 40, penalize: 0.85, seed: 'random seed: the same seed and messages give the same replies' };
const DEFAULT_LENGTH = 64;

async function ask(rl: readline.Interface, lines: AsyncIterator<string>, question: string): Promise<string | null> {
  rl.setPrompt(question);
  rl.prompt();
  const next = await lines.next();
  return next.done ? null : next.value;
}

async function chooseAudience(rl: readline.Interface, lines: AsyncIterator<string>, audiences: string[]): Promise<string | null> {
  if (audiences.length === 1 || !process.stdin.isTTY) return audiences[0];
  process.stdout.write(`Audiences in this model's training data:\n${audiences.map((a, i) => `  ${i + 1}. ${a}`).join('\n')}\n`);
  for (;;) {
    const answer = await ask(rl, lines, `Talk to which (1-${audiences.length}, or a name)? `);
    if (answer === null) return null;
    const n = Number(answer.trim());
    if (Number.isInteger(n) && n >= 1 && n <= audiences.length) return audiences[n - 1];
    if (isAudience(answer.trim())) return answer.trim();
  }
}

async function main(): Promise<void> {
  const argv = await commandLine('chat')
    .usage('$0 [options]\n\nChats in the terminal with a model fine-tuned on chat logs (lines of `1|<audience>|<text> <EOM>`).\n'
      + 'You write as yourself (1), the model answers as the audience (0). Commands: /reset starts over, /quit leaves.')
    .option('model_name', { alias: 'model', type: 'string', defaultDescription: DEFAULT_MODEL, describe: 'model name or folder' })
    .option('restore_from', { type: 'string', describe: 'a model folder to chat with instead: a checkpoint, or a training run folder (its latest checkpoint)' })
    .option('adapter', { type: 'string', describe: 'a LoRA adapter folder in PEFT\'s format (adapter_config.json + adapter_model.safetensors; a bin/train --lora_rank run folder: its latest checkpoint, or <run>/best), merged into the model as it loads' })
    .option('audience', { type: 'string', describe: "who the model plays (default: offered from the model's training record)" })
    .option('length', { type: 'number', describe: `tokens per reply at most ${modelDefault(DEFAULT_LENGTH)}` })
    .options(samplingFlags(SAMPLING_DEFAULTS))
    .options(COMPUTE_FLAGS)
    .check((a) => {
      if (a.length !== undefined && (!Number.isInteger(a.length) || a.length < 1)) throw new Error(`--length must be an integer >= 1, got ${a.length}`);
      if (a.audience !== undefined && !isAudience(a.audience)) throw new Error(`--audience must be ${AUDIENCE_RULE}, got ${quoted(a.audience)}`);
      checkSeed(a.seed);
      return true;
    })
    .strict()
    .help()
    .parseAsync();

  applyComputeFlags(argv, (message) => process.stderr.write(`chat: ${message}\n`));
  const name = modelToLoad(argv);
  const trained = trainedAudiences(resolveModel(name).dir);
  const untrained = argv.audience === undefined ? null : untrainedAudience(argv.audience, trained);
  if (untrained !== null) process.stderr.write(`chat: warning: --audience ${argv.audience}: ${untrained}\n`);
  const audiences = argv.audience !== undefined ? [argv.audience] : trained;
  if (audiences.length === 0) throw new Error(`${name}: no training record lists the audiences; give --audience <name>`);
  const gen = await Generator.load(name, { weightDtype: argv.dtype, threads: argv.threads, adapter: argv.adapter, slots: 1 });
  const { adapter } = gen.model;
  const otherBase = adapter && adapterOverOtherBase(adapter.dir, adapter.config.baseModel, resolveModel(name).dir);
  if (otherBase) process.stderr.write(`chat: warning: ${otherBase}\n`);
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  const lines = rl[Symbol.asyncIterator]();
  let replying: AbortController | null = null;
  let quitting = false;
  const quit = (): void => {
    quitting = true;
    replying?.abort();
    rl.close();
  };
  rl.on('SIGINT', quit);  // Ctrl-C in a terminal (raw mode)
  process.once('SIGINT', quit);
  try {
    const audience = await chooseAudience(rl, lines, audiences);
    if (audience === null) return;
    const maxTokens = argv.length ?? gen.model.generationConfig?.defaults.maxTokens ?? DEFAULT_LENGTH;
    const session = new ChatSession(gen, {
      audience,
      maxTokens,
      ...samplingOptions(argv, SAMPLING_DEFAULTS, gen.model),
    });
    process.stdout.write(`Talking to ${audience}. /reset starts over, /quit leaves.\n`);
    for (let turn = 0; !quitting; ) {
      const text = await ask(rl, lines, 'you> ');
      if (text === null || quitting) break;
      const command = text.trim();
      if (command === '') continue;
      if (command === '/quit') break;
      if (command === '/reset') {
        session.reset();
        process.stdout.write('(conversation cleared)\n');
        continue;
      }
      process.stdout.write(`${audience}> `);
      replying = new AbortController();
      try {
        const reply = await session.send(text, {
          onText: (piece) => process.stdout.write(piece),
          signal: replying.signal,
          seed: argv.seed === undefined ? undefined : seedOf(argv.seed, turn++),
        });
        // as the chat page says it
        if (reply.text === '') process.stdout.write(`(${audience} sent nothing back)`);
        if (reply.finishReason === 'length') process.stdout.write(` (cut short: the reply reached --length, ${maxTokens} tokens)`);
      } catch (err) {
        if (!(err instanceof MessageTooLongError)) throw err;
        process.stdout.write(`(${err.message})`);
      }
      replying = null;
      process.stdout.write('\n');
    }
  } finally {
    rl.close();
    await gen.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`chat: ${commandError(err)}\n`);
  process.exitCode = 1;
});
