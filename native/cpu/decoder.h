// KV-cached incremental decoding on the CPU: a prompt in one pass (prefill), then a token at a time,
// for several independent sequences ("slots") at once. Shares the layer kernels of training.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "core/backend.h"
#include "core/model_spec.h"
#include "thread_pool.h"

namespace dixie {

// Weights as the CPU backend stores them: float32, 16-bit (F16/BF16) or, in the decoder only (its panels and token
// embedding), 8-bit (Q8_0, decode_matmul.h). The pointer of the dtype is set; the flat buffer's layout is ModelSpec's.
struct WeightsView {
  DType dtype = DType::F32;
  const float* f32 = nullptr;
  const uint16_t* u16 = nullptr;
  const uint8_t* q8 = nullptr;
  // The factors of the adapter a model trains (ModelSpec's LoraShape: its LORA_A then LORA_B groups, float32), which
  // the decoder applies unmerged beside every product it changes; null without one.
  const float* adapter = nullptr;
};

// Where a run of elements that the decoder stores sits: row k of the matrix `kind` of layer `layer`, from column j; a
// layer matrix in panels, or (kind WTE, layer -1) an 8-bit model's token embedding in Q8_0 rows.
struct PanelRun {
  ParamKind kind;
  int layer, k, j;
};

class CpuDecoder {
 public:
  // weights: the backend's flat buffer (float32 or 16-bit); matrices: the type the layer matrices are read in, that of
  // the weights or, for a Q8_0 model (whose flat buffer is F16), Q8_0, the type of its token embedding too.
  CpuDecoder(const ModelSpec& spec, WeightsView weights, DType matrices, ThreadPool& pool);
  ~CpuDecoder();

  int reserve(int n_slots);  // plans the cache and scratch memory once; returns the rows of logits (DecoderPlan)
  // See Backend::kv_forward.
  void forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* out, KvOutput output);
  // See Backend::kv_step: the logits go into the decoder's own [n_slots, V], or into logits_out when given.
  void step(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int n_sample, const int32_t* sample_rows,
            const SamplingParams* params, uint64_t* rng_state, int32_t* out_tokens, float* logits_out);
  void truncate(int slot, int length);
  int length(int slot) const;
  // See Backend::kv_add_adapter, kv_remove_adapter and kv_set_adapter (served_adapters.h).
  int add_adapter(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors);
  void remove_adapter(int id);
  void set_adapter(int slot, int id);
  // The weights were written: what is made from them (float32 weights' panel copy, the float32 vectors of 16-bit
  // and 8-bit ones) is remade at the next forward.
  void weights_changed();
  // With 16-bit and 8-bit weights the panels are where the layer matrices live, and with 8-bit ones the decoder's
  // Q8_0 rows are where the token embedding lives (params_in_decoder): the backend writes and reads them here and
  // never touches those ranges of its flat buffer, whose pages are then never committed. Calls fn(first, n, run) over
  // the parameters [offset, offset + count) of ModelSpec's flat layout, in runs contiguous where they are stored:
  // `run` says where a run of the decoder's elements sits (one row of one strip of a layer matrix: up to 16 elements;
  // or within one row of the token embedding), null for a run of other parameters (which live in the flat buffer).
  void for_each_run(size_t offset, size_t count, const std::function<void(size_t first, size_t n, const PanelRun* run)>& fn) const;
  // 16-bit weights: where a run's elements are.
  uint16_t* panel16(const PanelRun& run);
  // 8-bit weights: dst[0, n) = the run's n elements, as float32 (scale x int8, exact).
  void read_q8(const PanelRun& run, size_t n, float* dst) const;
  // 16-bit and 8-bit weights, exactly as float32: w[rows, cols] = layer `layer`'s matrix `kind`; dst[n, C] = the token
  // embedding's rows [v0, v0 + n).
  void expand_matrix(ParamKind kind, int layer, float* w) const;
  void expand_embedding(int v0, int n, float* dst) const;
  // 8-bit weights: quantizes the rows [k0, k0 + rows) of layer `layer`'s matrix `kind`, given as w[rows, cols], into
  // the panels by blocks of kQ8Block rows (k0 a multiple of kQ8Block, and rows too unless they end the matrix).
  void write_q8(ParamKind kind, int layer, int k0, int rows, const float* w);
  // 8-bit weights: quantizes the elements [element, element + n) of the token embedding [V, C], given as w[n], into its
  // Q8_0 rows (whole blocks of a row: check_q8_embedding_write).
  void write_q8_embedding(size_t element, size_t n, const float* w);
  // Bytes of the weights the decoder stores: the layer matrices in panel layout, and an 8-bit model's token embedding.
  size_t weight_bytes() const;
  // Bytes of the cache, scratch and derived copies (the panels when they are a copy).
  size_t memory_bytes() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The decoder's buffers for n_slots sequences, in elements, planned once: reserve() allocates them, and
// plan_decode_memory (core/backend.h) sizes a model with them before it exists. rows: R, the rows of one pass;
// logit_rows: L, the rows of logits, one for each slot's next token or for each token of a prompt being scored.
struct DecoderPlan {
  int rows = 0;
  int logit_rows = 0;
  // The keys and values' type: float32 for float32 weights; f16 for 16-bit and 8-bit ones, which halves the pages of
  // a long context's cache (f16 is llama.cpp's default KV type too).
  DType cache_type = DType::F32;
  size_t cache = 0;           // keys, and as many values: [n_layer, n_slots, n_ctx, C] of cache_type
  size_t held = 0;            // token ids [n_slots, n_ctx]
  size_t activations = 0;     // x, ln, atty [R, C]; qkv [R, 3C]; fcg [R, 4C]; the model's adapter's x A^T [R, rank]
  size_t scores = 0;          // [threads, n_ctx]
  size_t matmul_scratch = 0;  // the largest of the layer products' and the head's
  size_t last = 0;            // last, last_ln [L, C] each
  size_t logits = 0;          // [n_slots, V]: kv_step's own (kv_forward writes to the caller's)
  size_t vectors = 0;         // float32 copies of a 16-bit or 8-bit model's vectors (biases, LayerNorms)
  size_t cache_bytes() const;  // the keys, values and token ids
  size_t bytes() const;        // all of them
};
DecoderPlan plan_decoder(const ModelSpec& spec, DType matrices, int n_slots, int threads);

// The parameters of the flat layout that a decoder over matrices of type `matrices` stores in place of the backend's
// flat buffer: none for float32 weights (it copies the layer matrices), the layer matrices for 16-bit ones, and the
// token embedding too for 8-bit ones.
size_t params_in_decoder(const ModelSpec& spec, DType matrices);
// Bytes of the weights such a decoder stores (CpuDecoder::weight_bytes): the layer matrices in panel layout, in the
// matrices' type, and for Q8_0 the token embedding's Q8_0 rows.
size_t planned_weight_bytes(const ModelSpec& spec, DType matrices);

// Backend::sample on the CPU; rows run in parallel, each with its own RNG stream, so results do not depend
// on the thread count.
void sample_tokens(int n, int V, const float* logits, const SamplingParams* params, uint64_t* rng_state,
                   const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens, ThreadPool& pool);
// sample_tokens without its checks, for rows whose settings and history tokens were checked already (kv_step's:
// its settings up front, its histories token by token as they were fed).
void draw_tokens(int n, int V, const float* logits, const SamplingParams* params, uint64_t* rng_state,
                 const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens, ThreadPool& pool);

}  // namespace dixie
