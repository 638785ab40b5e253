// The CUDA backend's side of data parallelism (BackendOptions::data_parallel): one GPU per rank, the gradients
// summed over the ranks with NCCL, its communicator bootstrapped over MPI, or, where some rank has no NCCL,
// staged through host memory and summed by MPI (said once, at start). NCCL's collectives run on a side stream
// that waits for the compute stream's work so far (an event), so that the backward pass goes on computing the
// next layer while the last one's gradients travel; join() puts the compute stream back behind them.
#pragma once
#include <memory>
#include <string>

#include "common.cuh"
#include "core/collective.h"
#include "nccl.h"

namespace dixie::cuda {

class DataParallel {
 public:
  // The parameters [first, num_params) train (an adapter's, or all of them): the gradient and parameter buffers
  // that the calls below take begin at parameter `first`. Every rank constructs its own at the same time (NCCL's
  // set-up is collective), with the device it computes on current.
  DataParallel(Collective& group, int zero_stage, size_t first, size_t num_params, cudaStream_t compute);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  Collective& group() const { return group_; }
  const Shards& shards() const { return shards_; }
  size_t shard_begin() const { return shards_.begin(group_.rank()); }
  size_t shard_end() const { return shards_.end(group_.rank()); }
  // What the gradient and parameter buffers are allocated with from `first` on: NCCL's reduce-scatter and
  // all-gather take equal parts, so under ZeRO-1 the buffer is padded to ranks x per_rank.
  size_t padded_length() const;
  // Whether the reduction can start during the backward pass (NCCL without ZeRO-1).
  bool overlaps() const { return nccl_ != nullptr && zero_stage_ == 0; }
  std::string describe() const;

  // Sums grads[offset, offset + count) (relative to `first`) over the ranks: NCCL queues it on the side stream,
  // MPI does it now.
  void reduce(float* grads, size_t offset, size_t count);
  // ZeRO-1: leaves this rank's shard of grads summed over the ranks (the rest undefined).
  void reduce_scatter(float* grads);
  // ZeRO-1: every rank's shard of params to every rank.
  void gather(float* params);
  // One double in device memory, summed over the ranks.
  void sum(double* value);
  // The compute stream waits for what reduce() queued.
  void join();

 private:
  void check(nccl::Result r, const char* what) const;
  void stage_out(const float* device, size_t offset, size_t count);
  void stage_in(float* device, size_t offset, size_t count);
  size_t own_offset() const { return shard_begin() - shards_.first; }  // this rank's shard in the buffers

  Collective& group_;
  int zero_stage_;
  Shards shards_;
  cudaStream_t compute_;
  const nccl::Api* api_ = nullptr;
  nccl::Comm nccl_ = nullptr;
  std::string nccl_version_, no_nccl_;
  cudaStream_t side_ = nullptr;
  cudaEvent_t computed_ = nullptr, reduced_ = nullptr;
  bool pending_ = false;
  PinnedArray<float> staging_;   // MPI through host memory
  PinnedArray<double> scalar_;
};

// total[0] = the sum of values[0, n), in order (ZeRO-1's squared-gradient partials of one rank).
void sum_doubles(double* total, const double* values, int n, cudaStream_t stream);

}  // namespace dixie::cuda
