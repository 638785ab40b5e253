// Copies between device arrays on the GPU: element type conversions (float32 to bf16, activation rows to float32)
// and the row moves of decoding (new keys and values into the KV cache, rows gathered by index). X is the
// activation type: float (the float32 reference) or bf16 (mixed precision). Shapes: C channels, R decoding rows.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common.cuh"

namespace dixie::cuda {

// dst[n] = bf16(src[n])
void cast_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t stream);
// dst[rows, cols] = float(src[rows, cols]) with src's row stride ld
template <typename X>
void rows_to_f32(float* dst, const X* src, int rows, int cols, int ld, cudaStream_t stream);

// Decoding: the keys and values of R new rows (in qkv [R, 3C]) into one layer's cache [slots, n_ctx, C] at
// (row_slot[r], row_pos[r]).
template <typename X>
void kv_scatter(X* k_cache, X* v_cache, const X* qkv, const int32_t* row_slot, const int32_t* row_pos, int R, int C,
                int n_ctx, cudaStream_t stream);
// dst[dst_rows[i]] = src[src_rows[i]] for i < n; rows of C values
template <typename X>
void gather_rows(X* dst, const X* src, const int32_t* src_rows, const int32_t* dst_rows, int n, int C,
                 cudaStream_t stream);

}  // namespace dixie::cuda
