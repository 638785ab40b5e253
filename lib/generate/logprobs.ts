// Log-probabilities of sampled tokens under the model's own distribution (the log-softmax of its logits, before
// the repetition penalty, temperature, top-k or top-p shape what is drawn), as OpenAI's API reports them. A model
// with more logits than its tokenizer spells (a vocabulary padded to a multiple of 64) never draws the others, so
// they have no share of it: a row of padding left at zero scores 0, far above GPT-2's logits. The native side
// computes them (native/core/backend.h token_logprobs): in the step that made the logits, off the event loop, for
// the batcher; a prompt's rows over GPT-2's vocabulary would otherwise hold the event loop for tens of milliseconds.
import { loadAddon, type NativeLogprobs } from '../engine/native';

export interface Alternative {
  token: number;
  logprob: number;
}

export interface TokenLogprob extends Alternative {
  top: Alternative[];  // the most likely tokens, most likely first
}

// The most alternatives a request may ask for, as OpenAI's API allows.
export const MAX_TOP_LOGPROBS = 20;

// `token`'s log-probability in one row of logits, and the `top` most likely tokens' (ties: lower id first), of those
// in `tokens` where given (a bitset of the row's length: the ids the tokenizer spells, Tokenizer.spelledMask).
export function tokenLogprob(logits: Float32Array, token: number, top: number, tokens: Uint32Array | null = null): TokenLogprob {
  const rows = logprobRows(1, top, tokens, Int32Array.of(token));
  loadAddon().tokenLogprobs(logits, rows);
  return rowLogprob(rows, 0, token, top);
}

// The buffers the native side fills with the log-probabilities of `count` rows and their `top` most likely tokens:
// of `targets`, or of the tokens a kvStep draws.
export function logprobRows(count: number, top: number, allowed: Uint32Array | null, targets?: Int32Array): NativeLogprobs {
  return { top, allowed, targets, logprob: new Float64Array(count), topTokens: new Int32Array(count * top), topLogprobs: new Float64Array(count * top) };
}

// Row `row` of filled buffers, whose token is `token`, with its `top` (at most theirs) most likely tokens.
export function rowLogprob(rows: NativeLogprobs, row: number, token: number, top: number): TokenLogprob {
  const alternatives: Alternative[] = [];
  for (let k = 0; k < top; k++) {
    const token = rows.topTokens[row * rows.top + k];
    if (token < 0) break;  // fewer tokens than asked for are allowed
    alternatives.push({ token, logprob: rows.topLogprobs[row * rows.top + k] });
  }
  return { token, logprob: rows.logprob[row], top: alternatives };
}
