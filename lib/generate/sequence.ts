// One generation request as it is decoded: its tokens, what it feeds the model next (the context-window
// policy), its sampling settings and RNG, and the text it has produced, cut at stop sequences and streamed
// out without ever showing the start of a stop sequence that may still complete.
import { StreamDecoder, Tokenizer } from '../tokenizer';
import { loadAddon, NativeSampling } from '../engine/native';
import type { TokenLogprob } from './logprobs';
import type { ReplyStream } from '../sanitize/types';
import { quoted } from '../util/quoted';
import type { GrammarMatcher } from './grammar';
import { StopSearch } from './stop_search';

// Sampling settings (temperature 0: greedy; topK 0, minP 0 and topP 1: off; penalize in (0, 1], 0: off). The
// repetition penalty (--penalize; docs/compatibility.md says how it differs): every distinct token of the window (prompt
// and output) has its logit l made l * penalize when l > 0 and l / penalize when l < 0, so a used token always
// becomes less likely (multiplying negative logits too would make them MORE likely). The exact
// order (penalty, logit biases, temperature, top-k, min-p, top-p, draw) is in native/cpu/sampler.cpp. logitBias, as
// OpenAI's logit_bias: token id -> a number added to that token's logit after the penalty (-100 bans the token,
// +100 all but forces it). presencePenalty and frequencyPenalty, as OpenAI's (in [-2, 2]): every token drawn so far
// has presencePenalty + frequencyPenalty * (the times it was drawn) taken from its logit, with the logit biases;
// the prompt's tokens are not counted.
export interface SamplingOptions extends Omit<NativeSampling, 'logitBias' | 'allowed'> {
  logitBias?: Readonly<Record<number, number>>;
  presencePenalty?: number;
  frequencyPenalty?: number;
}

// The settings' names in the server's requests and configs and in the commands' flags.
export const SAMPLING_FIELDS: Readonly<Record<keyof SamplingOptions, string>> = {
  temperature: 'temperature', topK: 'top_k', topP: 'top_p', minP: 'min_p', penalize: 'penalize', logitBias: 'logit_bias', presencePenalty: 'presence_penalty',
  frequencyPenalty: 'frequency_penalty',
};

// The settings a request gives and a model has no default for.
type RequestOnly = 'logitBias' | 'presencePenalty' | 'frequencyPenalty';
export const DEFAULT_SAMPLING: Readonly<Required<Omit<SamplingOptions, RequestOnly>>> = { temperature: 1, topK: 0, topP: 1, minP: 0, penalize: 0 };
const MAX_ADDITIVE_PENALTY = 2;

// 'stop': a stop sequence or stop token (<|endoftext|> by default) ended the text; 'length': maxTokens;
// 'aborted': the request's signal fired; 'deadline': its deadline passed.
export type FinishReason = 'stop' | 'length' | 'aborted' | 'deadline';

export interface Timings {
  queuedMs: number;       // submit -> the first step that fed the prompt
  firstTokenMs: number;   // submit -> first token sampled (NaN when none was)
  totalMs: number;        // submit -> finished
  promptTokens: number;
  cachedPromptTokens: number;  // of them, found in the KV cache already (see Batcher: prefix reuse)
  generatedTokens: number;
  tokensPerSecond: number;  // generated tokens after the first / time after the first
}

export interface GenerateResult {
  text: string;           // the generated text (not the prompt), cut where a stop sequence begins
  reply?: string;         // its sanitized reply, when the request gave a reply stream
  tokens: number[];       // the sampled tokens (a stop token excluded)
  logprobs?: TokenLogprob[];  // each token's, when the request asked for them
  promptLogprobs?: TokenLogprob[];  // the prompt's tokens' but the first (entry p: token p + 1's), when asked for
  finishReason: FinishReason;
  timings: Timings;
}

// 64-bit splitmix64 of the seed, as the two words of the native sampler's per-row xoroshiro128++ state.
export function rngStateFromSeed(seed: bigint): [bigint, bigint] {
  const mask = (1n << 64n) - 1n;
  let x = seed & mask;
  const next = (): bigint => {
    x = (x + 0x9e3779b97f4a7c15n) & mask;
    let z = x;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
    return z ^ (z >> 31n);
  };
  return [next(), next()];
}

// The seed of generation i of several drawn with one seed (a request's choices, a command's samples, a chat's
// replies): the seed itself for the first, which so draws what a lone request with that seed draws, and for the
// others a splitmix64 mix of both, so that the samples of seed s and those of seed s + 1 share none.
export function seedOf(seed: number | bigint, i: number): bigint {
  return i === 0 ? BigInt(seed) : rngStateFromSeed(BigInt(seed) ^ (BigInt(i) << 48n))[0];
}

// A seed for requests that give none.
export function randomSeed(): bigint {
  return BigInt(Math.floor(Math.random() * 2 ** 32)) * 2n ** 32n + BigInt(Math.floor(Math.random() * 2 ** 32));
}

// A sampling setting the native sampler would refuse. It carries the setting's name (a SamplingOptions key), the
// rule and the value apart, so that each front end can say it under its own name for the setting.
export class SamplingError extends RangeError {
  constructor(readonly field: keyof SamplingOptions, readonly rule: string, readonly value: unknown) {
    super(refusal(field, rule, value));
    this.name = 'SamplingError';
  }

  // The refusal with the setting called `name` and `context` after the rule: 'top_p must be in (0, 1] for model
  // "x", got 2'.
  describe(name: string, context = ''): string {
    return refusal(name, this.rule, this.value, context);
  }
}

export function refusal(name: string, rule: string, value: unknown, context = ''): string {
  return `${name} must be ${rule}${context}, got ${quoted(value)}`;
}

// The settings as the native sampler takes them: the logit biases as two arrays, their token ids checked to be
// ids (their range is the sampler's to check, against the model's vocabulary); the additive penalties checked, for
// the sequence to fold into the biases at each draw (Sequence.sampling).
function nativeSampling(s: SamplingOptions): NativeSampling {
  const { logitBias, presencePenalty = 0, frequencyPenalty = 0, ...rest } = s;
  for (const [field, penalty] of [['presencePenalty', presencePenalty], ['frequencyPenalty', frequencyPenalty]] as const) {
    if (!(typeof penalty === 'number' && Math.abs(penalty) <= MAX_ADDITIVE_PENALTY)) throw new SamplingError(field, `a number from ${-MAX_ADDITIVE_PENALTY} to ${MAX_ADDITIVE_PENALTY}`, penalty);
  }
  if (logitBias === undefined) return rest;
  const entries = Object.entries(logitBias);
  for (const [token, bias] of entries) {
    if (!/^(0|[1-9]\d{0,8})$/.test(token) || typeof bias !== 'number') {
      throw new SamplingError('logitBias', 'an object of token ids (integers from 0) to numbers', logitBias);
    }
  }
  return { ...rest, logitBias: { tokens: Int32Array.from(entries, ([t]) => Number(t)), values: Float32Array.from(entries, ([, b]) => b) } };
}

// Refuses exactly the settings the native sampler refuses, by asking its table (the values read as float32, so a
// top_p of 1e-300 is 0 there and refused here too; top_k may not pass the model's vocabulary).
export function checkSampling(s: SamplingOptions, vocabSize: number): void {
  const refused = loadAddon().checkSampling(nativeSampling(s), vocabSize);
  // Never `allowed`, which no request gives: a grammar's masks are the grammar's to make.
  if (refused) throw new SamplingError(refused.field as keyof SamplingOptions, refused.rule, s[refused.field as keyof SamplingOptions]);
}

export interface SequenceOptions {
  promptTokens: ArrayLike<number>;
  maxTokens: number;
  sampling: SamplingOptions;
  stop: string[];          // stop sequences, matched on the decoded text
  stopTokens: number[];    // tokens that end the text without being part of it
  seed: bigint;
  nCtx: number;
  contextKeep: number;     // tokens kept when the context would pass nCtx (see Sequence.nextFeed)
  onText?: (piece: string) => void;
  onLogprob?: (logprob: TokenLogprob) => void;  // each taken token's, as it is taken (before its text is streamed)
  reply?: ReplyStream;     // the sanitized reply of the text; the sequence stops ('stop') once it is complete
  // Holds the text to a grammar: each draw is of the tokens it allows, <|endoftext|> only where it may end, and
  // the sequence stops ('stop') once the grammar is complete.
  grammar?: GrammarMatcher;
  // The tokens the tokenizer spells, where it does not spell every logit (Tokenizer.spelledMask): the only ones drawn.
  spelled?: Uint32Array;
}

// The request's logit biases with the additive penalties of the tokens drawn so far folded in, each token's bias
// updated as it is drawn: built afresh for every draw, a logit_bias of thousands of entries cost the event loop a
// millisecond a token.
class PenalizedBiases {
  private readonly slotOf = new Map<number, number>();
  private readonly given: number[] = [];  // by slot: the request's bias, 0 for a token it gives none
  private readonly times: number[] = [];  // by slot: the draws of its token so far
  private tokens: Int32Array;
  private values: Float32Array;

  constructor(given: NativeSampling['logitBias'], private readonly presence: number, private readonly frequency: number) {
    const n = given?.tokens.length ?? 0;
    this.tokens = new Int32Array(Math.max(16, 2 * n));
    this.values = new Float32Array(this.tokens.length);
    given?.tokens.forEach((token, i) => this.slot(token, given.values[i]));
  }

  drew(token: number): void {
    const slot = this.slotOf.get(token) ?? this.slot(token, 0);
    this.values[slot] = this.given[slot] - this.presence - this.frequency * ++this.times[slot];
  }

  biases(): NativeSampling['logitBias'] {
    const n = this.given.length;
    return { tokens: this.tokens.subarray(0, n), values: this.values.subarray(0, n) };
  }

  private slot(token: number, bias: number): number {
    const slot = this.given.length;
    if (slot === this.tokens.length) {
      const tokens = new Int32Array(2 * slot);
      const values = new Float32Array(2 * slot);
      tokens.set(this.tokens);
      values.set(this.values);
      this.tokens = tokens;
      this.values = values;
    }
    this.slotOf.set(token, slot);
    this.given.push(bias);
    this.times.push(0);
    this.tokens[slot] = token;
    this.values[slot] = bias;
    return slot;
  }
}

export class Sequence {
  // The settings of every draw, or, with additive penalties, of the first (the sampling getter folds in the draws
  // since).
  private readonly fixedSampling: NativeSampling;
  private readonly penalized: PenalizedBiases | null;
  // The sampler's RNG state (two 64-bit words), advanced by every draw.
  readonly rng: BigUint64Array;
  readonly promptLength: number;
  readonly generated: number[] = [];
  readonly logprobs: TokenLogprob[] = [];  // one per generated token, when the request asks for them
  finishReason: FinishReason | null = null;

  // Everything the model has seen or will see, prompt first: context[windowStart, length) is the window
  // the slot holds (cached of them are in the KV cache already).
  private context: Int32Array;
  private length: number;
  private windowStart = 0;
  private cached = 0;
  // Set when the slot must be cut back to `cached` tokens before the next feed (a new slot, a window shift).
  needsReset = true;

  private readonly decoder: StreamDecoder;
  private undecoded = 0;     // the last generated tokens whose text is not decoded yet (see take)
  private text = '';
  private emitted = 0;       // text[0, emitted) has gone to onText (and the reply stream)
  private reply: { text: string; complete: boolean } | null = null;
  private readonly stopSearch: StopSearch;
  private readonly endOfText: number;

  constructor(private readonly options: SequenceOptions, tokenizer: Tokenizer) {
    const { promptTokens, nCtx, contextKeep, maxTokens, stop } = options;
    if (promptTokens.length === 0) throw new RangeError('the prompt is empty: give at least one token (<|endoftext|> for unconditional text)');
    if (!(contextKeep >= 1 && contextKeep < nCtx)) throw new RangeError(`contextKeep must be in [1, ${nCtx}), got ${contextKeep}`);
    // Before the context is sized by maxTokens. From JavaScript a string may come for either.
    if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) throw new RangeError(refusal('maxTokens', 'an integer >= 1', maxTokens));
    if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string')) throw new TypeError(refusal('stop', 'a list of strings, such as ["\\n"]', stop));
    if (stop.some((s) => s.length === 0)) throw new RangeError('stop sequences must not be empty');
    this.context = new Int32Array(Math.max(16, promptTokens.length + Math.min(options.maxTokens, nCtx)));
    this.context.set(promptTokens);
    this.length = promptTokens.length;
    this.promptLength = promptTokens.length;
    this.fixedSampling = nativeSampling(options.sampling);
    const { presencePenalty = 0, frequencyPenalty = 0 } = options.sampling;
    this.penalized = presencePenalty !== 0 || frequencyPenalty !== 0 ? new PenalizedBiases(this.fixedSampling.logitBias, presencePenalty, frequencyPenalty) : null;
    this.rng = BigUint64Array.from(rngStateFromSeed(options.seed));
    this.decoder = tokenizer.streamDecoder();
    this.endOfText = tokenizer.eotToken;
    this.stopSearch = new StopSearch(stop);
  }

  get done(): boolean {
    return this.finishReason !== null;
  }

  // The settings of the next draw.
  get sampling(): NativeSampling {
    const { grammar, spelled } = this.options;
    const sampling = this.penalized === null ? this.fixedSampling : { ...this.fixedSampling, logitBias: this.penalized.biases() };
    // A grammar's masks allow only tokens it can read, so only tokens spelled.
    const allowed = grammar ? grammar.allowed() : spelled;
    return allowed ? { ...sampling, allowed } : sampling;
  }

  // The context-window policy: the slot holds at most nCtx tokens. When the tokens not yet fed would take it
  // past nCtx, the window moves to the most recent contextKeep tokens (nCtx / 2 by default) and the slot is
  // emptied and prefilled with them again: one re-prefill every nCtx - contextKeep tokens, never a token lost
  // from the last contextKeep. A prompt longer than nCtx starts that way too.
  // Returns the tokens to append to the slot now, at most `budget` of them (a long prefill is fed in parts).
  nextFeed(budget: number): Int32Array {
    const { nCtx, contextKeep } = this.options;
    if (this.length - this.windowStart > nCtx) {
      this.windowStart = this.length - contextKeep;
      this.cached = 0;
      this.needsReset = true;
    }
    const from = this.windowStart + this.cached;
    return this.context.subarray(from, Math.min(this.length, from + budget));
  }

  // The slot already holds the first n tokens of the prompt (a prefix an earlier request left there): they
  // are not fed again. At least the prompt's last token is, since its logits give the first new token.
  reuse(n: number): void {
    if (!(Number.isInteger(n) && n >= 0 && n < this.promptLength && this.windowStart === 0)) throw new RangeError(`cannot reuse ${n} tokens of a ${this.promptLength}-token prompt`);
    this.cached = n;
  }

  // The tokens the slot holds (or will hold, once cut back before the next feed), oldest first.
  get held(): Int32Array {
    return this.context.subarray(this.windowStart, this.windowStart + this.cached);
  }

  // The slot's contents are unknown (a step failed midway): it is emptied and its window fed again.
  refill(): void {
    this.cached = 0;
    this.needsReset = true;
  }

  // The model has taken n more tokens into the slot.
  fed(n: number): void {
    this.cached += n;
    this.needsReset = false;
  }

  // Whether the slot now holds every token, so its logits predict the next one.
  get caughtUp(): boolean {
    return this.windowStart + this.cached === this.length;
  }

  // The tokens for the repetition penalty: the window's tokens, which are what the slot holds once caught up (so
  // the batcher's kvStep reads them natively, where the slot keeps them; test/generate/kv_step.test.ts).
  history(): Int32Array {
    return this.context.subarray(this.windowStart, this.length);
  }

  get textSoFar(): string {
    return this.text;
  }

  // Takes a sampled token into the context, where the next step can feed it. Returns true when the sequence has
  // finished: on a stop token, on the token that completes its grammar, or on its last token. The text of a token
  // that does not finish it waits for decodeTaken, which the batcher calls while the next step computes.
  take(token: number, logprob?: TokenLogprob): boolean {
    const { grammar } = this.options;
    // Under a grammar, <|endoftext|> is drawn only where the grammar may end, and ends the text there.
    if (this.options.stopTokens.includes(token) || (grammar && token === this.endOfText)) return this.finish('stop');
    grammar?.accept(token);
    this.generated.push(token);
    this.penalized?.drew(token);
    if (logprob) {
      this.logprobs.push(logprob);
      this.options.onLogprob?.(logprob);
    }
    if (this.length === this.context.length) {
      const grown = new Int32Array(this.context.length * 2);
      grown.set(this.context);
      this.context = grown;
    }
    this.context[this.length++] = token;
    this.undecoded++;
    if (grammar?.done) return this.finish('stop');
    if (this.generated.length >= this.options.maxTokens) return this.finish('length');
    return false;
  }

  // Decodes the text of the tokens taken since the last call and streams it out (onText, the reply stream), but
  // for what could begin a stop sequence. Returns true when the text finished the sequence: a stop sequence, or a
  // complete reply.
  decodeTaken(): boolean {
    while (this.undecoded > 0 && !this.done) {
      this.decodeNext();
      if (this.cutAtStop()) return true;
      this.emit(this.text.length - this.stopSearch.partial);
      if (this.reply?.complete) return this.finish('stop');
    }
    return this.done;
  }

  finish(reason: FinishReason): true {
    if (this.finishReason !== null) return true;
    while (this.undecoded > 0) this.decodeNext();
    this.text += this.decoder.end();  // a character still incomplete comes out as U+FFFD
    if (!this.cutAtStop()) this.finishReason = reason;
    this.emit(this.text.length);
    // A reply its last token completed ended there, as it would with room for more: as a stop sequence does.
    if (this.finishReason === 'length' && this.reply?.complete) this.finishReason = 'stop';
    return true;
  }

  // The text of the oldest token not yet decoded.
  private decodeNext(): void {
    this.text += this.decoder.push(this.generated[this.generated.length - this.undecoded--]);
  }

  // Cuts the text where the first stop sequence begins; returns true when it found one.
  private cutAtStop(): boolean {
    const at = this.stopSearch.find(this.text);
    if (at < 0) return false;
    this.text = this.text.slice(0, at);
    this.finishReason = 'stop';
    this.emit(this.text.length);
    return true;
  }

  // The sanitized reply so far, for a sequence given a reply stream.
  get replySoFar(): string | undefined {
    return this.options.reply ? (this.reply?.text ?? '') : undefined;
  }

  private emit(upTo: number): void {
    if (upTo <= this.emitted) return;
    const piece = this.text.slice(this.emitted, upTo);
    this.emitted = upTo;
    if (this.options.reply) this.reply = this.options.reply.push(piece);
    this.options.onText?.(piece);
  }
}
