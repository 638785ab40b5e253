#include "lora.cuh"

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;

// out[N, C] = inp * keep * mask.scale, or += when accumulating (the arithmetic in float32)
template <typename X>
__global__ void dropout_kernel(X* out, const X* inp, int64_t N, int C, DropoutMask mask, bool accumulate) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < N * C;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = mask.keeps(i / C, i % C, C) ? to_f32(inp[i]) * mask.scale : 0.0f;
    out[i] = from_f32<X>(accumulate ? to_f32(out[i]) + v : v);
  }
}

template <typename X>
void dropout(X* out, const X* inp, int64_t N, int C, const DropoutMask& mask, bool accumulate, cudaStream_t stream) {
  dropout_kernel<X><<<grid_for(N * C, kBlock), kBlock, 0, stream>>>(out, inp, N, C, mask, accumulate);
  DIXIE_CUDA_LAUNCHED();
}

}  // namespace

bool adapts(const ModelSpec& spec, ParamKind matrix) { return spec.lora().targets_matrix(layer_matrix_index(matrix)); }

template <typename X>
void lora_forward(Gemm& gemm, const DeviceWeights& w, ParamKind matrix, int layer, X* out, const X* inp, X* u, int N,
                  const DropoutMask& mask, X* dropped, cudaStream_t stream) {
  const auto [in, oc] = w.spec->matrix_shape(matrix);
  const LoraShape& lora = w.spec->lora();
  const int i = layer_matrix_index(matrix), r = lora.rank;
  if (mask.drops()) {
    dropout(dropped, inp, N, in, mask, false, stream);
    inp = dropped;
  }
  gemm.matmul<X, X>(false, true, N, r, in, inp, in, w.lora_factor<X>(i, layer, false), in, u, r, nullptr, false);
  gemm.matmul<X, X>(false, true, N, oc, r, u, r, w.lora_factor<X>(i, layer, true), r, out, oc, nullptr, true,
                    Gemm::Activation::kNone, nullptr, lora.scaling);
}

template <typename X>
void lora_backward(Gemm& gemm, const DeviceWeights& w, ParamKind matrix, int layer, X* dinp, float* dA, float* dB,
                   const X* dout, const X* inp, const X* u, X* du, int N, const DropoutMask& mask, X* dropped,
                   cudaStream_t stream) {
  const auto [in, oc] = w.spec->matrix_shape(matrix);
  const LoraShape& lora = w.spec->lora();
  const int i = layer_matrix_index(matrix), r = lora.rank;
  const X* A = w.lora_factor<X>(i, layer, false);
  const X* B = w.lora_factor<X>(i, layer, true);
  gemm.matmul<X, float>(true, false, oc, r, N, dout, oc, u, r, dB, r, nullptr, true, Gemm::Activation::kNone, nullptr,
                        lora.scaling);
  gemm.matmul<X, X>(false, false, N, r, oc, dout, oc, B, r, du, r, nullptr, false, Gemm::Activation::kNone, nullptr,
                    lora.scaling);
  if (!mask.drops()) {
    gemm.matmul<X, float>(true, false, r, in, N, du, r, inp, in, dA, in, nullptr, true);
    gemm.matmul<X, X>(false, false, N, in, r, du, r, A, in, dinp, in, nullptr, true);
    return;
  }
  dropout(dropped, inp, N, in, mask, false, stream);
  gemm.matmul<X, float>(true, false, r, in, N, du, r, dropped, in, dA, in, nullptr, true);
  gemm.matmul<X, X>(false, false, N, in, r, du, r, A, in, dropped, in, nullptr, false);
  dropout(dinp, static_cast<const X*>(dropped), N, in, mask, true, stream);
}

#define DIXIE_LORA_FOR(X)                                                                                          \
  template void lora_forward<X>(Gemm&, const DeviceWeights&, ParamKind, int, X*, const X*, X*, int,               \
                                const DropoutMask&, X*, cudaStream_t);                                             \
  template void lora_backward<X>(Gemm&, const DeviceWeights&, ParamKind, int, X*, float*, float*, const X*,       \
                                 const X*, const X*, X*, int, const DropoutMask&, X*, cudaStream_t);

DIXIE_LORA_FOR(float)
DIXIE_LORA_FOR(bf16)

}  // namespace dixie::cuda
