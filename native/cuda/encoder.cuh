// GPT-2's encoder on the GPU: the token and position embeddings summed into the residual stream, and their
// gradients. Conventions as the CPU backend's (native/cpu/kernels.h): parameter gradients ACCUMULATE (+=), summed
// in a fixed order so that the results are the same on every run. X is the activation type: float (the float32
// reference) or bf16 (mixed precision); the embedding tables are the float32 masters, their gradients float32.
// Shapes: B batch, T sequence, C channels, V vocabulary, N rows (B*T, or decoding rows).
#pragma once
#include <cstdint>

#include "common.cuh"

namespace dixie::cuda {

// out[N, C] = wte[tokens[r]] + wpe[pos[r]] (pos null: r % T)
template <typename X>
void encoder_forward(X* out, const int32_t* tokens, const int32_t* pos, const float* wte, const float* wpe, int N,
                     int T, int C, cudaStream_t stream);

// The rows of a batch grouped by token, so that dwte is summed without atomics: bucket b holds token
// tokens[b] and the rows rows[start[b] .. start[b+1]) in increasing order. Built on the host at forward time.
struct TokenBuckets {
  const int32_t* tokens;
  const int32_t* start;
  const int32_t* rows;
  int count;
};
// dwte[V, C] += dout rows by token; dwpe[T, C] += dout summed over the batch
template <typename X>
void encoder_backward(float* dwte, float* dwpe, const X* dout, const TokenBuckets& buckets, int B, int T, int C,
                      cudaStream_t stream);

}  // namespace dixie::cuda
