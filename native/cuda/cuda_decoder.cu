#include "cuda_decoder.cuh"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "attention.cuh"
#include "core/checks.h"
#include "copies.cuh"
#include "encoder.cuh"
#include "gelu.cuh"
#include "layernorm.cuh"
#include "lora.cuh"
#include "q8.cuh"

namespace dixie::cuda {

namespace {
// Rows per pass through the layers: enough for the products to run at full speed on a long prompt.
constexpr int kChunkRows = 1024;
// Rows of logits at least: a prompt being scored (kv_forward's logits of every token) is fed this many tokens a call,
// enough that the call is not a string of launches. 256 rows of GPT-2's vocabulary take 52 MB.
constexpr int kLogitRows = 256;

// held[row_slot[r], row_pos[r]] = row_token[r] for r < total: the slots' token ids, [slots, n_ctx].
__global__ void hold_tokens_kernel(int32_t* held, const int32_t* row_token, const int32_t* row_slot, const int32_t* row_pos,
                                   int64_t total, int n_ctx) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < total) held[static_cast<int64_t>(row_slot[r]) * n_ctx + row_pos[r]] = row_token[r];
}
}  // namespace

CudaDecoder::CudaDecoder(const ModelSpec& spec, DeviceWeights weights, Gemm& gemm, cudaStream_t stream, bool bf16,
                         int vocab_padded, bool graphs)
    : spec_(spec), w_(weights), gemm_(gemm), stream_(stream), bf16_(bf16), vocab_padded_(vocab_padded), served_(spec, stream),
      graphs_on_(graphs) {}

int CudaDecoder::reserve(int n_slots) {
  if (n_slots <= 0) throw std::invalid_argument("kv_reserve: the number of slots must be >= 1, got " + std::to_string(n_slots));
  const GPT2Config& c = spec_.config();
  const size_t C = c.n_embd, x = bf16_ ? sizeof(bf16) : sizeof(float);
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffers may still be in use
  n_slots_ = 0;  // until every buffer below exists
  graphs_.clear();  // they point at the old buffers
  cache_.allocate(2 * static_cast<size_t>(c.n_layer) * n_slots * c.n_ctx * C * x, "KV cache");
  max_rows_ = std::max(kChunkRows, n_slots);
  logit_rows_ = std::max(kLogitRows, n_slots);
  const size_t lora_u = static_cast<size_t>(max_rows_) * spec_.lora().rank;
  scratch_.allocate(((15 * static_cast<size_t>(max_rows_) + logit_rows_) * C + lora_u) * x, "decoding scratch");
  // A chunk of more rows than q8_matvec takes, or a 16-bit base's matrix in another type, is multiplied by the layer's
  // matrix expanded here.
  if (bf16_ ? w_.expands<bf16>() : w_.expands<float>()) dequantized_.allocate(w_.expanded_numel() * x, "expanded layer matrix");
  logits_.allocate(static_cast<size_t>(logit_rows_) * vocab_padded_, "decoding logits");
  held_.allocate(static_cast<size_t>(n_slots) * c.n_ctx, "decoding slots' tokens");
  history_begin_.assign(n_slots, 0);
  history_len_.assign(n_slots, 0);
  const size_t meta = 3 * static_cast<size_t>(n_slots) * c.n_ctx + 2 * static_cast<size_t>(logit_rows_);
  rows_.allocate(meta, "decoding rows");
  rows_host_.allocate(meta);
  lengths_.assign(n_slots, 0);
  slot_used_.assign(n_slots, 0);
  served_.reserve(n_slots, max_rows_, static_cast<int64_t>(n_slots) * c.n_ctx);
  n_slots_ = n_slots;
  return logit_rows_;
}

void CudaDecoder::forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* out,
                          KvOutput output) {
  const GPT2Config& c = spec_.config();
  // States are written into logits_ chunk by chunk, float32 [total, C]: as many as it holds. Logits take its rows.
  const bool states = output == KvOutput::TokenStates;
  const int64_t total = check_kv_forward(c, n, slots, n_new, tokens, n_slots_, lengths_.data(), slot_used_.data(), output,
                                         states ? static_cast<int64_t>(logits_.size() / c.n_embd) : logit_rows_);
  const int rows = output == KvOutput::LastLogits ? n : static_cast<int>(total);
  stage(n, slots, n_new, tokens, total, states ? 0 : rows, nullptr);
  queue(total, states ? 0 : rows, output);
  // Logits without the pad columns (see CudaBackend::vocab_padded_).
  const size_t width = states ? c.n_embd : c.vocab_size, pitch = states ? c.n_embd : vocab_padded_;
  DIXIE_CUDA_CHECK(cudaMemcpy2DAsync(out, width * sizeof(float), logits_.data(), pitch * sizeof(float), width * sizeof(float), rows,
                                     cudaMemcpyDeviceToHost, stream_));
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaDecoder::step(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int n_sample,
                       const int32_t* sample_rows, const SamplingParams* params, uint64_t* rng_state, int32_t* out_tokens,
                       float* logits_out, CudaSampler& sampler) {
  const GPT2Config& c = spec_.config();
  const int64_t total = check_kv_step(c, n, slots, n_new, tokens, n_slots_, lengths_.data(), slot_used_.data(), n_sample,
                                      sample_rows, params);
  stage(n, slots, n_new, tokens, total, n_sample, sample_rows);
  if (n_sample == 0) {
    queue(total, 0, KvOutput::LastLogits);
    DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return;
  }
  for (int i = 0; i < n_sample; ++i) {
    const int slot = slots[sample_rows[i]];
    history_begin_[i] = static_cast<int64_t>(slot) * c.n_ctx;
    history_len_[i] = lengths_[slot];
  }
  sampler.stage_on_device(n_sample, c.vocab_size, params, rng_state, history_begin_.data(), history_len_.data());
  CudaGraph* graph = logits_out ? nullptr : decode_graph(n, total, n_sample, sample_rows, sampler);
  if (graph) {
    graph->launch(stream_);
    ++graph_launches_;
  } else {
    queue(total, n_sample, KvOutput::LastLogits);
    // Before the draw, which applies the penalty to these logits in place.
    if (logits_out)
      DIXIE_CUDA_CHECK(cudaMemcpy2DAsync(logits_out, c.vocab_size * sizeof(float), logits_.data(), vocab_padded_ * sizeof(float),
                                         c.vocab_size * sizeof(float), n_sample, cudaMemcpyDeviceToHost, stream_));
    sampler.queue_on_device(n_sample, c.vocab_size, logits_.data(), vocab_padded_, held_.data(), true);
  }
  sampler.finish(n_sample, c.vocab_size, rng_state, out_tokens);
}

// A decode step's graph: one new token and one draw for each of the n entries, in order, under the adapters the
// staged call binds. The first step of a shape runs eagerly (lazy set-up in the libraries must not be captured);
// the second captures the graph, which later steps of the shape launch. Null where the step runs eagerly.
CudaGraph* CudaDecoder::decode_graph(int n, int64_t total, int n_sample, const int32_t* sample_rows, CudaSampler& sampler) {
  if (!graphs_on_ || total != n || n_sample != n) return nullptr;
  for (int i = 0; i < n; ++i)
    if (sample_rows[i] != i) return nullptr;
  if (sampler.generation() != graphs_sampler_generation_) {  // its buffers moved: every graph points at the old ones
    for (auto& shape : graphs_) shape.second.reset();  // still warm, captured again at their next step
    graphs_sampler_generation_ = sampler.generation();
  }
  const auto [adapted_rows, max_rank] = served_.one_chunk_launch();
  const auto [at, first] = graphs_.try_emplace({n, adapted_rows, max_rank});
  std::unique_ptr<CudaGraph>& graph = at->second;
  if (first || graph) return graph.get();  // the first step of a shape only warms it
  try {
    graph = std::make_unique<CudaGraph>(stream_, [&] {
      queue(total, n, KvOutput::LastLogits);
      sampler.queue_on_device(n, spec_.config().vocab_size, logits_.data(), vocab_padded_, held_.data(), false);
    });
  } catch (const std::exception& e) {
    // Nothing ran, so the step can still run eagerly; a library that cannot be captured would fail every shape.
    std::fprintf(stderr, "dixie: decoding without CUDA graphs (DIXIE_CUDA_GRAPHS=1): the capture failed: %s\n", e.what());
    graphs_on_ = false;
    graphs_.clear();
    return nullptr;
  }
  return graph.get();
}

// Lists the call's rows (checked already) in pinned memory: every row's token, slot and position, and the n_logits
// rows whose logits are computed: all of them when n_logits = total (kv_forward's TokenLogits; otherwise only when
// every entry is one token, and then the same rows), else the last new token of n_logits entries (logit_entries,
// ascending; null: entries 0, 1, ...); then advances the slots' lengths past the new tokens.
void CudaDecoder::stage(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int64_t total, int n_logits,
                        const int32_t* logit_entries) {
  const bool every_token = n_logits == total;
  int32_t* h = rows_host_.data();
  int32_t *row_token = h, *row_slot = h + total, *row_pos = h + 2 * total;
  int32_t *gather_src = h + 3 * total, *gather_dst = gather_src + n_logits;
  std::copy(tokens, tokens + total, row_token);
  chunk_gathers_.assign(1, 0);
  int64_t r = 0;
  int gathers = 0;
  const auto gather = [&](int64_t row) {
    gather_src[gathers] = static_cast<int32_t>(row % max_rows_);  // its row within its chunk
    gather_dst[gathers] = gathers;
    ++gathers;
    const int chunk = static_cast<int>(row / max_rows_);
    while (static_cast<int>(chunk_gathers_.size()) <= chunk + 1) chunk_gathers_.push_back(chunk_gathers_.back());
    chunk_gathers_[chunk + 1] = gathers;
  };
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < n_new[i]; ++k, ++r) {
      row_slot[r] = slots[i];
      row_pos[r] = lengths_[slots[i]] + k;
      if (every_token) gather(r);
    }
    if (every_token || gathers == n_logits || (logit_entries && logit_entries[gathers] != i)) continue;
    gather(r - 1);
  }
  // Chunks after the last one with a gather gather nothing.
  const int chunks = static_cast<int>(ceil_div(total, max_rows_));
  while (static_cast<int>(chunk_gathers_.size()) <= chunks) chunk_gathers_.push_back(chunk_gathers_.back());
  served_.prepare(row_slot, total);
  for (int i = 0; i < n; ++i) lengths_[slots[i]] += n_new[i];
}

// Queues the staged call on the stream: its rows go to the device, their tokens into their slots, and through the
// layers, which leave the logits of the n_logits staged rows in logits_ [n_logits, vocab_padded], or with
// TokenStates the final hidden states of all the rows, float32, [total, C]. Reads nothing from the host but pinned
// memory and the shape of the call, so that a graph can hold it.
void CudaDecoder::queue(int64_t total, int n_logits, KvOutput output) {
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(rows_.data(), rows_host_.data(), (3 * total + 2 * n_logits) * sizeof(int32_t), cudaMemcpyHostToDevice,
                                   stream_));
  const int32_t* d = rows_.data();
  hold_tokens_kernel<<<static_cast<unsigned>(ceil_div(total, 256)), 256, 0, stream_>>>(held_.data(), d, d + total, d + 2 * total,
                                                                                    total, spec_.config().n_ctx);
  DIXIE_CUDA_LAUNCHED();
  if (bf16_) run<bf16>(total, n_logits, output);
  else run<float>(total, n_logits, output);
}

template <typename X>
void CudaDecoder::run(int64_t total, int n_logits, KvOutput output) {
  const GPT2Config& c = spec_.config();
  const int C = c.n_embd, L = c.n_layer, NH = c.n_head;
  const int64_t R_max = max_rows_;
  X* x = reinterpret_cast<X*>(scratch_.data());
  X* ln = x + R_max * C;
  X* qkv = ln + R_max * C;
  X* atty = qkv + R_max * 3 * C;
  X* proj = atty + R_max * C;
  X* fch = proj + R_max * C;
  X* fcg = fch + R_max * 4 * C;
  X* last_ln = fcg + R_max * 4 * C;
  X* lora_u = last_ln + static_cast<int64_t>(logit_rows_) * C;
  X* keys = reinterpret_cast<X*>(cache_.data());
  X* values = keys + static_cast<int64_t>(L) * n_slots_ * c.n_ctx * C;
  const int32_t* d = rows_.data();
  const int32_t *row_token = d, *row_slot = d + total, *row_pos = d + 2 * total;
  const int32_t *gather_src = d + 3 * total, *gather_dst = gather_src + n_logits;

  for (int64_t r0 = 0, chunk = 0; r0 < total; r0 += R_max, ++chunk) {
    const int R = static_cast<int>(std::min<int64_t>(R_max, total - r0));
    auto matmul = [&](X* out, const X* inp, ParamKind wk, ParamKind bk, int l, int Cin, int OC) {
      const X* bias = w_.weight<X>(bk, l);
      if (w_.q8 && R <= kQ8MatvecRows) {
        q8_matvec(out, inp, w_.q8_matrix(wk, l), w_.q8_matrix_scales(wk, l), bias, R, Cin, DeviceWeights::q8_ld(Cin), OC, stream_);
      } else {
        const auto m = w_.matrix<X>(wk, l, reinterpret_cast<X*>(dequantized_.data()), stream_);
        gemm_.matmul<X, X>(false, m.transposed, R, OC, Cin, inp, Cin, m.w, m.ld, out, OC, bias, false);
      }
      if (adapts(spec_, wk)) lora_forward(gemm_, w_, wk, l, out, inp, lora_u, R);
      served_.apply(layer_matrix_index(wk), l, out, inp, static_cast<int>(chunk));
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
    if (output == KvOutput::TokenStates) rows_to_f32(logits_.data() + r0 * C, ln, R, C, C, stream_);
    const int g0 = chunk_gathers_[chunk], g1 = chunk_gathers_[chunk + 1];
    gather_rows(last_ln, ln, gather_src + g0, gather_dst + g0, g1 - g0, C, stream_);
  }
  if (n_logits == 0) return;
  // logits[n_logits, Vp] = ln_f(last) @ wte[0:Vp]^T, float32 whatever the precision
  gemm_.matmul<X, float>(false, true, n_logits, vocab_padded_, C, last_ln, C, w_.weight<X>(WTE, -1), C, logits_.data(),
                           vocab_padded_, nullptr, false);
}

void CudaDecoder::truncate(int slot, int length) {
  check_kv_slot("kv_truncate", slot, n_slots_);
  check_kv_truncate(slot, length, lengths_[slot]);
  lengths_[slot] = length;
}

int CudaDecoder::add_adapter(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors) {
  return served_.add(rank, scaling, modules, factors, n_factors);
}

void CudaDecoder::remove_adapter(int id) {
  for (int slot : served_.remove(id)) lengths_[slot] = 0;
}

void CudaDecoder::set_adapter(int slot, int id) {
  check_kv_slot("kv_set_adapter", slot, n_slots_);
  if (served_.bind(slot, id)) lengths_[slot] = 0;
}

int CudaDecoder::length(int slot) const {
  check_kv_slot("kv_length", slot, n_slots_);
  return lengths_[slot];
}

size_t CudaDecoder::memory_bytes() const {
  return cache_.bytes() + scratch_.bytes() + logits_.bytes() + held_.bytes() + rows_.bytes() + dequantized_.bytes() +
         served_.bytes();
}

}  // namespace dixie::cuda
