#include "cuda_decoder.cuh"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "attention.cuh"
#include "core/checks.h"
#include "layers.cuh"

namespace dixie::cuda {

namespace {
// Rows per pass through the layers: enough for the products to run at full speed on a long prompt.
constexpr int kChunkRows = 1024;
}  // namespace

CudaDecoder::CudaDecoder(const ModelSpec& spec, DeviceWeights weights, Gemm& gemm, cudaStream_t stream, bool bf16,
                         int vocab_padded)
    : spec_(spec), w_(weights), gemm_(gemm), stream_(stream), bf16_(bf16), vocab_padded_(vocab_padded) {}

void CudaDecoder::reserve(int n_slots) {
  if (n_slots <= 0) throw std::invalid_argument("kv_reserve: the number of slots must be >= 1, got " + std::to_string(n_slots));
  const GPT2Config& c = spec_.config();
  const size_t C = c.n_embd, x = bf16_ ? sizeof(bf16) : sizeof(float);
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffers may still be in use
  n_slots_ = 0;  // until every buffer below exists
  cache_.allocate(2 * static_cast<size_t>(c.n_layer) * n_slots * c.n_ctx * C * x, "KV cache");
  max_rows_ = std::max(kChunkRows, n_slots);
  scratch_.allocate((15 * static_cast<size_t>(max_rows_) + n_slots) * C * x, "decoding scratch");
  if (w_.q8) {  // a chunk of more rows than q8_matvec takes multiplies by the layer's matrix expanded here
    size_t largest = 0;
    for (ParamKind kind : kLayerMatrices) largest = std::max(largest, w_.q8_numel(kind));
    dequantized_.allocate(largest * x, "expanded 8-bit matrix");
  }
  logits_.allocate(static_cast<size_t>(n_slots) * vocab_padded_, "decoding logits");
  const size_t meta = 3 * static_cast<size_t>(n_slots) * c.n_ctx + 2 * static_cast<size_t>(n_slots);
  rows_.allocate(meta, "decoding rows");
  rows_host_.allocate(meta);
  lengths_.assign(n_slots, 0);
  slot_used_.assign(n_slots, 0);
  n_slots_ = n_slots;
}

void CudaDecoder::forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* logits_out) {
  const GPT2Config& c = spec_.config();
  const int64_t total = check_kv_forward(c, n, slots, n_new, tokens, n_slots_, lengths_.data(), slot_used_.data());

  // Every row of the call: its token, slot and position; and, per entry, the row of its last token.
  int32_t* h = rows_host_.data();
  int32_t *row_token = h, *row_slot = h + total, *row_pos = h + 2 * total;
  int32_t *gather_src = h + 3 * total, *gather_dst = gather_src + n;
  std::copy(tokens, tokens + total, row_token);
  chunk_gathers_.assign(1, 0);
  int64_t r = 0;
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < n_new[i]; ++k, ++r) {
      row_slot[r] = slots[i];
      row_pos[r] = lengths_[slots[i]] + k;
    }
    gather_src[i] = static_cast<int32_t>((r - 1) % max_rows_);  // the last token's row within its chunk
    gather_dst[i] = i;
    const int chunk = static_cast<int>((r - 1) / max_rows_);
    while (static_cast<int>(chunk_gathers_.size()) <= chunk + 1) chunk_gathers_.push_back(chunk_gathers_.back());
    chunk_gathers_[chunk + 1] = i + 1;
  }
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(rows_.data(), h, (3 * total + 2 * n) * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  if (bf16_) run<bf16>(n, total, logits_out);
  else run<float>(n, total, logits_out);
  for (int i = 0; i < n; ++i) lengths_[slots[i]] += n_new[i];
}

template <typename X>
void CudaDecoder::run(int n, int64_t total, float* logits_out) {
  const GPT2Config& c = spec_.config();
  const int C = c.n_embd, L = c.n_layer, NH = c.n_head, V = c.vocab_size;
  const int64_t R_max = max_rows_;
  X* x = reinterpret_cast<X*>(scratch_.data());
  X* ln = x + R_max * C;
  X* qkv = ln + R_max * C;
  X* atty = qkv + R_max * 3 * C;
  X* proj = atty + R_max * C;
  X* fch = proj + R_max * C;
  X* fcg = fch + R_max * 4 * C;
  X* last_ln = fcg + R_max * 4 * C;
  X* keys = reinterpret_cast<X*>(cache_.data());
  X* values = keys + static_cast<int64_t>(L) * n_slots_ * c.n_ctx * C;
  const int32_t* d = rows_.data();
  const int32_t *row_token = d, *row_slot = d + total, *row_pos = d + 2 * total;
  const int32_t *gather_src = d + 3 * total, *gather_dst = gather_src + n;

  for (int64_t r0 = 0, chunk = 0; r0 < total; r0 += R_max, ++chunk) {
    const int R = static_cast<int>(std::min<int64_t>(R_max, total - r0));
    auto matmul = [&](X* out, const X* inp, ParamKind wk, ParamKind bk, int l, int Cin, int OC) {
      const X* bias = w_.weight<X>(bk, l);
      if (!w_.q8) {
        gemm_.matmul<X, X>(false, false, R, OC, Cin, inp, Cin, w_.weight<X>(wk, l), OC, out, OC, bias, false);
        return;
      }
      const int ldq = DeviceWeights::q8_ld(Cin);
      if (R <= kQ8MatvecRows) {
        q8_matvec(out, inp, w_.q8_matrix(wk, l), w_.q8_matrix_scales(wk, l), bias, R, Cin, ldq, OC, stream_);
        return;
      }
      X* w = reinterpret_cast<X*>(dequantized_.data());
      q8_dequantize(w, w_.q8_matrix(wk, l), w_.q8_matrix_scales(wk, l), OC, ldq, stream_);
      gemm_.matmul<X, X>(false, true, R, OC, Cin, inp, Cin, w, ldq, out, OC, bias, false);
    };
    encoder_forward(x, row_token + r0, row_pos + r0, w_.param(WTE, -1), w_.param(WPE, -1), R, 1, C, stream_);
    layernorm_forward(ln, nullptr, nullptr, x, w_.param(LN1_W, 0), w_.param(LN1_B, 0), R, C, stream_);
    for (int l = 0; l < L; ++l) {
      const int64_t layer = static_cast<int64_t>(l) * n_slots_ * c.n_ctx * C;
      matmul(qkv, ln, QKV_W, QKV_B, l, C, 3 * C);
      kv_scatter(keys + layer, values + layer, qkv, row_slot + r0, row_pos + r0, R, C, c.n_ctx, stream_);
      attention_decode(atty, qkv, keys + layer, values + layer, row_slot + r0, row_pos + r0, R, C, NH, c.n_ctx, stream_);
      matmul(proj, atty, ATTPROJ_W, ATTPROJ_B, l, C, C);
      residual_layernorm_forward(x, ln, nullptr, nullptr, x, proj, w_.param(LN2_W, l), w_.param(LN2_B, l), R, C, stream_);
      matmul(fch, ln, FC_W, FC_B, l, C, 4 * C);
      gelu_forward(fcg, fch, static_cast<int64_t>(R) * 4 * C, stream_);
      matmul(proj, fcg, FCPROJ_W, FCPROJ_B, l, 4 * C, C);
      // The residual, fused with the next LayerNorm: ln_1 of the next block, or ln_f after the last.
      const bool last = l + 1 == L;
      residual_layernorm_forward(x, ln, nullptr, nullptr, x, proj, w_.param(last ? LNF_W : LN1_W, last ? -1 : l + 1),
                                 w_.param(last ? LNF_B : LN1_B, last ? -1 : l + 1), R, C, stream_);
    }
    const int g0 = chunk_gathers_[chunk], g1 = chunk_gathers_[chunk + 1];
    gather_rows(last_ln, ln, gather_src + g0, gather_dst + g0, g1 - g0, C, stream_);
  }
  // logits[n, Vp] = ln_f(last) @ wte[0:Vp]^T, float32 whatever the precision; the pad columns (see
  // CudaBackend::vocab_padded_) are not copied out
  gemm_.matmul<X, float>(false, true, n, vocab_padded_, C, last_ln, C, w_.weight<X>(WTE, -1), C, logits_.data(),
                         vocab_padded_, nullptr, false);
  DIXIE_CUDA_CHECK(cudaMemcpy2DAsync(logits_out, V * sizeof(float), logits_.data(), vocab_padded_ * sizeof(float),
                                     V * sizeof(float), n, cudaMemcpyDeviceToHost, stream_));
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaDecoder::truncate(int slot, int length) {
  check_kv_slot("kv_truncate", slot, n_slots_);
  check_kv_truncate(slot, length, lengths_[slot]);
  lengths_[slot] = length;
}

int CudaDecoder::length(int slot) const {
  check_kv_slot("kv_length", slot, n_slots_);
  return lengths_[slot];
}

size_t CudaDecoder::memory_bytes() const {
  return cache_.bytes() + scratch_.bytes() + logits_.bytes() + rows_.bytes() + dequantized_.bytes();
}

}  // namespace dixie::cuda
