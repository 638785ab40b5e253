#include "crossentropy.cuh"

#include <stdexcept>

namespace dixie::cuda {

namespace {

// ---- cross-entropy: one block per row ----

constexpr int kRowBlock = 512;

// The rows are ld >= V apart, ld a multiple of the pack: the kernel reads whole packs and skips the pad columns
// past V (and, writing the gradient, zeroes them). With kGradient it then overwrites the row with the loss's
// gradient: its second read of the row, 100 KB for GPT-2, mostly comes from L2, where a separate backward kernel
// would read every row from memory again.
template <typename X, bool kGradient>
__global__ void __launch_bounds__(kRowBlock) crossentropy_kernel(float* losses, X* logits, int ld,
                                                                 const int32_t* targets, float dloss, int V) {
  using P = Pack<X>;
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  X* x = logits + static_cast<int64_t>(row) * ld;
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
  const float lse = row_max + logf(row_sum);
  const int target = targets[row];
  if (threadIdx.x == 0) losses[row] = lse - to_f32(x[target]);
  if constexpr (kGradient) {
    __syncthreads();  // thread 0 has read the target's logit
    for (int p = threadIdx.x; p < ld / P::kN; p += blockDim.x) {
      P v = reinterpret_cast<P*>(x)[p];
#pragma unroll
      for (int k = 0; k < P::kN; ++k) {
        const int i = p * P::kN + k;
        v.v[k] = from_f32<X>(i < V ? (expf(to_f32(v.v[k]) - lse) - (i == target ? 1.0f : 0.0f)) * dloss : 0.0f);
      }
      reinterpret_cast<P*>(x)[p] = v;
    }
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
void crossentropy_forward(float* losses, X* logits, int ld, const int32_t* targets, float dloss, bool gradient, int N,
                          int V, cudaStream_t stream) {
  if (!packable<X>(ld, {logits})) throw std::logic_error("crossentropy: logits rows must be 16-byte packs");
  if (gradient) crossentropy_kernel<X, true><<<N, kRowBlock, 0, stream>>>(losses, logits, ld, targets, dloss, V);
  else crossentropy_kernel<X, false><<<N, kRowBlock, 0, stream>>>(losses, logits, ld, targets, dloss, V);
  DIXIE_CUDA_LAUNCHED();
}

void mean_of(float* out, const float* values, int n, cudaStream_t stream) {
  mean_kernel<<<1, 1024, 0, stream>>>(out, values, n);
  DIXIE_CUDA_LAUNCHED();
}

template void crossentropy_forward<float>(float*, float*, int, const int32_t*, float, bool, int, int, cudaStream_t);
template void crossentropy_forward<bf16>(float*, bf16*, int, const int32_t*, float, bool, int, int, cudaStream_t);

}  // namespace dixie::cuda
