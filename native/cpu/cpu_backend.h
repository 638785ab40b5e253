// The CPU backend: GPT-2 training (forward, backward, optimizer) and, through CpuDecoder, KV-cached decoding.
// All memory is planned in the constructor for max_batch * max_seq rows; forward/backward/step allocate nothing.
#pragma once
#include <cstdlib>
#include <memory>
#include <vector>

#include "aligned_array.h"
#include "core/backend.h"
#include "core/collective.h"
#include "decoder.h"
#include "kernels.h"
#include "optimizer.h"
#include "thread_pool.h"

namespace dixie {

class CpuBackend : public Backend {
 public:
  CpuBackend(const GPT2Config& config, const BackendOptions& options);
  ~CpuBackend() override;

  const ModelSpec& spec() const override { return spec_; }
  MemoryReport memory() const override;
  std::string device_name() const override;

  void write_params(size_t offset, const void* src, size_t count, DType dtype) override;
  void read_params(size_t offset, float* dst, size_t count) const override;
  void read_grads(size_t offset, float* dst, size_t count) const override;
  void write_optimizer_state(OptimizerSlot slot, size_t offset, const float* src, size_t count) override;
  void read_optimizer_state(OptimizerSlot slot, size_t offset, float* dst, size_t count) const override;
  int64_t optimizer_step_count() const override { return step_count_; }
  void set_optimizer_step_count(int64_t t) override;
  void set_param_flags(const uint8_t* trainable, const uint8_t* decay) override;

  float forward(const int32_t* inputs, const int32_t* targets, int B, int T, float* logits_out,
                const ForwardOptions& options) override;
  void zero_grad() override;
  void backward() override;
  float step(const StepOptions& options) override;

  int kv_reserve(int n_slots) override;
  void kv_forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* out,
                  KvOutput output) override;
  void kv_truncate(int slot, int length) override;
  int kv_length(int slot) const override;
  void kv_step(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int n_sample, const int32_t* sample_rows,
               const SamplingParams* params, uint64_t* rng_state, int32_t* out_tokens, float* logits_out) override;
  int kv_add_adapter(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors) override;
  void kv_remove_adapter(int id) override;
  void kv_set_adapter(int slot, int id) override;
  void sample(int n, const float* logits, const SamplingParams* params, uint64_t* rng_state,
              const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens) override;

 private:
  CpuDecoder& decoder();  // made at the first need: a float32 model decodes from a panel copy of its weights
  // One block's saved activations; N = rows of the batch.
  struct LayerActs {
    float *ln1, *ln1_mean, *ln1_rstd;  // [N, C], [N], [N]
    float* qkv;                        // [N, 3C]
    float* atty;                       // [N, C]  attention output, before the projection
    float* lse;                        // [B, NH, T] attention log-sum-exp
    float* res2;                       // [N, C]  residual after attention
    float *ln2, *ln2_mean, *ln2_rstd;  // [N, C], [N], [N]
    float* fch;                        // [N, 4C] MLP pre-activation (GELU is recomputed in backward)
  };

  void write_q8(size_t offset, const void* src, size_t count, DType dtype);
  // dst[0, count) = the stored parameters [offset, offset + count) as float32; serial (read_params runs it in parallel).
  void read_stored(size_t offset, float* dst, size_t count) const;
  void require_f32(const char* what) const;
  void require_training(const char* what) const;
  // A vector (LayerNorm, bias, position embedding), an adapter factor or, with float32 weights, any parameter, as
  // float32 in params_. A base stored in 16 or 8 bits keeps its layer matrices and token embedding elsewhere: see
  // matrix() and for_each_embedding_chunk().
  float* param(ParamKind kind, int layer);
  // Where the trainable parameter at `flat` of the layout sits in params_: at `flat` with float32 weights; beside a
  // narrow base, among the adapter's factors, which params_ keeps last as the layout lays them out.
  size_t f32_index(size_t flat) const;
  float* factor(int i, int l, bool b);  // the adapter's A (b false) or B of kLayerMatrices[i] in block l
  float* grad(ParamKind kind, int layer);  // null for a frozen base's parameters
  // Layer matrix `kind` of block `layer` as float32: in params_, or expanded from a 16-bit or 8-bit base into expanded_
  // (so valid until the next call).
  const float* matrix(ParamKind kind, int layer);
  // fn(v0, n, rows) over the token embedding's rows [v0, v0 + n) as float32 [n, C]: all of them in params_, or from a
  // 16-bit or 8-bit base a chunk at a time, expanded into expanded_.
  template <typename Fn>
  void for_each_embedding_chunk(const Fn& fn);
  // The adapter's path beside layer matrix kLayerMatrices[i] of block l (N rows; u [N, r] kept for backward):
  // out += scaling * (drop(inp) A^T) B^T, and its backward, which adds to dinp and to the factors' gradients. drop is
  // the last forward's dropout (forward_), its mask drawn again in backward.
  void lora_forward(int i, int l, float* out, const float* inp, float* u, int64_t N);
  void lora_backward(int i, int l, float* dinp, const float* dout, const float* inp, const float* u, int B, int64_t T);
  float* lora_u(int i, int l);
  float* residual(int l);              // the residual stream entering block l (l = n_layer: into ln_f)
  LayerActs& acts(int l);
  void block_forward(int l, LayerActs& a, const float* in, float* out, int B, int T);
  WeightsView weights() const;

  ModelSpec spec_;
  BackendOptions options_;
  int64_t max_rows_;
  // options.trainable with float32 weights, or with an adapter over a frozen base of any weight type: gradients and
  // saved activations exist.
  bool training_;
  mutable ThreadPool pool_;  // a resource, not state: reads run in parallel too

  // Float32 weights; or, beside a base stored in 16 or 8 bits that an adapter trains over, the float32 values of its
  // vectors (what it stores, converted) and the adapter's factors, each group where f32_at_ says.
  AlignedArray<float> params_;
  size_t f32_at_[NUM_PARAM_KINDS];   // where each kind's group starts in params_, or kNotInF32
  static constexpr size_t kNotInF32 = static_cast<size_t>(-1);
  AlignedArray<uint16_t> params16_;  // F16/BF16 weights, or a Q8_0 model's f16 parameters but its layer matrices
  AlignedArray<float> expanded_;     // one layer matrix, or embedding_chunk_ rows of the token embedding, of such a base
  AlignedArray<float> tree_scratch_;  // the weight gradients' partial sums over sequences (kernels.h), carved by tree_
  TreeScratch tree_;
  int64_t embedding_chunk_ = 0;
  AlignedArray<float> grads_, m_, v_;
  AlignedArray<float> arena_;        // every activation, carved below
  AlignedArray<float> lora_acts_;    // an adapter's u [N, r] per targeted matrix (per layer, as layer_acts_), and du [N, r]
  float* lora_dropped_ = nullptr;    // with dropout, [N, in] for the widest input adapted: a dropped input, or du A
  std::vector<float*> residuals_;
  std::vector<LayerActs> layer_acts_;  // one per layer, or a single shared one when recomputing / not training
  float *proj_, *gelu_, *lnf_, *lnf_mean_, *lnf_rstd_, *logits_, *losses_;  // [N,C] [N,4C] [N,C] [N] [N] [N,V] [N]
  float *dres_, *dwide_, *dnarrow_;  // backward scratch: [N, C], [N, 4C], [N, C]
  AlignedArray<int32_t> inputs_, targets_;

  // Data parallelism (BackendOptions::data_parallel); under ZeRO-1, m_ and v_ hold this rank's shard only.
  Collective* group_ = nullptr;
  Shards shards_;
  size_t shard_begin_ = 0, shard_end_ = 0;  // the parameters this rank updates: all of them without ZeRO-1
  bool sharded() const { return options_.zero_stage == 1; }

  std::vector<uint8_t> trainable_flags_, decay_flags_;
  std::vector<ParamSpan> spans_;             // over [shard_begin_, shard_end_)
  std::vector<double> span_partials_;
  int64_t step_count_ = 0;

  int last_B_ = 0, last_T_ = 0;
  ForwardOptions forward_;       // the last forward's, which its backward (and a recomputed block) follows
  bool backward_ready_ = false;  // a forward with targets ran and its backward has not

  std::unique_ptr<CpuDecoder> decoder_;
};

}  // namespace dixie
