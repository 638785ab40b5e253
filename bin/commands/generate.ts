// bin/generate: samples from a GPT-2 model with the flags of generate_unconditional_samples.py and
// interactive_conditional_samples.py (docs/compatibility.md), streaming each sample token by token.
import fs from 'node:fs';
import readline from 'node:readline';
import { END_OF_MESSAGE } from '../../lib/data/chat_format';
import { adapterOverOtherBase, resolveModel } from '../../lib/formats/resolve_model';
import { Generator, GenerateOptions, Grammar, seedOf } from '../../lib/generate';
import { trainedAudiences } from '../../lib/formats/chat_record';
import { COMPUTE_FLAGS, applyComputeFlags } from './compute_flags';
import { checkSeed, commandError, DEFAULT_MODEL, modelDefault, modelToLoad, samplingFlags, samplingOptions, type SamplingDefaults } from './sampling_flags';
import { commandLine } from './command_line';

interface SampleArgs {
  nsamples: number;
  batchSize: number;
  length: number | undefined;
  seed: number | undefined;
  options: GenerateOptions;
}

const RULE = '='.repeat(40);
const SAMPLING_DEFAULTS: SamplingDefaults = { temperature: 1, top_k: 0, penalize: 0, seed: 'random seed: the same seed gives the same samples, and another seed none of them' };

// A --prompt of one word with a file's extension or a folder in it ("chat.trian", "data/mom.txt") that names no
// file is most likely a mistyped path, which would otherwise be sampled from silently as text.
function looksLikeFileName(text: string): boolean {
  return !/\s/.test(text) && (/[\\/]/.test(text) || /\.[A-Za-z][A-Za-z0-9]{0,5}$/.test(text));
}

// Runs nsamples samples of one prompt, batch_size at a time decoded together, printing them in order: the
// first unfinished sample streams live, the others of its batch are held until their turn.
async function printSamples(gen: Generator, prompt: Int32Array, args: SampleArgs, signal: AbortSignal): Promise<void> {
  const out = process.stdout;
  for (let first = 0; first < args.nsamples && !signal.aborted; first += args.batchSize) {
    const count = Math.min(args.batchSize, args.nsamples - first);
    const held = new Array<string>(count).fill('');
    const finished = new Array<boolean>(count).fill(false);
    let live = 0;
    let headerShown = -1;
    const flush = (): void => {
      while (live < count) {
        if (headerShown < live) {
          out.write(`${RULE} SAMPLE ${first + live + 1} ${RULE}\n`);
          headerShown = live;
        }
        out.write(held[live]);
        held[live] = '';
        if (!finished[live]) return;
        out.write('\n');
        live++;
      }
    };
    const requests = Array.from({ length: count }, (_, i) =>
      gen
        .generate(prompt, {
          ...args.options,
          maxTokens: args.length,
          seed: args.seed === undefined ? undefined : seedOf(args.seed, first + i),
          signal,
          onText: (piece) => {
            held[i] += piece;
            if (i === live) flush();
          },
        })
        .then(() => {
          finished[i] = true;
          flush();
        }),
    );
    await Promise.all(requests);
  }
  out.write(`${RULE}${RULE}\n`);
}

async function interactive(gen: Generator, args: SampleArgs, abort: AbortController): Promise<void> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  rl.on('SIGINT', () => abort.abort());  // a terminal in raw mode sends Ctrl-C here, not as a signal
  abort.signal.addEventListener('abort', () => rl.close());
  try {
    rl.setPrompt('Model prompt >>> ');
    rl.prompt();
    for await (const text of rl) {
      if (text.trim() === '') {
        process.stdout.write('Prompt should not be empty!\n');
      } else {
        await printSamples(gen, gen.encode(text), args, abort.signal);
        if (abort.signal.aborted) return;
      }
      rl.prompt();
    }
  } finally {
    rl.close();
  }
}

// --json_schema or --grammar: a file, or the schema or grammar itself; a mistake in it named with the file and where.
function readGrammar(jsonSchema: string | undefined, gbnf: string | undefined): Grammar | undefined {
  const given = jsonSchema ?? gbnf;
  if (given === undefined) return undefined;
  const flag = jsonSchema !== undefined ? '--json_schema' : '--grammar';
  const isFile = fs.existsSync(given) && fs.statSync(given).isFile();
  const text = isFile ? fs.readFileSync(given, 'utf8') : given;
  const source = isFile ? given : flag;
  if (gbnf !== undefined) return Grammar.parse(text, source);
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not a JSON schema (${(err as Error).message})${isFile ? '' : ': give a file that holds one, or the schema itself'}`);
  }
  return Grammar.fromJsonSchema(schema, isFile ? `${given}: schema` : flag);
}

async function main(): Promise<void> {
  const argv = await commandLine('generate')
    .usage('$0 [options]\n\nSamples text from a GPT-2 model: unconditionally (from <|endoftext|>), from --prompt, or interactively\n'
      + '(a prompt, its samples, a prompt again) when no --prompt is given and stdin is a terminal.')
    .option('model_name', { alias: 'model', type: 'string', defaultDescription: DEFAULT_MODEL, describe: 'model name or folder (see bin/download-model)' })
    .option('restore_from', { type: 'string', describe: 'a model folder to sample from instead: a checkpoint, or a training run folder (its latest checkpoint)' })
    .option('adapter', { type: 'string', describe: 'a LoRA adapter folder in PEFT\'s format (adapter_config.json + adapter_model.safetensors; a bin/train --lora_rank run folder: its latest checkpoint, or <run>/best), merged into the model as it loads' })
    .option('nsamples', { type: 'number', default: 1, describe: 'number of samples' })
    .option('batch_size', { type: 'number', default: 1, describe: 'samples decoded together (nsamples need not be a multiple)' })
    .option('length', { type: 'number', describe: `tokens per sample at most ${modelDefault('half the context')}` })
    .options(samplingFlags(SAMPLING_DEFAULTS))
    .option('prompt', { type: 'string', describe: 'prompt text, or a file holding it' })
    .option('interactive', { type: 'boolean', default: false, describe: 'ask for prompts on stdin (not with --prompt)' })
    .option('stop', { type: 'string', array: true, describe: `end a sample where this text appears (repeatable; default for a model trained on chat logs: ${END_OF_MESSAGE}, --stop '' for none)` })
    .option('json_schema', { type: 'string', describe: 'hold each sample to a JSON schema: a file holding it, or the schema itself; a sample ends once its JSON is complete' })
    .option('grammar', { type: 'string', describe: 'hold each sample to a grammar in llama.cpp\'s GBNF (its rule "root"): a file holding it, or the grammar itself' })
    .conflicts('json_schema', 'grammar')
    .options(COMPUTE_FLAGS)
    .example('$0 --prompt "" --nsamples 3 --length 100 --top_k 40', 'three unconditional samples from 124M (without --prompt, a terminal is asked for prompts)')
    .example('$0 --restore_from checkpoint/run1 --prompt "1|mom|Hi! <EOM>" --penalize 0.85', 'a fine-tuned model')
    .example('$0 --adapter adapters/mom --prompt "1|mom|Hi! <EOM>"', '124M with a LoRA adapter (docs/lora.md)')
    .example('$0 --prompt "A person, as JSON:" --json_schema person.schema.json', 'samples held to a JSON schema')
    .check((a) => {
      for (const [name, v] of [['nsamples', a.nsamples], ['batch_size', a.batch_size]] as const) {
        if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be an integer >= 1, got ${v}`);
      }
      if (a.length !== undefined && (!Number.isInteger(a.length) || a.length < 1)) throw new Error(`--length must be an integer >= 1, got ${a.length}`);
      // yargs' conflicts() counts --interactive's default as given.
      if (a.interactive && a.prompt !== undefined) throw new Error('--prompt gives the samples\' prompt, and --interactive asks for prompts on stdin instead: give one of them');
      checkSeed(a.seed);
      return true;
    })
    .strict()
    .help()
    .parseAsync();

  applyComputeFlags(argv, (message) => process.stderr.write(`generate: ${message}\n`));
  let promptText: string | undefined = argv.prompt;
  if (promptText !== undefined && promptText !== '' && fs.existsSync(promptText) && fs.statSync(promptText).isFile()) {
    promptText = fs.readFileSync(promptText, 'utf8');
  } else if (promptText !== undefined && looksLikeFileName(promptText)) {
    process.stderr.write(`generate: warning: there is no file ${promptText}; --prompt is taken as the text itself\n`);
  }
  const name = modelToLoad(argv);
  const grammar = readGrammar(argv.json_schema, argv.grammar);
  // A model trained on chat logs writes a message and then the next one's, in anyone's voice: by default a
  // sample is one message. A grammar ends a sample where it is complete, and its text may hold <EOM>.
  let stop = argv.stop?.filter((s) => s !== '');
  if (argv.stop === undefined && grammar === undefined && trainedAudiences(resolveModel(name).dir).length > 0) {
    stop = [END_OF_MESSAGE];
    process.stderr.write(`generate: a chat model: each sample stops at ${END_OF_MESSAGE} (--stop '' for none)\n`);
  }
  const gen = await Generator.load(name, {
    weightDtype: argv.dtype,
    threads: argv.threads,
    adapter: argv.adapter,
    slots: argv.batch_size,
  });
  const { adapter } = gen.model;
  const otherBase = adapter && adapterOverOtherBase(adapter.dir, adapter.config.baseModel, resolveModel(name).dir);
  if (otherBase) process.stderr.write(`generate: warning: ${otherBase}\n`);
  const args: SampleArgs = {
    nsamples: argv.nsamples,
    batchSize: argv.batch_size,
    length: argv.length,
    seed: argv.seed,
    options: { ...samplingOptions(argv, SAMPLING_DEFAULTS, gen.model), stop, grammar },
  };
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  try {
    if (argv.interactive || (promptText === undefined && process.stdin.isTTY)) await interactive(gen, args, abort);
    else await printSamples(gen, gen.encode(promptText ?? ''), args, abort.signal);
  } finally {
    await gen.close();
  }
  if (abort.signal.aborted) process.stdout.write('\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`generate: ${commandError(err)}\n`);
  process.exitCode = 1;
});
