// Encoding large datasets on every core: a pool of worker threads, each with its own tokenizers, kept
// for the pool's life. Texts are cut into chunks of about chunkChars at points where cutting cannot
// change the tokens (isCutPoint), so one huge text spreads over all workers as well as many small ones
// do, and the ids come back identical to one tokenizer's.
//
// What it takes to scale (figures from bench/tokenizer.bench.ts's corpus on 2 cores):
// - Locality. The chunks are dealt out as contiguous lanes, one per worker, so a worker's word cache
//   sees text that belongs together; dealt round-robin, every worker meets every frequent word and
//   merges it itself (about 7% more worker CPU in all).
// - Balance. A worker whose lane runs dry takes the back half of the longest lane left, so all of them
//   finish within about a chunk of each other.
// - No waiting. Each worker has one job running and the next one already in its queue, so it never
//   idles while the main thread, which only slices strings and files replies, gets to its message.
// - Ids come back copied, not transferred. The first ArrayBuffer a worker detaches by transferring it
//   makes V8 throw away all the encoder's optimized code in that worker, and the code it compiles again
//   checks for detached buffers: 3-6% slower. The copy costs the main thread about 1 ms per MB of ids.
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { isCutPoint } from './pretokenize';
import type { EncodeOptions } from './tokenizer';
import { bundledVocabularyDir, locateVocabulary } from './vocab';

export interface EncoderPoolOptions {
  // Worker threads (default: one per core).
  threads?: number;
  // Model folder with the vocabulary (default: the bundled GPT-2 one).
  vocabDir?: string;
  // Characters per job (default 65536: a few milliseconds of work, so that the last jobs leave no worker
  // idle for long, yet the main thread handles a few hundred messages a second per worker).
  chunkChars?: number;
}

// Messages between the pool and its workers.
export interface EncodeJob {
  id: number;
  texts: string[];
  allowSpecial: boolean;
  vocabulary: PoolVocabulary | undefined;
}

// A vocabulary to encode with: its folder, and its fingerprint (Vocabulary.fingerprint), which the one a worker reads
// there must have.
export interface PoolVocabulary {
  dir: string;
  fingerprint: string;
}
export type EncodeReply = { id: number; tokens: Int32Array[] } | { id: number; error: string };
export interface WorkerSetup {
  vocabDir: string | undefined;
}

const DEFAULT_CHUNK_CHARS = 1 << 16;

export interface PoolEncodeOptions extends EncodeOptions {
  // The vocabulary to encode with (default: the pool's); each worker keeps every one it was given, so that one pool
  // serves all the models of a server.
  vocabulary?: PoolVocabulary;
  // Called as jobs finish, with the characters encoded so far and in all.
  onProgress?: (doneChars: number, totalChars: number) => void;
  // false where the vocabulary's added tokens take in whitespace (Tokenizer.cutsAtWhitespace): each text is then
  // encoded whole, by one worker, rather than cut at whitespace into chunks for all (default true).
  cutsAtWhitespace?: boolean;
}

// Chunks [first, first + texts.length) of the flat chunk list, encoded by one message.
interface Job {
  first: number;
  texts: string[];
  chars: number;
}

// The jobs [next, end) that one worker takes in order.
interface Lane {
  next: number;
  end: number;
}

export class EncoderPool {
  readonly threads: number;
  readonly chunkChars: number;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { resolve: (tokens: Int32Array[]) => void; reject: (err: Error) => void }>();
  private nextId = 0;
  private failure: Error | undefined;
  private closed = false;
  private encoding = 0;

  constructor(options: EncoderPoolOptions = {}) {
    this.threads = options.threads ?? os.availableParallelism();
    this.chunkChars = options.chunkChars ?? DEFAULT_CHUNK_CHARS;
    if (!Number.isInteger(this.threads) || this.threads < 1) throw new RangeError(`threads must be a positive integer, got ${this.threads}`);
    if (!Number.isInteger(this.chunkChars) || this.chunkChars < 1) throw new RangeError(`chunkChars must be a positive integer, got ${this.chunkChars}`);
    // Fails here, with the folder's name, rather than in every worker.
    locateVocabulary(options.vocabDir ?? bundledVocabularyDir());
    const setup: WorkerSetup = { vocabDir: options.vocabDir };
    for (let i = 0; i < this.threads; i++) {
      const worker = new Worker(path.join(__dirname, 'worker.js'), { workerData: setup });
      // Idle workers must not keep the process alive: a script that never closes the pool would never exit.
      // encode refs them while it runs, so that the process waits for its result.
      worker.unref();
      worker.on('message', (reply: EncodeReply) => this.settle(reply));
      worker.on('error', (err: Error) => this.fail(err));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`tokenizer worker exited with code ${code}`));
      });
      this.workers.push(worker);
    }
  }

  // Tokens of each text, in order; the same as Tokenizer.encode on each.
  async encode(texts: readonly string[], options: PoolEncodeOptions): Promise<Int32Array[]> {
    if (this.closed) throw new Error('EncoderPool: encode after close');
    // Flat list of chunks; text t owns chunks [firstChunk[t], firstChunk[t + 1]).
    const chunks: string[] = [];
    const firstChunk: number[] = [];
    for (const text of texts) {
      firstChunk.push(chunks.length);
      for (const chunk of options.cutsAtWhitespace === false ? [text] : cutText(text, this.chunkChars)) chunks.push(chunk);
    }
    firstChunk.push(chunks.length);
    const jobs = groupJobs(chunks, this.chunkChars);
    const totalChars = jobs.reduce((sum, job) => sum + job.chars, 0);
    const lanes = dealLanes(jobs, this.threads);
    const results = new Array<Int32Array>(chunks.length);
    let doneChars = 0;
    const runLane = async (w: number): Promise<void> => {
      for (let j = takeJob(lanes, w); j >= 0; j = takeJob(lanes, w)) {
        const job = jobs[j];
        const tokens = await this.post(this.workers[w], job.texts, options);
        for (let k = 0; k < tokens.length; k++) results[job.first + k] = tokens[k];
        doneChars += job.chars;
        options.onProgress?.(doneChars, totalChars);
      }
    };
    if (this.encoding++ === 0) for (const worker of this.workers) worker.ref();
    try {
      // Two loops per worker: one job running, the next waiting in its queue.
      await Promise.all(this.workers.flatMap((_, w) => [runLane(w), runLane(w)]));
    } finally {
      if (--this.encoding === 0) for (const worker of this.workers) worker.unref();
    }
    return texts.map((_, t) => concat(results.slice(firstChunk[t], firstChunk[t + 1])));
  }

  // Stops the workers; encodes still running fail. Idle workers do not keep the process alive, so a script that
  // is done with the pool may also just end.
  async close(): Promise<void> {
    this.closed = true;
    this.fail(new Error('EncoderPool: closed while encoding'));
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private post(worker: Worker, texts: string[], options: PoolEncodeOptions): Promise<Int32Array[]> {
    if (this.failure) return Promise.reject(this.failure);
    const job: EncodeJob = { id: this.nextId++, texts, allowSpecial: options.allowSpecial, vocabulary: options.vocabulary };
    return new Promise((resolve, reject) => {
      this.pending.set(job.id, { resolve, reject });
      worker.postMessage(job);
    });
  }

  private settle(reply: EncodeReply): void {
    const waiter = this.pending.get(reply.id);
    if (waiter === undefined) return;
    this.pending.delete(reply.id);
    if ('error' in reply) waiter.reject(new Error(reply.error));
    else waiter.resolve(reply.tokens);
  }

  // A worker crashed or exited: the pool encodes nothing more.
  get failed(): boolean {
    return this.failure !== undefined;
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const waiter of this.pending.values()) waiter.reject(err);
    this.pending.clear();
  }
}

// One-off parallel encoding: starts a pool, encodes, stops it. Keep an EncoderPool for repeated calls.
export async function encodeParallel(texts: readonly string[], options: PoolEncodeOptions & EncoderPoolOptions): Promise<Int32Array[]> {
  const pool = new EncoderPool(options);
  try {
    return await pool.encode(texts, options);
  } finally {
    await pool.close();
  }
}

// Cuts text into pieces of about `size` chars at cut points; a text without one stays whole.
export function cutText(text: string, size: number): string[] {
  const pieces: string[] = [];
  let start = 0;
  while (text.length - start > size) {
    let cut = start + size;
    while (cut < text.length && !isCutPoint(text, cut)) cut++;
    if (cut >= text.length) break;
    pieces.push(text.slice(start, cut));
    start = cut;
  }
  pieces.push(text.slice(start));
  return pieces;
}

// Consecutive chunks grouped into jobs of about `size` chars, so that short texts do not cost a
// message each.
function groupJobs(chunks: string[], size: number): Job[] {
  const jobs: Job[] = [];
  for (let c = 0; c < chunks.length; ) {
    const job: Job = { first: c, texts: [], chars: 0 };
    while (c < chunks.length && (job.texts.length === 0 || job.chars + chunks[c].length <= size)) {
      job.chars += chunks[c].length;
      job.texts.push(chunks[c++]);
    }
    jobs.push(job);
  }
  return jobs;
}

// The jobs cut into `count` contiguous lanes of about equal characters.
export function dealLanes(jobs: readonly { chars: number }[], count: number): Lane[] {
  const total = jobs.reduce((sum, job) => sum + job.chars, 0);
  const lanes: Lane[] = [];
  let j = 0;
  let chars = 0;
  for (let k = 0; k < count; k++) {
    const start = j;
    // Lane k ends where the characters so far first reach (k + 1) / count of the total.
    while (j < jobs.length && (k === count - 1 || chars + jobs[j].chars / 2 < (total * (k + 1)) / count)) chars += jobs[j++].chars;
    lanes.push({ next: start, end: j });
  }
  return lanes;
}

// The next job of lane w, or -1 when no lane has any left. A dry lane takes over the back half of the
// longest lane (its last job, when one is left), so the thief also works on contiguous text.
export function takeJob(lanes: Lane[], w: number): number {
  const own = lanes[w];
  if (own.next === own.end) {
    let victim = own;
    for (const lane of lanes) if (lane.end - lane.next > victim.end - victim.next) victim = lane;
    if (victim === own) return -1;
    const middle = victim.next + ((victim.end - victim.next) >> 1);
    own.next = middle;
    own.end = victim.end;
    victim.end = middle;
  }
  return own.next++;
}

export function concat(parts: Int32Array[]): Int32Array {
  if (parts.length === 1) return parts[0];
  let length = 0;
  for (const part of parts) length += part.length;
  const all = new Int32Array(length);
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}
