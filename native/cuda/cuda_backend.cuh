// The CUDA backend: GPT-2 training (forward, backward, AdamW/SGD) and KV-cached decoding on one GPU, with the
// CPU backend's semantics (native/cpu/cpu_backend.h). Float32 is the reference; mixed precision keeps bf16
// activations and bf16 copies of the weights for the products, with float32 master weights, gradients and
// optimizer moments. All memory is planned in the constructor (training) and in kv_reserve (decoding);
// forward/backward/step/kv_forward allocate nothing. With a LoRA adapter (BackendOptions::lora, lora.cuh) the base
// is frozen: only the adapter's factors have gradients and moments, and decoding runs the adapter's path beside
// each matrix it changes. The frozen base may be held in 16 or 8 bits (BackendOptions::weight_dtype): its layer
// matrices stay as stored and the products read them a matrix at a time (DeviceWeights::matrix), its other
// parameters are float32 holding the stored values, so that the adapter trains as over a float32 base holding them,
// as on the CPU. Adapters bound to slots (kv_add_adapter) decode unmerged over the base, a different one per slot if
// need be (served_adapters.cuh).
//
// Data parallelism (BackendOptions::data_parallel, data_parallel.cuh): one backend per rank, each on the GPU of
// its local rank; the gradients, one contiguous float32 buffer in ModelSpec's layout over the parameters that
// train, are summed over the ranks layer by layer during the last micro-batch's backward pass (NCCL) or in step()
// (ZeRO-1, MPI through host memory, or an adapter's few gradients), before the norm and the update.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "attention.cuh"
#include "common.cuh"
#include "core/backend.h"
#include "cuda_decoder.cuh"
#include "data_parallel.cuh"
#include "gemm.cuh"
#include "model_weights.cuh"
#include "optimizer.cuh"
#include "sampler.cuh"

namespace dixie::cuda {

class CudaBackend : public Backend {
 public:
  CudaBackend(const GPT2Config& config, const BackendOptions& options);
  ~CudaBackend() override;

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

  bool mixed_bf16() const { return bf16_; }
  float last_sample_kernel_ms() const { return sampler_ ? sampler_->last_kernel_ms() : 0.0f; }
  int64_t decode_graph_launches() const { return decoder_ ? decoder_->graph_launches() : 0; }
  cudaStream_t stream() const { return stream_.get(); }

 private:
  // One block's saved activations (element type X = float or bf16 behind the void pointers); N rows.
  struct LayerActs {
    void *ln1, *qkv, *atty, *res2, *ln2, *fch;      // [N, C], [N, 3C], [N, C], [N, C], [N, C], [N, 4C]
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd;  // [N] each
    float* lse;                                      // [B, NH, T] attention log-sum-exp
  };
  void require_training(const char* what) const;
  void sync() const;
  CudaDecoder& decoder();
  const float* param(ParamKind kind, int layer) const { return weights_.param(kind, layer); }
  float* grad(ParamKind kind, int layer);  // null for a frozen base's parameters
  // The gradient of the adapter's A (b false) or B (b true) of layer matrix `matrix` in layer l, and its u [N, r].
  float* lora_grad(ParamKind matrix, int l, bool b);
  template <typename X>
  X* lora_u(ParamKind matrix, int l) const;
  template <typename X>
  const X* weight(ParamKind kind, int layer) const { return weights_.weight<X>(kind, layer); }
  template <typename X>
  X* residual(int l) { return static_cast<X*>(residuals_[training_ ? l : l % 2]); }
  LayerActs& acts(int l) { return layer_acts_[layer_acts_.size() == 1 ? 0 : l]; }
  void upload_spans();
  bool sharded() const { return dp_ && options_.zero_stage == 1; }
  size_t shard_begin() const { return sharded() ? dp_->shard_begin() : spec_.trainable_begin(); }
  size_t shard_end() const { return sharded() ? dp_->shard_end() : spec_.num_params(); }
  // Whether the last micro-batch's backward starts summing each block's gradients over the ranks.
  bool overlapped() const { return dp_ && dp_->overlaps() && spec_.trainable_begin() == 0; }
  void reduce_layer(int l);  // starts summing layer l's gradients over the ranks
  void upload(size_t flat, const void* src, size_t from, size_t n, DType dtype);
  void upload_q8(const FlatPiece& piece, const void* src, size_t from, DType dtype);
  void upload16(const FlatPiece& piece, const void* src, size_t from, DType dtype);
  void round_to_stored(float* values, size_t flat, size_t n) const;

  template <typename X>
  float forward_impl(int B, int T, bool has_targets, float* logits_out);
  template <typename X>
  void backward_impl();
  template <typename X>
  void block_body(int l, LayerActs& a, const X* in, int B, int T);
  template <typename X>
  void matmul_forward(X* out, const X* inp, ParamKind w, ParamKind b, int l, int N, int C, int OC);
  template <typename X>
  void matmul_backward(X* dinp, ParamKind w, ParamKind b, int l, const X* dout, const X* inp, int N, int C, int OC,
                       X* gelu_input = nullptr);
  template <typename X>
  void copy_logits_out(float* dst, const X* logits, int rows);

  ModelSpec spec_;
  BackendOptions options_;
  bool bf16_;                  // mixed precision (or 16-bit weights, which imply it)
  bool training_;              // gradients, optimizer state and saved activations exist
  int64_t max_rows_;
  int vocab_padded_;           // the head's width and the logits' row stride: the vocabulary rounded up to 64
  bool decode_graphs_;         // DIXIE_CUDA_GRAPHS=1: decode steps as CUDA graphs (cuda_decoder.cuh)
  AttentionTiles attention_tiles_;  // kWgmma with DIXIE_HOPPER_ATTENTION=1 where available (attention.cuh)
  bool fused_optimizer_;       // DIXIE_FUSED_ADAMW=1: on one device, the optimizer step as one launch (optimizer.cuh)
  bool bias_grad_epilogue_;    // DIXIE_BIAS_GRAD_EPILOGUE=1: bias gradients in cuBLASLt's epilogue (gemm.cuh)
  int device_ = 0;
  cudaDeviceProp props_{};
  CudaStream stream_;  // first member with device work, so destroyed last (it waits for the work to finish)
  std::unique_ptr<Gemm> gemm_;
  std::unique_ptr<DataParallel> dp_;
  int backwards_since_step_ = 0;
  bool layers_reduced_ = false;  // the last backward summed the blocks' gradients as it went

  // The gradients are those of the parameters that train, [spec_.trainable_begin(), P); under ZeRO-1, m_ and v_
  // hold this rank's shard.
  DeviceArray<float> params_, grads_, m_, v_;
  DeviceArray<bf16> params_lp_;       // bf16 copy of the weights (mixed precision)
  DeviceArray<int8_t> q8_;            // a Q8_0 model's layer matrices, and their scales (see DeviceWeights)
  DeviceArray<uint16_t> q8_scales_;
  DeviceArray<uint16_t> m16_;         // a 16-bit base's layer matrices, under an adapter that trains (see DeviceWeights)
  DeviceWeights weights_;
  DeviceArray<unsigned char> arena_;  // every activation, carved below
  std::vector<LayerActs> layer_acts_;  // one per layer, or one shared when recomputing / not training
  std::vector<void*> residuals_;       // [N, C] each
  void *proj_ = nullptr, *gelu_ = nullptr, *lnf_ = nullptr, *logits_ = nullptr;  // [N, C] [N, 4C] [N, C] [N, Vp]
  void *dres_ = nullptr, *dwide_ = nullptr, *dnarrow_ = nullptr;                 // [N, C] [N, 4C] [N, C]
  void *lora_u_ = nullptr, *lora_du_ = nullptr;  // an adapter's u [N, r] (see lora_u) and du [N, r]
  void* lora_dropped_ = nullptr;  // with dropout, [N, in] for the widest input adapted (lora.cuh)
  void* expanded_ = nullptr;      // a narrow base's layer matrix expanded for a product (DeviceWeights::matrix)
  float *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr, *losses_ = nullptr;  // [N] each
  float *att_delta_ = nullptr, *reduce_scratch_ = nullptr, *logits_f32_ = nullptr, *scalars_ = nullptr;
  DeviceArray<int32_t> ids_;          // [inputs N][targets N][bucket tokens N][bucket starts N + 1][bucket rows N]
  PinnedArray<int32_t> ids_host_;
  PinnedArray<float> scalars_host_;   // the loss, the gradient norm
  PinnedArray<float> upload_;         // parameters on their way in, converted to float32 (allocated at the first write)
  std::vector<int32_t> bucket_of_token_;  // [V], -1 between calls
  std::vector<int32_t> bucket_count_;
  int n_buckets_ = 0;

  std::vector<uint8_t> trainable_flags_, decay_flags_;
  int n_spans_ = 0;
  DeviceArray<DeviceSpan> spans_;
  DeviceArray<double> span_partials_;
  DeviceArray<double> squares_total_;  // ZeRO-1: the squared-gradient total, summed over the ranks
  int64_t step_count_ = 0;

  int last_B_ = 0, last_T_ = 0;
  ForwardOptions forward_;  // the last forward's, which its backward (and a recomputed block) follows
  bool backward_ready_ = false;

  std::unique_ptr<CudaDecoder> decoder_;
  std::unique_ptr<CudaSampler> sampler_;
};

}  // namespace dixie::cuda
