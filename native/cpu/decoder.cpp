// KV-cached decoding. Each call runs the new tokens of all its slots as one set of rows through the layers: a
// prefill is many rows, a decode step one row per slot. Every row is computed by the same arithmetic whatever
// the other rows (see decode_matmul.h; attention is one task per row and head), so a sequence decodes to the
// same bits alone or batched, prefilled or fed a token at a time, on any number of threads. Rows past the
// scratch capacity are run in chunks, in order, so a slot's earlier tokens are in its cache before its later
// tokens attend to them.
#include "decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "aligned_array.h"
#include "core/checks.h"
#include "core/dtype.h"
#include "decode_matmul.h"
#include "kernels.h"
#include "served_adapters.h"
#include "vec_math.h"

namespace dixie {

namespace {

// Rows per pass through the layers: enough for the tiled matmuls to run at full speed, few enough for the scratch.
constexpr int kChunkRows = 256;
// Rows of logits at least: a prompt being scored (kv_forward's logits of every token) is fed this many tokens a call,
// which reads the weights once for all of them. Their logits go to the caller's buffer; here they take their hidden
// states and the head's scratch.
constexpr int kLogitRows = 64;

// The parameters that are neither layer matrices nor embeddings, which a 16-bit or 8-bit model's decoder keeps
// in float32.
constexpr ParamKind kVectorKinds[] = {LN1_W, LN1_B, QKV_B, ATTPROJ_B, LN2_W, LN2_B, FC_B, FCPROJ_B, LNF_W, LNF_B};

// out[0, hs) = sum over t < n of p[t] * v[t, 0:hs], v of the type loader W reads: per element an fma chain over t,
// held in registers 64 lanes at a time.
template <class W>
void weighted_sum(float* out, const float* p, const typename W::T* v, int n, int hs) {
  int i = 0;
#ifdef DIXIE_AVX2
  for (; i + 64 <= hs; i += 64) {
    __m256 acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
    for (int t = 0; t < n; ++t) {
      const __m256 pt = _mm256_set1_ps(p[t]);
      const typename W::T* vt = v + static_cast<size_t>(t) * hs + i;
      for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(pt, W::eight(vt + 8 * j), acc[j]);
    }
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(out + i + 8 * j, acc[j]);
  }
  for (; i + 8 <= hs; i += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int t = 0; t < n; ++t) acc = _mm256_fmadd_ps(_mm256_set1_ps(p[t]), W::eight(v + static_cast<size_t>(t) * hs + i), acc);
    _mm256_storeu_ps(out + i, acc);
  }
#endif
  for (; i < hs; ++i) {
    float acc = 0.0f;
    for (int t = 0; t < n; ++t) acc = std::fma(p[t], W::one(v + static_cast<size_t>(t) * hs + i), acc);
    out[i] = acc;
  }
}

}  // namespace

struct CpuDecoder::State {
  State(const ModelSpec& spec_, WeightsView weights_, ThreadPool& pool_)
      : spec(spec_), weights(weights_), pool(pool_), adapters(spec_) {}

  const ModelSpec& spec;
  WeightsView weights;
  ThreadPool& pool;

  // The layer matrices in panel layout (decode_matmul.h), in their element type: per kind, layer after layer.
  AlignedArray<float> panels_f32;
  AlignedArray<uint16_t> panels_u16;
  AlignedArray<uint8_t> panels_q8;
  WeightsView panels;  // whichever of the three is used
  // An 8-bit model's token embedding as Q8_0 rows (decode_matmul.h), which the head and the embedding lookup read.
  AlignedArray<uint8_t> embedding_q8;
  WeightsView embedding;  // the token embedding: those rows, or the flat buffer's
  size_t panel_offset[NUM_PARAM_KINDS] = {};
  bool stale = true;  // the weights changed since the panels and vectors were made
  ServedAdapters adapters;  // LoRA adapters bound to slots, applied unmerged

  int n_slots = 0;
  int max_rows = 0;
  int logit_rows = 0;  // DecoderPlan's
  std::vector<int> lengths;
  // [slot][n_ctx]: the token ids each slot holds, lengths[slot] of them: kv_step's repetition-penalty histories.
  AlignedArray<int32_t> held;
  // [L][slot][NH][n_ctx][hs]: a head's keys (values) one contiguous run, which attention reads as one stream; in
  // float32 or f16 (DecoderPlan::cache_type), one of the two pairs allocated.
  DType cache_type = DType::F32;
  AlignedArray<float> k_f32, v_f32;
  AlignedArray<uint16_t> k_f16, v_f16;
  // Float32 copies of the vectors (LayerNorm parameters, biases) when the weights are 16-bit.
  std::vector<float> vectors_f32[NUM_PARAM_KINDS];

  // Scratch for max_rows rows.
  AlignedArray<float> x, ln, qkv, atty, fcg;  // [R, C], [R, C], [R, 3C], [R, C], [R, 4C]
  AlignedArray<float> adapter_u;              // [R, rank] of the model's own adapter
  AlignedArray<float> scores;      // [threads, n_ctx]
  AlignedArray<float> matmul_scratch;  // decode_matmul's and head_matmul's
  AlignedArray<float> last, last_ln;  // [logit_rows, C]: the final hidden states whose logits are asked for
  AlignedArray<float> logits;      // [n_slots, V]: kv_step's, when the caller does not ask for them
  std::vector<const int32_t*> history;  // [n_slots]: kv_step's sampled rows' histories (into held) and their lengths
  std::vector<int32_t> history_len;
  std::vector<int> row_slot, row_pos;
  std::vector<int> row_output;  // the row of `last` that takes the row's final state (feed), or -1
  std::vector<uint8_t> slot_used;  // [n_slots]: duplicate check of one call

  const GPT2Config& cfg() const { return spec.config(); }

  // A per-layer vector (or a model-wide one with layer 0) as float32.
  const float* vec(ParamKind kind, int layer) const {
    const size_t per = spec.group_numel(kind) / (kind == LNF_W || kind == LNF_B ? 1 : cfg().n_layer);
    if (weights.dtype == DType::F32) return weights.f32 + spec.group_offset(kind) + layer * per;
    return vectors_f32[kind].data() + layer * per;
  }
  // Where a layer matrix starts in the panels, in elements (bytes for Q8_0).
  size_t mat_offset(ParamKind kind, int layer) const {
    const auto [rows, cols] = spec.matrix_shape(kind);
    return panel_offset[kind] + layer * panel_elements(rows, cols, panels.dtype);
  }
  WeightsView mat(ParamKind kind, int layer) const { return weights_at(panels, mat_offset(kind, layer)); }

  // Plans the panels (offsets by kind and one buffer in the matrices' element type) and an 8-bit model's embedding.
  void plan_panels(DType matrices) {
    size_t total = 0;
    for (ParamKind kind : kLayerMatrices) {
      const auto [rows, cols] = spec.matrix_shape(kind);
      panel_offset[kind] = total;
      total += cfg().n_layer * panel_elements(rows, cols, matrices);
    }
    panels.dtype = matrices;
    switch (matrices) {
      case DType::F32:
        panels_f32 = AlignedArray<float>(total);
        panels.f32 = panels_f32.data();
        break;
      case DType::Q8_0:
        panels_q8 = AlignedArray<uint8_t>(total);
        panels.q8 = panels_q8.data();
        break;
      default:
        panels_u16 = AlignedArray<uint16_t>(total);
        panels.u16 = panels_u16.data();
        break;
    }
    if (matrices == DType::Q8_0) {
      embedding_q8 = AlignedArray<uint8_t>(cfg().vocab_size * q8_row_bytes(cfg().n_embd));
      embedding.dtype = DType::Q8_0;
      embedding.q8 = embedding_q8.data();
    } else {
      embedding = weights_at(weights, spec.group_offset(WTE));
    }
  }
  uint8_t* embedding_row(int token) { return embedding_q8.data() + token * q8_row_bytes(cfg().n_embd); }
  const uint8_t* embedding_row(int token) const { return embedding_q8.data() + token * q8_row_bytes(cfg().n_embd); }

  // The panels hold the only copy of the layer matrices (16-bit and 8-bit weights; see CpuDecoder::for_each_run).
  bool panels_own_matrices() const { return panels.dtype != DType::F32; }

  // Remakes what is derived from the weights: the matrices' panels (a copy of float32 weights) and, for 16-bit and
  // 8-bit weights, float32 vectors.
  void refresh() {
    if (!panels_own_matrices()) {
      for (ParamKind kind : kLayerMatrices) {
        const auto [rows, cols] = spec.matrix_shape(kind);
        const size_t per = spec.group_numel(kind) / cfg().n_layer;
        for (int l = 0; l < cfg().n_layer; ++l)
          pack_panels(panels_f32.data() + mat_offset(kind, l), weights.f32 + spec.group_offset(kind) + l * per, rows, cols, pool);
      }
    } else {
      for (ParamKind kind : kVectorKinds) {
        std::vector<float>& v = vectors_f32[kind];
        v.resize(spec.group_numel(kind));
        convert_to_f32(v.data(), weights_at(weights, spec.group_offset(kind)), v.size(), pool);
      }
    }
    stale = false;
  }
  // y [R, out] += the change of layer matrix kLayerMatrices[i] in `layer` for each row: the model's own adapter's (whose
  // panels hold the base alone, as a 16-bit or 8-bit base's must), then the adapter its slot is bound to.
  bool own_adapter_changes(int i) const { return weights.adapter && spec.lora().targets_matrix(i); }
  void adapt(int i, int layer, float* y, const float* x, int R) {
    const LoraShape& lora = spec.lora();
    if (own_adapter_changes(i)) {
      const auto [in, out] = spec.matrix_shape(kLayerMatrices[i]);
      const float* A = weights.adapter + (spec.lora_offset(i, layer, false) - spec.group_offset(LORA_A));  // [rank, in]
      const float* B = weights.adapter + (spec.lora_offset(i, layer, true) - spec.group_offset(LORA_A));   // [out, rank]
      pool.parallel_for(R, 1, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r)
          add_low_rank(y + r * out, x + r * in, A, B, lora.rank, lora.scaling, in, out, adapter_u.data() + r * lora.rank);
      });
    }
    adapters.apply(i, layer, y, x, R, row_slot.data(), pool);
  }

  // The keys (values) of one head of a slot in a layer: [n_ctx, hs].
  size_t head_offset(int layer, int slot, int head) const {
    const GPT2Config& c = cfg();
    return ((static_cast<size_t>(layer) * n_slots + slot) * c.n_head + head) * c.n_ctx * (c.n_embd / c.n_head);
  }
  // Caches the keys and values k[hs], v[hs] of a head at `at` (its head_offset plus the position's).
  void store_kv(size_t at, const float* k, const float* v, int hs) {
    if (cache_type == DType::F16) {
      store_f16(k_f16.data() + at, k, hs);
      store_f16(v_f16.data() + at, v, hs);
    } else {
      std::memcpy(k_f32.data() + at, k, sizeof(float) * hs);
      std::memcpy(v_f32.data() + at, v, sizeof(float) * hs);
    }
  }

  // out[R, OC] = epilogue(inp[R, C] @ w[C, OC] + bias)
  void matmul(float* out, const float* inp, WeightsView w, const float* bias, int R, int C, int OC, Epilogue epilogue) {
    decode_matmul(out, inp, w, bias, R, C, OC, epilogue, matmul_scratch.data(), pool);
  }

  void embed(const int32_t* tokens, int R) {
    const int C = cfg().n_embd;
    pool.parallel_for(R, 8, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float* out = x.data() + r * C;
        const size_t te = spec.group_offset(WTE) + static_cast<size_t>(tokens[r]) * C;
        const size_t pe = spec.group_offset(WPE) + static_cast<size_t>(row_pos[r]) * C;
        if (embedding.dtype == DType::Q8_0) {
          dequantize_q8_row(out, embedding_row(tokens[r]), 0, C);
          for (int i = 0; i < C; ++i) out[i] += f16_to_f32(weights.u16[pe + i]);
        } else if (weights.dtype == DType::F32) {
          for (int i = 0; i < C; ++i) out[i] = weights.f32[te + i] + weights.f32[pe + i];
        } else if (weights.dtype == DType::F16) {
          for (int i = 0; i < C; ++i) out[i] = f16_to_f32(weights.u16[te + i]) + f16_to_f32(weights.u16[pe + i]);
        } else {
          for (int i = 0; i < C; ++i) out[i] = bf16_to_f32(weights.u16[te + i]) + bf16_to_f32(weights.u16[pe + i]);
        }
      }
    });
  }

  // atty[r] = causal attention of row r's query over its slot's cached keys/values 0..row_pos[r].
  void attention(int layer, int R) {
    if (cache_type == DType::F16) attention_over<LoadF16>(layer, R, k_f16.data(), v_f16.data());
    else attention_over<LoadF32>(layer, R, k_f32.data(), v_f32.data());
  }
  template <class W>
  void attention_over(int layer, int R, const typename W::T* k_cache, const typename W::T* v_cache) {
    const GPT2Config& c = cfg();
    const int C = c.n_embd, NH = c.n_head, hs = C / NH;
    const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(hs));
    pool.run(static_cast<int64_t>(R) * NH, [&](int64_t task, int thread) {
      const int r = static_cast<int>(task / NH), h = static_cast<int>(task % NH);
      const int slot = row_slot[r], n_keys = row_pos[r] + 1;
      const float* q = qkv.data() + static_cast<size_t>(r) * 3 * C + h * hs;
      float* s = scores.data() + static_cast<size_t>(thread) * c.n_ctx;
      const typename W::T* k = k_cache + head_offset(layer, slot, h);
      for (int t = 0; t < n_keys; ++t) s[t] = dot<W>(q, k + static_cast<size_t>(t) * hs, hs) * inv_sqrt;
      softmax(s, s, n_keys);
      weighted_sum<W>(atty.data() + static_cast<size_t>(r) * C + h * hs, s, v_cache + head_offset(layer, slot, h), n_keys, hs);
    });
  }

  // Runs R rows (tokens at row_slot/row_pos) through every block. Only the rows with an output (row_output >= 0)
  // need one, and the last block's keys and values are all the others leave behind, so that block goes on
  // with those rows alone, moved to the front. Returns their number; the residual stream is in x.
  int layers(int R) {
    const GPT2Config& c = cfg();
    const int C = c.n_embd, hs = C / c.n_head;
    for (int l = 0; l < c.n_layer; ++l) {
      layernorm_forward(ln.data(), nullptr, nullptr, x.data(), vec(LN1_W, l), vec(LN1_B, l), R, C, pool);
      matmul(qkv.data(), ln.data(), mat(QKV_W, l), vec(QKV_B, l), R, C, 3 * C, Epilogue::kStore);
      adapt(0, l, qkv.data(), ln.data(), R);
      for (int r = 0; r < R; ++r) {
        const float* row = qkv.data() + static_cast<size_t>(r) * 3 * C;
        for (int h = 0; h < c.n_head; ++h)
          store_kv(head_offset(l, row_slot[r], h) + static_cast<size_t>(row_pos[r]) * hs, row + C + h * hs, row + 2 * C + h * hs, hs);
      }
      if (l == c.n_layer - 1) R = keep_output_rows(R);
      if (R == 0) break;
      attention(l, R);
      matmul(x.data(), atty.data(), mat(ATTPROJ_W, l), vec(ATTPROJ_B, l), R, C, C, Epilogue::kResidual);
      adapt(1, l, x.data(), atty.data(), R);
      layernorm_forward(ln.data(), nullptr, nullptr, x.data(), vec(LN2_W, l), vec(LN2_B, l), R, C, pool);
      if (adapters.any_bound() || own_adapter_changes(2)) {  // an adapter of c_fc changes what goes into the GELU: not fused then
        matmul(fcg.data(), ln.data(), mat(FC_W, l), vec(FC_B, l), R, C, 4 * C, Epilogue::kStore);
        adapt(2, l, fcg.data(), ln.data(), R);
        gelu_forward(fcg.data(), fcg.data(), static_cast<int64_t>(R) * 4 * C, pool);
      } else {
        matmul(fcg.data(), ln.data(), mat(FC_W, l), vec(FC_B, l), R, C, 4 * C, Epilogue::kGelu);
      }
      matmul(x.data(), fcg.data(), mat(FCPROJ_W, l), vec(FCPROJ_B, l), R, 4 * C, C, Epilogue::kResidual);
      adapt(3, l, x.data(), fcg.data(), R);
    }
    return R;
  }

  // Moves the rows with row_output >= 0 (their residual stream, queries and bookkeeping) to the front, in order.
  int keep_output_rows(int R) {
    const int C = cfg().n_embd;
    int kept = 0;
    for (int r = 0; r < R; ++r) {
      if (row_output[r] < 0) continue;
      if (kept != r) {
        std::memcpy(x.data() + static_cast<size_t>(kept) * C, x.data() + static_cast<size_t>(r) * C, sizeof(float) * C);
        std::memcpy(qkv.data() + static_cast<size_t>(kept) * 3 * C, qkv.data() + static_cast<size_t>(r) * 3 * C, sizeof(float) * C);
        row_slot[kept] = row_slot[r];
        row_pos[kept] = row_pos[r];
        row_output[kept] = row_output[r];
      }
      ++kept;
    }
    return kept;
  }

  // Appends the entries' new tokens to their slots (checked already) and runs them through the layers: last[i] is
  // the final hidden state of entry i's last new token, or with every_token of the i-th new token. With `states`
  // (and every_token), the i-th new token's goes to states[i] instead, after ln_f, chunk by chunk: any number of
  // them. Walks the concatenated tokens in chunks of at most max_rows rows.
  void feed(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int64_t total, bool every_token,
            float* states) {
    const int C = cfg().n_embd;
    if (stale) refresh();
    int entry = 0, done_in_entry = 0;  // next token: entry `entry`, its `done_in_entry`-th new token
    int64_t consumed = 0;
    while (consumed < total) {
      int R = 0;
      while (R < max_rows && entry < n) {
        const int slot = slots[entry];
        const int take = std::min(max_rows - R, n_new[entry] - done_in_entry);
        int32_t* slot_tokens = held.data() + static_cast<size_t>(slot) * cfg().n_ctx;
        for (int k = 0; k < take; ++k) {
          row_slot[R + k] = slot;
          row_pos[R + k] = lengths[slot] + k;
          row_output[R + k] = every_token ? static_cast<int>(consumed + R + k) : -1;
          slot_tokens[lengths[slot] + k] = tokens[consumed + R + k];
        }
        // The positions are set, so the slot's length can count these tokens now; within the chunk, attention
        // reads row_pos, not lengths.
        lengths[slot] += take;
        R += take;
        done_in_entry += take;
        if (done_in_entry == n_new[entry]) {
          if (!every_token) row_output[R - 1] = entry;
          ++entry;
          done_in_entry = 0;
        }
      }
      embed(tokens + consumed, R);
      const int ending = layers(R);
      // Every row of the chunk is kept, in order: new tokens consumed .. consumed + R - 1.
      if (states) layernorm_forward(states + consumed * C, nullptr, nullptr, x.data(), vec(LNF_W, 0), vec(LNF_B, 0), ending, C, pool);
      else for (int r = 0; r < ending; ++r)
        std::memcpy(last.data() + static_cast<size_t>(row_output[r]) * C, x.data() + static_cast<size_t>(r) * C, sizeof(float) * C);
      consumed += R;
    }
  }

  // out[rows, V] = the logits of the entries rows[0, n_rows) (ascending; null: entries 0, 1, ...): ln_f, then the
  // product with the token embedding. The entries' states are first moved to the front of last.
  void head(int n_rows, const int32_t* rows, float* out) {
    const GPT2Config& c = cfg();
    const int C = c.n_embd;
    for (int i = 0; rows && i < n_rows; ++i)
      if (rows[i] != i) std::memcpy(last.data() + static_cast<size_t>(i) * C, last.data() + static_cast<size_t>(rows[i]) * C, sizeof(float) * C);
    layernorm_forward(last_ln.data(), nullptr, nullptr, last.data(), vec(LNF_W, 0), vec(LNF_B, 0), n_rows, C, pool);
    head_matmul(out, last_ln.data(), embedding, n_rows, C, c.vocab_size, matmul_scratch.data(), pool);
  }
};

CpuDecoder::CpuDecoder(const ModelSpec& spec, WeightsView weights, DType matrices, ThreadPool& pool)
    : state_(new State(spec, weights, pool)) {
  state_->plan_panels(matrices);
}

CpuDecoder::~CpuDecoder() = default;

int CpuDecoder::reserve(int n_slots) {
  if (n_slots <= 0) throw std::invalid_argument("kv_reserve: the number of slots must be >= 1, got " + std::to_string(n_slots));
  State& s = *state_;
  const size_t C = s.cfg().n_embd;
  const DecoderPlan plan = plan_decoder(s.spec, s.panels.dtype, n_slots, s.pool.size());
  const int R = plan.rows;
  s.n_slots = n_slots;
  s.lengths.assign(n_slots, 0);
  s.held = AlignedArray<int32_t>(plan.held, Pages::kSmall);
  s.cache_type = plan.cache_type;
  if (plan.cache_type == DType::F16) {
    s.k_f16 = AlignedArray<uint16_t>(plan.cache, Pages::kSmall);
    s.v_f16 = AlignedArray<uint16_t>(plan.cache, Pages::kSmall);
  } else {
    s.k_f32 = AlignedArray<float>(plan.cache, Pages::kSmall);
    s.v_f32 = AlignedArray<float>(plan.cache, Pages::kSmall);
  }
  s.max_rows = R;
  s.x = AlignedArray<float>(R * C);
  s.ln = AlignedArray<float>(R * C);
  s.qkv = AlignedArray<float>(R * 3 * C);
  s.atty = AlignedArray<float>(R * C);
  s.fcg = AlignedArray<float>(R * 4 * C);
  s.adapter_u = AlignedArray<float>(static_cast<size_t>(R) * s.spec.lora().rank);
  s.scores = AlignedArray<float>(plan.scores);
  s.matmul_scratch = AlignedArray<float>(plan.matmul_scratch);
  s.logit_rows = plan.logit_rows;
  s.last = AlignedArray<float>(plan.logit_rows * C);
  s.last_ln = AlignedArray<float>(plan.logit_rows * C);
  s.logits = AlignedArray<float>(plan.logits);
  s.history.assign(n_slots, nullptr);
  s.history_len.assign(n_slots, 0);
  s.row_slot.assign(R, 0);
  s.row_pos.assign(R, 0);
  s.row_output.assign(R, -1);
  s.slot_used.assign(n_slots, 0);
  s.adapters.reserve(n_slots, R);
  if (s.stale) s.refresh();  // here rather than in the first forward, which would pay for it in its latency
  return plan.logit_rows;
}

void CpuDecoder::forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* out,
                         KvOutput output) {
  State& s = *state_;
  // States go to `out` chunk by chunk, as many as given; logits take the rows of `last`.
  const bool states = output == KvOutput::TokenStates;
  const int64_t total = check_kv_forward(s.cfg(), n, slots, n_new, tokens, s.n_slots, s.lengths.data(), s.slot_used.data(), output,
                                         states ? INT64_MAX : s.logit_rows);
  s.feed(n, slots, n_new, tokens, total, output != KvOutput::LastLogits, states ? out : nullptr);
  if (!states) s.head(output == KvOutput::TokenLogits ? static_cast<int>(total) : n, nullptr, out);
}

void CpuDecoder::step(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int n_sample,
                      const int32_t* sample_rows, const SamplingParams* params, uint64_t* rng_state, int32_t* out_tokens,
                      float* logits_out) {
  State& s = *state_;
  const GPT2Config& c = s.cfg();
  const int64_t total = check_kv_step(c, n, slots, n_new, tokens, s.n_slots, s.lengths.data(), s.slot_used.data(), n_sample,
                                      sample_rows, params);
  s.feed(n, slots, n_new, tokens, total, false, nullptr);
  if (n_sample == 0) return;
  // Rows that feed part of a prompt need no logits: only the sampled rows go through the head.
  float* logits = logits_out ? logits_out : s.logits.data();
  s.head(n_sample, sample_rows, logits);
  for (int i = 0; i < n_sample; ++i) {
    const int slot = slots[sample_rows[i]];
    s.history[i] = s.held.data() + static_cast<size_t>(slot) * c.n_ctx;
    s.history_len[i] = s.lengths[slot];
  }
  draw_tokens(n_sample, c.vocab_size, logits, params, rng_state, s.history.data(), s.history_len.data(), out_tokens, s.pool);
}

void CpuDecoder::truncate(int slot, int length) {
  State& s = *state_;
  check_kv_slot("kv_truncate", slot, s.n_slots);
  check_kv_truncate(slot, length, s.lengths[slot]);
  s.lengths[slot] = length;
}

int CpuDecoder::add_adapter(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors) {
  return state_->adapters.add(rank, scaling, modules, factors, n_factors);
}

void CpuDecoder::remove_adapter(int id) {
  State& s = *state_;
  for (int slot : s.adapters.remove(id)) s.lengths[slot] = 0;
}

void CpuDecoder::set_adapter(int slot, int id) {
  State& s = *state_;
  check_kv_slot("kv_set_adapter", slot, s.n_slots);
  if (s.adapters.bind(slot, id)) s.lengths[slot] = 0;
}

int CpuDecoder::length(int slot) const {
  const State& s = *state_;
  check_kv_slot("kv_length", slot, s.n_slots);
  return s.lengths[slot];
}

void CpuDecoder::weights_changed() { state_->stale = true; }

void CpuDecoder::for_each_run(size_t offset, size_t count, const std::function<void(size_t, size_t, const PanelRun*)>& fn) const {
  const State& s = *state_;
  s.spec.for_each_piece(offset, count, [&](const FlatPiece& piece) {
    if (piece.kind == NUM_PARAM_KINDS) {
      // Runs within one row of the token embedding, when it is in Q8_0 rows here; then the flat buffer's.
      const size_t embedded = s.embedding.dtype == DType::Q8_0 ? s.spec.count_in_group(WTE, piece.first, piece.n) : 0;
      const int C = s.cfg().n_embd;
      for (size_t i = piece.first, end = piece.first + embedded; i < end;) {
        const size_t e = i - s.spec.group_offset(WTE);
        const PanelRun run{WTE, -1, static_cast<int>(e / C), static_cast<int>(e % C)};
        const size_t n = std::min(end - i, static_cast<size_t>(C - run.j));
        fn(i, n, &run);
        i += n;
      }
      if (embedded < piece.n) fn(piece.first + embedded, piece.n - embedded, nullptr);
      return;
    }
    // Runs within one row of a strip: up to the strip's 16th column, the matrix's last column, or the piece's end.
    const int cols = s.spec.matrix_shape(piece.kind).second;
    PanelRun run{piece.kind, piece.layer, static_cast<int>(piece.element / cols), static_cast<int>(piece.element % cols)};
    for (size_t i = piece.first, end = piece.first + piece.n; i < end;) {
      const size_t n = std::min({end - i, static_cast<size_t>(16 - run.j % 16), static_cast<size_t>(cols - run.j)});
      fn(i, n, &run);
      i += n;
      run.j += static_cast<int>(n);
      if (run.j == cols) {
        run.j = 0;
        ++run.k;
      }
    }
  });
}

uint16_t* CpuDecoder::panel16(const PanelRun& run) {
  State& s = *state_;
  const auto [rows, cols] = s.spec.matrix_shape(run.kind);
  return s.panels_u16.data() + s.mat_offset(run.kind, run.layer) + panel_index(run.k, run.j, rows, cols);
}

void CpuDecoder::read_q8(const PanelRun& run, size_t n, float* dst) const {
  const State& s = *state_;
  if (run.kind == WTE) {
    dequantize_q8_row(dst, s.embedding_row(run.k), run.j, static_cast<int>(n));
    return;
  }
  const auto [rows, cols] = s.spec.matrix_shape(run.kind);
  const uint8_t* m = s.panels_q8.data() + s.mat_offset(run.kind, run.layer);
  for (size_t i = 0; i < n; ++i) {
    const int j = run.j + static_cast<int>(i);
    uint16_t scale;
    std::memcpy(&scale, m + q8_scale_index(run.k, j, rows, cols), sizeof(scale));
    dst[i] = f16_to_f32(scale) * static_cast<float>(static_cast<int8_t>(m[q8_index(run.k, j, rows, cols)]));
  }
}

void CpuDecoder::expand_matrix(ParamKind kind, int layer, float* w) const {
  const State& s = *state_;
  const auto [rows, cols] = s.spec.matrix_shape(kind);
  unpack_panels(w, s.mat(kind, layer), rows, cols, s.pool);
}

void CpuDecoder::expand_embedding(int v0, int n, float* dst) const {
  const State& s = *state_;
  const int C = s.cfg().n_embd;
  if (s.embedding.dtype != DType::Q8_0) {
    convert_to_f32(dst, weights_at(s.embedding, static_cast<size_t>(v0) * C), static_cast<size_t>(n) * C, s.pool);
    return;
  }
  s.pool.parallel_for(n, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) dequantize_q8_row(dst + r * C, s.embedding_row(v0 + static_cast<int>(r)), 0, C);
  });
}

void CpuDecoder::write_q8(ParamKind kind, int layer, int k0, int n_rows, const float* w) {
  State& s = *state_;
  const auto [rows, cols] = s.spec.matrix_shape(kind);
  uint8_t* m = s.panels_q8.data() + s.mat_offset(kind, layer);
  int8_t q[kQ8Block];
  for (int g = 0; g < n_rows; g += kQ8Block) {
    const int k = k0 + g, n = std::min(kQ8Block, n_rows - g);
    for (int j = 0; j < cols; ++j) {
      const uint16_t scale = quantize_q8_block(w + static_cast<size_t>(g) * cols + j, cols, n, q);
      std::memcpy(m + q8_scale_index(k, j, rows, cols), &scale, sizeof(scale));
      for (int i = 0; i < n; ++i) m[q8_index(k + i, j, rows, cols)] = static_cast<uint8_t>(q[i]);
    }
  }
}

void CpuDecoder::write_q8_embedding(size_t element, size_t n, const float* w) {
  State& s = *state_;
  const size_t C = s.cfg().n_embd;
  for (size_t e = element, end = element + n; e < end;) {
    const int j = static_cast<int>(e % C), m = static_cast<int>(std::min(end - e, C - j));
    quantize_q8_row(s.embedding_row(static_cast<int>(e / C)), static_cast<int>(C), j, m, w + (e - element));
    e += m;
  }
}

DecoderPlan plan_decoder(const ModelSpec& spec, DType matrices, int n_slots, int threads) {
  const GPT2Config& c = spec.config();
  const int C = c.n_embd;
  DecoderPlan p;
  p.rows = std::max(kChunkRows, n_slots);
  p.logit_rows = std::max(kLogitRows, n_slots);
  const size_t R = p.rows;
  p.cache_type = matrices == DType::F32 ? DType::F32 : DType::F16;
  p.cache = static_cast<size_t>(c.n_layer) * n_slots * c.n_ctx * C;
  p.held = static_cast<size_t>(n_slots) * c.n_ctx;
  p.activations = R * (10 * C + spec.lora().rank);
  p.scores = static_cast<size_t>(threads) * c.n_ctx;
  p.matmul_scratch = std::max({decode_matmul_scratch(p.rows, C, 3 * C, matrices, threads), decode_matmul_scratch(p.rows, C, C, matrices, threads),
                               decode_matmul_scratch(p.rows, C, 4 * C, matrices, threads),
                               decode_matmul_scratch(p.rows, 4 * C, C, matrices, threads), head_matmul_scratch(p.logit_rows, C, matrices, threads)});
  p.last = 2 * static_cast<size_t>(p.logit_rows) * C;
  p.logits = static_cast<size_t>(n_slots) * c.vocab_size;
  if (matrices != DType::F32) {
    for (ParamKind kind : kVectorKinds) p.vectors += spec.group_numel(kind);
  }
  return p;
}

size_t DecoderPlan::cache_bytes() const {
  return 2 * cache * (cache_type == DType::F16 ? sizeof(uint16_t) : sizeof(float)) + held * sizeof(int32_t);
}

size_t DecoderPlan::bytes() const {
  return cache_bytes() + (activations + scores + matmul_scratch + last + logits + vectors) * sizeof(float);
}

size_t params_in_decoder(const ModelSpec& spec, DType matrices) {
  if (matrices == DType::F32) return 0;
  size_t n = matrices == DType::Q8_0 ? spec.group_numel(WTE) : 0;
  for (ParamKind kind : kLayerMatrices) n += spec.group_numel(kind);
  return n;
}

size_t planned_weight_bytes(const ModelSpec& spec, DType matrices) {
  const GPT2Config& c = spec.config();
  size_t elements = 0;
  for (ParamKind kind : kLayerMatrices) {
    const auto [rows, cols] = spec.matrix_shape(kind);
    elements += c.n_layer * panel_elements(rows, cols, matrices);
  }
  if (matrices == DType::Q8_0) return elements + c.vocab_size * q8_row_bytes(c.n_embd);
  return elements * (matrices == DType::F32 ? sizeof(float) : sizeof(uint16_t));
}

size_t CpuDecoder::weight_bytes() const {
  const State& s = *state_;
  return s.panels_f32.bytes() + s.panels_u16.bytes() + s.panels_q8.bytes() + s.embedding_q8.bytes();
}

size_t CpuDecoder::memory_bytes() const {
  const State& s = *state_;
  size_t floats = s.x.size() + s.ln.size() + s.qkv.size() + s.atty.size() + s.fcg.size() + s.adapter_u.size() + s.scores.size() +
                  s.matmul_scratch.size() + s.last.size() + s.last_ln.size() + s.logits.size();
  for (const std::vector<float>& v : s.vectors_f32) floats += v.size();
  return floats * sizeof(float) + s.k_f32.bytes() + s.v_f32.bytes() + s.k_f16.bytes() + s.v_f16.bytes() + s.held.bytes() +
         (s.panels_own_matrices() ? 0 : weight_bytes()) + s.adapters.bytes();
}

}  // namespace dixie
