// GPT-2's layers on the CPU: each a forward/backward pair of plain functions over flat float arrays.
// Shapes in the comments: B batch, T sequence, C channels, NH heads, V vocabulary, N = B*T rows.
// Gradient conventions: parameter gradients (dweight, dbias, dwte, dwpe) ACCUMULATE (+=), so micro-batches
// add up; activation gradients are OVERWRITTEN, except layernorm's dinp, which adds because a LayerNorm's
// input is the residual stream whose gradient already holds the pass-through of the residual connection.
// Every kernel is parallel over rows, heads or columns, never racing on an output.
#pragma once
#include <cstdint>

#include "core/dropout.h"
#include "thread_pool.h"

namespace dixie {

// out[N, C] = wte[inp] + wpe[position]; inp [B, T]
void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T, int C, ThreadPool& pool);
// dwte[V, C] += scatter of dout by token; dwpe[T, C] += dout summed over the batch
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T, int C, ThreadPool& pool);

// out[N, C] = (inp - mean) * rstd * weight + bias (eps 1e-5); saves mean[N] and rstd[N] for backward (may be null)
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int C, ThreadPool& pool);
// dinp[N, C] +=, dweight[C] +=, dbias[C] += (dweight and dbias null together: a frozen LayerNorm)
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int C, ThreadPool& pool);

// out[N, OC] = inp[N, C] @ weight[C, OC] + bias[OC]  (bias may be null)
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int C, int OC,
                    ThreadPool& pool);
// dinp[N, C] = dout @ weight^T; dweight[C, OC] += inp^T @ dout; dbias[OC] += column sums of dout (each may be null)
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp, const float* weight,
                     int64_t N, int C, int OC, ThreadPool& pool);

// Causal self-attention, fused: qkv [B, T, 3C] -> out [B, T, C] with scale 1/sqrt(C/NH), never materialising the
// [T, T] scores (an online softmax over key blocks). lse [B, NH, T] keeps each row's log-sum-exp for backward.
void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH, ThreadPool& pool);
// dqkv[B, T, 3C] = gradient of the attention given dout [B, T, C] and the forward's qkv, out and lse.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse, int B,
                        int T, int C, int NH, ThreadPool& pool);

// tanh-approximation GELU, elementwise over n values
void gelu_forward(float* out, const float* inp, int64_t n, ThreadPool& pool);
// dinp[n] = gelu'(inp) * dout  (dinp may alias dout)
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n, ThreadPool& pool);

// out = a + b, elementwise (out may alias a or b)
void residual_forward(float* out, const float* a, const float* b, int64_t n, ThreadPool& pool);

// out[N, C] = inp * keep * mask.scale, or += when accumulating: LoRA's dropout, keep drawn by mask (core/dropout.h)
void dropout(float* out, const float* inp, int64_t N, int C, const DropoutMask& mask, bool accumulate, ThreadPool& pool);

// Softmax cross-entropy of logits [N, V] against targets [N]: writes probs [N, V] (probs may alias logits, the
// softmax then replaces the logits in place) and each row's loss to losses [N]; returns the mean loss.
float crossentropy_forward(float* probs, float* losses, const float* logits, const int32_t* targets, int64_t N, int V,
                           ThreadPool& pool);
// dlogits[N, V] = (probs - onehot(targets)) * dloss  (dlogits may alias probs)
void crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, int64_t N, int V, float dloss,
                           ThreadPool& pool);

}  // namespace dixie
