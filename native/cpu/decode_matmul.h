// The matrix products of decoding: the layers' Conv1D products (decode_matmul) and the output head over the
// token embedding (head_matmul), with float32 or 16-bit (F16/BF16) weights converted to float32 in registers.
//
// The layer matrices are read in panel layout (pack_panels, once per set of weights): w[C, OC] cut into parts of
// kPartRows rows and panels of kPanelCols columns, each (part, panel) block kPanelCols / 16 strips [kPartRows,
// 16] one after another, so that a micro-kernel reads its columns as one contiguous run and a part of a panel is
// one contiguous block. Products read the panels as they are, with no packing per call.
//
// One arithmetic whatever the rows: every output element is
//     ((bias + P_0) + P_1) + ... + P_{n-1},   P_p = fma chain over k in part p, from 0,
// and every head logit is one 8-lane dot product over C then a horizontal sum. So a row's result does not
// depend on the other rows of the call, on the schedule below or on the thread count: a sequence decodes to
// the same bits alone, batched with others, prefilled or fed a token at a time.
//
// Two schedules compute it. A few rows (decoding, R <= kStreamRows) are bound by reading the weights: every
// (part, panel) product is a task of its own, streamed without barriers into partial sums that are then added
// up. More rows (prefill, large batches) are bound by the FMAs: each panel keeps one tile of sums and takes the
// parts in order.
#pragma once
#include <cstddef>
#include <cstdint>

#include "decoder.h"
#include "thread_pool.h"

namespace dixie {

// Rows of w per part of the sum. A strip is then one run of 8 KB (16-bit) or 16 KB (f32), which the hardware
// prefetcher follows better than half that (128 rows decoded 3-5% slower); it still fits L1 for the tiled schedule.
constexpr int kPartRows = 256;
constexpr int kPanelCols = 64;  // columns of w per panel (a multiple of 32)
// At most this many rows take the streaming schedule. Measured on 2 threads over GPT-2 124M's layers: at one row
// it is 5-15% faster than the tiled one; from 2 to 12 rows the two are within the machine's noise.
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

// Elements of w[C, OC] in panel layout (columns padded to whole panels with zeros).
size_t panel_elements(int C, int OC);

// dst[panel_elements(C, OC)] (of w's element type) = w[C, OC], given in GPT-2's Conv1D layout, in panel layout.
void pack_panels(void* dst, WeightsView w, int C, int OC, ThreadPool& pool);

// Floats of scratch that decode_matmul needs for up to max_rows rows of inp[R, C] @ w[C, OC].
size_t decode_matmul_scratch(int max_rows, int C, int OC);

// out[R, OC] = epilogue(inp[R, C] @ w[C, OC] + bias[OC]) with w in panel layout (bias may be null).
void decode_matmul(float* out, const float* inp, WeightsView panels, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool);

// Floats of scratch that head_matmul needs for rows of C on `threads`.
size_t head_matmul_scratch(int C, int threads);

// out[R, V] = inp[R, C] @ wte[V, C]^T: the logits over the token embedding.
void head_matmul(float* out, const float* inp, WeightsView wte, int R, int C, int V, float* scratch, ThreadPool& pool);

// dst[n] = float32 of src[n], in parallel.
void convert_to_f32(float* dst, WeightsView src, size_t n, ThreadPool& pool);

}  // namespace dixie
