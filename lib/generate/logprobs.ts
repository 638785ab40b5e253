// Log-probabilities of sampled tokens under the model's own distribution (the log-softmax of its logits, before
// the repetition penalty, temperature, top-k or top-p shape what is drawn), as OpenAI's API reports them. A model
// with more logits than its tokenizer spells (a vocabulary padded to a multiple of 64) never draws the others, so
// they have no share of it: a row of padding left at zero scores 0, far above GPT-2's logits.
import { loadAddon } from '../engine/native';

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
// in `tokens` where given (a bitset: the ids the tokenizer spells, Tokenizer.spelledMask).
export function tokenLogprob(logits: Float32Array, token: number, top: number, tokens: Uint32Array | null = null): TokenLogprob {
  const logZ = loadAddon().logPartition(tokens === null ? logits : onlyTokens(logits, tokens));
  // A sorted list of the best `top` so far: a logit enters only when it beats the least of them.
  const best: number[] = [];
  for (let i = 0; i < logits.length && top > 0; i++) {
    if (tokens !== null && ((tokens[i >>> 5] >>> (i & 31)) & 1) === 0) continue;
    if (best.length === top) {
      if (logits[i] <= logits[best[top - 1]]) continue;
      best.pop();
    }
    let at = best.length;
    while (at > 0 && logits[best[at - 1]] < logits[i]) at--;
    best.splice(at, 0, i);
  }
  return { token, logprob: logits[token] - logZ, top: best.map((t) => ({ token: t, logprob: logits[t] - logZ })) };
}

// A copy of the row with the logits of the ids outside `tokens` at -Infinity.
function onlyTokens(logits: Float32Array, tokens: Uint32Array): Float32Array {
  const row = Float32Array.from(logits);
  for (let word = 0; word < tokens.length; word++) {
    if (tokens[word] === 0xffffffff) continue;
    for (let i = word * 32; i < Math.min(row.length, word * 32 + 32); i++) if (((tokens[word] >>> (i & 31)) & 1) === 0) row[i] = -Infinity;
  }
  return row;
}
