#include "crossentropy.cuh"

#include <stdexcept>

namespace dixie::cuda {

namespace {

// ---- cross-entropy: one block per row ----

constexpr int kRowBlock = 512;

// The rows are ld >= V apart, ld a multiple of the pack: the kernels read whole packs and skip (forward) or zero
// (backward) the pad columns past V.
template <typename X>
__global__ void __launch_bounds__(kRowBlock) crossentropy_forward_kernel(float* losses, float* lse, const X* logits,
                                                                         int ld, const int32_t* targets, int V) {
  using P = Pack<X>;
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  const X* x = logits + static_cast<int64_t>(row) * ld;
  // One pass over the row: each thread keeps a running maximum and the sum of exponentials below it.
  float m = -INFINITY, s = 0.0f;
  for (int p = threadIdx.x; p < ld / P::kN; p += blockDim.x) {
    const P v = reinterpret_cast<const P*>(x)[p];
    float f[P::kN], pack_max = -INFINITY;
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      f[k] = p * P::kN + k < V ? to_f32(v.v[k]) : -INFINITY;
      pack_max = fmaxf(pack_max, f[k]);
    }
    if (pack_max > m) {
      s *= expf(m - pack_max);  // expf(-inf) = 0 on the first pack
      m = pack_max;
    }
    if (m == -INFINITY) continue;  // a pack entirely past V
#pragma unroll
    for (int k = 0; k < P::kN; ++k) s += expf(f[k] - m);
  }
  const float row_max = block_max(m, scratch);
  const float row_sum = block_sum(m == -INFINITY ? 0.0f : s * expf(m - row_max), scratch);
  if (threadIdx.x == 0) {
    const float l = row_max + logf(row_sum);
    lse[row] = l;
    losses[row] = l - to_f32(x[targets[row]]);
  }
}

template <typename X>
__global__ void __launch_bounds__(kRowBlock) crossentropy_backward_kernel(X* logits, int ld, const float* lse,
                                                                          const int32_t* targets, float dloss, int V) {
  using P = Pack<X>;
  const int row = blockIdx.x;
  P* x = reinterpret_cast<P*>(logits + static_cast<int64_t>(row) * ld);
  const float l = lse[row];
  const int target = targets[row];
  for (int p = threadIdx.x; p < ld / P::kN; p += blockDim.x) {
    P v = x[p];
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      const int i = p * P::kN + k;
      v.v[k] = from_f32<X>(i < V ? (expf(to_f32(v.v[k]) - l) - (i == target ? 1.0f : 0.0f)) * dloss : 0.0f);
    }
    x[p] = v;
  }
}

__global__ void mean_kernel(float* out, const float* values, int n) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += values[i];
  s = block_sum_f64(s, scratch);
  if (threadIdx.x == 0) *out = static_cast<float>(s / n);
}

}  // namespace

template <typename X>
void crossentropy_forward(float* losses, float* lse, const X* logits, int ld, const int32_t* targets, int N, int V,
                          cudaStream_t stream) {
  if (!packable<X>(ld, {logits})) throw std::logic_error("crossentropy: logits rows must be 16-byte packs");
  crossentropy_forward_kernel<<<N, kRowBlock, 0, stream>>>(losses, lse, logits, ld, targets, V);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void crossentropy_backward(X* logits, int ld, const float* lse, const int32_t* targets, float dloss, int N, int V,
                           cudaStream_t stream) {
  if (!packable<X>(ld, {logits})) throw std::logic_error("crossentropy: logits rows must be 16-byte packs");
  crossentropy_backward_kernel<<<N, kRowBlock, 0, stream>>>(logits, ld, lse, targets, dloss, V);
  DIXIE_CUDA_LAUNCHED();
}

void mean_of(float* out, const float* values, int n, cudaStream_t stream) {
  mean_kernel<<<1, 1024, 0, stream>>>(out, values, n);
  DIXIE_CUDA_LAUNCHED();
}

#define DIXIE_CROSSENTROPY_FOR(X)                                                                                   \
  template void crossentropy_forward<X>(float*, float*, const X*, int, const int32_t*, int, int, cudaStream_t);        \
  template void crossentropy_backward<X>(X*, int, const float*, const int32_t*, float, int, int, cudaStream_t);

DIXIE_CROSSENTROPY_FOR(float)
DIXIE_CROSSENTROPY_FOR(bf16)

}  // namespace dixie::cuda
