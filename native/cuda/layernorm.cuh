// LayerNorm on the GPU, alone or fused with the residual connection before it, and its backward; with it the
// column reductions that its dweight/dbias and a matrix product's dbias share. Conventions as the CPU backend's
// (native/cpu/kernels.h): parameter gradients ACCUMULATE (+=), and so does dinp (the residual stream's gradient
// already holds the pass-through). Every reduction runs in a fixed order, so the results are the same on every
// run. X is the activation type: float (the float32 reference) or bf16 (mixed precision); weight and bias are the
// float32 masters, mean/rstd and the gradients float32. Shapes: N rows (B*T, or decoding rows), C channels.
#pragma once
#include <cstddef>

#include "common.cuh"

namespace dixie::cuda {

// out[N, C] = (inp - mean) * rstd * weight + bias, eps 1e-5; mean/rstd [N] saved for backward (may be null)
template <typename X>
void layernorm_forward(X* out, float* mean, float* rstd, const X* inp, const float* weight, const float* bias, int N,
                       int C, cudaStream_t stream);
// res[N, C] = a + b (rounded to X), then out = layernorm(res): the residual connection fused with the
// LayerNorm that follows it. res may alias a.
template <typename X>
void residual_layernorm_forward(X* res, X* out, float* mean, float* rstd, const X* a, const X* b, const float* weight,
                                const float* bias, int N, int C, cudaStream_t stream);
// dinp[N, C] +=, dweight[C] +=, dbias[C] += (dweight and dbias null together: a frozen LayerNorm). scratch:
// layernorm_scratch_floats(C) floats. In one pass over dout and inp where C <= 1024 in 16-byte packs (GPT-2 124M
// and 355M), the column sums kept in registers; otherwise dinp's pass and then the column reductions.
template <typename X>
void layernorm_backward(X* dinp, float* dweight, float* dbias, const X* dout, const X* inp, const float* weight,
                        const float* mean, const float* rstd, int N, int C, float* scratch, cudaStream_t stream);

// dbias[OC] += column sums of dout[N, OC]. scratch: bias_scratch_floats(OC) floats.
template <typename X>
void bias_backward(float* dbias, const X* dout, int N, int OC, float* scratch, cudaStream_t stream);
// dbias[OC] += sums[OC], column sums made elsewhere (a matrix product's epilogue)
void add_column_sums(float* dbias, const float* sums, int OC, cudaStream_t stream);

// Scratch for the two-stage column reductions above (per-chunk partial sums, then a fixed-order sum).
size_t layernorm_scratch_floats(int C);
size_t bias_scratch_floats(int OC);

}  // namespace dixie::cuda
