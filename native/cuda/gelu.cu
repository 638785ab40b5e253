#include "gelu.cuh"

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCube = 0.044715f;

// ---- gelu: elementwise, in 16-byte packs when the arrays allow (they do in the planned memory) ----

__device__ __forceinline__ float gelu(float x) {
  return 0.5f * x * (1.0f + tanhf(kGeluScale * (x + kGeluCube * x * x * x)));
}

__device__ __forceinline__ float gelu_grad(float x) {
  const float th = tanhf(kGeluScale * (x + kGeluCube * x * x * x));
  const float sech2 = 1.0f - th * th;
  return 0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * kGeluCube * x * x);
}

// K elements per item (a pack, or 1): item i covers elements [i K, (i + 1) K).
template <typename X, int K>
__global__ void gelu_forward_kernel(X* out, const X* inp, int64_t items) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (K == 1) {
      out[i] = from_f32<X>(gelu(to_f32(inp[i])));
    } else {
      Pack<X> p = reinterpret_cast<const Pack<X>*>(inp)[i];
#pragma unroll
      for (int k = 0; k < K; ++k) p.v[k] = from_f32<X>(gelu(to_f32(p.v[k])));
      reinterpret_cast<Pack<X>*>(out)[i] = p;
    }
  }
}

template <typename X, int K>
__global__ void gelu_backward_kernel(X* dinp, const X* inp, const X* dout, int64_t items) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (K == 1) {
      dinp[i] = from_f32<X>(gelu_grad(to_f32(inp[i])) * to_f32(dout[i]));
    } else {
      const Pack<X> x = reinterpret_cast<const Pack<X>*>(inp)[i];
      Pack<X> g = reinterpret_cast<const Pack<X>*>(dout)[i];
#pragma unroll
      for (int k = 0; k < K; ++k) g.v[k] = from_f32<X>(gelu_grad(to_f32(x.v[k])) * to_f32(g.v[k]));
      reinterpret_cast<Pack<X>*>(dinp)[i] = g;
    }
  }
}

}  // namespace

template <typename X>
void gelu_forward(X* out, const X* inp, int64_t n, cudaStream_t stream) {
  constexpr int K = Pack<X>::kN;
  if (packable<X>(n, {out, inp})) gelu_forward_kernel<X, K><<<grid_for(n / K, kBlock), kBlock, 0, stream>>>(out, inp, n / K);
  else gelu_forward_kernel<X, 1><<<grid_for(n, kBlock), kBlock, 0, stream>>>(out, inp, n);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void gelu_backward(X* dinp, const X* inp, const X* dout, int64_t n, cudaStream_t stream) {
  constexpr int K = Pack<X>::kN;
  if (packable<X>(n, {dinp, inp, dout}))
    gelu_backward_kernel<X, K><<<grid_for(n / K, kBlock), kBlock, 0, stream>>>(dinp, inp, dout, n / K);
  else gelu_backward_kernel<X, 1><<<grid_for(n, kBlock), kBlock, 0, stream>>>(dinp, inp, dout, n);
  DIXIE_CUDA_LAUNCHED();
}

#define DIXIE_GELU_FOR(X)                                                                                           \
  template void gelu_forward<X>(X*, const X*, int64_t, cudaStream_t);                                                  \
  template void gelu_backward<X>(X*, const X*, const X*, int64_t, cudaStream_t);

DIXIE_GELU_FOR(float)
DIXIE_GELU_FOR(bf16)

}  // namespace dixie::cuda
