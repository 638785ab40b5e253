// The matrix products of decoding: the layers' Conv1D products (decode_matmul) and the output head over the
// token embedding (head_matmul), with float32 or 16-bit (F16/BF16) weights converted to float32 in registers.
//
// One arithmetic whatever the rows: every output element is
//     ((bias + P_0) + P_1) + ... + P_{n-1},   P_p = fma chain over k in part p (kPartRows rows of w), from 0,
// and every head logit is one 8-lane dot product over C then a horizontal sum. So a row's result does not
// depend on the other rows of the call, on the schedule below or on the thread count: a sequence decodes to
// the same bits alone, batched with others, prefilled or fed a token at a time.
//
// Two schedules compute it. A few rows (decoding, R <= kStreamRows) are bound by reading the weights: each
// task streams a contiguous part of w (kPartRows whole rows) once for all R rows into its partial sums, which
// are then added up. More rows (prefill, large batches) are bound by the FMAs: each task packs a panel of
// kPanelCols columns of w per part (converted to float32) and runs register-blocked micro-kernels over it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "decoder.h"
#include "thread_pool.h"

namespace dixie {

constexpr int kPartRows = 128;  // rows of w per part of the sum (and per packed panel)
constexpr int kPanelCols = 64;  // columns of w per task of the packed schedule (a multiple of 32)
// At most this many rows take the streaming schedule. Measured on 2 threads over GPT-2 124M's layers: at 6 rows
// streaming takes 38 ms (f32) / 22 ms (f16) against 34 / 28 packed; at 8 rows 46 / 34 against 37 / 30.
constexpr int kStreamRows = 6;

// The view shifted by `offset` elements.
inline WeightsView weights_at(WeightsView w, size_t offset) {
  if (w.dtype == DType::F32) w.f32 += offset;
  else w.u16 += offset;
  return w;
}

// What decode_matmul does with each result y = inp @ w + bias.
enum class Epilogue {
  kStore,     // out = y
  kGelu,      // out = gelu(y)
  kResidual,  // out += y (out is the residual stream)
};

// Floats of scratch that decode_matmul needs for up to max_rows rows of inp[R, C] @ w[C, OC] on `threads`.
size_t decode_matmul_scratch(int max_rows, int C, int OC, int threads);

// out[R, OC] = epilogue(inp[R, C] @ w[C, OC] + bias[OC]) with w in GPT-2's Conv1D layout (bias may be null).
void decode_matmul(float* out, const float* inp, WeightsView w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool);

// Floats of scratch that head_matmul needs for rows of C on `threads`.
size_t head_matmul_scratch(int C, int threads);

// out[R, V] = inp[R, C] @ wte[V, C]^T: the logits over the token embedding.
void head_matmul(float* out, const float* inp, WeightsView wte, int R, int C, int V, float* scratch, ThreadPool& pool);

// dst[n] = float32 of src[n], in parallel.
void convert_to_f32(float* dst, WeightsView src, size_t n, ThreadPool& pool);

}  // namespace dixie
