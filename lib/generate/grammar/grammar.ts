// Grammars for constrained decoding, in llama.cpp's GBNF: `name ::= alternatives`, literals, character classes,
// groups and repetitions. A grammar is kept as rules whose alternatives are sequences of two kinds of element: a set
// of codepoints, or a reference to a rule. Groups and repetitions become generated helper rules at parse time, as
// llama.cpp does, so that the recognizer knows only those two elements.
import { Automaton, type FlatRules, type Stack } from './automaton';
import { jsonSchemaToGbnf } from './json_schema';
import {
  ANY_CODEPOINT,
  type CodepointRanges,
  GrammarError,
  MAX_CODEPOINT,
  complementRanges,
  gbnfClass,
  gbnfCodepoints,
  normalizeRanges,
} from './syntax';

export { GrammarError } from './syntax';

export type Element = { readonly chars: CodepointRanges } | { readonly rule: number };
export type Sequence = readonly Element[];

export interface Rule {
  readonly name: string;
  readonly alternatives: readonly Sequence[];
}

// A repetition is written out as that many copies of what it repeats; this bounds what one `{m,n}` costs, and
// MAX_WRITTEN_OUT what all of a grammar's cost together (a few MB of rules), so that a short grammar of many
// repetitions (a schema of many long strings) cannot take the server's memory.
export const MAX_REPETITION = 10_000;
const MAX_WRITTEN_OUT = 100_000;

const ROOT = 'root';

// A grammar's rules as FlatRules, with their names.
export interface NamedFlatRules extends FlatRules {
  names: string[];
}

export class Grammar {
  // Rule 0 is `root`; the others are those it reaches, in the order a breadth-first walk from root meets them. Kept as
  // objects, flat, or both: a grammar from the worker thread comes flat, and its automaton reads it so.
  private ruleObjects: readonly Rule[] | undefined;
  private flat: NamedFlatRules | undefined;
  private keyText: string | undefined;
  private automatonOfGrammar: Automaton | undefined;

  private constructor(
    rules: readonly Rule[] | NamedFlatRules,
    private readonly startStacks?: readonly Stack[],
  ) {
    if (Array.isArray(rules)) this.ruleObjects = rules;
    else this.flat = rules as NamedFlatRules;
  }

  get rules(): readonly Rule[] {
    this.ruleObjects ??= rulesOfFlat(this.flat as NamedFlatRules);
    return this.ruleObjects;
  }

  get flatRules(): NamedFlatRules {
    this.flat ??= flatRulesOf(this.ruleObjects as readonly Rule[]);
    return this.flat;
  }

  // The rules printed in GBNF: the same for the same grammar however it was written.
  get key(): string {
    this.keyText ??= this.rules.map(printRule).join('\n');
    return this.keyText;
  }

  // The grammar of rules that another Grammar's were (sent flat from a worker thread: thread.ts), with the stacks its
  // automaton's start state had there, so that they are not worked out again here.
  static ofFlatRules(rules: NamedFlatRules, start: readonly Stack[]): Grammar {
    return new Grammar(rules, start);
  }

  static parse(gbnf: string, source = 'grammar'): Grammar {
    return new Grammar(new GbnfParser(gbnf, source).parse());
  }

  // The grammar of the JSON texts that `schema` accepts (see json_schema.ts for what it supports).
  static fromJsonSchema(schema: unknown, where = 'json_schema'): Grammar {
    return Grammar.parse(jsonSchemaToGbnf(schema, where), where);
  }

  // The grammar of `gbnf`, whose rules may refer to `name`: the JSON texts that `schema` accepts.
  static withJsonSchema(gbnf: string, name: string, schema: unknown, where = 'json_schema'): Grammar {
    const own = [...gbnf.matchAll(/^\s*([a-zA-Z0-9-]+)\s*::=/gm)].map((m) => m[1]);
    return Grammar.parse(`${gbnf}\n${jsonSchemaToGbnf(schema, where, name, own)}`, where);
  }

  // OpenAI's {"type": "json_object"}: any JSON object. One grammar for all callers, so they share its masks.
  static anyJsonObject(): Grammar {
    anyObject ??= Grammar.fromJsonSchema({ type: 'object' });
    return anyObject;
  }

  // The recognizer's states and mask caches, shared by every matcher of this grammar.
  get automaton(): Automaton {
    this.automatonOfGrammar ??= new Automaton(this.flatRules, this.startStacks);
    return this.automatonOfGrammar;
  }
}

let anyObject: Grammar | undefined;

function flatRulesOf(rules: readonly Rule[]): NamedFlatRules {
  const alternatives: number[] = [];
  const lengths: number[] = [];
  const elements: number[] = [];
  const ranges: number[] = [];
  const setStarts: number[] = [0];
  // A set's index by its array first, as rules share their sets' arrays, then by its text: the same set written twice
  // is one set, so that an automaton state's tops share it (State.topSets).
  const setIndex = new Map<CodepointRanges, number>();
  const setIndexByText = new Map<string, number>();
  for (const rule of rules) {
    alternatives.push(rule.alternatives.length);
    for (const sequence of rule.alternatives) {
      lengths.push(sequence.length);
      for (const element of sequence) {
        if ('rule' in element) {
          elements.push(element.rule);
          continue;
        }
        let index = setIndex.get(element.chars);
        if (index === undefined) {
          const text = element.chars.join(',');
          index = setIndexByText.get(text);
          if (index === undefined) {
            index = setStarts.length - 1;
            setIndexByText.set(text, index);
            for (const bound of element.chars) ranges.push(bound);
            setStarts.push(ranges.length);
          }
          setIndex.set(element.chars, index);
        }
        elements.push(-1 - index);
      }
    }
  }
  return {
    names: rules.map((rule) => rule.name),
    alternatives: Int32Array.from(alternatives),
    lengths: Int32Array.from(lengths),
    elements: Int32Array.from(elements),
    ranges: Int32Array.from(ranges),
    setStarts: Int32Array.from(setStarts),
  };
}

// The rules back as objects, each element object made once and shared by every place it stands (elements are
// read-only).
function rulesOfFlat(flat: NamedFlatRules): Rule[] {
  const ruleElements = flat.names.map((_, rule): Element => ({ rule }));
  const setElements = Array.from({ length: flat.setStarts.length - 1 }, (_, i): Element => ({ chars: Array.from(flat.ranges.subarray(flat.setStarts[i], flat.setStarts[i + 1])) }));
  let alternative = 0;
  let element = 0;
  return flat.names.map((name, r): Rule => ({
    name,
    alternatives: Array.from({ length: flat.alternatives[r] }, () => {
      const length = flat.lengths[alternative++];
      const sequence = Array.from(flat.elements.subarray(element, element + length), (e) => (e >= 0 ? ruleElements[e] : setElements[-1 - e]));
      element += length;
      return sequence;
    }),
  }));
}

function printRule(rule: Rule, _: number, rules: readonly Rule[]): string {
  const alternatives = rule.alternatives.map((sequence) => printSequence(sequence, rules));
  return `${rule.name} ::= ${alternatives.join(' | ')}`;
}

// Runs of single codepoints print as one literal, so a grammar written with literals reads back as it was.
function printSequence(sequence: Sequence, rules: readonly Rule[]): string {
  if (sequence.length === 0) return '""';
  const parts: string[] = [];
  let run: number[] = [];
  for (const element of sequence) {
    if ('chars' in element && element.chars.length === 2 && element.chars[0] === element.chars[1]) {
      run.push(element.chars[0]);
      continue;
    }
    if (run.length > 0) parts.push(gbnfCodepoints(run));
    run = [];
    parts.push('chars' in element ? gbnfClass(element.chars) : rules[element.rule].name);
  }
  if (run.length > 0) parts.push(gbnfCodepoints(run));
  return parts.join(' ');
}

// What the parser builds a rule from before names are final: generated rules get their names at the end, when all
// the names the text defines are known.
interface DraftRule {
  name: string | undefined;
  parent: string;   // the rule whose text the generated rule came from
  alternatives: Element[][];
  definedAt: number;   // offset of the definition (for a generated rule: of its group or repetition); -1: none yet
  firstUseAt: number;
}

class GbnfParser {
  private at = 0;
  private readonly rules: DraftRule[] = [];
  private readonly byName = new Map<string, number>();
  private current = '';
  private writtenOut = 0;  // elements the repetitions have written out

  constructor(
    private readonly text: string,
    private readonly source: string,
  ) {}

  parse(): Rule[] {
    this.skipSpace();
    while (this.at < this.text.length) {
      this.parseRule();
      this.skipSpace();
    }
    for (const rule of this.rules) {
      if (rule.definedAt < 0) throw this.error(`rule "${rule.name}" is not defined`, rule.firstUseAt);
    }
    const root = this.byName.get(ROOT);
    if (root === undefined) throw this.error('the grammar has no "root" rule', 0);
    this.nameGeneratedRules();
    this.checkLeftRecursion();
    return reachableFrom(root, this.rules);
  }

  private parseRule(): void {
    const start = this.at;
    const name = this.parseName();
    this.skipSpace();
    if (!this.text.startsWith('::=', this.at)) throw this.error('expected "::=" after the rule name', this.at);
    this.at += 3;
    const index = this.ruleIndex(name, start);
    const rule = this.rules[index];
    if (rule.definedAt >= 0) throw this.error(`rule "${name}" is defined twice (first at ${this.where(rule.definedAt)})`, start);
    rule.definedAt = start;
    this.current = name;
    rule.alternatives = this.parseAlternatives();
  }

  private parseAlternatives(): Element[][] {
    const alternatives = [this.parseSequence()];
    while (this.text[this.at] === '|') {
      this.at++;
      alternatives.push(this.parseSequence());
    }
    return alternatives;
  }

  // Newlines are spaces here: a rule ends where the next `name ::=` begins, so a rule may span lines whether or
  // not it is inside parentheses.
  private parseSequence(): Element[] {
    const sequence: Element[] = [];
    // The last symbol's elements: what a following repetition operator repeats.
    let last: Element[] = [];
    let lastAt = this.at;
    for (;;) {
      this.skipSpace();
      const c = this.text[this.at];
      if (this.at >= this.text.length || c === '|' || c === ')') break;
      const symbolAt = this.at;
      if (c === '"') {
        last = this.parseLiteral();
      } else if (c === '[') {
        last = [{ chars: this.parseClass() }];
      } else if (c === '.') {
        this.at++;
        last = [{ chars: ANY_CODEPOINT }];
      } else if (c === '(') {
        this.at++;
        const alternatives = this.parseAlternatives();
        this.skipSpace();
        if (this.text[this.at] !== ')') throw this.error('expected ")" to close the group', this.at);
        this.at++;
        last = [{ rule: this.generatedRule(alternatives, symbolAt) }];
      } else if (isNameChar(c)) {
        if (this.startsRule()) break;
        const name = this.parseName();
        last = [{ rule: this.ruleIndex(name, symbolAt) }];
      } else if (c === '*' || c === '+' || c === '?' || c === '{') {
        if (sequence.length === 0 || last.length === 0) throw this.error(`"${c}" follows nothing it could repeat`, this.at);
        sequence.length -= last.length;
        last = this.parseRepetition(last, lastAt);
      } else {
        throw this.error(`unexpected ${JSON.stringify(c)}`, this.at);
      }
      if (c !== '*' && c !== '+' && c !== '?' && c !== '{') lastAt = symbolAt;
      sequence.push(...last);
    }
    return sequence;
  }

  // `symbol` repeated as the operator at `at` says, as llama.cpp writes repetitions out: the required copies in
  // line, then `R ::= symbol R |` for an open end, or a chain of optional copies for a bounded one. A symbol of
  // several elements (a literal) becomes a rule first, so that a copy costs one element whatever its length.
  private parseRepetition(symbol: Element[], symbolAt: number): Element[] {
    const operatorAt = this.at;
    const c = this.text[this.at++];
    let min = 0;
    let max = Infinity;
    if (c === '+') {
      min = 1;
    } else if (c === '?') {
      max = 1;
    } else if (c === '{') {
      this.skipSpace();
      min = this.parseCount();
      this.skipSpace();
      max = min;
      if (this.text[this.at] === ',') {
        this.at++;
        this.skipSpace();
        max = /[0-9]/.test(this.text[this.at] ?? '') ? this.parseCount() : Infinity;
        this.skipSpace();
      }
      if (this.text[this.at] !== '}') throw this.error('expected "}" to close the repetition', this.at);
      this.at++;
      if (max < min) throw this.error(`the repetition's maximum ${max} is less than its minimum ${min}`, operatorAt);
    }
    if (Math.max(min, max === Infinity ? 0 : max) > MAX_REPETITION) {
      throw this.error(`a repetition may count up to ${MAX_REPETITION}`, operatorAt);
    }
    const unit: Element[] = symbol.length > 1 ? [{ rule: this.generatedRule([symbol], symbolAt) }] : symbol;
    this.writtenOut += unit.length * min + (max === Infinity ? unit.length + 1 : (unit.length + 1) * (max - min));
    if (this.writtenOut > MAX_WRITTEN_OUT) {
      throw this.error(`the repetitions write out more than ${MAX_WRITTEN_OUT.toLocaleString('en-US')} copies of what they repeat in all (a {m,n} is written out as n copies; a schema's maxLength, maxItems and the like are repetitions): ask for fewer`, operatorAt);
    }
    const out: Element[] = [];
    for (let i = 0; i < min; i++) out.push(...unit);
    if (max === Infinity) {
      const loop = this.generatedRule([], symbolAt);
      this.rules[loop].alternatives = [[...unit, { rule: loop }], []];
      out.push({ rule: loop });
    } else if (max > min) {
      let tail: Element[] = [];
      for (let i = max; i > min; i--) tail = [{ rule: this.generatedRule([[...unit, ...tail], []], symbolAt) }];
      out.push(...tail);
    }
    return out;
  }

  private parseCount(): number {
    const digits = /^[0-9]+/.exec(this.text.slice(this.at, this.at + 12));
    if (digits === null) throw this.error('expected a count', this.at);
    this.at += digits[0].length;
    return Number(digits[0]);
  }

  private parseLiteral(): Element[] {
    const start = this.at++;
    const out: Element[] = [];
    for (;;) {
      if (this.at >= this.text.length || this.text[this.at] === '\n') throw this.error('the string is not closed', start);
      if (this.text[this.at] === '"') break;
      const cp = this.parseChar();
      out.push({ chars: [cp, cp] });
    }
    this.at++;
    return out;
  }

  private parseClass(): CodepointRanges {
    const start = this.at++;
    const negated = this.text[this.at] === '^';
    if (negated) this.at++;
    const pairs: number[] = [];
    while (this.text[this.at] !== ']') {
      if (this.at >= this.text.length || this.text[this.at] === '\n') throw this.error('the character class is not closed', start);
      const charAt = this.at;
      const lo = this.parseChar();
      let hi = lo;
      if (this.text[this.at] === '-' && this.text[this.at + 1] !== ']' && this.at + 1 < this.text.length) {
        this.at++;
        hi = this.parseChar();
        if (hi < lo) throw this.error('the range ends before it starts', charAt);
      }
      pairs.push(lo, hi);
    }
    this.at++;
    if (pairs.length === 0) throw this.error('empty character class', start);
    const set = negated ? complementRanges(normalizeRanges(pairs)) : normalizeRanges(pairs);
    if (set.length === 0) throw this.error('the character class matches no character', start);
    return set;
  }

  // One codepoint of a literal or class: itself, or an escape. A surrogate is no character of a text: a grammar
  // that asked for one could never be met.
  private parseChar(): number {
    const at = this.at;
    const cp = this.parseCodepoint();
    if (cp >= 0xd800 && cp <= 0xdfff) throw this.error(`U+${cp.toString(16).toUpperCase()} is a surrogate, half of a UTF-16 pair, not a character`, at);
    return cp;
  }

  private parseCodepoint(): number {
    const c = this.text.codePointAt(this.at) as number;
    if (c !== 0x5c) {
      this.at += c > 0xffff ? 2 : 1;
      return c;
    }
    const escapeAt = this.at;
    const e = this.text[this.at + 1];
    this.at += 2;
    const simple: Record<string, number> = { n: 0x0a, t: 0x09, r: 0x0d, '\\': 0x5c, '"': 0x22, '[': 0x5b, ']': 0x5d };
    if (e in simple) return simple[e];
    const digits = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (digits === 0) throw this.error(`unknown escape "\\${e ?? ''}"`, escapeAt);
    const hexDigits = this.text.slice(this.at, this.at + digits);
    if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hexDigits)) throw this.error(`"\\${e}" needs ${digits} hex digits`, escapeAt);
    this.at += digits;
    const cp = parseInt(hexDigits, 16);
    if (cp > MAX_CODEPOINT) throw this.error(`U+${hexDigits} is past the last codepoint`, escapeAt);
    return cp;
  }

  private parseName(): string {
    const start = this.at;
    while (this.at < this.text.length && isNameChar(this.text[this.at])) this.at++;
    if (this.at === start) throw this.error(`expected a rule name, found ${JSON.stringify(this.text[start])}`, start);
    return this.text.slice(start, this.at);
  }

  // Whether the name here is the start of the next rule's definition.
  private startsRule(): boolean {
    let at = this.at;
    while (at < this.text.length && isNameChar(this.text[at])) at++;
    at = skipSpace(this.text, at);
    return this.text.startsWith('::=', at);
  }

  private ruleIndex(name: string, usedAt: number): number {
    let index = this.byName.get(name);
    if (index === undefined) {
      index = this.rules.length;
      this.rules.push({ name, parent: name, alternatives: [], definedAt: -1, firstUseAt: usedAt });
      this.byName.set(name, index);
    }
    return index;
  }

  private generatedRule(alternatives: Element[][], at: number): number {
    this.rules.push({ name: undefined, parent: this.current, alternatives, definedAt: at, firstUseAt: at });
    return this.rules.length - 1;
  }

  // `parent-N`, as llama.cpp names them, skipping the names the text itself defines.
  private nameGeneratedRules(): void {
    const counts = new Map<string, number>();
    for (const rule of this.rules) {
      if (rule.name !== undefined) continue;
      let n = (counts.get(rule.parent) ?? 0) + 1;
      while (this.byName.has(`${rule.parent}-${n}`)) n++;
      counts.set(rule.parent, n);
      rule.name = `${rule.parent}-${n}`;
    }
  }

  // A rule that can reach itself before reading anything would have the recognizer expand it forever.
  private checkLeftRecursion(): void {
    const nullable = nullableRules(this.rules);
    const leftCorners = this.rules.map((rule) => {
      const corners = new Set<number>();
      for (const sequence of rule.alternatives) {
        for (const element of sequence) {
          if ('chars' in element) break;
          corners.add(element.rule);
          if (!nullable[element.rule]) break;
        }
      }
      return corners;
    });
    // Depth-first, with an explicit stack: a chain of generated rules may be thousands long.
    const state = new Uint8Array(this.rules.length); // 0: unseen, 1: on the current path, 2: done
    for (let r = 0; r < this.rules.length; r++) {
      if (state[r] !== 0) continue;
      const path = [r];
      const pending = [[...leftCorners[r]]];
      state[r] = 1;
      while (path.length > 0) {
        const next = pending[pending.length - 1].pop();
        if (next === undefined) {
          state[path.pop() as number] = 2;
          pending.pop();
        } else if (state[next] === 1) {
          const cycle = [...path.slice(path.indexOf(next)), next].map((i) => this.rules[i].name).join(' -> ');
          throw this.error(`rule "${this.rules[next].name}" is left-recursive (${cycle})`, this.rules[next].definedAt);
        } else if (state[next] === 0) {
          state[next] = 1;
          path.push(next);
          pending.push([...leftCorners[next]]);
        }
      }
    }
  }

  private skipSpace(): void {
    this.at = skipSpace(this.text, this.at);
  }

  private where(offset: number): string {
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < offset && k < this.text.length; k++) {
      if (this.text[k] === '\n') {
        line++;
        lineStart = k + 1;
      }
    }
    return `${line}:${offset - lineStart + 1}`;
  }

  private error(message: string, offset: number): GrammarError {
    return new GrammarError(`${this.source}:${this.where(offset)}: ${message}`);
  }
}

function isNameChar(c: string | undefined): boolean {
  return c !== undefined && /[a-zA-Z0-9_-]/.test(c);
}

// Spaces, tabs, newlines and `#` comments.
function skipSpace(text: string, at: number): number {
  while (at < text.length) {
    const c = text[at];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      at++;
    } else if (c === '#') {
      while (at < text.length && text[at] !== '\n') at++;
    } else {
      break;
    }
  }
  return at;
}

function nullableRules(rules: readonly DraftRule[]): boolean[] {
  const nullable = rules.map(() => false);
  for (let changed = true; changed; ) {
    changed = false;
    rules.forEach((rule, r) => {
      if (nullable[r]) return;
      if (rule.alternatives.some((sequence) => sequence.every((e) => 'rule' in e && nullable[e.rule]))) {
        nullable[r] = true;
        changed = true;
      }
    });
  }
  return nullable;
}

// The rules root reaches, renumbered in breadth-first order from root (which becomes rule 0): the same grammar
// written twice, or printed and read back, numbers its rules the same way.
function reachableFrom(root: number, drafts: readonly DraftRule[]): Rule[] {
  const order = [root];
  const renumbered = new Map([[root, 0]]);
  for (let i = 0; i < order.length; i++) {
    for (const sequence of drafts[order[i]].alternatives) {
      for (const element of sequence) {
        if ('rule' in element && !renumbered.has(element.rule)) {
          renumbered.set(element.rule, order.length);
          order.push(element.rule);
        }
      }
    }
  }
  return order.map((r) => ({
    name: drafts[r].name as string,
    alternatives: drafts[r].alternatives.map((sequence) =>
      sequence.map((e): Element => ('rule' in e ? { rule: renumbered.get(e.rule) as number } : e)),
    ),
  }));
}
