#include "model_weights.cuh"

#include <cuda_fp16.h>

#include "q8.cuh"

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;

// w[n] = the f16 (or bf16, when is_bf16) values of bits[n], rounded to X
template <typename X>
__global__ void expand16_kernel(X* w, const uint16_t* bits, int64_t n, bool is_bf16) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = is_bf16 ? __bfloat162float(__ushort_as_bfloat16(bits[i])) : __half2float(__ushort_as_half(bits[i]));
    w[i] = from_f32<X>(v);
  }
}

}  // namespace

template <typename X>
DeviceWeights::Matrix<X> DeviceWeights::matrix(ParamKind kind, int layer, X* scratch, cudaStream_t stream) const {
  const auto [C, OC] = spec->matrix_shape(kind);
  if (q8) {
    q8_dequantize(scratch, q8_matrix(kind, layer), q8_matrix_scales(kind, layer), OC, q8_ld(C), stream);
    return {scratch, true, q8_ld(C)};
  }
  if (!m16) return {weight<X>(kind, layer), false, OC};
  if (!expands<X>()) return {reinterpret_cast<const X*>(m16_matrix(kind, layer)), false, OC};
  const int64_t n = static_cast<int64_t>(C) * OC;
  expand16_kernel<X><<<grid_for(n, kBlock), kBlock, 0, stream>>>(scratch, m16_matrix(kind, layer), n, m16_bf16);
  DIXIE_CUDA_LAUNCHED();
  return {scratch, false, OC};
}

template DeviceWeights::Matrix<float> DeviceWeights::matrix<float>(ParamKind, int, float*, cudaStream_t) const;
template DeviceWeights::Matrix<bf16> DeviceWeights::matrix<bf16>(ParamKind, int, bf16*, cudaStream_t) const;

}  // namespace dixie::cuda
