// The matrix products of decoding: the layers' Conv1D products (decode_matmul) and the output head over the
// token embedding (head_matmul), with float32 or 16-bit (F16/BF16) weights converted to float32 in registers, or
// 8-bit (Q8_0) weights multiplied as integers.
//
// An 8-bit model's token embedding is not in panels: the head reads it row by row, as Q8_0 rows (below).
//
// The layer matrices are read in panel layout (a copy made by pack_panels from float32 weights; 16-bit and 8-bit
// weights are stored in it to begin with, see CpuDecoder::for_each_run): w[C, OC] cut into parts of part_rows(C)
// rows (q8_part_rows(C) for 8-bit weights) and panels of kPanelCols columns, each (part, panel) block kPanelCols / 16
// strips of 16 columns one after another, so that a micro-kernel reads its columns as one contiguous run and a part
// of a panel is one contiguous block. A float strip is [part rows][16]; an 8-bit strip is a run of kQ8BlockBytes
// blocks (q8_index). Products read the panels as they are, with no packing per call.
//
// One arithmetic whatever the rows: every output element is
//     ((bias + P_0) + P_1) + ... + P_{n-1},   P_p = the product over part p, from 0,
// where with float weights P_p is an fma chain over the part's rows, and with 8-bit weights an fma chain over the
// part's blocks of 32 rows of (exact int32 dot product of the block's int8 weights with the input row quantized to
// int8 by the same blocks) x (the row block's scale x the weight block's scale), the same bits on AVX-512 VNNI,
// AVX-VNNI, AVX2 and in plain C++; and every head logit is one 8-lane dot product over C then a horizontal sum (with
// 8-bit weights, 8 lanes of fma chains over the row's blocks of (exact int32 sums of four byte products) x (the two
// blocks' scales), the same bits in plain C++). So a row's result does not depend on the other rows of the call, on
// the schedule below or on the thread count: a sequence decodes to the same bits alone, batched with others,
// prefilled or fed a token at a time.
//
// Two schedules compute it. A few rows (decoding, R <= kStreamRows) are bound by reading the weights: every
// (part, panel) product is a task of its own, streamed without barriers into partial sums that are then added
// up. More rows (prefill, large batches) are bound by the arithmetic: each panel keeps one tile of sums and takes the
// parts in order.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "decoder.h"
#include "thread_pool.h"

namespace dixie {

// Rows of w[C, OC] per part of the sum: C cut into as few parts of at most kMaxPartRows rows as can be, of one
// height (a multiple of 8; the last part may be shorter), so that no size pays for many rows of padding. A strip is
// then one run of up to 32 KB (16-bit) or 64 KB (f32): long runs are what the hardware prefetcher follows best, and
// fewer parts are fewer parallel regions in the tiled schedule. Measured on 2 threads against 256-row parts (in-process
// A/B, bench/NOTES.md): at 1600 channels f16 decoding 13% faster and 64-row prefills 21%; at 768 the same.
constexpr int kMaxPartRows = 1024;
inline int part_rows(int C) {
  const int parts = (C + kMaxPartRows - 1) / kMaxPartRows;
  return ((C + parts - 1) / parts + 7) / 8 * 8;
}
constexpr int kPanelCols = 64;  // columns of w per panel (a multiple of 32)
// At most this many rows take the streaming schedule. Measured on 2 threads over GPT-2 124M's layers: at one row
// it is 5-15% faster than the tiled one; from 2 to 12 rows the two are within the machine's noise.
constexpr int kStreamRows = 6;

// 8-bit weights: parts of whole blocks of kQ8Block rows, of one height of at most kQ8MaxPartRows rows (a strip run of
// up to 34 KB, as long as a 16-bit one), the height with the fewest rows of padding (none at GPT-2's sizes) and the
// tallest among equals. Against 512-row parts: at 1600 channels decoding 29% faster, 64-row prefills 31%.
constexpr int kQ8MaxPartRows = 2048;
int q8_part_rows(int C);
// One block of an 8-bit strip: kQ8Block rows x 16 columns of int8, four rows of a column side by side ([row / 4]
// [column][row % 4], so that one 32-byte load holds four rows of eight columns, the operand of a 4-way byte dot
// product), then the 16 columns' f16 scales.
constexpr int kQ8BlockBytes = kQ8Block * 16 + 16 * 2;

// An 8-bit model's token embedding [V, C]: each row as llama.cpp lays out a Q8_0 row (the bytes of a GGUF file's
// token_embd), blocks of kQ8Block values (the last shorter when C is not a multiple, zeros past C), each an f16 scale
// then its int8s.
constexpr int kQ8RowBlockBytes = 2 + kQ8Block;
inline size_t q8_row_bytes(int C) { return static_cast<size_t>((C + kQ8Block - 1) / kQ8Block) * kQ8RowBlockBytes; }
// dst[0, n) = the elements [j, j + n) of a Q8_0 row, as float32 (scale x int8, exact).
void dequantize_q8_row(float* dst, const uint8_t* row, int j, int n);
// The elements [j, j + n) of a Q8_0 row of C = x[0, n), quantized by quantize_q8_block: j starts a block, and j + n
// ends one or the row.
void quantize_q8_row(uint8_t* row, int C, int j, int n, const float* x);

// The view shifted by `offset` elements (bytes for Q8_0).
inline WeightsView weights_at(WeightsView w, size_t offset) {
  switch (w.dtype) {
    case DType::F32: w.f32 += offset; break;
    case DType::Q8_0: w.q8 += offset; break;
    default: w.u16 += offset; break;
  }
  return w;
}

// What decode_matmul does with each result y = inp @ w + bias.
enum class Epilogue {
  kStore,     // out = y
  kGelu,      // out = gelu(y)
  kResidual,  // out += y (out is the residual stream)
};

// Elements of w[C, OC] in panel layout, of the weights' storage type (bytes for Q8_0; columns padded to whole panels
// and rows to whole parts with zeros).
size_t panel_elements(int C, int OC, DType dtype);

// Where pack_panels puts w[k][j] of a w[C, OC]: [part][strip][part_rows(C)][16].
inline size_t panel_index(int k, int j, int C, int OC) {
  const size_t strips = static_cast<size_t>((OC + kPanelCols - 1) / kPanelCols) * (kPanelCols / 16);
  const int height = part_rows(C);
  return ((static_cast<size_t>(k / height) * strips + j / 16) * height + k % height) * 16 + j % 16;
}

// Where an 8-bit panel keeps w[k][j] of a w[C, OC], and its block's f16 scale, in bytes:
// [part][strip][block of the part][row / 4][16][row % 4], each block followed by its 16 scales.
inline size_t q8_index(int k, int j, int C, int OC) {
  const size_t strips = static_cast<size_t>((OC + kPanelCols - 1) / kPanelCols) * (kPanelCols / 16);
  const int height = q8_part_rows(C), r = k % kQ8Block;
  const size_t block = (static_cast<size_t>(k / height) * strips + j / 16) * (height / kQ8Block) + (k % height) / kQ8Block;
  return block * kQ8BlockBytes + (r / 4) * 64 + (j % 16) * 4 + r % 4;
}
inline size_t q8_scale_index(int k, int j, int C, int OC) {
  return q8_index(k - k % kQ8Block, j - j % 16, C, OC) + kQ8Block * 16 + (j % 16) * 2;
}

// dst[panel_elements(C, OC, F32)] = w[C, OC], given in GPT-2's Conv1D layout, in panel layout (float32 weights' copy).
void pack_panels(float* dst, const float* w, int C, int OC, ThreadPool& pool);

// w[C, OC] (GPT-2's Conv1D layout, float32) = the matrix held in `panels` (any type): pack_panels' inverse, exact
// (scale x int8 for Q8_0). Training reads a 16-bit or 8-bit base's matrices this way, one at a time.
void unpack_panels(float* w, WeightsView panels, int C, int OC, ThreadPool& pool);

// Floats of scratch that decode_matmul needs for up to max_rows rows of inp[R, C] @ w[C, OC] in `dtype` on `threads`.
size_t decode_matmul_scratch(int max_rows, int C, int OC, DType dtype, int threads);

// out[R, OC] = epilogue(inp[R, C] @ w[C, OC] + bias[OC]) with w in panel layout (bias may be null).
void decode_matmul(float* out, const float* inp, WeightsView panels, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool);

// Floats of scratch that head_matmul needs for up to max_rows rows of C over a token embedding in `dtype` on `threads`.
size_t head_matmul_scratch(int max_rows, int C, DType dtype, int threads);

// out[R, V] = inp[R, C] @ wte[V, C]^T: the logits over the token embedding, whose rows are float32, 16-bit, or Q8_0
// rows (then inp is quantized by blocks of kQ8Block as the layer products quantize it).
void head_matmul(float* out, const float* inp, WeightsView wte, int R, int C, int V, float* scratch, ThreadPool& pool);

// dst[n] = float32 of src[n], in parallel.
void convert_to_f32(float* dst, WeightsView src, size_t n, ThreadPool& pool);

}  // namespace dixie
