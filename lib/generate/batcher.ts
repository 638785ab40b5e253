// Continuous batching: concurrent generation requests for one model decoded together. Each request owns a
// KV-cache slot while it runs; every step feeds all running requests (a new request's prompt, at most
// maxStepTokens prompt tokens per step, beside one token for each request already decoding) and samples those
// that have caught up, in one kvStep off the event loop: the logits stay native, and the repetition penalty reads
// each slot's tokens where the native side keeps them. The drawn tokens' text is decoded and streamed while the
// next step computes. Requests join and leave between steps. Every native call goes through model.run, so steps
// interleave with anything else queued on the model but never overlap it.
// A slot keeps what its last request left in the KV cache: a new request goes to the free slot that holds the
// longest start of its prompt (a chat's next turn holds the last one whole) and prefills only the rest. Keyed
// by the tokens themselves, it serves stateless clients that send the whole history each time, and gives the
// same tokens as a cold prefill.
// A request may ask for its prompt's log-probabilities too (promptLogprobs, as OpenAI's echo with logprobs): its
// prompt, but for the last token, is then fed through kvForward's logits of every token, as many a step as the rows
// of logits the native side plans (kvReserve), and from no cached prefix. An embedding (embed) is fed as any prompt
// is, from no cached prefix either, its whole prompt through kvForward's final hidden state of every token, and
// samples nothing.
import { Model, type ServedAdapter } from '../engine/model';
import { NativeModel, type KvOutput, type NativeLogprobs, type NativeSampling } from '../engine/native';
import type { ReplyStream } from '../sanitize/types';
import { Tokenizer } from '../tokenizer';
import { MAX_TOP_LOGPROBS, logprobRows, rowLogprob, type TokenLogprob } from './logprobs';
import { Grammar, GrammarMatcher, GrammarVocabulary } from './grammar';
import { MASK_SLICE_WORK } from './grammar/matcher';
import {
  DEFAULT_SAMPLING,
  FinishReason,
  GenerateResult,
  Timings,
  SamplingOptions,
  Sequence,
  checkSampling,
  randomSeed,
  refusal,
} from './sequence';

export interface BatchRequest {
  promptTokens: ArrayLike<number>;  // at least one token (<|endoftext|> alone for unconditional text)
  maxTokens: number;                // tokens to generate at most
  sampling?: Partial<SamplingOptions>;  // defaults: temperature 1, no top-k/top-p, no penalty, no logit biases
  stop?: string[];                  // stop sequences on the decoded text; the text ends where one begins
  stopTokens?: ArrayLike<number>;   // default [<|endoftext|>]; [] generates through it
  seed?: number | bigint;           // same seed, prompt and settings: same tokens (default: random)
  signal?: AbortSignal;             // finishes the request with 'aborted' at the next step
  deadline?: number;                // Date.now() time after which it finishes with 'deadline'
  onText?: (piece: string) => void; // the text as it is generated, in pieces (stop sequences never shown)
  reply?: ReplyStream;              // sanitizes the text as it comes; the request finishes ('stop') once it is complete
  logprobs?: number;                // each token's log-probability and this many alternatives' (0-20)
  onLogprob?: (logprob: TokenLogprob) => void;  // with logprobs, each token's as it is drawn, before its text streams
  promptLogprobs?: boolean;         // with logprobs, the prompt's tokens' too (all but the first); the prompt must fit nCtx
  adapter?: ServedAdapter;          // a LoRA adapter of the model (Model.addAdapter) this request decodes with
  grammar?: Grammar;                // holds the text to this grammar (a JSON schema's, GBNF's): it ends once the grammar is complete
  queue?: string;                   // the queue it waits in for a slot (default ''): see admit
  group?: object;                   // the requests asked for together (one client's choices), which take one turn: see admit
  client?: string;                  // who asked (a server's client address): within a queue, clients take turns (see admit)
}

export interface EmbedRequest {
  promptTokens: ArrayLike<number>;  // at least one token, at most the model's context
  signal?: AbortSignal;             // finishes the request with 'aborted' at the next step
  deadline?: number;                // Date.now() time after which it finishes with 'deadline'
  adapter?: ServedAdapter;          // a LoRA adapter of the model (Model.addAdapter) to embed with
  queue?: string;                   // the queue it waits in for a slot, as a BatchRequest's
  group?: object;                   // one request's inputs: they take one turn, as a BatchRequest's, and count as one in runningOf
  client?: string;                  // who asked, as a BatchRequest's
}

export interface EmbedResult {
  // [promptTokens.length, nEmbd]: each token's final hidden state (after ln_f: what the head reads), when
  // finishReason is 'stop' (else those fed so far, or none)
  states: Float32Array;
  finishReason: FinishReason;  // 'stop' once every token is fed; else 'aborted' or 'deadline'
  timings: Timings;
}

export interface BatcherOptions {
  slots?: number;          // requests decoded together (default 8); more wait in a queue
  contextKeep?: number;    // tokens kept when a context passes nCtx (default nCtx / 2); see Sequence.nextFeed
  maxStepTokens?: number;  // prompt tokens fed in one step (default 256): bounds how long a prefill stalls others
  reusePrefixes?: boolean; // a prompt that starts with what a free slot holds prefills only the rest (default true)
}

// A request that holds a slot, as Batcher.slotActivity tells it.
export interface SlotActivity {
  embeds: boolean;             // an embedding's, which samples nothing
  promptTokens: number;
  cachedPromptTokens: number;  // of them, what the slot held already
  maxTokens: number;
  generated: number;           // tokens drawn so far
  hasNewLine: boolean;         // whether its text so far holds a newline
  sampling: SamplingOptions;
  seed: number | bigint | undefined;  // undefined: a random one
  logprobs: number;            // the alternatives each drawn token comes with
}

interface Job {
  seq: Sequence;
  request: BatchRequest;
  grammar: GrammarMatcher | undefined;  // the sequence's, whose masks the batcher works out in slices
  resolve: (result: GenerateResult) => void;
  reject: (err: Error) => void;
  submittedAt: number;
  cachedPromptTokens: number;  // the prompt's start that its slot held already
  weightsVersion: number;      // the model's when the job took its slot
  adapter: number;             // the id of its adapter, -1 for none
  promptLogprobs: TokenLogprob[] | null;  // entry p: the prompt's token p + 1's, when the request asks for them
  embeds: boolean;                        // an embedding's job: it feeds its prompt for its states, and samples nothing
  states: Float32Array | null;            // its states, [prompt tokens, nEmbd], made once it is fed (not while it waits)
  startedAt: number;
  firstTokenAt: number;
  callbackError: Error | null;  // thrown by the request's own onText or onLogprob: the request fails at the next step
  arrivedTurn: number;          // the batcher's admissions when it was queued: its group's turn until one of them is admitted
  queueClient: string;          // its client within its queue, whose turns are the client's in that queue alone (admit)
}

// A step's row: a job, its slot and the tokens it feeds.
interface Row {
  job: Job;
  slot: number;
  feed: Int32Array;
  reset: boolean;     // cut the slot back to `keep` tokens first
  keep: number;
  samples: boolean;  // its feed completes its context, so its logits give the next token
  scores: boolean;   // its feed is part of a prompt scored or embedded (kvForward's output of every token)
}

const claimedModels = new WeakSet<Model>();

export class Batcher {
  readonly slots: number;
  private readonly nCtx: number;
  private readonly vocabSize: number;
  private readonly nEmbd: number;
  private readonly contextKeep: number;
  private readonly maxStepTokens: number;
  private readonly reusePrefixes: boolean;
  private readonly queue: Job[] = [];
  private readonly bySlot: (Job | null)[];
  private readonly suspects = new Set<Job>();  // rows of a failed step, stepped alone until they sample
  // Each queue's latest admission (numbered by `admissions`), for admit's turns: one entry per queue name ever used,
  // a few per entry of the server (its clients', its batches'), a number and a short name each.
  private readonly lastAdmitted = new Map<string, number>();
  private readonly groupAdmitted = new WeakMap<object, number>();  // and each group's
  private readonly clientAdmitted = new Map<string, number>();     // and each client's in each queue (queueClient), while it has requests there
  private readonly clientRequests = new Map<string, Set<Job>>();   // those requests, waiting or decoding
  private admissions = 0;
  private maskTurns = 0;  // masks worked on so far, for their turns (workOutMasks)
  // What each free slot still holds from its last request (null: nothing known), and when it was freed: a new
  // request goes to the slot that holds the longest start of its prompt, else to the one freed longest ago.
  private readonly slotHeld: (Int32Array | null)[];
  private readonly slotHeldVersion: number[];  // the model's weightsVersion that computed it
  private readonly slotHeldAdapter: number[];  // and the adapter
  private readonly slotAdapter: number[];      // the adapter each slot is bound to natively (-1: none)
  private readonly slotFreedAt: number[];
  private freed = 0;
  private loop: Promise<void> | null = null;
  private logitRows = 0;  // kvReserve's, once reserved
  private closed = false;
  // Step buffers, sized once for a full batch: the sampled rows' logits (filled only when a row asks for logprobs)
  // and RNG states (advanced by the native draw, taken into the sequences only from a step that succeeds).
  private readonly logits: Float32Array;
  private scoreLogits: Float32Array | null = null;  // [logitRows, V], made for the first prompt scored
  private embedStates: Float32Array | null = null;  // [maxStepTokens, nEmbd], made for the first prompt embedded
  private readonly rngState: BigUint64Array;
  // The ids the tokenizer spells, where the model's vocabulary has others (padded past it): no request draws those,
  // nor is told of them among the likeliest.
  private readonly spelled: Uint32Array | null;

  // One batcher per model: it owns the model's KV cache.
  constructor(readonly model: Model, readonly tokenizer: Tokenizer, options: BatcherOptions = {}) {
    const { nCtx, vocabSize } = model.config;
    this.slots = options.slots ?? 8;
    this.contextKeep = options.contextKeep ?? Math.floor(nCtx / 2);
    this.maxStepTokens = options.maxStepTokens ?? 256;
    this.reusePrefixes = options.reusePrefixes ?? true;
    if (!(Number.isInteger(this.slots) && this.slots >= 1)) throw new RangeError(`slots must be an integer >= 1, got ${this.slots}`);
    if (!(Number.isInteger(this.contextKeep) && this.contextKeep >= 1 && this.contextKeep < nCtx)) {
      throw new RangeError(`contextKeep must be an integer in [1, ${nCtx}), got ${this.contextKeep}`);
    }
    if (!(Number.isInteger(this.maxStepTokens) && this.maxStepTokens >= 1)) {
      throw new RangeError(`maxStepTokens must be an integer >= 1, got ${this.maxStepTokens}`);
    }
    if (tokenizer.vocabSize > vocabSize) {
      throw new RangeError(`the tokenizer has ${tokenizer.vocabSize} tokens, more than the model's vocabulary of ${vocabSize}`);
    }
    if (claimedModels.has(model)) throw new Error('this model already has a Batcher (one per model: it owns the KV cache)');
    claimedModels.add(model);
    this.nCtx = nCtx;
    this.vocabSize = vocabSize;
    this.nEmbd = model.config.nEmbd;
    this.bySlot = new Array<Job | null>(this.slots).fill(null);
    this.slotHeld = new Array<Int32Array | null>(this.slots).fill(null);
    this.slotHeldVersion = new Array<number>(this.slots).fill(-1);
    this.slotHeldAdapter = new Array<number>(this.slots).fill(-1);
    this.slotAdapter = new Array<number>(this.slots).fill(-1);
    this.slotFreedAt = new Array<number>(this.slots).fill(0);
    this.logits = new Float32Array(this.slots * vocabSize);
    this.spelled = tokenizer.spelledMask(vocabSize);
    this.rngState = new BigUint64Array(2 * this.slots);
  }

  // Requests running and waiting.
  get load(): { running: number; waiting: number } {
    return { running: this.bySlot.filter((j) => j !== null).length, waiting: this.queue.length };
  }

  // What each slot decodes now (null: it is free), as llama-server's /slots reports its slots.
  get slotActivity(): (SlotActivity | null)[] {
    return this.bySlot.map((job) => job && {
      embeds: job.embeds,
      promptTokens: job.seq.promptLength,
      cachedPromptTokens: job.cachedPromptTokens,
      maxTokens: job.request.maxTokens,
      generated: job.seq.generated.length,
      hasNewLine: job.seq.textSoFar.includes('\n'),
      sampling: { ...DEFAULT_SAMPLING, ...job.request.sampling },
      seed: job.request.seed,
      logprobs: job.request.logprobs ?? 0,
    });
  }

  // Requests of one queue decoding: each generation, and the embeddings of one group as one, since a caller that
  // embeds many inputs for one request of its own counts that request once.
  runningOf(queue: string): number {
    const embeddings = new Set<object>();
    let running = 0;
    for (const job of this.bySlot) {
      if (job === null || (job.request.queue ?? '') !== queue) continue;
      if (job.embeds && job.request.group) embeddings.add(job.request.group);
      else running++;
    }
    return running + embeddings.size;
  }

  submit(request: BatchRequest): Promise<GenerateResult> {
    let job: Job;
    try {
      job = this.makeJob(request);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(job);
  }

  // The final hidden state of each of the prompt's tokens, for an embedding: the prompt is fed as any request's, in
  // the same steps as the others', and nothing is sampled.
  async embed(request: EmbedRequest): Promise<EmbedResult> {
    const tokens = request.promptTokens;
    if (tokens.length > this.nCtx) throw new RangeError(`an embedding of ${tokens.length} tokens needs them within the model's context of ${this.nCtx}`);
    // A sequence only for its feed bookkeeping: it never samples.
    const job = this.makeJob({ promptTokens: tokens, maxTokens: 1, stopTokens: [], seed: 0, signal: request.signal, deadline: request.deadline, adapter: request.adapter, queue: request.queue, group: request.group, client: request.client });
    job.embeds = true;
    const { finishReason, timings } = await this.enqueue(job);
    return { states: job.states ?? new Float32Array(0), finishReason, timings };
  }

  private enqueue(job: Job): Promise<GenerateResult> {
    const done = new Promise<GenerateResult>((resolve, reject) => {
      job.resolve = (result) => {
        this.leave(job);
        resolve(result);
      };
      job.reject = (err) => {
        this.leave(job);
        reject(err);
      };
    });
    job.arrivedTurn = this.admissions;
    this.queue.push(job);
    this.clientRequests.set(job.queueClient, (this.clientRequests.get(job.queueClient) ?? new Set()).add(job));
    if (this.loop === null) {
      // run() starts in a microtask, after this.loop is set: a run that finds nothing to step (a request expired
      // before its first step) clears this.loop as it ends, and must not be overwritten by its own settled promise,
      // or no later submit would start a loop again.
      this.loop = Promise.resolve().then(() => this.run()).catch((err: Error) => {
        // Only kvReserve can fail outside a step (the requests' callbacks are guarded): nothing can run on this
        // model, and every request on it fails rather than wait on a loop that stopped.
        this.loop = null;
        for (const waiting of this.queue.splice(0)) waiting.reject(err);
        this.bySlot.forEach((job, slot) => job && this.fail(job, slot, err));
      });
    }
    return done;
  }

  // Stops taking requests, finishes the running and waiting ones as 'aborted', and frees the model for
  // another batcher.
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) this.finish(job, 'aborted');
    for (let s = 0; s < this.slots; s++) {
      const job = this.bySlot[s];
      if (job) this.finish(job, 'aborted', s);
    }
    await this.loop;
    claimedModels.delete(this.model);
  }

  private makeJob(request: BatchRequest): Job {
    if (this.closed) throw new Error('the batcher is closed');
    const top = request.logprobs;
    if (top !== undefined && !(Number.isInteger(top) && top >= 0 && top <= MAX_TOP_LOGPROBS)) {
      throw new RangeError(`logprobs must be an integer from 0 to ${MAX_TOP_LOGPROBS}, got ${top}`);
    }
    if (request.adapter && request.adapter.model !== this.model) throw new RangeError(`adapter ${request.adapter.dir} was added to another model`);
    if (request.promptLogprobs && top === undefined) throw new RangeError('promptLogprobs needs logprobs (the alternatives to report)');
    if (request.promptLogprobs && request.promptTokens.length > this.nCtx) {
      throw new RangeError(`the log-probabilities of a prompt of ${request.promptTokens.length} tokens need it within the model's context of ${this.nCtx}`);
    }
    const sampling = { ...DEFAULT_SAMPLING, ...request.sampling };
    checkSampling(sampling, this.vocabSize);
    const prompt: unknown = request.promptTokens;
    if (!isArrayLike(prompt)) {
      throw new TypeError(`the prompt must be text or token ids (an array of integers), got ${prompt === null ? 'null' : typeof prompt}`);
    }
    for (let i = 0; i < request.promptTokens.length; i++) {
      const t = request.promptTokens[i];
      if (!(Number.isInteger(t) && t >= 0 && t < this.vocabSize)) {
        throw new RangeError(`promptTokens[${i}] = ${t} is not a token of this model (vocabulary ${this.vocabSize})`);
      }
    }
    const givenStops: unknown = request.stopTokens ?? [this.tokenizer.eotToken];
    const stopTokens = isArrayLike(givenStops) ? Array.from(givenStops) : null;
    if (stopTokens === null || !stopTokens.every((t) => Number.isInteger(t) && (t as number) >= 0 && (t as number) < this.vocabSize)) {
      throw new RangeError(refusal('stopTokens', `a list of token ids of this model (integers in [0, ${this.vocabSize}))`, stopTokens ?? givenStops));
    }
    let seed: bigint;
    if (request.seed === undefined) seed = randomSeed();
    else if (typeof request.seed === 'bigint') seed = request.seed;
    else if (Number.isSafeInteger(request.seed) && request.seed >= 0) seed = BigInt(request.seed);
    else throw new RangeError(refusal('seed', 'a non-negative integer', request.seed));
    // The request's callbacks (its client's stream, its sanitizer's reply stream) run inside the loop that decodes
    // every request: one that throws fails its own request (expire, finish), never the loop and its neighbours.
    const guarded = <A, R>(callback: (arg: A) => R, failed: R) => (arg: A): R => {
      try {
        return callback(arg);
      } catch (err) {
        job.callbackError ??= err instanceof Error ? err : new Error(String(err));
        return failed;
      }
    };
    const { onText, onLogprob, reply } = request;
    const grammar = request.grammar && new GrammarMatcher(request.grammar, GrammarVocabulary.of(this.tokenizer, this.vocabSize));
    const seq = new Sequence(
      {
        promptTokens: request.promptTokens,
        maxTokens: request.maxTokens,
        sampling,
        stop: request.stop ?? [],
        stopTokens: stopTokens as number[],
        seed,
        nCtx: this.nCtx,
        contextKeep: this.contextKeep,
        onText: onText && guarded(onText, undefined),
        onLogprob: onLogprob && guarded(onLogprob, undefined),
        // A reply whose stream broke is complete: the sequence stops, and the request fails.
        reply: reply && { push: guarded((piece: string) => reply.push(piece), { text: '', settled: '', complete: true }) },
        grammar,
        spelled: this.spelled ?? undefined,
      },
      this.tokenizer,
    );
    const unset = (): void => {
      throw new Error('unreachable');
    };
    const job: Job = {
      seq, request, grammar, resolve: unset, reject: unset, submittedAt: Date.now(), cachedPromptTokens: 0, weightsVersion: -1,
      adapter: request.adapter?.id ?? -1, promptLogprobs: request.promptLogprobs ? [] : null, embeds: false, states: null, startedAt: NaN, firstTokenAt: NaN,
      callbackError: null, arrivedTurn: 0, queueClient: `${request.queue ?? ''}\u0000${request.client ?? ''}`,
    };
    return job;
  }

  private async run(): Promise<void> {
    if (this.logitRows === 0) this.logitRows = await this.model.run((native) => native.kvReserve(this.slots));
    for (;;) {
      this.expire();
      this.admit();
      const rows = this.planStep();
      // A request the plan failed (maskReady) may have freed a slot for one queued: admitted at the next turn.
      if (rows.length === 0 && this.queue.length === 0 && !this.bySlot.some((job) => job && waitsForMask(job))) {
        this.loop = null;  // synchronously, so that a submit from now on starts a new loop
        return;
      }
      const stepping = rows.length > 0 ? this.model.run((native) => this.step(native, rows)) : null;
      stepping?.catch(() => {});  // awaited below, after the decoding, which may throw first
      this.decodeTaken();
      await this.workOutMasks(stepping);
      if (stepping === null) continue;
      let tokens: Int32Array;
      let logprobs: NativeLogprobs | null;
      try {
        ({ tokens, logprobs } = await stepping);
      } catch (err) {
        if (rows.length === 1) {
          this.fail(rows[0].job, rows[0].slot, err as Error);
          continue;
        }
        // One bad row must not fail its neighbours: every row of the step is stepped alone until it samples,
        // so that only the one that fails again is failed. The step may have written some rows' caches before
        // it threw, so each prefills its window again (RNG states are only taken from a step that succeeds).
        for (const row of rows) {
          row.job.seq.refill();
          this.suspects.add(row.job);
        }
        continue;
      }
      const now = Date.now();
      let sampled = 0;
      for (const row of rows) {
        row.job.seq.fed(row.feed.length);
        if (row.job.embeds && row.job.seq.caughtUp && !row.job.seq.done) this.finish(row.job, 'stop', row.slot);
        if (!row.samples) continue;
        const job = row.job;
        const s = sampled++;
        this.suspects.delete(job);
        if (job.seq.done) continue;  // closed while the step ran
        job.seq.rng[0] = this.rngState[2 * s];
        job.seq.rng[1] = this.rngState[2 * s + 1];
        if (Number.isNaN(job.firstTokenAt)) job.firstTokenAt = now;
        const top = job.request.logprobs;
        const logprob = top === undefined || logprobs === null ? undefined : rowLogprob(logprobs, s, tokens[s], top);
        try {
          if (job.seq.take(tokens[s], logprob)) this.finish(job, job.seq.finishReason as FinishReason, row.slot);
        } catch (err) {
          this.fail(job, row.slot, err as Error);  // its grammar refused the token: a fault of that request's alone
        }
      }
    }
  }

  // The text of the tokens the last step drew, decoded and streamed out while the next step computes. A request
  // whose text finishes it (a stop sequence, a complete reply) finishes here: its row in the running step feeds
  // its last token to a slot it has left, which the slot's next request cuts back (its first row resets the slot).
  private decodeTaken(): void {
    this.bySlot.forEach((job, slot) => {
      if (job?.seq.decodeTaken()) this.finish(job, job.seq.finishReason as FinishReason, slot);
    });
  }

  // Works out the token masks that running requests wait for before they draw again, a slice (MASK_SLICE_WORK) at a
  // time, the requests taking turns, the event loop turning after each slice: until none waits, or the step (null:
  // none) has run. A mask may take hundreds of milliseconds (an enum of 16,000 strings, after its first letters):
  // worked out whole inside a step, it would stall every client of the server, and every request of the step with it;
  // so a request waiting for its mask sits out the steps, and the others go on.
  private async workOutMasks(stepping: Promise<unknown> | null): Promise<void> {
    let stepped = stepping === null;
    void stepping?.then(() => (stepped = true), () => (stepped = true));
    for (;;) {
      const waiting = this.bySlot.filter((job): job is Job => job !== null && waitsForMask(job));
      if (waiting.length === 0) return;
      const job = waiting[this.maskTurns++ % waiting.length];
      this.maskReady(job, this.bySlot.indexOf(job));
      await new Promise((resolve) => setImmediate(resolve));
      if (stepped) return;
    }
  }

  // Requests whose signal fired or whose deadline passed finish now, running or waiting; those whose callbacks threw
  // fail.
  private expire(): void {
    const now = Date.now();
    const reason = (job: Job): FinishReason | null =>
      job.request.signal?.aborted ? 'aborted' : job.request.deadline !== undefined && now > job.request.deadline ? 'deadline' : null;
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const r = reason(this.queue[i]);
      if (r) this.finish(this.queue.splice(i, 1)[0], r);
    }
    this.bySlot.forEach((job, slot) => {
      if (job?.callbackError) return this.fail(job, slot, job.callbackError);
      const r = job && reason(job);
      if (job && r) this.finish(job, r, slot);
    });
  }

  // A free slot goes to the waiting request of the queue admitted least recently: the queues take turns, so that one
  // flooding its queue (a bot's clients, many choices at once) delays another's requests by one turn, not by all it
  // has waiting. Within a queue the clients take turns the same way, so that one client's flood of requests delays
  // another client's by a turn, not by all of them: by their admissions in that queue alone, since those in another
  // queue had that queue's turns (counted here too, a client's batch running in a queue of its own would hold its
  // request in a bot's queue behind every newcomer for as long as the batch ran); then the groups (a request of no group is a group of its own), a
  // group that just came counted as admitted when it came, so that one client's many choices delay another client's
  // request by about one turn, and later requests never keep them waiting for ever; else the first waiting.
  private admit(): void {
    while (this.queue.length > 0 && this.bySlot.includes(null)) {
      const at = this.nextInTurn();
      const job = this.queue[at];
      let slot = -1;
      let reused = 0;
      for (let s = 0; s < this.slots; s++) {
        if (this.bySlot[s] !== null) continue;
        const same = this.slotHeldVersion[s] === this.model.weightsVersion && this.slotHeldAdapter[s] === job.adapter;
        const held = this.reusePrefixes && same && this.toScore(job) === 0 ? this.slotHeld[s] : null;
        const common = held === null ? 0 : Math.min(commonPrefix(held, job.request.promptTokens), job.seq.promptLength - 1);
        if (slot < 0 || common > reused || (common === reused && this.slotFreedAt[s] < this.slotFreedAt[slot])) {
          slot = s;
          reused = common;
        }
      }
      this.queue.splice(at, 1);
      this.lastAdmitted.set(job.request.queue ?? '', ++this.admissions);
      this.clientAdmitted.set(job.queueClient, this.admissions);
      if (job.request.group) this.groupAdmitted.set(job.request.group, this.admissions);
      this.bySlot[slot] = job;
      this.slotHeld[slot] = null;
      job.seq.reuse(reused);
      job.cachedPromptTokens = reused;
      job.weightsVersion = this.model.weightsVersion;
    }
  }

  // Where in this.queue the next request to admit waits.
  private nextInTurn(): number {
    let at = 0;
    let turn = Infinity;
    let clientTurn = Infinity;
    let groupTurn = Infinity;
    this.queue.forEach((job, i) => {
      const last = this.lastAdmitted.get(job.request.queue ?? '') ?? 0;
      // A client new to the turns counts as admitted just before its request came, as a group that just came does:
      // ahead of a client admitted since, behind one that has waited since before it, whom newcomers that keep
      // coming would otherwise hold back for ever.
      const lastOfClient = this.clientAdmitted.get(job.queueClient) ?? job.arrivedTurn - 0.5;
      const lastOfGroup = (job.request.group && this.groupAdmitted.get(job.request.group)) ?? job.arrivedTurn;
      if (last < turn || (last === turn && (lastOfClient < clientTurn || (lastOfClient === clientTurn && lastOfGroup < groupTurn)))) {
        turn = last;
        clientTurn = lastOfClient;
        groupTurn = lastOfGroup;
        at = i;
      }
    });
    return at;
  }

  // A request ends (once, however often it is finished): a client left with none in its queue is forgotten there, and
  // takes its turn as a new one when it comes back.
  private leave(job: Job): void {
    const requests = this.clientRequests.get(job.queueClient);
    if (!requests?.delete(job) || requests.size > 0) return;
    this.clientRequests.delete(job.queueClient);
    this.clientAdmitted.delete(job.queueClient);
  }

  // A slot leaves its job: what it holds stays for a later prompt that starts the same way, unless unknown or
  // computed by weights that changed while the job ran.
  private release(slot: number, job: Job, held: Int32Array | null): void {
    this.bySlot[slot] = null;
    this.slotHeld[slot] = job.weightsVersion === this.model.weightsVersion ? held : null;
    this.slotHeldVersion[slot] = job.weightsVersion;
    this.slotHeldAdapter[slot] = job.adapter;
    this.slotFreedAt[slot] = ++this.freed;
  }

  // This step's rows: every decoding request feeds its one new token; prompts (and window re-prefills) share
  // what is left of maxStepTokens, the first of them at least one token. Rows that will sample come first.
  private planStep(): Row[] {
    for (const job of this.suspects) {
      const slot = this.bySlot.indexOf(job);
      if (slot < 0) {
        this.suspects.delete(job);  // finished meanwhile
        continue;
      }
      const { feed, scores } = this.prefillFeed(job, this.maxStepTokens, this.logitRows);
      const reset = job.seq.needsReset;
      return [{ job, slot, feed, reset, keep: job.seq.held.length, samples: this.completes(job, feed), scores }];
    }
    const sampling: Row[] = [];
    const partial: Row[] = [];
    const prefills: { job: Job; slot: number }[] = [];
    this.bySlot.forEach((job, slot) => {
      if (!job) return;
      const feed = job.seq.nextFeed(Infinity);
      if (feed.length === 1 && !job.seq.needsReset && this.toScore(job) === 0) {
        if (this.maskReady(job, slot)) sampling.push({ job, slot, feed, reset: false, keep: 0, samples: true, scores: false });
      } else {
        prefills.push({ job, slot });
      }
    });
    let budget = Math.max(1, this.maxStepTokens - sampling.length);
    let scoreBudget = this.logitRows;
    for (const { job, slot } of prefills) {
      if (budget === 0) break;
      const reset = job.seq.needsReset;
      const { feed, scores } = this.prefillFeed(job, budget, scoreBudget);
      if (feed.length === 0) continue;  // no room left this step for the logits of every token
      const samples = this.completes(job, feed);
      if (samples && !this.maskReady(job, slot)) continue;
      budget -= feed.length;
      if (scores && !job.embeds) scoreBudget -= feed.length;
      if (Number.isNaN(job.startedAt)) job.startedAt = Date.now();
      (samples ? sampling : partial).push({ job, slot, feed, reset, keep: job.seq.held.length, samples, scores });
    }
    return sampling.concat(partial);
  }

  // Whether a job's next draw may be planned: its grammar's mask is known, or is once one slice of it is worked out
  // here, as most are (a JSON schema's costs a few thousand units): else, every new state of a grammar would have its
  // request sit out a step while its mask is worked out beside it, drawing at half the pace of the others.
  private maskReady(job: Job, slot: number): boolean {
    try {
      return job.grammar === undefined || job.grammar.workOut(MASK_SLICE_WORK);
    } catch (err) {
      this.fail(job, slot, err as Error);  // its grammar is too costly to follow: its fault alone
      return false;
    }
  }

  // Whether a job's feed completes its context, so that it samples (an embedding never does).
  private completes(job: Job, feed: Int32Array): boolean {
    return !job.embeds && feed.length === job.seq.nextFeed(Infinity).length;
  }

  // The prompt tokens whose output of every token a job still needs: an embedding's, all; when the request asks for
  // its prompt's log-probabilities, all but its last (the last one's logits give the first new token, as any
  // prompt's do).
  private toScore(job: Job): number {
    if (job.embeds) return job.seq.promptLength - job.seq.held.length;
    return job.promptLogprobs === null || job.seq.generated.length > 0 ? 0 : Math.max(0, job.seq.promptLength - 1 - job.seq.held.length);
  }

  // What a job that is not decoding feeds next, at most `budget` tokens, and of a prompt to score at most
  // `scoreBudget` (which may be none; an embedding's states take no rows of logits).
  private prefillFeed(job: Job, budget: number, scoreBudget: number): { feed: Int32Array; scores: boolean } {
    const toScore = this.toScore(job);
    if (toScore > 0) return { feed: job.seq.nextFeed(Math.min(budget, job.embeds ? Infinity : scoreBudget, toScore)), scores: true };
    return { feed: job.seq.nextFeed(budget), scores: false };
  }

  // One native step (inside model.run): the resets, the scored and embedded rows' kvForward of every token, then one
  // kvStep that feeds the other rows and draws a token for each row that samples (the sampled rows are the first ones, in
  // order). The sampled rows' log-probabilities are computed, natively, only when one of them asks for logprobs.
  // Returns the tokens, one per sampled row, and their log-probabilities, as many alternatives as the most asked for.
  private async step(native: NativeModel, rows: Row[]): Promise<{ tokens: Int32Array; logprobs: NativeLogprobs | null }> {
    for (const row of rows) {
      if (this.slotAdapter[row.slot] !== row.job.adapter) {  // which empties the slot: its job reused none of it
        native.kvSetAdapter(row.slot, row.job.adapter);
        this.slotAdapter[row.slot] = row.job.adapter;
      }
      if (row.reset) native.kvTruncate(row.slot, row.keep);
    }
    const scored = rows.filter((r) => r.scores && !r.job.embeds);
    if (scored.length > 0) await this.score(native, scored);
    const embedded = rows.filter((r) => r.scores && r.job.embeds);
    if (embedded.length > 0) await this.embedRows(native, embedded);
    const stepped = rows.filter((r) => !r.scores);
    if (stepped.length === 0) return { tokens: new Int32Array(0), logprobs: null };
    const { slots, nNew, tokens } = feeds(stepped);
    const sampleRows = new Int32Array(stepped.filter((r) => r.samples).length);
    const params: NativeSampling[] = [];
    let top = -1;
    stepped.forEach((row, i) => {
      if (!row.samples) return;
      this.rngState.set(row.job.seq.rng, 2 * params.length);
      sampleRows[params.length] = i;
      params.push(row.job.seq.sampling);
      top = Math.max(top, row.job.request.logprobs ?? -1);
    });
    const m = params.length;
    const out = new Int32Array(m);
    const logprobs = top < 0 ? null : logprobRows(m, top, this.spelled);
    const logits = logprobs ? this.logits.subarray(0, m * this.vocabSize) : null;
    await native.kvStep(slots, nNew, tokens, sampleRows, params, this.rngState.subarray(0, 2 * m), out, logits, logprobs ?? undefined);
    return { tokens: out, logprobs };
  }

  // The rows' prompt tokens through kvForward with the logits of every token, each row's k-th token's logits giving
  // the log-probability of the prompt's next token, computed natively for all of them, as many alternatives as the
  // most asked for.
  private async score(native: NativeModel, rows: Row[]): Promise<void> {
    const V = this.vocabSize;
    this.scoreLogits ??= new Float32Array(this.logitRows * V);
    const next = Int32Array.from(rows.flatMap(({ job, feed }) => Array.from(feed, (_, k) => job.request.promptTokens[job.seq.held.length + k + 1])));
    const logprobs = logprobRows(next.length, Math.max(...rows.map((r) => r.job.request.logprobs ?? 0)), this.spelled, next);
    await this.everyToken(native, rows, 'tokenLogits', V, this.scoreLogits, (job, logits, start, at) => {
      for (let k = 0; k < logits.length / V; k++) {
        (job.promptLogprobs as TokenLogprob[])[start + k] = rowLogprob(logprobs, at + k, next[at + k], job.request.logprobs ?? 0);
      }
    }, logprobs);
  }

  // The rows' prompt tokens through kvForward with the final hidden state of every token, into their jobs' states.
  private async embedRows(native: NativeModel, rows: Row[]): Promise<void> {
    const C = this.nEmbd;
    this.embedStates ??= new Float32Array(this.maxStepTokens * C);
    await this.everyToken(native, rows, 'tokenStates', C, this.embedStates, (job, states, start) => {
      (job.states ??= new Float32Array(job.seq.promptLength * C)).set(states, start * C);
    });
  }

  // The rows' tokens through kvForward with an output of every token, `width` numbers each, computed into `buffer`
  // (and `logprobs`, where given, of the logits); then each row's outputs to `take`, with the position of its first
  // token in its prompt and in the step. They are kept by position, so that a prompt fed again after a failed step
  // writes the same entries again.
  private async everyToken(native: NativeModel, rows: Row[], output: KvOutput, width: number, buffer: Float32Array,
    take: (job: Job, out: Float32Array, start: number, at: number) => void, logprobs?: NativeLogprobs): Promise<void> {
    const { slots, nNew, tokens } = feeds(rows);
    const out = buffer.subarray(0, tokens.length * width);
    await native.kvForward(slots, nNew, tokens, out, output, logprobs);
    let at = 0;
    for (const { job, feed } of rows) {
      take(job, out.subarray(at * width, (at + feed.length) * width), job.seq.held.length, at);
      at += feed.length;
    }
  }

  private fail(job: Job, slot: number, err: Error): void {
    this.release(slot, job, null);
    this.suspects.delete(job);
    job.reject(err);
  }

  private finish(job: Job, reason: FinishReason, slot?: number): void {
    if (slot !== undefined) this.release(slot, job, job.seq.held);
    job.seq.finish(reason);
    // The last of its text, streamed as it finished, may have broken a callback.
    if (job.callbackError) return job.reject(job.callbackError);
    const now = Date.now();
    const generated = job.seq.generated.length;
    const decodeMs = now - job.firstTokenAt;
    job.resolve({
      text: job.seq.textSoFar,
      ...(job.request.reply && { reply: job.seq.replySoFar }),
      tokens: job.seq.generated.slice(),
      ...(job.request.logprobs !== undefined && { logprobs: job.seq.logprobs.slice() }),
      ...(job.promptLogprobs && { promptLogprobs: job.promptLogprobs.slice() }),
      finishReason: job.seq.finishReason as FinishReason,
      timings: {
        queuedMs: (Number.isNaN(job.startedAt) ? now : job.startedAt) - job.submittedAt,
        firstTokenMs: job.firstTokenAt - job.submittedAt,
        totalMs: now - job.submittedAt,
        promptTokens: job.seq.promptLength,
        cachedPromptTokens: job.cachedPromptTokens,
        generatedTokens: generated,
        tokensPerSecond: generated > 1 && decodeMs > 0 ? ((generated - 1) * 1000) / decodeMs : NaN,
      },
    });
  }
}

// Whether a job's next draw waits for its grammar's mask, not yet worked out (workOut(0) only looks it up).
function waitsForMask(job: Job): boolean {
  return job.grammar !== undefined && !job.grammar.workOut(0);
}

// The rows' slots, their numbers of new tokens and those tokens, concatenated, as kvForward and kvStep take them.
function feeds(rows: Row[]): { slots: Int32Array; nNew: Int32Array; tokens: Int32Array } {
  const slots = Int32Array.from(rows, (r) => r.slot);
  const nNew = Int32Array.from(rows, (r) => r.feed.length);
  const tokens = new Int32Array(rows.reduce((sum, r) => sum + r.feed.length, 0));
  let at = 0;
  for (const row of rows) {
    tokens.set(row.feed, at);
    at += row.feed.length;
  }
  return { slots, nNew, tokens };
}

// How many tokens two sequences share at their start.
function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

// From JavaScript anything may come as token ids (an array, a typed array such as an encoding): what is not
// array-like would fail inside the loop, and with it every request beside it.
function isArrayLike(value: unknown): value is ArrayLike<unknown> {
  return value !== null && typeof value === 'object' && Number.isSafeInteger((value as { length?: unknown }).length);
}
