#include "lora.cuh"

namespace dixie::cuda {

bool adapts(const ModelSpec& spec, ParamKind matrix) { return spec.lora().targets_matrix(layer_matrix_index(matrix)); }

template <typename X>
void lora_forward(Gemm& gemm, const DeviceWeights& w, ParamKind matrix, int layer, X* out, const X* inp, X* u, int N) {
  const auto [in, oc] = w.spec->matrix_shape(matrix);
  const LoraShape& lora = w.spec->lora();
  const int i = layer_matrix_index(matrix), r = lora.rank;
  gemm.matmul<X, X>(false, true, N, r, in, inp, in, w.lora_factor<X>(i, layer, false), in, u, r, nullptr, false);
  gemm.matmul<X, X>(false, true, N, oc, r, u, r, w.lora_factor<X>(i, layer, true), r, out, oc, nullptr, true,
                    Gemm::Activation::kNone, nullptr, lora.scaling);
}

template <typename X>
void lora_backward(Gemm& gemm, const DeviceWeights& w, ParamKind matrix, int layer, X* dinp, float* dA, float* dB,
                   const X* dout, const X* inp, const X* u, X* du, int N) {
  const auto [in, oc] = w.spec->matrix_shape(matrix);
  const LoraShape& lora = w.spec->lora();
  const int i = layer_matrix_index(matrix), r = lora.rank;
  const X* A = w.lora_factor<X>(i, layer, false);
  const X* B = w.lora_factor<X>(i, layer, true);
  gemm.matmul<X, float>(true, false, oc, r, N, dout, oc, u, r, dB, r, nullptr, true, Gemm::Activation::kNone, nullptr,
                        lora.scaling);
  gemm.matmul<X, X>(false, false, N, r, oc, dout, oc, B, r, du, r, nullptr, false, Gemm::Activation::kNone, nullptr,
                    lora.scaling);
  gemm.matmul<X, float>(true, false, r, in, N, du, r, inp, in, dA, in, nullptr, true);
  gemm.matmul<X, X>(false, false, N, in, r, du, r, A, in, dinp, in, nullptr, true);
}

#define DIXIE_LORA_FOR(X)                                                                                          \
  template void lora_forward<X>(Gemm&, const DeviceWeights&, ParamKind, int, X*, const X*, X*, int);              \
  template void lora_backward<X>(Gemm&, const DeviceWeights&, ParamKind, int, X*, float*, float*, const X*,       \
                                 const X*, const X*, X*, int);

DIXIE_LORA_FOR(float)
DIXIE_LORA_FOR(bf16)

}  // namespace dixie::cuda
