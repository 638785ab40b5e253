// The matrix products of decoding: the layers' Conv1D products (decode_matmul) and the output head over the
// token embedding (head_matmul), with float32 or 16-bit (F16/BF16) weights converted to float32 in registers.
//
// The layer matrices are read in panel layout (a copy made by pack_panels from float32 weights; 16-bit weights are
// stored in it to begin with, see CpuDecoder::for_each_run16): w[C, OC] cut into parts of part_rows(C) rows and
// panels of kPanelCols columns, each (part, panel) block kPanelCols / 16 strips [part_rows(C), 16] one after
// another, so that a micro-kernel reads its columns as one contiguous run and a part of a panel is one contiguous
// block. Products read the panels as they are, with no packing per call.
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

// Rows of w[C, OC] per part of the sum: C cut into as few parts of at most kMaxPartRows rows as can be, of one
// height (a multiple of 8; the last part may be shorter), so that no size pays for many rows of padding. A
// strip is then one run of up to 8 KB (16-bit) or 16 KB (f32), which the hardware prefetcher follows better than
// half that (128-row parts decoded 3-5% slower); it still fits L1 for the tiled schedule.
constexpr int kMaxPartRows = 256;
inline int part_rows(int C) {
  const int parts = (C + kMaxPartRows - 1) / kMaxPartRows;
  return ((C + parts - 1) / parts + 7) / 8 * 8;
}
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

// Where pack_panels puts w[k][j] of a w[C, OC]: [part][strip][part_rows(C)][16].
inline size_t panel_index(int k, int j, int C, int OC) {
  const size_t strips = static_cast<size_t>((OC + kPanelCols - 1) / kPanelCols) * (kPanelCols / 16);
  const int height = part_rows(C);
  return ((static_cast<size_t>(k / height) * strips + j / 16) * height + k % height) * 16 + j % 16;
}

// dst[panel_elements(C, OC)] = w[C, OC], given in GPT-2's Conv1D layout, in panel layout (float32 weights' copy).
void pack_panels(float* dst, const float* w, int C, int OC, ThreadPool& pool);

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
