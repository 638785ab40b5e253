#include "data_parallel.cuh"

#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace dixie::cuda {

namespace {

__global__ void sum_doubles_kernel(double* total, const double* values, int n) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += values[i];
  *total = s;
}

}  // namespace

void sum_doubles(double* total, const double* values, int n, cudaStream_t stream) {
  sum_doubles_kernel<<<1, 1, 0, stream>>>(total, values, n);
  DIXIE_CUDA_LAUNCHED();
}

DataParallel::DataParallel(Collective& group, int zero_stage, size_t first, size_t num_params, cudaStream_t compute)
    : group_(group), zero_stage_(zero_stage), shards_{num_params - first, group.size(), first}, compute_(compute) {
  // NCCL only when every rank has it: a rank without it would never join the others' collectives.
  std::string why;
  api_ = nccl::load(&why);
  double everyone = api_ ? 1.0 : 0.0;
  group_.allreduce_sum(&everyone, 1);
  if (everyone == group_.size()) {
    nccl::UniqueId id{};
    if (group_.rank() == 0) check(api_->get_unique_id(&id), "ncclGetUniqueId");
    group_.broadcast(&id, sizeof(id), 0);
    check(api_->comm_init_rank(&nccl_, group_.size(), id, group_.rank()), "ncclCommInitRank");
    int version = 0;
    check(api_->get_version(&version), "ncclGetVersion");
    nccl_version_ = "NCCL " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
                    std::to_string(version % 100);
    DIXIE_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
    DIXIE_CUDA_CHECK(cudaEventCreateWithFlags(&computed_, cudaEventDisableTiming));
    DIXIE_CUDA_CHECK(cudaEventCreateWithFlags(&reduced_, cudaEventDisableTiming));
  } else {
    no_nccl_ = api_ ? "some rank has no NCCL" : why;
    if (group_.rank() == 0)
      std::fprintf(stderr, "dixie: no NCCL (%s): the gradients go through host memory and MPI, which is slower\n",
                   no_nccl_.c_str());
    staging_.allocate(shards_.total);
  }
  scalar_.allocate(1);
}

DataParallel::~DataParallel() {
  if (side_) cudaStreamSynchronize(side_);
  if (nccl_) api_->comm_destroy(nccl_);
  if (computed_) cudaEventDestroy(computed_);
  if (reduced_) cudaEventDestroy(reduced_);
  if (side_) cudaStreamDestroy(side_);
}

size_t DataParallel::padded_length() const {
  return zero_stage_ == 1 ? shards_.per_rank() * static_cast<size_t>(group_.size()) : shards_.total;
}

std::string DataParallel::describe() const {
  const std::string how = nccl_ ? nccl_version_ + (overlaps() ? ", overlapped with the backward pass" : "")
                                : "MPI through host memory";
  return how + (zero_stage_ == 1 ? ", ZeRO-1" : "");
}

void DataParallel::check(nccl::Result r, const char* what) const {
  if (r != nccl::kSuccess)
    throw std::runtime_error(std::string(what) + " failed on rank " + std::to_string(group_.rank()) + ": " +
                             api_->get_error_string(r));
}

void DataParallel::stage_out(const float* device, size_t offset, size_t count) {
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(staging_.data() + offset, device + offset, count * sizeof(float),
                                   cudaMemcpyDeviceToHost, compute_));
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(compute_));
}

void DataParallel::stage_in(float* device, size_t offset, size_t count) {
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(device + offset, staging_.data() + offset, count * sizeof(float),
                                   cudaMemcpyHostToDevice, compute_));
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(compute_));  // the staging buffer is reused next
}

void DataParallel::reduce(float* grads, size_t offset, size_t count) {
  if (count == 0) return;
  if (!nccl_) {
    stage_out(grads, offset, count);
    group_.allreduce_sum(staging_.data() + offset, count);
    stage_in(grads, offset, count);
    return;
  }
  DIXIE_CUDA_CHECK(cudaEventRecord(computed_, compute_));
  DIXIE_CUDA_CHECK(cudaStreamWaitEvent(side_, computed_, 0));
  check(api_->all_reduce(grads + offset, grads + offset, count, nccl::kFloat32, nccl::kSum, nccl_, side_), "ncclAllReduce");
  pending_ = true;
}

void DataParallel::join() {
  if (!pending_) return;
  DIXIE_CUDA_CHECK(cudaEventRecord(reduced_, side_));
  DIXIE_CUDA_CHECK(cudaStreamWaitEvent(compute_, reduced_, 0));
  pending_ = false;
}

void DataParallel::reduce_scatter(float* grads) {
  const size_t per = shards_.per_rank(), begin = own_offset();
  if (nccl_) {
    // In place: this rank's part of the padded buffer receives its sum (the padding is zero on every rank).
    check(api_->reduce_scatter(grads, grads + per * group_.rank(), per, nccl::kFloat32, nccl::kSum, nccl_, compute_),
          "ncclReduceScatter");
    return;
  }
  stage_out(grads, 0, shards_.total);
  group_.reduce_scatter_sum(staging_.data(), shards_.bounds());
  stage_in(grads, begin, shard_end() - shard_begin());
}

void DataParallel::gather(float* params) {
  const size_t per = shards_.per_rank(), begin = own_offset();
  if (nccl_) {
    check(api_->all_gather(params + per * group_.rank(), params, per, nccl::kFloat32, nccl_, compute_), "ncclAllGather");
    return;
  }
  stage_out(params, begin, shard_end() - shard_begin());
  group_.allgather(staging_.data(), shards_.bounds());
  stage_in(params, 0, shards_.total);
}

void DataParallel::sum(double* value) {
  if (nccl_) {
    check(api_->all_reduce(value, value, 1, nccl::kFloat64, nccl::kSum, nccl_, compute_), "ncclAllReduce");
    return;
  }
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(scalar_.data(), value, sizeof(double), cudaMemcpyDeviceToHost, compute_));
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  group_.allreduce_sum(scalar_.data(), 1);
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(value, scalar_.data(), sizeof(double), cudaMemcpyHostToDevice, compute_));
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(compute_));
}

}  // namespace dixie::cuda
