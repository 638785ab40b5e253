// What the grammar code shares: its error, sets of codepoints as ranges, and how codepoints are written in GBNF
// text (the parser reads what these write, so a grammar's canonical text parses back to the same grammar).

// A grammar, JSON schema or token that cannot be used. Messages from the parsers start with where the problem is:
// `grammar:LINE:COL:` for GBNF text, the keyword's path (`json_schema.properties.age.minimum:`) for a schema.
export class GrammarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GrammarError';
  }
}

export const MAX_CODEPOINT = 0x10ffff;

// A set of codepoints: sorted, disjoint, non-adjacent inclusive ranges [lo0, hi0, lo1, hi1, ...].
export type CodepointRanges = readonly number[];

export const ANY_CODEPOINT: CodepointRanges = [0, MAX_CODEPOINT];

// The set covering the given (possibly overlapping, unsorted) inclusive ranges.
export function normalizeRanges(pairs: readonly number[]): CodepointRanges {
  const order = Array.from({ length: pairs.length / 2 }, (_, i) => i).sort((a, b) => pairs[2 * a] - pairs[2 * b]);
  const out: number[] = [];
  for (const i of order) {
    const lo = pairs[2 * i];
    const hi = pairs[2 * i + 1];
    if (out.length > 0 && lo <= out[out.length - 1] + 1) {
      out[out.length - 1] = Math.max(out[out.length - 1], hi);
    } else {
      out.push(lo, hi);
    }
  }
  return out;
}

export function complementRanges(set: CodepointRanges): CodepointRanges {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i < set.length; i += 2) {
    if (set[i] > next) out.push(next, set[i] - 1);
    next = set[i + 1] + 1;
  }
  if (next <= MAX_CODEPOINT) out.push(next, MAX_CODEPOINT);
  return out;
}

export function intersectRanges(a: CodepointRanges, b: CodepointRanges): CodepointRanges {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const lo = Math.max(a[i], b[j]);
    const hi = Math.min(a[i + 1], b[j + 1]);
    if (lo <= hi) out.push(lo, hi);
    if (a[i + 1] < b[j + 1]) i += 2;
    else j += 2;
  }
  return out;
}

export function rangesContain(set: CodepointRanges, cp: number): boolean {
  let lo = 0;
  let hi = set.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < set[2 * mid]) hi = mid - 1;
    else if (cp > set[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}

// Whether the set holds some codepoint in [lo, hi] (none when lo > hi).
export function rangesOverlap(set: CodepointRanges, lo: number, hi: number): boolean {
  if (lo > hi) return false;
  for (let i = 0; i < set.length && set[i] <= hi; i += 2) {
    if (set[i + 1] >= lo) return true;
  }
  return false;
}

// Codepoints are written as themselves where that is printable ASCII and unambiguous, else as escapes, so that a
// canonical text is plain ASCII whatever the grammar holds.
function escaped(cp: number, special: string): string {
  if (cp >= 0x20 && cp < 0x7f && !special.includes(String.fromCharCode(cp))) return String.fromCharCode(cp);
  if (cp === 0x0a) return '\\n';
  if (cp === 0x09) return '\\t';
  if (cp === 0x0d) return '\\r';
  if (cp === 0x5c) return '\\\\';
  if (cp === 0x22) return '\\"';
  if (cp === 0x5d) return '\\]';
  if (cp === 0x5b) return '\\[';
  if (cp < 0x100) return `\\x${hex(cp, 2)}`;
  if (cp < 0x10000) return `\\u${hex(cp, 4)}`;
  return `\\U${hex(cp, 8)}`;
}

function hex(n: number, digits: number): string {
  return n.toString(16).toUpperCase().padStart(digits, '0');
}

// A GBNF string literal for the codepoints of `text`.
export function gbnfLiteral(text: string): string {
  let out = '"';
  for (const ch of text) out += escaped(ch.codePointAt(0) as number, '"\\');
  return `${out}"`;
}

export function gbnfCodepoints(codepoints: readonly number[]): string {
  return `"${codepoints.map((cp) => escaped(cp, '"\\')).join('')}"`;
}

// A GBNF character class for a non-empty set: `.` for every codepoint, negated where the set holds the top of the
// range and its complement is shorter to write.
export function gbnfClass(set: CodepointRanges): string {
  if (set.length === 2 && set[0] === 0 && set[1] === MAX_CODEPOINT) return '.';
  const complement = complementRanges(set);
  const negated = complement.length < set.length;
  const shown = negated ? complement : set;
  let out = negated ? '[^' : '[';
  for (let i = 0; i < shown.length; i += 2) {
    // '-' and '^' would read as syntax inside a class; the parser knows no escape for them but \x.
    out += escaped(shown[i], '\\]-^[');
    if (shown[i + 1] > shown[i]) out += `${shown[i + 1] > shown[i] + 1 ? '-' : ''}${escaped(shown[i + 1], '\\]-^[')}`;
  }
  return `${out}]`;
}
