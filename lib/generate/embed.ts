// Embeddings from a GPT-2 model: a text's vector made of the final hidden states of its tokens (after the last
// LayerNorm: what the head reads, Hugging Face's last_hidden_state), pooled over the tokens. GPT-2 was not trained
// for them, so they serve search and clustering less well than a model that was; what they give is one model for
// both, and the vectors of a fine-tuned model, which has read the user's own text.

// 'mean': the tokens' states averaged (the default); 'last': the last token's, the only one that has seen them all.
export type Pooling = 'mean' | 'last';
export const POOLINGS: readonly Pooling[] = ['mean', 'last'];

// The vector of one text from its tokens' states [tokens, nEmbd], summed in float64.
export function poolStates(states: Float32Array, nEmbd: number, pooling: Pooling): Float32Array {
  const tokens = states.length / nEmbd;
  if (!(Number.isInteger(tokens) && tokens >= 1)) throw new RangeError(`states of ${states.length} values are not whole tokens of ${nEmbd}`);
  if (pooling === 'last') return states.slice((tokens - 1) * nEmbd);
  const sum = new Float64Array(nEmbd);
  for (let t = 0; t < tokens; t++) {
    for (let c = 0; c < nEmbd; c++) sum[c] += states[t * nEmbd + c];
  }
  return Float32Array.from(sum, (s) => s / tokens);
}

// The vector scaled to length 1 (unchanged if it is all zeros), so that a dot product is a cosine similarity.
export function unitLength(v: Float32Array): Float32Array {
  let squares = 0;
  for (const x of v) squares += x * x;
  const norm = Math.sqrt(squares);
  return norm === 0 ? v : v.map((x) => x / norm);
}
