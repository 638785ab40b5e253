// bin/train: fine-tunes GPT-2 (or trains a fresh one) on a dataset, with train.py's flags (docs/compatibility.md).
// The work is lib/train/train.ts; this file parses flags, joins the MPI job when mpirun started it, and wires
// Ctrl-C.
import os from 'node:os';
import { CHAT_CHECK_HELP, CHAT_CHECK_MODES } from '../../lib/data/dataset';
import { Ranks, joinLaunchedJob } from '../../lib/train/distributed';
import { DEFAULT_TRAIN_OPTIONS as D, TrainOptions, checkDataset, train } from '../../lib/train/train';
import { COMPUTE_FLAGS, applyComputeFlags } from './compute_flags';
import { commandLine } from './command_line';

// The MPI job this process is a rank of, once joined: an error on any rank then ends every rank.
let ranks: Ranks | null = null;

async function main(): Promise<void> {
  const argv = await commandLine('train')
    .usage(
      '$0 --dataset <file|folder|glob> [options]\n\n' +
        'Fine-tunes a GPT-2 model on a dataset (text, chat logs, CSV or JSONL documents, .npz, or a token file from bin/encode), saving ' +
        'checkpoints to checkpoint/<run_name>/ and samples to samples/<run_name>/. Chat files are checked first. ' +
        'Ctrl-C (or SIGTERM, SIGHUP) stops after the current step and saves (--no-save_on_ctrlc: without saving); twice stops at once. ' +
        'Started by mpirun, every rank trains its slice of each batch (data-parallel; see docs/training.md).',
    )
    .option('dataset', { type: 'string', demandOption: true, describe: `input file, folder (recursively) or glob (quoted: 'data/*.train'): UTF-8 text, chat logs, .csv (first column) or .jsonl (its "text") documents, .npz or a bin/encode token file` })
    .option('check', { type: 'boolean', default: false, describe: 'only check the dataset as chat logs (every malformed line, a summary, its tokens by the vocabulary the run would train with: the checkpoint it resumes or starts from, else the model\'s), and --val_dataset too where given, and exit' })
    .option('model_name', { alias: 'model', type: 'string', default: D.model_name, describe: 'model to fine-tune: 124M, 355M, 774M, 1558M, a name under models/, or a folder' })
    .option('fresh_model', { type: 'boolean', default: D.fresh_model, describe: 'start from random weights of the shape --n_layer/--n_head/--n_embd/--n_ctx' })
    // No defaults that yargs fills in where the flag is refused when the others leave it without effect (train()
    // tells a flag given from one left out): --n_layer.. --tokenizer without --fresh_model, --lora_* without --lora_rank.
    .option('n_layer', { type: 'number', defaultDescription: String(D.n_layer), describe: 'with --fresh_model: transformer layers' })
    .option('n_head', { type: 'number', defaultDescription: String(D.n_head), describe: 'with --fresh_model: attention heads' })
    .option('n_embd', { type: 'number', defaultDescription: String(D.n_embd), describe: 'with --fresh_model: channels' })
    .option('n_ctx', { type: 'number', defaultDescription: String(D.n_ctx), describe: 'with --fresh_model: context length' })
    .option('tokenizer', { type: 'string', defaultDescription: "GPT-2's", describe: 'with --fresh_model: vocabulary folder (encoder.json + vocab.bpe)' })
    .option('combine', { type: 'number', default: D.combine, describe: 'join text files with <|endoftext|> into chunks of at least this many characters' })
    .option('chat_check', { choices: CHAT_CHECK_MODES, default: D.chat_check, describe: CHAT_CHECK_HELP })
    .option('batch_size', { type: 'number', default: D.batch_size, describe: 'sequences per batch' })
    .option('context_length', { type: 'number', default: D.context_length, describe: "tokens per training sequence (0: the model's n_ctx)" })
    .option('learning_rate', { type: 'number', default: D.learning_rate, describe: 'learning rate' })
    .option('learning_rate_cos', { type: 'boolean', default: D.learning_rate_cos, describe: 'linear warmup, then cosine annealing with warm restarts' })
    .option('learning_rate_warmup', { type: 'number', default: D.learning_rate_warmup, describe: 'with --learning_rate_cos: warmup steps' })
    .option('learning_rate_min', { type: 'number', default: D.learning_rate_min, describe: 'with --learning_rate_cos: lowest learning rate' })
    .option('learning_rate_period', { type: 'number', default: D.learning_rate_period, describe: 'with --learning_rate_cos: steps per cosine cycle' })
    .option('accumulate_gradients', { type: 'number', default: D.accumulate_gradients, describe: 'accumulate gradients over N batches per step' })
    .option('optimizer', { choices: ['adam', 'sgd'] as const, default: D.optimizer, describe: 'optimizer (SGD wants a larger learning rate, e.g. 0.0006)' })
    .option('grad_clip', { type: 'number', default: D.grad_clip, describe: 'scale the gradients down to this global norm where they exceed it, against the loss spikes of a high learning rate (nanoGPT and llm.c clip at 1; 0: never, as train.py)' })
    .option('memory_saving_gradients', { type: 'boolean', default: D.memory_saving_gradients, describe: 'recompute activations in the backward pass to save memory' })
    .option('only_train_transformer_layers', { type: 'boolean', default: D.only_train_transformer_layers, describe: 'train the transformer blocks only (not embeddings or the final layer norm)' })
    .option('restore_from', { type: 'string', default: D.restore_from, describe: "latest (resume the run if it has a checkpoint), fresh (start from --model_name), or a checkpoint folder (a training run folder: its latest checkpoint): this run's resumes it, another run's gives its weights, from step 0" })
    .option('run_name', { type: 'string', default: D.run_name, describe: 'run id: the folder under checkpoint/ and samples/' })
    .option('checkpoint_dir', { type: 'string', default: D.checkpoint_dir, describe: 'folder of the runs' })
    .option('sample_dir', { type: 'string', default: D.sample_dir, describe: 'folder of the samples' })
    .option('save_every', { type: 'number', default: D.save_every, describe: 'save a checkpoint every N steps (0: never)' })
    .option('save_time', { type: 'number', default: D.save_time, describe: 'also save every N minutes (0: never)' })
    .option('max_to_keep', { type: 'number', default: D.max_to_keep, describe: 'checkpoints kept (0: all)' })
    .option('save_on_ctrlc', { type: 'boolean', default: D.save_on_ctrlc, describe: 'save a checkpoint when stopped with Ctrl-C (--no-save_on_ctrlc: stop without one, the steps since the last save lost)' })
    .option('sample_every', { type: 'number', default: D.sample_every, describe: 'generate samples every N steps (0: never)' })
    .option('sample_length', { type: 'number', default: D.sample_length, describe: 'tokens per sample' })
    .option('sample_num', { type: 'number', default: D.sample_num, describe: 'samples each time' })
    // No default that yargs fills in: --top_p alone overrides --top_k, as train.py's sampler did, and both given both apply.
    .option('top_k', { type: 'number', defaultDescription: String(D.top_k), describe: 'samples: draw from the k most likely tokens (0: all; 0 too when --top_p is given without it, as in train.py)' })
    .option('top_p', { type: 'number', default: D.top_p, describe: 'samples: nucleus sampling probability (0: off); overrides the default --top_k' })
    .option('min_p', { type: 'number', default: D.min_p, describe: 'samples: only tokens at least this fraction as likely as the most likely (0: off)' })
    .option('val_dataset', { type: 'string', default: D.val_dataset, describe: 'validation dataset (default: a fixed sample of --dataset)' })
    .option('val_split', { type: 'number', default: D.val_split, describe: 'without --val_dataset: hold out the last fraction of each chunk of --dataset (0.05: 5%; for chat logs written oldest first, the newest messages) for validation, and train on the rest (0: none)' })
    .option('val_every', { type: 'number', default: D.val_every, describe: 'validation loss every N steps (0: never)' })
    .option('keep_best', { type: 'boolean', default: D.keep_best, describe: 'with held-out data (--val_dataset or --val_split): save a checkpoint at each new lowest validation loss, named by checkpoint/<run_name>/best and kept whatever --max_to_keep (--no-keep_best: off)' })
    .option('early_stopping', { type: 'number', default: D.early_stopping, describe: 'with held-out data: stop when N validations in a row have not gone below the lowest (0: never)' })
    .option('val_batch_size', { type: 'number', default: D.val_batch_size, describe: 'sequences per validation batch' })
    .option('val_batch_count', { type: 'number', default: D.val_batch_count, describe: 'validation batches' })
    .option('seed', { type: 'number', default: D.seed, describe: 'seed of initialisation, batches and samples (-1: random)' })
    .option('stop_after', { type: 'number', default: D.stop_after, describe: 'stop (and save) when the step count reaches N (0: never)' })
    .option('threads', { type: 'number', default: D.threads, describe: "CPU threads (0: one per core; under mpirun, per core of the rank's share)" })
    .option('zero', { choices: [0, 1] as const, default: D.zero as 0 | 1, describe: "under mpirun: 1 shards Adam's moments across the ranks (ZeRO-1)" })
    .option('collective_timeout', { type: 'number', default: D.collective_timeout, describe: 'under mpirun: seconds a rank waits for the others in a collective before ending the job (0: forever)' })
    .option('lora_rank', { type: 'number', default: D.lora_rank, describe: 'train a LoRA adapter of this rank over the frozen model (checkpoints hold the adapter alone, in PEFT\'s format); 0: fine-tune every weight' })
    .option('lora_alpha', { type: 'number', defaultDescription: `${D.lora_alpha}, or the resumed adapter's`, describe: "with --lora_rank: the adapter's output is scaled by lora_alpha / lora_rank (0: twice the rank)" })
    .option('lora_targets', { type: 'string', defaultDescription: `${D.lora_targets}, or the resumed adapter's`, describe: 'with --lora_rank: the matrices adapted, a comma list of attn, mlp (both of each), c_attn, attn.c_proj, c_fc, mlp.c_proj' })
    .option('lora_dropout', { type: 'number', defaultDescription: `${D.lora_dropout}, or the resumed adapter's`, describe: "with --lora_rank: PEFT's lora_dropout, in [0, 1): the probability that a training step drops each input of the adapter (validation and samples drop none)" })
    .option('dtype', { type: 'string', default: D.dtype, describe: "with --lora_rank: the frozen model's weights in memory: f32, f16 or bf16 (half), q8_0 (8-bit matrices, about a quarter), on the CPU or the GPU (default: f32, or the resumed run's)" })
    .options(COMPUTE_FLAGS)
    .example('$0 --dataset data/combined.train --model_name 124M --batch_size 1', 'fine-tune 124M on chat logs')
    .example('$0 --dataset examples/chat/train --lora_rank 8 --run_name mom', 'train a LoRA adapter (a few MB) over 124M')
    .example('$0 --dataset examples/chat/train --check', 'check chat logs without training')
    .example('mpirun -np 4 $0 --dataset data.tokens --model_name 124M --batch_size 8', 'data-parallel on 4 GPUs (or groups of cores)')
    .wrap(Math.min(120, process.stdout.columns || 100))
    .strict()
    .help()
    .parseAsync();

  if (argv.check) {
    const { combine, model_name, fresh_model, tokenizer, n_layer, n_head, n_embd, n_ctx, restore_from, run_name, checkpoint_dir, threads } = argv;
    // Training stops on a malformed --val_dataset as on a malformed --dataset: both are checked.
    for (const [flag, spec] of [['--dataset', argv.dataset], ['--val_dataset', argv.val_dataset]]) {
      if (spec === '') continue;
      const { report, passed } = await checkDataset(spec, { combine, model_name, fresh_model, tokenizer, n_layer, n_head, n_embd, n_ctx, restore_from, run_name, checkpoint_dir, threads });
      console.log(argv.val_dataset === '' ? report : `${flag}:\n${report}`);
      if (!passed) process.exitCode = 1;
    }
    return;
  }
  applyComputeFlags(argv, (message) => console.log(message));

  const { $0: _script, _: _positional, check: _check, device: _device, precision: _precision, ...flags } = argv;
  const options: Partial<TrainOptions> & { dataset: string } = { dataset: argv.dataset };
  for (const key of Object.keys(D) as (keyof TrainOptions)[]) {
    if ((flags as Record<string, unknown>)[key] !== undefined) (options as Record<string, unknown>)[key] = (flags as Record<string, unknown>)[key];
  }

  options.top_k = argv.top_k ?? (argv.top_p > 0 && argv.top_p < 1 ? 0 : D.top_k);

  ranks = joinLaunchedJob();
  const abort = new AbortController();
  const stop = (signal: NodeJS.Signals): void => {
    if (abort.signal.aborted) {
      // Under mpirun a second SIGTERM is the launcher's, passing on the first Ctrl-C; its SIGKILL follows anyway.
      if (ranks && signal !== 'SIGINT') return;
      process.stderr.write(`\nstopped (${signal})\n`);
      const code = 128 + os.constants.signals[signal];
      if (ranks) ranks.abort(code);
      process.exit(code);
    }
    if (!ranks || ranks.rank === 0) {
      const by = signal === 'SIGINT' ? '' : `${signal}: `;
      // Under mpirun a second signal other than SIGINT is ignored (above): advice to send it again would mislead.
      const again = ranks && signal !== 'SIGINT' ? '' : `; ${signal === 'SIGINT' ? 'Ctrl-C' : signal} again to stop now`;
      process.stderr.write(`\n${by}stopping after this step${argv.save_on_ctrlc ? ', then saving' : ' (without saving: --no-save_on_ctrlc)'}${again}\n`);
    }
    abort.abort();
  };
  // A job stopped by kill, systemd, a batch system's preemption or `timeout` (SIGTERM), or by its terminal closing
  // (SIGHUP), keeps its steps as one stopped by Ctrl-C does. Under mpirun the ranks hear of a stop as the launcher
  // passes it on: Open MPI's mpirun forwards SIGUSR1 and turns Ctrl-C into SIGTERM (then SIGKILL a second later),
  // MPICH's mpiexec forwards Ctrl-C as SIGINT.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', ...(ranks ? (['SIGUSR1'] as const) : [])] as const) process.on(signal, stop);
  const result = await train(options, { signal: abort.signal, ranks });
  if (!ranks || ranks.rank === 0) console.log(`stopped at step ${result.step}${result.checkpoint ? `; checkpoint ${result.checkpoint}` : ''}`);
  ranks?.finalize();
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`train: ${ranks ? `rank ${ranks.rank} of ${ranks.size}: ` : ''}${message}\n`);
  // One rank's error ends the job: the other ranks would otherwise wait for it in their next collective.
  if (ranks && ranks.size > 1) ranks.abort(1);
  process.exitCode = 1;
});
