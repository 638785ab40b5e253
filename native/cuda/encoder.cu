#include "encoder.cuh"

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;

template <typename X>
__global__ void encoder_forward_kernel(X* out, const int32_t* tokens, const int32_t* pos, const float* wte,
                                       const float* wpe, int N, int T, int C) {
  const int64_t total = static_cast<int64_t>(N) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(i / C), c = static_cast<int>(i % C);
    const int p = pos ? pos[r] : r % T;
    out[i] = from_f32<X>(wte[static_cast<int64_t>(tokens[r]) * C + c] + wpe[static_cast<int64_t>(p) * C + c]);
  }
}

// grid (buckets, ceil(C / kBlock)): one token's rows summed in row order, per column
template <typename X>
__global__ void encoder_backward_wte_kernel(float* dwte, const X* dout, TokenBuckets buckets, int C) {
  const int b = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sum = 0.0f;
  for (int i = buckets.start[b]; i < buckets.start[b + 1]; ++i)
    sum += to_f32(dout[static_cast<int64_t>(buckets.rows[i]) * C + c]);
  dwte[static_cast<int64_t>(buckets.tokens[b]) * C + c] += sum;
}

template <typename X>
__global__ void encoder_backward_wpe_kernel(float* dwpe, const X* dout, int B, int T, int C) {
  const int64_t total = static_cast<int64_t>(T) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int b = 0; b < B; ++b) sum += to_f32(dout[static_cast<int64_t>(b) * T * C + i]);
    dwpe[i] += sum;
  }
}

}  // namespace

template <typename X>
void encoder_forward(X* out, const int32_t* tokens, const int32_t* pos, const float* wte, const float* wpe, int N,
                     int T, int C, cudaStream_t stream) {
  encoder_forward_kernel<<<grid_for(static_cast<int64_t>(N) * C, kBlock), kBlock, 0, stream>>>(out, tokens, pos, wte,
                                                                                               wpe, N, T, C);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void encoder_backward(float* dwte, float* dwpe, const X* dout, const TokenBuckets& buckets, int B, int T, int C,
                      cudaStream_t stream) {
  if (buckets.count > 0) {
    const dim3 grid(static_cast<unsigned>(buckets.count), static_cast<unsigned>(ceil_div(C, kBlock)));
    encoder_backward_wte_kernel<<<grid, kBlock, 0, stream>>>(dwte, dout, buckets, C);
    DIXIE_CUDA_LAUNCHED();
  }
  encoder_backward_wpe_kernel<<<grid_for(static_cast<int64_t>(T) * C, kBlock), kBlock, 0, stream>>>(dwpe, dout, B, T, C);
  DIXIE_CUDA_LAUNCHED();
}

#define DIXIE_ENCODER_FOR(X)                                                                                        \
  template void encoder_forward<X>(X*, const int32_t*, const int32_t*, const float*, const float*, int, int, int,      \
                                   cudaStream_t);                                                                    \
  template void encoder_backward<X>(float*, float*, const X*, const TokenBuckets&, int, int, int, cudaStream_t);

DIXIE_ENCODER_FOR(float)
DIXIE_ENCODER_FOR(bf16)

}  // namespace dixie::cuda
