// Matrix products for decoding a few rows at a time (one new token per sequence). Decoding at small batch is
// bound by memory bandwidth: every weight is read once per step, so these kernels stream each weight exactly
// once per call for all rows together, converting 16-bit weights (f16/bf16) to float32 in registers. A
// 16-bit model therefore reads half the bytes per token, which is what makes it decode faster.
#pragma once
#include <cstddef>
#include <cstdint>

#include "decoder.h"
#include "thread_pool.h"

namespace dixie {

// Rows up to which the streaming kernels beat converting/packing for the blocked SGEMM.
constexpr int kStreamingMaxRows = 24;

// The view shifted by `offset` elements.
inline WeightsView weights_at(WeightsView w, size_t offset) {
  if (w.dtype == DType::F32) w.f32 += offset;
  else w.u16 += offset;
  return w;
}

// out[R, OC] = inp[R, C] @ w[C, OC] + bias[OC] (bias may be null): the Conv1D layout of GPT-2's layers.
void stream_matmul(float* out, const float* inp, WeightsView w, const float* bias, int R, int C, int OC,
                   ThreadPool& pool);

// out[R, OC] = inp[R, C] @ w[OC, C]^T: the output head over the token embedding wte [V, C].
// panel: scratch of pool.size() * 4 * C floats (16-bit weights are converted there when R is large).
void stream_matmul_nt(float* out, const float* inp, WeightsView w, int R, int C, int OC, float* panel,
                      ThreadPool& pool);

// dst[n] = float32 of src[n], in parallel.
void convert_to_f32(float* dst, WeightsView src, size_t n, ThreadPool& pool);

}  // namespace dixie
