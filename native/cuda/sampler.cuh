// Backend::sample on the GPU: one block per row does the grammar's mask, repetition penalty, logit biases,
// temperature, top-k, top-p and the draw of native/cpu/sampler.cpp, with the same xoroshiro128++ stream (one draw per sampled row,
// none for greedy rows). Nothing is sorted: top-k, the nucleus and the draw are each a radix select over the row in the
// CPU's walking order (by id without top-k/top-p; else most likely first, lower id first on ties), which finds
// the element where a running count or probability mass first reaches a target in a few passes over the row.
//
// Tokens are the CPU's exactly for greedy rows (and top_k = 1). For sampled rows the draw is the CPU's
// whenever it does not fall within rounding of a boundary between two tokens: probabilities are summed as
// integers (exp(...) * 2^40, so that the sums are exact and the result is the same on every run) where the CPU
// sums doubles, which moves the boundaries by about 1e-12 of the total. Tokens below 2^-41 of the most likely
// one get probability 0. With top-k and no top-p the CPU walks its candidates in the order std::nth_element
// leaves them, which this sampler cannot reproduce (it walks them most likely first): the distribution is the
// same, the token drawn for a given random number generally is not.
#pragma once
#include <cstdint>

#include "common.cuh"
#include "core/backend.h"

namespace dixie::cuda {

class CudaSampler {
 public:
  explicit CudaSampler(cudaStream_t stream);
  ~CudaSampler();
  CudaSampler(const CudaSampler&) = delete;
  CudaSampler& operator=(const CudaSampler&) = delete;

  // See Backend::sample. logits and the other arrays are host memory.
  void sample(int n, int V, const float* logits, const SamplingParams* params, uint64_t* rng_state,
              const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens);
  // Backend::kv_step's draw, its settings checked already, in three parts so that a CUDA graph can hold the middle
  // one (CudaDecoder's decode graphs). The logits [n, ld] (penalised in place) and the histories are device memory,
  // row i's history being history[history_begin[i], + history_len[i]); params, rng_state, history_begin,
  // history_len and out_tokens are host memory. stage_on_device puts the rows' settings and RNG states in pinned
  // memory and queues the copy of their logit biases and grammar masks to the device; queue_on_device queues their copy to the device, the kernel and the copies of the tokens and states
  // back (timed or not: a graph cannot time its kernels with events), over memory that stays where it is while
  // generation() does not change; finish waits for them and hands out the tokens and states.
  void stage_on_device(int n, int V, const SamplingParams* params, const uint64_t* rng_state, const int64_t* history_begin,
                       const int32_t* history_len);
  void queue_on_device(int n, int V, float* logits, int ld, const int32_t* history, bool timed);
  void finish(int n, int V, uint64_t* rng_state, int32_t* out_tokens);
  uint64_t generation() const { return generation_; }  // changes whenever a buffer moves

  float last_kernel_ms() const { return last_kernel_ms_; }  // device time of the last timed call's kernel
  size_t memory_bytes() const;

 private:
  void reserve(int n, int V, size_t history);
  // Queues the copy of the n rows' logit biases and grammar masks to row_arrays_ and points their staged settings
  // at them.
  void stage_row_arrays(int n, const SamplingParams* params);
  // Queues the draw over staged settings: meta_bytes of the n rows' RowParams, RNG states and histories.
  void queue(int n, int V, float* logits, int ld, const int32_t* history, size_t meta_bytes, bool timed);

  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  int rows_ = 0, vocab_ = 0;
  DeviceArray<float> logits_;     // [rows, V]: sample()'s logits, copied from the host
  DeviceArray<uint32_t> seen_;    // [rows, V] flags of the penalty, all zero between calls
  DeviceArray<unsigned char> meta_;  // row settings, RNG states and histories, as staged below
  DeviceArray<int32_t> tokens_;   // [rows]
  PinnedArray<unsigned char> staging_;
  DeviceArray<unsigned char> row_arrays_;  // the rows' logit biases, (token, value) pairs, then their masks' words
  PinnedArray<unsigned char> row_arrays_staging_;
  uint64_t generation_ = 0;
  bool timed_ = false;
  float last_kernel_ms_ = 0.0f;
};

}  // namespace dixie::cuda
