// Encoding large datasets on every core: a pool of worker threads, each with its own tokenizer. Texts are
// cut into chunks of about CHUNK_CHARS at points where cutting cannot change the tokens (isCutPoint), so
// one huge file spreads over all workers as well as many small ones do; results come back in order.
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
}

// Messages between the pool and its workers.
export interface EncodeJob {
  id: number;
  texts: string[];
  allowSpecial: boolean;
}
export type EncodeReply = { id: number; tokens: Int32Array[] } | { id: number; error: string };
export interface WorkerSetup {
  vocabDir: string | undefined;
}

const CHUNK_CHARS = 1 << 18;

export interface PoolEncodeOptions extends EncodeOptions {
  // Called as batches finish, with the characters encoded so far and in all.
  onProgress?: (doneChars: number, totalChars: number) => void;
}

// A piece of the work: chunks [first, first + texts.length) of the flat chunk list.
interface Batch {
  first: number;
  texts: string[];
  chars: number;
}

export class EncoderPool {
  readonly threads: number;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { resolve: (tokens: Int32Array[]) => void; reject: (err: Error) => void }>();
  private nextId = 0;
  private failure: Error | undefined;
  private closed = false;

  constructor(options: EncoderPoolOptions = {}) {
    this.threads = options.threads ?? os.availableParallelism();
    if (!Number.isInteger(this.threads) || this.threads < 1) throw new RangeError(`threads must be a positive integer, got ${this.threads}`);
    // Fails here, with the folder's name, rather than in every worker.
    locateVocabulary(options.vocabDir ?? bundledVocabularyDir());
    const setup: WorkerSetup = { vocabDir: options.vocabDir };
    for (let i = 0; i < this.threads; i++) {
      const worker = new Worker(path.join(__dirname, 'worker.js'), { workerData: setup });
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
      for (const chunk of cutText(text, CHUNK_CHARS)) chunks.push(chunk);
    }
    firstChunk.push(chunks.length);
    // Batches of about CHUNK_CHARS, so that short texts do not cost a message each.
    const batches: Batch[] = [];
    let totalChars = 0;
    for (let c = 0; c < chunks.length; ) {
      const batch: Batch = { first: c, texts: [], chars: 0 };
      while (c < chunks.length && (batch.texts.length === 0 || batch.chars + chunks[c].length <= CHUNK_CHARS)) {
        batch.chars += chunks[c].length;
        batch.texts.push(chunks[c++]);
      }
      totalChars += batch.chars;
      batches.push(batch);
    }
    const results = new Array<Int32Array>(chunks.length);
    // Two batches in flight per worker, so that none idles while its next batch is in the post.
    let next = 0;
    let doneChars = 0;
    const runWorker = async (worker: Worker): Promise<void> => {
      while (next < batches.length) {
        const batch = batches[next++];
        const tokens = await this.post(worker, batch.texts, options.allowSpecial);
        for (let k = 0; k < tokens.length; k++) results[batch.first + k] = tokens[k];
        doneChars += batch.chars;
        options.onProgress?.(doneChars, totalChars);
      }
    };
    await Promise.all(this.workers.flatMap((worker) => [runWorker(worker), runWorker(worker)]));
    return texts.map((_, t) => concat(results.slice(firstChunk[t], firstChunk[t + 1])));
  }

  // Stops the workers (they keep the process alive until then); encodes still running fail.
  async close(): Promise<void> {
    this.closed = true;
    this.fail(new Error('EncoderPool: closed while encoding'));
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private post(worker: Worker, texts: string[], allowSpecial: boolean): Promise<Int32Array[]> {
    if (this.failure) return Promise.reject(this.failure);
    const job: EncodeJob = { id: this.nextId++, texts, allowSpecial };
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

function concat(parts: Int32Array[]): Int32Array {
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
