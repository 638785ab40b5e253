// Data-parallel training across the ranks of an MPI job (`mpirun -np 4 bin/train ...`): one process per GPU or
// per group of cores, each with a whole copy of the model. The backends average the gradients in their step
// (native/core/collective.h); this file is what the training loop needs besides: which rank this is, agreeing
// on values rank 0 decides, sums across ranks, and a check that the ranks hold the same weights.
import crypto from 'node:crypto';
import os from 'node:os';
import { loadAddon, NativeRanks } from '../engine/native';
import type { Model } from '../engine/model';

export type Ranks = NativeRanks;

// The job's ranks when an MPI launcher started this process, with MPI initialised; null when none did, and then
// no MPI library is loaded at all.
export function joinLaunchedJob(): Ranks | null {
  const addon = loadAddon();
  const launcher = addon.mpiLauncher();
  if (launcher === null) return null;
  try {
    return addon.initDistributed();
  } catch (err) {
    throw new Error(`data-parallel training: ${(err as Error).message}`);
  }
}

// Open MPI's mpirun turns Ctrl-C into SIGTERM for the ranks and SIGKILL a second later: too soon for a step to end
// and a checkpoint to be written. What to do instead, for the start-up lines; null under another launcher (MPICH
// passes Ctrl-C on as SIGINT, which stops the ranks after the step).
export function ctrlCAdvice(ranks: Ranks): string | null {
  if (!ranks.library.startsWith('Open MPI')) return null;
  return "Ctrl-C on Open MPI's mpirun ends the ranks at once, without a save: to stop them after the step " +
    '(and save, as Ctrl-C does in one process), send mpirun SIGUSR1 (kill -USR1 <pid of mpirun>), or start it as ' +
    '`mpirun ... & trap "kill -USR1 $!" INT; wait $!; wait $!` and Ctrl-C does that';
}

// CPU threads per rank when --threads is 0: the cores the launcher bound the rank to, or else this machine's
// cores shared out among its ranks, so that ranks on one machine do not oversubscribe it.
export function threadsPerRank(ranks: Ranks): number {
  const usable = os.availableParallelism();
  if (usable < os.cpus().length) return usable;
  return Math.max(1, Math.floor(usable / ranks.localSize));
}

// Rank 0's number, on every rank, as its 8 bytes: NaN and the infinities too, which JSON writes as null (a
// validation loss of a run that diverged).
export function numberFromRank0(ranks: Ranks, value: number): number {
  const data = new Float64Array([value]);
  ranks.broadcast(new Uint8Array(data.buffer), 0);
  return data[0];
}

// Rank 0's value, on every rank (JSON; rank 0 passes the value, the others anything).
export function fromRank0<T>(ranks: Ranks, value: T): T {
  const mine = Buffer.from(ranks.rank === 0 ? JSON.stringify(value) : '');
  const bytes = new Uint8Array(numberFromRank0(ranks, mine.length));
  if (ranks.rank === 0) bytes.set(mine);
  ranks.broadcast(bytes, 0);
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
}

// What rank 0 alone does (`action`: take the run folder's lock), on every rank: rank 0's failure fails each rank with
// rank 0's message, where the others would go on to their next collective and wait there for a rank that has ended.
// Rank 0 gets the result; the others null.
export function onRank0<T>(ranks: Ranks, action: () => T): T | null {
  let result: T | null = null;
  let failure: Error | null = null;
  if (ranks.rank === 0) {
    try {
      result = action();
    } catch (err) {
      failure = err as Error;
    }
  }
  const message = fromRank0(ranks, failure?.message ?? null);
  if (failure) throw failure;
  if (message !== null) throw new Error(message);
  return result;
}

// Element by element sums over the ranks.
export function sumOverRanks(ranks: Ranks, values: number[]): number[] {
  const data = Float64Array.from(values);
  ranks.allreduceSum(data);
  return Array.from(data);
}

// For each entry of `values` (the same list, in the same order, on every rank): the ranks whose value differs from
// rank 0's. Every rank gets the same answer.
function ranksDifferingFromRank0(ranks: Ranks, values: readonly string[]): number[][] {
  const rank0 = fromRank0(ranks, values);
  const differs = new Array<number>(values.length * ranks.size).fill(0);
  values.forEach((value, i) => {
    if (value !== rank0[i]) differs[i * ranks.size + ranks.rank] = 1;
  });
  const sums = sumOverRanks(ranks, differs);
  return values.map((_, i) => sums.slice(i * ranks.size, (i + 1) * ranks.size).flatMap((d, r) => (d > 0 ? [r] : [])));
}

export function rankList(list: readonly number[]): string {
  return `rank${list.length > 1 ? 's' : ''} ${list.join(', ')}`;
}

// What the ranks must agree on: `key` compared, `shown` in the message (a flag's value; a dataset's size, where the
// key is a digest of it).
export interface RankValue {
  name: string;
  key: string;
  shown: string;
}

// Throws on every rank unless each rank has rank 0's key for every entry, naming the first entry that differs, the
// ranks it differs on, rank 0's value and, on those ranks, their own. Ranks that went on would train another model
// than the one asked for without a word, or wait on each other in collectives the others never make.
export function checkRanksAgreeOn(ranks: Ranks, entries: readonly RankValue[], remedy: string): void {
  const differing = ranksDifferingFromRank0(ranks, entries.map((e) => e.key));
  const i = differing.findIndex((list) => list.length > 0);
  if (i < 0) return;
  const { name, shown } = entries[i];
  const rank0Shown = fromRank0(ranks, shown);
  const here = differing[i].includes(ranks.rank) ? ` (this one: ${shown})` : '';
  throw new Error(`the ranks disagree on ${name}: ${rankList(differing[i])} ${differing[i].length > 1 ? 'have' : 'has'} another than rank 0's ${rank0Shown}${here}: ${remedy}`);
}

// Throws, naming the ranks, unless every rank's weights are bit for bit rank 0's (a SHA-256 of them each).
// The ranks start from the same weights and apply the same averaged update, so a difference means a broken
// reduction or a rank that read other data; at start, a rank that loaded other files, which `cause` names.
export function checkRanksAgree(ranks: Ranks, model: Model, when: string, cause = ''): void {
  const hash = crypto.createHash('sha256');
  for (const t of model.tensors) {
    const values = model.getParam(t.name);
    hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  const disagreeing = ranksDifferingFromRank0(ranks, [hash.digest('hex')])[0];
  if (disagreeing.length > 0) throw new Error(`${when}: the weights of ${rankList(disagreeing)} differ from rank 0's${cause}`);
}
