// Which tokens a grammar allows next, as a bitset over the model's logits, and the grammar's state as tokens are
// accepted. A mask is one walk of a byte trie of the whole vocabulary through the grammar's automaton, pruning a
// branch at the first byte no stack survives; masks are cached on the grammar by the recognizer's state, so that
// requests with the same grammar share them and a long string or number costs one walk.
import type { Tokenizer } from '../../tokenizer';
import { LruMap } from '../../util/lru_map';
import type { Automaton, State } from './automaton';
import type { Grammar } from './grammar';
import { GrammarError } from './syntax';

// Masks kept per grammar and vocabulary (6 KB each for GPT-2).
const MAX_CACHED_MASKS = 256;

// What one call of workOut may do of a mask's walk, in units of the automaton's work (Automaton.work), each trie node
// visited counting as one more: a few milliseconds, so that a mask of hundreds of milliseconds (an enum of 16,000
// strings, after its first letters) is worked out in pieces between which the event loop serves everyone else.
export const MASK_SLICE_WORK = 32_768;

// What a matcher may cost its automaton (Automaton.work, about 40 ns a unit here), on the event loop that every
// request shares: an allowance for the states a grammar's text begins with (an enum of 16,000 strings costs 9 million
// for its first tokens), then so much a token. A JSON schema's reply costs a few thousand a token, once: its states
// repeat and are kept. A grammar as ambiguous as ("a"?){10000} costs some 6 million every token (a few hundred
// milliseconds), its states never the same twice, and is stopped at its first tokens rather than holding the server
// for as long as it may write.
const WORK_ALLOWANCE = 50_000_000;
const WORK_PER_TOKEN = 65_536;

const vocabularies = new WeakMap<Tokenizer, Map<number, GrammarVocabulary>>();

// The vocabulary as the grammar sees it: each token's bytes (GPT-2's byte-level tokens may end inside a UTF-8
// character), the end-of-text token, and the number of logits (a model's vocabulary may be padded past the
// tokenizer's: those ids are never allowed).
export class GrammarVocabulary {
  readonly logits: number;
  readonly eotToken: number;
  // The trie of every token's bytes in depth-first order, without its root: node i reads byteAt[i] after its
  // parent, sits at depthAt[i] (0 under the root), its subtree ends before subtreeEnd[i], and tokenAt[i] is the
  // token spelled by the path to it, or -1 (sameBytes chains the rare tokens that spell the same bytes).
  readonly byteAt: Uint8Array;
  readonly depthAt: Uint16Array;
  readonly subtreeEnd: Int32Array;
  readonly tokenAt: Int32Array;
  readonly sameBytes: Int32Array;
  readonly maxDepth: number;
  // The mask after the end-of-text token: nothing.
  readonly noTokens: Uint32Array;
  private readonly noBytes = new Uint8Array(0);
  private readonly tokenizer: Tokenizer;

  private constructor(tokenizer: Tokenizer, logits: number) {
    if (!Number.isInteger(logits) || logits <= tokenizer.eotToken) {
      throw new RangeError(`logits must be an integer above the end-of-text token ${tokenizer.eotToken}, got ${logits}`);
    }
    this.tokenizer = tokenizer;
    this.logits = logits;
    this.eotToken = tokenizer.eotToken;
    this.noTokens = new Uint32Array(Math.ceil(logits / 32));
    const { tokenBytes: bytes, tokenStart: start, tokenEnd: end } = tokenizer.vocab;
    const ids: number[] = [];
    let totalBytes = 0;
    for (let id = 0; id < Math.min(tokenizer.vocabSize, logits); id++) {
      if (id === this.eotToken || end[id] <= start[id]) continue;
      ids.push(id);
      totalBytes += end[id] - start[id];
    }
    ids.sort((a, b) => {
      const n = Math.min(end[a] - start[a], end[b] - start[b]);
      for (let k = 0; k < n; k++) {
        const d = bytes[start[a] + k] - bytes[start[b] + k];
        if (d !== 0) return d;
      }
      return end[a] - start[a] - (end[b] - start[b]);
    });
    const byteAt = new Uint8Array(totalBytes);
    const depthAt = new Uint16Array(totalBytes);
    const subtreeEnd = new Int32Array(totalBytes);
    const tokenAt = new Int32Array(totalBytes).fill(-1);
    this.sameBytes = new Int32Array(logits).fill(-1);
    // The nodes on the path to the previous token, by depth.
    const path: number[] = [];
    let nodes = 0;
    let previous = -1;
    let maxDepth = 0;
    for (const id of ids) {
      const length = end[id] - start[id];
      let common = 0;
      if (previous >= 0) {
        const n = Math.min(length, end[previous] - start[previous]);
        while (common < n && bytes[start[id] + common] === bytes[start[previous] + common]) common++;
      }
      if (previous >= 0 && common === length && common === path.length) {
        const node = path[length - 1];
        let last = tokenAt[node];
        while (this.sameBytes[last] >= 0) last = this.sameBytes[last];
        this.sameBytes[last] = id;
        continue;
      }
      while (path.length > common) subtreeEnd[path.pop() as number] = nodes;
      for (let depth = common; depth < length; depth++) {
        byteAt[nodes] = bytes[start[id] + depth];
        depthAt[nodes] = depth;
        path.push(nodes++);
      }
      tokenAt[nodes - 1] = id;
      maxDepth = Math.max(maxDepth, length);
      previous = id;
    }
    while (path.length > 0) subtreeEnd[path.pop() as number] = nodes;
    this.byteAt = byteAt.slice(0, nodes);
    this.depthAt = depthAt.slice(0, nodes);
    this.subtreeEnd = subtreeEnd.slice(0, nodes);
    this.tokenAt = tokenAt.slice(0, nodes);
    this.maxDepth = maxDepth;
  }

  // One per tokenizer and logit count: the trie is built once.
  static of(tokenizer: Tokenizer, logits: number): GrammarVocabulary {
    let byLogits = vocabularies.get(tokenizer);
    if (byLogits === undefined) {
      byLogits = new Map();
      vocabularies.set(tokenizer, byLogits);
    }
    let vocab = byLogits.get(logits);
    if (vocab === undefined) {
      vocab = new GrammarVocabulary(tokenizer, logits);
      byLogits.set(logits, vocab);
    }
    return vocab;
  }

  // The token's bytes; empty for an id that spells nothing the grammar could read.
  bytesOf(token: number): Uint8Array {
    const { tokenBytes, tokenStart, tokenEnd } = this.tokenizer.vocab;
    if (!Number.isInteger(token) || token < 0 || token >= Math.min(this.logits, this.tokenizer.vocabSize) || token === this.eotToken) {
      return this.noBytes;
    }
    return tokenBytes.subarray(tokenStart[token], tokenEnd[token]);
  }
}

// A mask's walk of the trie under way, from the state `start`: the next node, the state at each depth on the path to
// it, the mask so far, and what it has cost the automaton.
interface Walk {
  readonly start: State;
  readonly stateAt: State[];
  readonly mask: Uint32Array;
  node: number;
  work: number;
}

export class GrammarMatcher {
  private readonly automaton: Automaton;
  // null once the end-of-text token was accepted.
  private state: State | null;
  // The current state's mask once worked out, else its walk so far.
  private mask: Uint32Array | null = null;
  private walking: Walk | null = null;
  private spent = 0;
  private accepted = 0;

  constructor(
    grammar: Grammar,
    private readonly vocab: GrammarVocabulary,
  ) {
    this.automaton = grammar.automaton;
    this.state = this.automaton.start;
  }

  // Bitset of the allowed tokens: word i bit j is token 32 * i + j. The end-of-text token is allowed exactly when
  // the grammar can end here. Shared with the cache: the caller must not write to it.
  allowed(): Uint32Array {
    this.workOut(Infinity);
    return this.mask as Uint32Array;
  }

  // Works on the mask of the current state for about `work` units of the automaton's work at most (one stack expanded
  // may go past it); true once the mask is known, when allowed() returns it at once. A caller that must
  // not hold the event loop for long calls it with MASK_SLICE_WORK, and again after the loop has turned.
  workOut(work: number): boolean {
    if (this.mask !== null) return true;
    const state = this.state;
    if (state === null) {
      this.mask = this.vocab.noTokens;
      return true;
    }
    let cache = this.automaton.masks.get(this.vocab);
    if (cache === undefined) {
      cache = new LruMap(MAX_CACHED_MASKS);
      this.automaton.masks.set(this.vocab, cache);
    }
    this.mask = cache.get(state.key) ?? null;
    if (this.mask !== null) {
      this.walking = null;
      return true;
    }
    this.walking ??= { start: state, stateAt: [state], mask: new Uint32Array(this.vocab.noTokens.length), node: 0, work: 0 };
    const walk = this.walking;
    if (!this.walk(walk, work)) return false;
    this.walking = null;
    this.mask = walk.mask;
    cache.set(state.key, walk.mask);
    // Charged once complete, as a walk done at once was: a request too costly is stopped at the same mask, with the
    // same figures. (A walk another matcher finished first is left, uncharged.)
    this.spent += walk.work;
    this.checkSpent();
    return true;
  }

  accept(token: number): void {
    const state = this.state;
    if (state === null) throw new GrammarError(`token ${token} comes after the end of the text`);
    if (token === this.vocab.eotToken) {
      if (!state.canEnd) throw new GrammarError('the end of the text is not allowed here: the grammar expects more');
      this.moveTo(null);
      return;
    }
    const bytes = this.vocab.bytesOf(token);
    let at: State | null = bytes.length > 0 ? state : null;
    const before = this.automaton.work;
    for (let k = 0; k < bytes.length && at !== null; k++) {
      const next: State | null | undefined = at.next[bytes[k]];
      at = next !== undefined ? next : this.automaton.step(at, bytes[k]);
    }
    this.accepted++;
    this.spent += this.automaton.work - before;
    this.checkSpent();
    if (at === null) {
      const text = bytes.length > 0 ? ` (${JSON.stringify(Buffer.from(bytes).toString('utf8'))})` : '';
      throw new GrammarError(`token ${token}${text} is not allowed here`);
    }
    this.moveTo(at);
  }

  // Nothing but the end of the text can come (the caller stops here).
  get done(): boolean {
    return this.state === null || this.state.done;
  }

  get canEnd(): boolean {
    return this.state === null || this.state.canEnd;
  }

  private moveTo(state: State | null): void {
    this.state = state;
    this.mask = null;
    this.walking = null;
  }

  private checkSpent(): void {
    if (this.spent > WORK_ALLOWANCE + this.accepted * WORK_PER_TOKEN) {
      throw new GrammarError(`the grammar is too ambiguous to follow: after ${this.accepted} tokens it has cost ${this.spent.toLocaleString('en-US')} steps of its recognizer, where ${WORK_PER_TOKEN.toLocaleString('en-US')} a token are allowed past the first ${WORK_ALLOWANCE.toLocaleString('en-US')} (a repetition of something optional, such as ("a"?){1000}, reads a text in as many ways as it has copies): write it so that a text reads one way`);
    }
  }

  // Depth-first over the trie in its array order: a node's state is its parent's (kept by depth) advanced by its
  // byte; a dead one skips its subtree. Goes on from where `walk` stopped, until about `work` units of work are done
  // (a node visited counting one); true once the walk is complete.
  private walk(walk: Walk, work: number): boolean {
    const { byteAt, depthAt, subtreeEnd, tokenAt, sameBytes } = this.vocab;
    const { stateAt, mask } = walk;
    const nodes = byteAt.length;
    const workBefore = this.automaton.work;
    let node = walk.node;
    let visits = 0;
    while (node < nodes) {
      if (visits++ + this.automaton.work - workBefore >= work) break;
      const depth = depthAt[node];
      const from = stateAt[depth];
      const b = byteAt[node];
      let to = from.next[b];
      if (to === undefined) {
        // A step of many stacks is sliced too: it goes on at the next call.
        to = this.automaton.step(from, b, work - visits - (this.automaton.work - workBefore));
        if (to === undefined) break;
      }
      if (to === null) {
        node = subtreeEnd[node];
        continue;
      }
      stateAt[depth + 1] = to;
      for (let token = tokenAt[node]; token >= 0; token = sameBytes[token]) mask[token >>> 5] |= 1 << (token & 31);
      node++;
    }
    walk.node = node;
    walk.work += this.automaton.work - workBefore;
    if (node < nodes) return false;
    if (walk.start.canEnd) mask[this.vocab.eotToken >>> 5] |= 1 << (this.vocab.eotToken & 31);
    return true;
  }
}
