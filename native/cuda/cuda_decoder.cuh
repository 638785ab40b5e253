// KV-cached decoding on the GPU (Backend::kv_*): the new tokens of all slots of a call run as one set of rows
// through the layers, in chunks of up to kChunkRows rows in order, so that a slot's earlier tokens are in its
// cache before its later tokens attend to them. A prefill is many rows; a decode step one row per slot. With 8-bit
// weights a step's products read the int8 matrices directly (q8_matvec), a prefill's expand each matrix first, as
// do the products over a 16-bit base's matrices held for an adapter that trains unless they are bf16 in bf16. A
// LoRA adapter's path runs beside each matrix it changes (lora.cuh), as in training.
//
// With DIXIE_CUDA_GRAPHS=1 a kv_step that decodes (one new token and one draw for every entry, no logits asked
// for) is a CUDA graph, captured once per batch size and adapter launch and replayed: the layers, the head and the
// draw become one launch, and only the rows, the settings and the drawn tokens cross to and from the host.
#pragma once
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "common.cuh"
#include "core/model_spec.h"
#include "gemm.cuh"
#include "model_weights.cuh"
#include "sampler.cuh"
#include "served_adapters.cuh"

namespace dixie::cuda {

class CudaDecoder {
 public:
  CudaDecoder(const ModelSpec& spec, DeviceWeights weights, Gemm& gemm, cudaStream_t stream, bool bf16,
              int vocab_padded, bool graphs);

  int reserve(int n_slots);  // plans the cache and scratch memory once; returns logit_rows_
  // See Backend::kv_forward; `out` is host memory.
  void forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* out, KvOutput output);
  // See Backend::kv_step: the sampled rows' logits stay on the device, where `sampler` draws from them with the
  // slots' tokens (held_) as their histories; only the tokens, the RNG states and (logits_out: host [n_sample, V],
  // or null) the logits come back.
  void step(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int n_sample, const int32_t* sample_rows,
            const SamplingParams* params, uint64_t* rng_state, int32_t* out_tokens, float* logits_out, CudaSampler& sampler);
  void truncate(int slot, int length);
  // See Backend::kv_add_adapter, kv_remove_adapter and kv_set_adapter.
  int add_adapter(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors);
  void remove_adapter(int id);
  void set_adapter(int slot, int id);
  int length(int slot) const;
  size_t memory_bytes() const;
  int64_t graph_launches() const { return graph_launches_; }  // decode steps run as graphs so far

 private:
  void stage(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int64_t total, int n_logits,
             const int32_t* logit_entries);
  void queue(int64_t total, int n_logits, KvOutput output);
  template <typename X>
  void run(int64_t total, int n_logits, KvOutput output);
  CudaGraph* decode_graph(int n, int64_t total, int n_sample, const int32_t* sample_rows, CudaSampler& sampler);

  const ModelSpec& spec_;
  DeviceWeights w_;
  Gemm& gemm_;
  cudaStream_t stream_;
  bool bf16_;
  int vocab_padded_;
  int n_slots_ = 0, max_rows_ = 0;
  int logit_rows_ = 0;  // rows of logits_: one for each slot's next token, or for each token of a prompt being scored
  std::vector<int> lengths_;
  std::vector<uint8_t> slot_used_;
  DeviceArray<unsigned char> cache_;    // keys, then values: [L][slots][n_ctx][C] each
  DeviceArray<unsigned char> scratch_;  // rows of a chunk (x, ln, qkv, atty, proj, fch, fcg), last_ln [logit rows, C], lora u [rows, r]
  DeviceArray<float> logits_;           // [logit rows, vocab_padded], or kv_forward's states [tokens, C]
  DeviceArray<int32_t> held_;           // [slots, n_ctx]: the token ids each slot holds, kv_step's penalty histories
  std::vector<int64_t> history_begin_;  // [slots]: a kv_step's sampled rows' histories within held_, and lengths
  std::vector<int32_t> history_len_;
  DeviceArray<unsigned char> dequantized_;  // a narrow base's layer matrix expanded for a GEMM (DeviceWeights::matrix)
  // One call's rows: [tokens][row slots][row positions] (total each), then [gather sources][gather targets] (up to
  // logit_rows_ each: the rows whose logits are computed, and their rows of logits_)
  DeviceArray<int32_t> rows_;
  PinnedArray<int32_t> rows_host_;
  std::vector<int> chunk_gathers_;      // per chunk, where its gathers start (one entry more than chunks)
  ServedAdapters served_;
  // Decode graphs by (batch, adapted rows, their largest rank); a shape seen once (warm) holds null until its
  // second step captures it.
  using GraphShape = std::tuple<int, int64_t, int>;
  bool graphs_on_;
  std::map<GraphShape, std::unique_ptr<CudaGraph>> graphs_;
  uint64_t graphs_sampler_generation_ = 0;  // the sampler's buffers the graphs point at
  int64_t graph_launches_ = 0;
};

}  // namespace dixie::cuda
