// The recognizer of a grammar, as llama.cpp's: a set of stacks, each a path through the rules still open (its top is
// the character set that the next codepoint must match), advanced codepoint by codepoint. Here it reads bytes, and
// its states are interned and their transitions kept, so that it becomes a DFA over bytes built as far as it is
// walked: the token-mask walk over the vocabulary's trie then costs one array read per trie node for the transitions
// it has seen before, and a codepoint is worked out once per state and per set of stacks it matches, not once per
// codepoint or byte.
import { LruMap } from '../../util/lru_map';
import { type CodepointRanges, GrammarError, rangesContain, rangesOverlap } from './syntax';

// Positions in the rules' flattened alternatives, bottom first; the top is never a rule reference or an
// alternative's end (those are expanded or popped at once).
export type Stack = readonly number[];

// A grammar's rules flat, as the automaton reads them and as they travel between threads (thread.ts), typed arrays
// that a reader wraps as they are: each rule's number of alternatives, each alternative's number of elements, and
// each element, a rule's index or, negative, -1 - the index of a character set; the sets' ranges one after another,
// set i's from setStarts[i] to setStarts[i + 1], each set written once.
export interface FlatRules {
  alternatives: Int32Array;
  lengths: Int32Array;
  elements: Int32Array;
  ranges: Int32Array;
  setStarts: Int32Array;
}

// The stacks expanded in one step, how many positions they hold in all, and those still to expand: one rule of
// 16,000 alternatives (an enum's) is 16,000 stacks to expand from one, worked out a slice at a time as the others.
interface Expansion {
  readonly seen: Set<string>;
  readonly pending: Stack[];
  positions: number;
}

// The state after a codepoint, part worked out: the stacks that the first `next` of those it matches became.
interface Expanding {
  readonly stacks: Map<string, Stack>;
  readonly expansion: Expansion;
  next: number;
}

// The states of one generation (about 2.5 KB each, most of them inside UTF-8 characters): past this many the
// interning table starts afresh. States still held by a matcher keep working, and are freed with it; a mask does not
// depend on them, so the masks cached stay.
// So are states of more stacks than MAX_STACKS_KEPT in all: a grammar as ambiguous as ("a"?){10000} reads the text
// in as many ways as a's may yet come, a stack each, where a JSON schema's states hold a few.
const MAX_STATES = 4096;
const MAX_STACKS_KEPT = 1_000_000;
// The most stacks one state may hold: an enum of that many strings begins so.
const MAX_STACKS = 16_384;

// A stack expanded (its key built, looked up and kept) takes about as long as 40 character sets tested, and a
// position of it about as long as one more: a deep stack is copied and joined whole.
const EXPANSION_WORK = 40;
// The most positions that the distinct stacks expanded in one step may hold in all: room for a state of MAX_STACKS
// stacks (an enum's strings) 64 rules deep (a JSON schema nested as deep). A chain of rules each beginning with the
// next (r0 ::= r1 "a" | "b", r1 ::= r2 "a" | "b", ...) begins as many ways as it has rules, each way as deep: two
// thousand such rules, a 50 KB grammar, are two million positions before the first character, seconds of the event
// loop that every request shares, and hundreds of megabytes.
const MAX_POSITIONS_EXPANDED = MAX_STACKS * 64;

// The codepoints that a UTF-8 sequence of each length may encode (shorter encodings are overlong, so invalid).
const UTF8_MIN = [0, 0, 0x80, 0x800, 0x10000];
const UTF8_MAX = [0, 0x7f, 0x7ff, 0xffff, 0x10ffff];
const SURROGATES_FIRST = 0xd800;
const SURROGATES_LAST = 0xdfff;

export class State {
  // By byte: the state after it, null where the byte is not allowed, undefined where not yet worked out.
  readonly next: (State | null | undefined)[] = new Array<State | null | undefined>(256);
  readonly canEnd: boolean;
  // Only the end can come: the one stack left is empty.
  readonly done: boolean;
  // The character sets on the stacks' tops, null for an empty stack.
  readonly tops: readonly (CodepointRanges | null)[];
  // For a complete state, made when first needed: the state after a codepoint, by which stacks it matches; the
  // half-read characters.
  byMatch: Map<number | string, State | null> | null = null;
  // The states after a codepoint still being worked out, a slice at a time (Automaton.step's `work`), by match.
  expanding: Map<number | string, Expanding> | null = null;
  partials: Map<number, State | null> | null = null;
  private keyText: string | undefined;
  private distinctTops: { sets: CodepointRanges[]; setOf: Int32Array } | undefined;

  constructor(
    readonly stacks: readonly Stack[],
    stackKey: string | undefined,
    tops: readonly (CodepointRanges | null)[],
    // A state inside a UTF-8 character: the complete state before its first byte (null for a complete state), the
    // bits read so far, how many continuation bytes are still to come and how long the whole sequence is.
    readonly base: State | null,
    readonly pendingValue: number,
    readonly pendingBytes: number,
    readonly pendingLength: number,
  ) {
    this.keyText = stackKey;
    this.tops = tops;
    this.canEnd = pendingBytes === 0 && stacks.some((stack) => stack.length === 0);
    this.done = this.canEnd && stacks.length === 1;
  }

  // The distinct sets on the stacks' tops, and each stack's among them (-1: an empty stack). A state of many stacks
  // has few: an enum of 16,000 strings begins with 16,000 stacks whose tops are all `"`, and a codepoint tested
  // against each stack's top, not each set, cost that state's every byte some 16,000 tests and a string as long.
  get topSets(): { sets: CodepointRanges[]; setOf: Int32Array } {
    if (this.distinctTops === undefined) {
      const sets: CodepointRanges[] = [];
      const index = new Map<CodepointRanges, number>();
      const setOf = Int32Array.from(this.tops, (top) => {
        if (top === null) return -1;
        let i = index.get(top);
        if (i === undefined) {
          i = sets.push(top) - 1;
          index.set(top, i);
        }
        return i;
      });
      this.distinctTops = { sets, setOf };
    }
    return this.distinctTops;
  }

  // Canonical text of the state, for caching masks: the stack set, and the half-read character if any.
  get key(): string {
    this.keyText ??= `${(this.base as State).key}/${this.pendingLength}.${this.pendingBytes}.${this.pendingValue}`;
    return this.keyText;
  }
}

export class Automaton {
  // At each position: the rule referenced there, or -1; the set matched there, or -1; both -1 ends an alternative.
  private readonly refAt: Int32Array;
  private readonly setAt: Int32Array;
  private readonly sets: CodepointRanges[] = [];
  private readonly alternativeStarts: number[][] = [];
  private states = new Map<string, State>();
  private statesMade = 0;
  private stacksKept = 0;
  private startState: State | undefined;
  // The stacks the text begins with, kept when the generation starts afresh: a grammar of 16,000 alternatives takes
  // tens of milliseconds to expand them.
  private startStacks: Map<string, Stack> | undefined;
  // What working out states has cost so far, in character sets tested, a stack expanded counting as EXPANSION_WORK
  // of them: a matcher charges its request what its calls added.
  work = 0;
  // Per vocabulary: mask by state key, the most recently used (the matcher's).
  readonly masks = new WeakMap<object, LruMap<string, Uint32Array>>();

  // `start`: the stacks the text begins with, where an automaton of the same rules worked them out already (the
  // worker thread's: thread.ts), its start state's.
  constructor(rules: FlatRules, start?: readonly Stack[]) {
    if (start !== undefined) this.startStacks = new Map(start.map((stack) => [stack.join(','), stack]));
    // One position per element, and one for each alternative's end.
    const positions = rules.elements.length + rules.lengths.length;
    this.refAt = new Int32Array(positions).fill(-1);
    this.setAt = new Int32Array(positions).fill(-1);
    for (let i = 0; i + 1 < rules.setStarts.length; i++) this.sets.push(Array.from(rules.ranges.subarray(rules.setStarts[i], rules.setStarts[i + 1])));
    let at = 0;
    let alternative = 0;
    let element = 0;
    for (const count of rules.alternatives) {
      const starts = new Array<number>(count);
      for (let k = 0; k < count; k++) {
        starts[k] = at;
        for (const end = element + rules.lengths[alternative++]; element < end; element++) {
          const e = rules.elements[element];
          if (e >= 0) this.refAt[at++] = e;
          else this.setAt[at++] = -1 - e;
        }
        at++;
      }
      this.alternativeStarts.push(starts);
    }
  }

  get start(): State {
    if (this.startState === undefined) {
      if (this.startStacks === undefined) {
        this.startStacks = new Map<string, Stack>();
        const expansion: Expansion = { seen: new Set(), pending: this.alternativeStarts[0].map((start) => (this.isEnd(start) ? [] : [start])), positions: 0 };
        this.expand(this.startStacks, expansion, Infinity);
      }
      this.startState = this.intern(this.startStacks) as State;
    }
    return this.startState;
  }

  // The state after byte `b`, worked out and kept in from.next. Given `work`, it stops once about that much is done
  // (one stack expanded at least) and returns undefined, to go on where it stopped when called again: a state of
  // 16,000 stacks (an enum of 16,000 strings, after its opening quote) takes tens of milliseconds to read a letter.
  step(from: State, b: number): State | null;
  step(from: State, b: number, work: number): State | null | undefined;
  step(from: State, b: number, work = Infinity): State | null | undefined {
    let to: State | null | undefined;
    if (from.pendingBytes === 0) {
      if (b < 0x80) {
        to = this.afterCodepoint(from, b, work);
      } else if (b < 0xc0 || b >= 0xf8) {
        to = null;
      } else {
        const length = b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
        to = this.partial(from, b & (0x7f >> length), length - 1, length);
      }
    } else if ((b & 0xc0) !== 0x80) {
      to = null;
    } else {
      const value = (from.pendingValue << 6) | (b & 0x3f);
      const base = from.base as State;
      if (from.pendingBytes > 1) {
        to = this.partial(base, value, from.pendingBytes - 1, from.pendingLength);
      } else {
        const valid = value >= UTF8_MIN[from.pendingLength] && (value < SURROGATES_FIRST || value > SURROGATES_LAST);
        to = valid ? this.afterCodepoint(base, value, work) : null;
      }
    }
    if (to !== undefined) from.next[b] = to;
    return to;
  }

  // The state after a whole codepoint. What follows depends only on which of the tops' sets the codepoint is in, so it
  // is worked out once per such choice of sets.
  private afterCodepoint(from: State, cp: number, work: number): State | null | undefined {
    const { sets, setOf } = from.topSets;
    this.work += sets.length;
    const matched = sets.map((set) => rangesContain(set, cp));
    let match: number | string = 0;
    if (sets.length <= 30) {
      for (let i = 0; i < sets.length; i++) if (matched[i]) match |= 1 << i;
      if (match === 0) return null;
    } else {
      match = matched.map((m) => (m ? '1' : '0')).join('');
      if (!match.includes('1')) return null;
    }
    from.byMatch ??= new Map();
    let to = from.byMatch.get(match);
    if (to !== undefined) return to;
    from.expanding ??= new Map();
    let expanding = from.expanding.get(match);
    if (expanding === undefined) {
      expanding = { stacks: new Map(), expansion: { seen: new Set(), pending: [], positions: 0 }, next: 0 };
      from.expanding.set(match, expanding);
    }
    const until = this.work + Math.max(work, 1);  // a stack expanded at least, so that each call goes on
    const { stacks } = from;
    const { pending } = expanding.expansion;
    try {
      for (;;) {
        if (!this.expand(expanding.stacks, expanding.expansion, until)) return undefined;
        if (expanding.next === stacks.length) break;
        if (this.work >= until) return undefined;
        const i = expanding.next++;
        if (setOf[i] >= 0 && matched[setOf[i]]) {
          const stack = stacks[i];
          const rest = stack.slice(0, -1);
          const after = stack[stack.length - 1] + 1;
          pending.push(this.isEnd(after) ? rest : [...rest, after]);
        }
      }
    } catch (err) {
      from.expanding.delete(match);
      throw err;
    }
    from.expanding.delete(match);
    to = this.intern(expanding.stacks);
    from.byMatch.set(match, to);
    return to;
  }

  // The state inside a UTF-8 character, or null when no stack can match any codepoint it may still become.
  private partial(base: State, value: number, pendingBytes: number, length: number): State | null {
    const code = (value * 4 + pendingBytes) * 8 + length;
    base.partials ??= new Map();
    let state = base.partials.get(code);
    if (state === undefined) {
      const { sets } = base.topSets;
      this.work += sets.length;
      const shift = 6 * pendingBytes;
      const lo = Math.max(value * 2 ** shift, UTF8_MIN[length]);
      const hi = Math.min((value + 1) * 2 ** shift - 1, UTF8_MAX[length]);
      const possible = (set: CodepointRanges): boolean =>
        rangesOverlap(set, lo, Math.min(hi, SURROGATES_FIRST - 1)) || rangesOverlap(set, Math.max(lo, SURROGATES_LAST + 1), hi);
      const feasible = lo <= hi && sets.some(possible);
      state = feasible ? this.made(new State(base.stacks, undefined, base.tops, base, value, pendingBytes, length)) : null;
      base.partials.set(code, state);
    }
    return state;
  }

  // Adds to `out` the stacks that those pending in `expansion` become once every rule reference on their tops is
  // replaced by each of the rule's alternatives (llama.cpp's advance_stack). `expansion` holds the stacks already
  // expanded in this step: the stacks of one state often share their continuations (a repetition of something that
  // may be empty would otherwise cost the square of its length). Left recursion, refused at parse time, would not end.
  // Stops once the automaton's work reaches `until`, and returns whether none is pending.
  private expand(out: Map<string, Stack>, expansion: Expansion, until: number): boolean {
    const { pending } = expansion;
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      if (this.work >= until) {
        pending.push(next);
        return false;
      }
      const key = next.join(',');
      if (expansion.seen.has(key)) continue;
      expansion.seen.add(key);
      expansion.positions += next.length;
      if (expansion.positions > MAX_POSITIONS_EXPANDED) {
        throw new GrammarError(`the grammar nests its rules too deeply: reading a character takes more than ${MAX_POSITIONS_EXPANDED.toLocaleString('en-US')} positions of open rules in all (a rule that begins with another rule, which begins with another, and so on, is entered that deep in as many ways as it has rules): write it flatter`);
      }
      this.work += EXPANSION_WORK + next.length;
      const top = next[next.length - 1];
      if (next.length === 0 || this.refAt[top] < 0) {
        out.set(key, next);
        continue;
      }
      const below = next.slice(0, -1);
      if (!this.isEnd(top + 1)) below.push(top + 1);
      for (const start of this.alternativeStarts[this.refAt[top]]) pending.push(this.isEnd(start) ? below : [...below, start]);
    }
    return true;
  }

  private isEnd(position: number): boolean {
    return this.refAt[position] < 0 && this.setAt[position] < 0;
  }

  private intern(stacks: Map<string, Stack>): State | null {
    if (stacks.size === 0) return null;
    if (stacks.size > MAX_STACKS) throw new GrammarError(`the grammar is too ambiguous: it reads the text so far in more than ${MAX_STACKS.toLocaleString('en-US')} ways (a repetition of something optional, such as ("a"?){100}, reads a text in as many ways as it has copies): write it so that a text reads one way`);
    const keys = [...stacks.keys()].sort();
    const key = keys.join('|');
    let state = this.states.get(key);
    if (state === undefined) {
      const sorted = keys.map((k) => stacks.get(k) as Stack);
      const tops = sorted.map((stack) => (stack.length === 0 ? null : this.sets[this.setAt[stack[stack.length - 1]]]));
      state = this.made(new State(sorted, key, tops, null, 0, 0, 0));
      this.states.set(key, state);
    }
    return state;
  }

  // Counts a new state into the generation, starting the next one when it is full.
  private made(state: State): State {
    const stacks = state.base === null ? state.stacks.length : 0;  // a state inside a character shares its base's
    this.stacksKept += stacks;
    if (++this.statesMade > MAX_STATES || this.stacksKept > MAX_STACKS_KEPT) {
      this.states = new Map();
      this.statesMade = 1;
      this.stacksKept = stacks;
      this.startState = undefined;
    }
    return state;
  }
}
