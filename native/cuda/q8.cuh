// 8-bit (Q8_0) weights on the GPU, for decoding: a matrix w[OC, C] stored as int8 q[OC, ldq] (each output's inputs
// contiguous; ldq = C rounded up to 32, the pad zeros) with f16 scales d[OC, ldq / 32] (their bits), w = d * q.
// X is the activation type: float (the float32 reference) or bf16 (mixed precision). Shapes: R rows, C inputs,
// OC outputs.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace dixie::cuda {

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

}  // namespace dixie::cuda
