// A LoRA adapter's path beside a layer matrix on the GPU (core/model_spec.h LoraShape), as the CPU backend computes
// it: y += scaling * (drop(x) A^T) B^T, so that only A and B train. The products run on the backend's Gemm over the
// activation type X (float, or bf16 in mixed precision, whose factors are then read from the bf16 copy of the
// weights); u and du are activations of type X too, the factors' gradients float32. drop is a training forward's
// dropout (core/dropout.h), the identity when the mask drops nothing; dropped is scratch [N, in] for it, whose mask
// the backward draws again rather than keeping the dropped input. Shapes: N rows, r the rank, in and out the
// matrix's inputs and outputs.
#pragma once
#include "common.cuh"
#include "core/dropout.h"
#include "core/model_spec.h"
#include "gemm.cuh"
#include "model_weights.cuh"

namespace dixie::cuda {

// Whether the model's adapter changes layer matrix `matrix` (one of kLayerMatrices).
bool adapts(const ModelSpec& spec, ParamKind matrix);

// u[N, r] = drop(inp[N, in]) A^T (kept for the backward); out[N, out] += scaling * u B^T (decoding drops nothing)
template <typename X>
void lora_forward(Gemm& gemm, const DeviceWeights& w, ParamKind matrix, int layer, X* out, const X* inp, X* u, int N,
                  const DropoutMask& mask = {}, X* dropped = nullptr, cudaStream_t stream = nullptr);

// dB[out, r] += scaling * dout^T u; du[N, r] = scaling * dout B; dA[r, in] += du^T drop(inp); dinp[N, in] += drop(du A)
template <typename X>
void lora_backward(Gemm& gemm, const DeviceWeights& w, ParamKind matrix, int layer, X* dinp, float* dA, float* dB,
                   const X* dout, const X* inp, const X* u, X* du, int N, const DropoutMask& mask, X* dropped,
                   cudaStream_t stream);

}  // namespace dixie::cuda
