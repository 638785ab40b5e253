// The boundary between the addon and a compute backend (CPU now, CUDA beside it). The addon talks only
// to this interface, so a second backend slots in without touching the bindings or the TypeScript side.
// A backend is used by one thread at a time: the TypeScript layer serializes the calls on a model.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "dtype.h"
#include "model_spec.h"

namespace dixie {

class Collective;  // core/collective.h

enum class OptimizerKind { AdamW, SGD };

// Which optimizer moment a state transfer addresses (AdamW keeps both; SGD keeps none).
enum class OptimizerSlot { M, V };

struct BackendOptions {
  int threads = 0;               // 0: one per core of the machine
  // CPU: the threads work at the lowest priority, so that decoding in the same process goes first (a fine-tuning
  // job in a server); the CUDA backend's work is the GPU's, and it ignores this.
  bool background = false;
  int max_batch = 1;             // training memory is planned once for max_batch x max_seq
  int max_seq = 0;               // 0: n_ctx
  bool recompute = false;        // memory-saving gradients: keep only each block's input, recompute in backward
  bool trainable = true;         // false: no gradients, optimizer state or training activations are allocated
  DType weight_dtype = DType::F32;  // F16/BF16/Q8_0: weights stored in 16 or 8 bits, for inference only
  // CUDA only (the CPU computes in float32 whatever this says): bf16 activations and tensor-core products with
  // float32 accumulation, float32 master weights, gradients and optimizer moments.
  bool mixed_bf16 = false;
  // Data parallelism: the ranks this model trains with, one copy of it per rank (core/collective.h). step()
  // averages the gradients over them before the norm and the update. With zero_stage 1 (ZeRO-1) a rank keeps the
  // optimizer moments of its shard of the parameters only (Shards over the flat layout): the gradients are
  // reduce-scattered, each rank updates its shard, the parameters are all-gathered, and reading the optimizer
  // state becomes collective (every rank reads the same range and gets all of it). micro_batches: backwards per
  // step, so that a backend may start reducing during the last one.
  Collective* data_parallel = nullptr;
  int zero_stage = 0;
  int micro_batches = 1;
  // A LoRA adapter to train over the frozen base (ModelSpec's LoraShape, whose factors the flat layout appends):
  // the base in any weight_dtype, the factors float32. Only the factors have gradients and optimizer moments; decoding
  // applies the adapter too.
  LoraShape lora;
  // PEFT's lora_dropout, in [0, 1): a training forward (ForwardOptions) drops each element of the adapter's input with
  // this probability and scales the rest by 1 / (1 - p); the base's product sees the input whole. The masks are drawn
  // from the seed (core/dropout.h).
  float lora_dropout = 0.0f;
  uint64_t lora_dropout_seed = 0;
};

// What a forward is for. Only a training forward drops the adapter's inputs (BackendOptions::lora_dropout); the
// others (validation, evaluation) drop nothing. step and micro_batch key the masks besides the seed: a checkpoint
// keeps them, so that a resumed run draws the masks the uninterrupted one would, and two forwards with the same key
// drop the same elements.
struct ForwardOptions {
  bool training = false;
  int64_t step = 0;     // the training step
  int micro_batch = 0;  // within the step
};

struct StepOptions {
  OptimizerKind kind = OptimizerKind::AdamW;
  float lr = 1e-4f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;
  float grad_scale = 1.0f;       // applied to the accumulated gradient first (1 / micro-batches)
  float grad_clip = 0.0f;        // clip by global norm when > 0
};

// What kv_forward writes for the tokens it feeds.
enum class KvOutput {
  LastLogits,   // the logits of each entry's last new token, [n, V]: what its next token is drawn from
  TokenLogits,  // the logits of every new token, [total, V] in the order of `tokens`: a prompt's log-probabilities
  TokenStates,  // the final hidden state of every new token (after ln_f: the head's input), [total, C]: embeddings
};

struct MemoryReport {
  size_t params = 0, grads = 0, optimizer = 0, activations = 0, kv_cache = 0;
};

// Sampling settings for one sequence. See native/cpu/sampler.cpp for the exact semantics.
struct SamplingParams {
  float temperature = 1.0f;      // 0: greedy
  int top_k = 0;                 // 0: off
  float top_p = 1.0f;            // 1: off
  float penalize = 0.0f;         // repetition penalty (--penalize) in (0, 1]; 0: off
  // Additive logit biases (OpenAI's logit_bias): bias_values[i] is added to the logit of bias_tokens[i], after the
  // penalty. The arrays are the caller's and are read during the call only.
  int n_bias = 0;
  const int32_t* bias_tokens = nullptr;
  const float* bias_values = nullptr;
  float min_p = 0.0f;            // in [0, 1): keep tokens at least this fraction as likely as the most likely; 0: off
  // A grammar's constraint: when set, a bitset of V bits (word i, bit j: token 32 i + j) of the only tokens that may
  // be drawn, in allowed_words = ceil(V / 32) words. The caller's, read during the call only.
  const uint32_t* allowed = nullptr;
  int allowed_words = 0;

  bool allows(int token) const { return (allowed[token >> 5] >> (token & 31)) & 1u; }  // with `allowed` set
};

// What rows of logits in host memory (kv_forward's TokenLogits, kv_step's logits_out) say of tokens, as OpenAI's
// logprobs report it: the log-softmax over the ids `allowed` holds (a bitset of V bits, word i bit j: id 32 i + j, as
// SamplingParams' allowed; null: every id), and for each row the log-probability of targets[row] and the `top`
// likeliest allowed ids, most likely first, ties by lower id (-1 past the last where fewer are allowed). The
// log-probabilities are doubles: a float logit less the double log-partition, which is what JavaScript has of them.
struct LogprobRows {
  int top = 0;
  const uint32_t* allowed = nullptr;  // ceil(V / 32) words
  const int32_t* targets = nullptr;   // [rows], each in [0, V)
  double* logprob = nullptr;          // [rows]
  int32_t* top_tokens = nullptr;      // [rows * top]
  double* top_logprobs = nullptr;     // [rows * top]
};
void token_logprobs(const float* logits, int rows, int V, const LogprobRows& out);

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelSpec& spec() const = 0;
  virtual MemoryReport memory() const = 0;
  virtual std::string device_name() const = 0;

  // Parameters, gradients and optimizer moments by flat offset (see ModelSpec); the gradients and moments of the
  // trainable parameters only, [spec().trainable_begin(), num_params()). Writes convert from dtype (F32, F16
  // or BF16); a Q8_0 model quantizes what it is given, and so takes its layer matrices in whole groups of 32 rows.
  virtual void write_params(size_t offset, const void* src, size_t count, DType dtype) = 0;
  virtual void read_params(size_t offset, float* dst, size_t count) const = 0;
  virtual void read_grads(size_t offset, float* dst, size_t count) const = 0;
  virtual void write_optimizer_state(OptimizerSlot slot, size_t offset, const float* src, size_t count) = 0;
  virtual void read_optimizer_state(OptimizerSlot slot, size_t offset, float* dst, size_t count) const = 0;
  virtual int64_t optimizer_step_count() const = 0;
  virtual void set_optimizer_step_count(int64_t t) = 0;
  // Per-tensor flags, indexed like ModelSpec::tensors(): which tensors the optimizer updates, which it decays.
  virtual void set_param_flags(const uint8_t* trainable, const uint8_t* decay) = 0;

  // Training. forward: inputs/targets [B, T] token ids (targets may be null: no loss); returns the mean
  // cross-entropy loss (NaN when no targets) and copies the logits [B, T, V] into logits_out when non-null. Its
  // backward computes the gradients of the forward as `options` ran it.
  // backward: adds d(loss)/d(params) of the last forward into the gradient buffer. step: one optimizer
  // update from the accumulated gradients, which it then zeroes; returns the global gradient norm.
  virtual float forward(const int32_t* inputs, const int32_t* targets, int B, int T, float* logits_out,
                        const ForwardOptions& options) = 0;
  virtual void zero_grad() = 0;
  virtual void backward() = 0;
  virtual float step(const StepOptions& options) = 0;

  // KV-cached decoding over independent sequences ("slots"), each up to n_ctx tokens long.
  // kv_reserve plans the cache once, and returns the rows of logits it plans: at least n_slots. kv_forward appends
  // n_new[i] tokens (concatenated in `tokens`) to slot slots[i] after its current length and writes to `out` what
  // `output` asks (KvOutput): the logits of each slot's last new token, those of every new token (at most
  // kv_reserve's rows of logits), or the final hidden states of every new token (any number on the CPU; on a GPU as
  // many as the memory of those rows of logits holds, thousands). The caller keeps every slot within n_ctx (see
  // lib/generate for the window policy).
  // kv_truncate keeps a slot's first `length` tokens (0 empties it): a prompt that begins with what a slot holds
  // is prefilled from there on.
  virtual int kv_reserve(int n_slots) = 0;
  virtual void kv_forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* out,
                          KvOutput output) = 0;
  virtual void kv_truncate(int slot, int length) = 0;
  virtual int kv_length(int slot) const = 0;
  // One decoding step in one call: kv_forward's feed, then sample()'s draw for the n_sample entries sample_rows
  // (ascending indices into the n entries: those whose feed ends a prompt or is a generated token) with their
  // settings params [n_sample] and RNG states rng_state [2 * n_sample], advanced in place, into out_tokens
  // [n_sample]. The logits stay where the backend computed them and only the sampled rows' are computed:
  // logits_out is null, or [n_sample, V] to receive them as the model gave them (before the penalty), for
  // log-probabilities. A row's repetition-penalty history is what its slot holds after the feed: the decoder keeps
  // each slot's token ids (appended by kv_forward and kv_step, cut by kv_truncate), so no history crosses the call
  // and each token is checked once, when it is fed. Refused arguments change nothing.
  virtual void kv_step(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int n_sample,
                       const int32_t* sample_rows, const SamplingParams* params, uint64_t* rng_state, int32_t* out_tokens,
                       float* logits_out) = 0;

  // LoRA adapters applied unmerged while decoding, a different one per slot if need be, so that many fine-tunes of
  // one base decode in one batch. kv_add_adapter copies an adapter (modules [n_layer * 4]: which layer matrices it
  // changes, layer by layer in kLayerMatrices' order; factors [n_factors]: A [rank, in] then B [out, rank] of each,
  // in that order; each changes x W into x W + scaling * (x A^T) B^T) and returns its id, never reused.
  // kv_set_adapter binds a slot to an adapter (-1: none), and empties the slot when that changes its binding, so
  // that no cache computed with another adapter is continued; kv_remove_adapter unbinds and empties the slots bound
  // to it.
  virtual int kv_add_adapter(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors) = 0;
  virtual void kv_remove_adapter(int id) = 0;
  virtual void kv_set_adapter(int slot, int id) = 0;

  // Samples one token per row of logits [n, V] with per-row settings and per-row RNG state (64-bit words,
  // advanced in place). history/history_len: the tokens each row has seen, for the repetition penalty.
  virtual void sample(int n, const float* logits, const SamplingParams* params, uint64_t* rng_state,
                      const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens) = 0;
};

std::unique_ptr<Backend> make_cpu_backend(const GPT2Config& config, const BackendOptions& options);

// What a CPU model of `config` with weights of `dtype` takes to decode n_slots sequences at their full context,
// computed without allocating: its parameters as the CPU backend keeps them, and the decoder's buffers
// (plan_decoder, which its kv_reserve allocates). A server sizes a model with it before loading it.
MemoryReport plan_decode_memory(const GPT2Config& config, DType dtype, int n_slots, int threads);

// The CUDA backend (native/cuda), present when the addon is built with CUDA (DIXIE_WITH_CUDA). It runs on the
// first visible device and throws std::runtime_error when there is none.
std::unique_ptr<Backend> make_cuda_backend(const GPT2Config& config, const BackendOptions& options);
// The number of usable CUDA devices; 0 when there is none, with the reason in *why in a user's words ("no GPU found",
// or what keeps a GPU from use).
int cuda_device_count(std::string* why);

}  // namespace dixie
