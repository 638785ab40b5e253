// Shared by the grammar tests: GPT-2's vocabulary as grammars see it, feeding text token by token through a matcher,
// and seeded random walks through what a grammar allows.
import type { Test } from 'tap';
import { Grammar, GrammarError, GrammarMatcher, GrammarVocabulary } from '../../lib/generate/grammar';
import { loadTokenizer } from '../../lib/tokenizer';
import { Rng } from '../../lib/util/rng';

export const tokenizer = loadTokenizer();
// GPT-2's 50257 tokens padded to a multiple of 64, as a model's embedding may be.
export const LOGITS = 50304;
export const vocab = GrammarVocabulary.of(tokenizer, LOGITS);
export const EOT = tokenizer.eotToken;

export function isAllowed(mask: Uint32Array, token: number): boolean {
  return ((mask[token >>> 5] >>> (token & 31)) & 1) === 1;
}

export function allowedTokens(mask: Uint32Array): number[] {
  const tokens: number[] = [];
  for (let word = 0; word < mask.length; word++) {
    const bits = mask[word];
    if (bits === 0) continue;
    for (let bit = 0; bit < 32; bit++) if ((bits >>> bit) & 1) tokens.push(32 * word + bit);
  }
  return tokens;
}

export function encode(text: string): number[] {
  return Array.from(tokenizer.encode(text, { allowSpecial: false }));
}

// Feeds the tokens one by one, each checked against allowed() first. The index of the first token refused (by the
// mask, and then by accept() too, which must agree), or -1 when all were accepted.
export function feed(matcher: GrammarMatcher, tokens: readonly number[]): number {
  for (let i = 0; i < tokens.length; i++) {
    if (!isAllowed(matcher.allowed(), tokens[i])) {
      try {
        matcher.accept(tokens[i]);
      } catch (err) {
        if (err instanceof GrammarError) return i;
        throw err;
      }
      throw new Error(`token ${tokens[i]} is not in allowed() but accept() took it`);
    }
    matcher.accept(tokens[i]);
  }
  return -1;
}

// Whether the grammar accepts the whole text: every token allowed, then the end of the text.
export function accepts(grammar: Grammar, text: string): boolean {
  const matcher = new GrammarMatcher(grammar, vocab);
  return feed(matcher, encode(text)) < 0 && isAllowed(matcher.allowed(), EOT) && matcher.canEnd;
}

export function expectAccepts(t: Test, grammar: Grammar, texts: readonly string[]): void {
  for (const text of texts) t.ok(accepts(grammar, text), `accepts ${JSON.stringify(text)}`);
}

export function expectRejects(t: Test, grammar: Grammar, texts: readonly string[]): void {
  for (const text of texts) t.notOk(accepts(grammar, text), `rejects ${JSON.stringify(text)}`);
}

const ENDING = new Set([0x22, 0x5d, 0x7d]); // " ] }

const everyToken = Int32Array.from({ length: tokenizer.vocabSize }, (_, id) => id).filter((id) => id !== EOT);
// Tokens that close something: a walk that prefers them half the time ends within a few hundred steps.
const closing = everyToken.filter((id) => tokenizer.tokenBytes(id).some((b) => ENDING.has(b)));

// A token drawn uniformly from those of `pool` that the mask allows (but the end of the text), or -1 for none: by
// rejection while that is quick, else from the list of them.
function draw(mask: Uint32Array, pool: Int32Array, rng: Rng): number {
  for (let tries = 0; tries < 64; tries++) {
    const token = pool[rng.below(pool.length)];
    if (isAllowed(mask, token)) return token;
  }
  const allowed = pool.filter((token) => isAllowed(mask, token));
  return allowed.length > 0 ? allowed[rng.below(allowed.length)] : -1;
}

export interface Walk {
  bytes: Uint8Array;
  ended: boolean;   // the walk reached the end of the text within its steps
}

// Draws allowed tokens at random (the end of the text a third of the times it is allowed) until the grammar ends.
export function randomWalk(grammar: Grammar, rng: Rng, maxSteps: number): Walk {
  const matcher = new GrammarMatcher(grammar, vocab);
  const bytes: number[] = [];
  for (let step = 0; step < maxSteps; step++) {
    const mask = matcher.allowed();
    if (matcher.done || (isAllowed(mask, EOT) && rng.uniform() < 1 / 3)) {
      matcher.accept(EOT);
      return { bytes: Uint8Array.from(bytes), ended: true };
    }
    let token = rng.uniform() < 0.5 ? draw(mask, closing, rng) : -1;
    if (token < 0) token = draw(mask, everyToken, rng);
    matcher.accept(token);
    bytes.push(...tokenizer.tokenBytes(token));
  }
  return { bytes: Uint8Array.from(bytes), ended: false };
}
