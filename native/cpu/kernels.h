// GPT-2's layers on the CPU: each a forward/backward pair of plain functions over flat float arrays.
// Shapes in the comments: B batch, T sequence, C channels, NH heads, V vocabulary, N = B*T rows.
// Backward functions ADD into their gradient outputs (d* arguments), so gradients accumulate.
#pragma once
#include <cstdint>

#include "thread_pool.h"

namespace dixie {

// out[N, C] = wte[inp] + wpe[position]; inp [B, T]
void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T, int C, ThreadPool& pool);
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T, int C, ThreadPool& pool);

// out[N, C] = (inp - mean) * rstd * weight + bias; saves mean[N] and rstd[N] for backward (may be null)
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int C, ThreadPool& pool);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int C, ThreadPool& pool);

// out[N, OC] = inp[N, C] @ weight[C, OC] + bias[OC]  (bias may be null)
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int C, int OC,
                    ThreadPool& pool);
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp, const float* weight,
                     int64_t N, int C, int OC, ThreadPool& pool);

// Causal self-attention. qkv [B, T, 3C] -> out [B, T, C]; att [B, NH, T, T] keeps the softmax for backward.
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH, ThreadPool& pool);
void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv, const float* att, int B, int T,
                        int C, int NH, ThreadPool& pool);

// tanh-approximation GELU, elementwise over n values
void gelu_forward(float* out, const float* inp, int64_t n, ThreadPool& pool);
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n, ThreadPool& pool);

// out = a + b, elementwise
void residual_forward(float* out, const float* a, const float* b, int64_t n, ThreadPool& pool);

// Mean cross-entropy of logits [N, V] against targets [N]; writes probs [N, V] (softmax) and returns the mean
// loss. backward turns probs into dlogits in place: (probs - onehot) * dloss.
float crossentropy_forward(float* probs, const float* logits, const int32_t* targets, int64_t N, int V, ThreadPool& pool);
void crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, int64_t N, int V, float dloss,
                           ThreadPool& pool);

}  // namespace dixie
