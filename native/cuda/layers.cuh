// GPT-2's layers on the GPU other than the matrix products and attention: each a forward/backward pair of
// kernels over flat device arrays, with the CPU backend's conventions (native/cpu/kernels.h): parameter
// gradients ACCUMULATE (+=), activation gradients are OVERWRITTEN except layernorm's dinp, which adds (the
// residual stream's gradient already holds the pass-through). Every reduction runs in a fixed order, so the
// results are the same on every run. X is the activation type: float (the float32 reference) or bf16 (mixed
// precision); parameters read here are the float32 masters, statistics and gradients are float32.
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

// out[N, C] = (inp - mean) * rstd * weight + bias, eps 1e-5; mean/rstd [N] saved for backward (may be null)
template <typename X>
void layernorm_forward(X* out, float* mean, float* rstd, const X* inp, const float* weight, const float* bias, int N,
                       int C, cudaStream_t stream);
// res[N, C] = a + b (rounded to X), then out = layernorm(res): the residual connection fused with the
// LayerNorm that follows it. res may alias a.
template <typename X>
void residual_layernorm_forward(X* res, X* out, float* mean, float* rstd, const X* a, const X* b, const float* weight,
                                const float* bias, int N, int C, cudaStream_t stream);
// dinp[N, C] +=, dweight[C] +=, dbias[C] +=. scratch: layernorm_scratch_floats(C) floats.
template <typename X>
void layernorm_backward(X* dinp, float* dweight, float* dbias, const X* dout, const X* inp, const float* weight,
                        const float* mean, const float* rstd, int N, int C, float* scratch, cudaStream_t stream);

// dbias[OC] += column sums of dout[N, OC]. scratch: bias_scratch_floats(OC) floats.
template <typename X>
void bias_backward(float* dbias, const X* dout, int N, int OC, float* scratch, cudaStream_t stream);

// Scratch for the two-stage column reductions above (per-chunk partial sums, then a fixed-order sum).
size_t layernorm_scratch_floats(int C);
size_t bias_scratch_floats(int OC);

// tanh-approximation GELU over n values
template <typename X>
void gelu_forward(X* out, const X* inp, int64_t n, cudaStream_t stream);
// dinp[n] = gelu'(inp) * dout (dinp may alias dout)
template <typename X>
void gelu_backward(X* dinp, const X* inp, const X* dout, int64_t n, cudaStream_t stream);

// Softmax cross-entropy of logits [N, V] (row stride ld, a whole number of 16-byte packs) against targets [N]:
// each row's loss [N] and its log-sum-exp [N], kept for backward (the logits themselves are left as they are).
template <typename X>
void crossentropy_forward(float* losses, float* lse, const X* logits, int ld, const int32_t* targets, int N, int V,
                          cudaStream_t stream);
// dlogits = (softmax(logits) - onehot(targets)) * dloss, in place over the logits; columns [V, ld) become 0
template <typename X>
void crossentropy_backward(X* logits, int ld, const float* lse, const int32_t* targets, float dloss, int N, int V,
                           cudaStream_t stream);
// out[0] = mean of values[n], summed in double in a fixed order
void mean_of(float* out, const float* values, int n, cudaStream_t stream);

// dst[n] = bf16(src[n])
void cast_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t stream);
// dst[rows, cols] = float(src[rows, cols]) with src's row stride ld
template <typename X>
void rows_to_f32(float* dst, const X* src, int rows, int cols, int ld, cudaStream_t stream);

// Decoding: the keys and values of R new rows (in qkv [R, 3C]) into one layer's cache [slots, n_ctx, C] at
// (row_slot[r], row_pos[r]).
template <typename X>
void kv_scatter(X* k_cache, X* v_cache, const X* qkv, const int32_t* row_slot, const int32_t* row_pos, int R, int C,
                int n_ctx, cudaStream_t stream);
// dst[dst_rows[i]] = src[src_rows[i]] for i < n; rows of C values
template <typename X>
void gather_rows(X* dst, const X* src, const int32_t* src_rows, const int32_t* dst_rows, int n, int C,
                 cudaStream_t stream);

// ---- 8-bit (Q8_0) weights, for decoding: a matrix w[OC, C] stored as int8 q[OC, ldq] (each output's inputs
// contiguous; ldq = C rounded up to 32, the pad zeros) with f16 scales d[OC, ldq / 32] (their bits), w = d * q ----

// The most rows q8_matvec takes; more go through q8_dequantize and a GEMM.
constexpr int kQ8MatvecRows = 8;
// out[R, OC] = inp[R, C] @ w^T (+ bias[OC]), R <= kQ8MatvecRows: a warp per output, reading its int8 weights once
// for all the rows, float32 sums (the weights are not rounded to bf16, and the inputs not quantized).
template <typename X>
void q8_matvec(X* out, const X* inp, const int8_t* q, const uint16_t* d, const X* bias, int R, int C, int ldq, int OC,
               cudaStream_t stream);
// w[OC, ldq] = d * q, rounded to X
template <typename X>
void q8_dequantize(X* w, const int8_t* q, const uint16_t* d, int OC, int ldq, cudaStream_t stream);

// ---- the optimizer over the flat parameter buffer ----

// A piece of one tensor (as on the CPU: tensors cut into pieces so that blocks balance and sums are fixed).
struct DeviceSpan {
  uint64_t offset;
  uint32_t numel;
  uint8_t trainable, decay;
};

struct UpdateArgs {
  bool adamw;
  float lr, beta1, beta2, eps, weight_decay;
  float inv_bc1, inv_bc2;  // 1 / (1 - beta^t), the bias corrections
  uint64_t state_offset;   // the parameter m[0] and v[0] belong to (a ZeRO-1 shard's first; 0 when they cover all)
};

// partials[s] = sum of squared gradients of span s (0 for frozen spans)
void grad_square_sums(double* partials, const float* grads, const DeviceSpan* spans, int n_spans, cudaStream_t stream);
// norm_mult[0] = global norm of grads * grad_scale; norm_mult[1] = the multiplier the update applies to the
// gradient (grad_scale, times the clip factor when the norm exceeds grad_clip > 0)
void grad_norm(float* norm_mult, const double* partials, int n_spans, float grad_scale, float grad_clip,
               cudaStream_t stream);
// AdamW or SGD on the trainable spans with the gradient times norm_mult[1]; params_lp (may be null) gets the
// bf16 copy of every updated parameter; every gradient is zeroed.
void optimizer_update(float* params, bf16* params_lp, float* grads, float* m, float* v, const DeviceSpan* spans,
                      int n_spans, const float* norm_mult, const UpdateArgs& args, cudaStream_t stream);

}  // namespace dixie::cuda
