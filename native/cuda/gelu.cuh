// GPT-2's GELU on the GPU, elementwise over flat device arrays. As in the CPU backend (native/cpu/kernels.h), the
// activation gradient is OVERWRITTEN. X is the activation type: float (the float32 reference) or bf16 (mixed
// precision); the arithmetic is float32.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace dixie::cuda {

// tanh-approximation GELU over n values
template <typename X>
void gelu_forward(X* out, const X* inp, int64_t n, cudaStream_t stream);
// dinp[n] = gelu'(inp) * dout (dinp may alias dout)
template <typename X>
void gelu_backward(X* dinp, const X* inp, const X* dout, int64_t n, cudaStream_t stream);

}  // namespace dixie::cuda
