#include "q8.cuh"

#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int kQ8Warps = 8;  // outputs per block of q8_matvec

__device__ __forceinline__ float f16_bits_to_f32(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }

// A warp per output j: each lane takes 8 weights at a time (a quarter of a block), the warp 256 consecutive ones,
// and the 8 inputs of each row beside them (one 16-byte or 32-byte pack when kPacked: C a multiple of 8 and inp
// aligned).
template <typename X, bool kPacked>
__global__ void q8_matvec_kernel(X* out, const X* inp, const int8_t* q, const uint16_t* d, const X* bias, int R, int C,
                                 int ldq, int OC) {
  const int lane = threadIdx.x % 32, j = blockIdx.x * kQ8Warps + threadIdx.x / 32;
  if (j >= OC) return;
  const int8_t* qj = q + static_cast<int64_t>(j) * ldq;
  const uint16_t* dj = d + static_cast<int64_t>(j) * (ldq / 32);
  float acc[kQ8MatvecRows] = {};
  for (int k = lane * 8; k < C; k += 32 * 8) {
    const int2 packed = *reinterpret_cast<const int2*>(qj + k);
    const int8_t* w = reinterpret_cast<const int8_t*>(&packed);
    const float scale = f16_bits_to_f32(dj[k / 32]);
#pragma unroll
    for (int r = 0; r < kQ8MatvecRows; ++r) {
      if (r >= R) break;
      const X* x = inp + static_cast<int64_t>(r) * C + k;
      float sum = 0.0f;
      if constexpr (kPacked) {
        const Pack<X, 8> v = *reinterpret_cast<const Pack<X, 8>*>(x);
#pragma unroll
        for (int i = 0; i < 8; ++i) sum = fmaf(static_cast<float>(w[i]), to_f32(v.v[i]), sum);
      } else {
#pragma unroll  // w's bytes stay in registers only where every index is a constant
        for (int i = 0; i < 8; ++i)
          if (k + i < C) sum = fmaf(static_cast<float>(w[i]), to_f32(x[i]), sum);
      }
      acc[r] = fmaf(scale, sum, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < kQ8MatvecRows; ++r) {
    if (r >= R) break;
    const float total = warp_sum(acc[r]);
    if (lane == 0) out[static_cast<int64_t>(r) * OC + j] = from_f32<X>(total + (bias ? to_f32(bias[j]) : 0.0f));
  }
}

template <typename X>
__global__ void q8_dequantize_kernel(X* w, const int8_t* q, const uint16_t* d, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    w[i] = from_f32<X>(static_cast<float>(q[i]) * f16_bits_to_f32(d[i / 32]));  // ldq is a multiple of 32
}

}  // namespace

template <typename X>
void q8_matvec(X* out, const X* inp, const int8_t* q, const uint16_t* d, const X* bias, int R, int C, int ldq, int OC,
               cudaStream_t stream) {
  if (R < 1 || R > kQ8MatvecRows) throw std::logic_error("q8_matvec: " + std::to_string(R) + " rows");
  const unsigned grid = static_cast<unsigned>(ceil_div(OC, kQ8Warps));
  if (C % 8 == 0 && reinterpret_cast<uintptr_t>(inp) % (8 * sizeof(X)) == 0)
    q8_matvec_kernel<X, true><<<grid, 32 * kQ8Warps, 0, stream>>>(out, inp, q, d, bias, R, C, ldq, OC);
  else
    q8_matvec_kernel<X, false><<<grid, 32 * kQ8Warps, 0, stream>>>(out, inp, q, d, bias, R, C, ldq, OC);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void q8_dequantize(X* w, const int8_t* q, const uint16_t* d, int OC, int ldq, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(OC) * ldq;
  q8_dequantize_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(w, q, d, n);
  DIXIE_CUDA_LAUNCHED();
}

#define DIXIE_Q8_FOR(X)                                                                                             \
  template void q8_matvec<X>(X*, const X*, const int8_t*, const uint16_t*, const X*, int, int, int, int, cudaStream_t); \
  template void q8_dequantize<X>(X*, const int8_t*, const uint16_t*, int, int, cudaStream_t);

DIXIE_Q8_FOR(float)
DIXIE_Q8_FOR(bf16)

}  // namespace dixie::cuda
