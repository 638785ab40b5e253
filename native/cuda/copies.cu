#include "copies.cuh"

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;

__global__ void cast_to_bf16_kernel(bf16* dst, const float* src, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

template <typename X>
__global__ void rows_to_f32_kernel(float* dst, const X* src, int rows, int cols, int ld) {
  const int64_t total = static_cast<int64_t>(rows) * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    dst[i] = to_f32(src[r * ld + c]);
  }
}

template <typename X>
__global__ void kv_scatter_kernel(X* k_cache, X* v_cache, const X* qkv, const int32_t* row_slot,
                                  const int32_t* row_pos, int R, int C, int n_ctx) {
  const int64_t total = static_cast<int64_t>(R) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(i / C), c = static_cast<int>(i % C);
    const int64_t at = (static_cast<int64_t>(row_slot[r]) * n_ctx + row_pos[r]) * C + c;
    const X* row = qkv + static_cast<int64_t>(r) * 3 * C;
    k_cache[at] = row[C + c];
    v_cache[at] = row[2 * C + c];
  }
}

template <typename X>
__global__ void gather_rows_kernel(X* dst, const X* src, const int32_t* src_rows, const int32_t* dst_rows, int n,
                                   int C) {
  const int64_t total = static_cast<int64_t>(n) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int k = static_cast<int>(i / C), c = static_cast<int>(i % C);
    dst[static_cast<int64_t>(dst_rows[k]) * C + c] = src[static_cast<int64_t>(src_rows[k]) * C + c];
  }
}

}  // namespace

void cast_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_to_bf16_kernel<<<grid_for(static_cast<int64_t>(n), kBlock), kBlock, 0, stream>>>(dst, src, n);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void rows_to_f32(float* dst, const X* src, int rows, int cols, int ld, cudaStream_t stream) {
  rows_to_f32_kernel<<<grid_for(static_cast<int64_t>(rows) * cols, kBlock), kBlock, 0, stream>>>(dst, src, rows, cols, ld);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void kv_scatter(X* k_cache, X* v_cache, const X* qkv, const int32_t* row_slot, const int32_t* row_pos, int R, int C,
                int n_ctx, cudaStream_t stream) {
  kv_scatter_kernel<<<grid_for(static_cast<int64_t>(R) * C, kBlock), kBlock, 0, stream>>>(k_cache, v_cache, qkv, row_slot,
                                                                                          row_pos, R, C, n_ctx);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void gather_rows(X* dst, const X* src, const int32_t* src_rows, const int32_t* dst_rows, int n, int C,
                 cudaStream_t stream) {
  if (n == 0) return;
  gather_rows_kernel<<<grid_for(static_cast<int64_t>(n) * C, kBlock), kBlock, 0, stream>>>(dst, src, src_rows, dst_rows, n, C);
  DIXIE_CUDA_LAUNCHED();
}

#define DIXIE_COPIES_FOR(X)                                                                                         \
  template void rows_to_f32<X>(float*, const X*, int, int, int, cudaStream_t);                                         \
  template void kv_scatter<X>(X*, X*, const X*, const int32_t*, const int32_t*, int, int, int, cudaStream_t);           \
  template void gather_rows<X>(X*, const X*, const int32_t*, const int32_t*, int, int, cudaStream_t);

DIXIE_COPIES_FOR(float)
DIXIE_COPIES_FOR(bf16)

}  // namespace dixie::cuda
