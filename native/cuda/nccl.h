// NCCL, loaded at run time (dlopen) rather than linked, as cuBLASLt is (cublaslt.h): the addon builds and loads
// where there is no NCCL, and data-parallel training then stages the gradients through host memory for MPI. Only
// the calls the backend makes are declared, with the values of NCCL's public header (nccl.h, stable across 2.x).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace dixie::cuda::nccl {

using Result = int;  // ncclResult_t
constexpr Result kSuccess = 0;
using Comm = struct ncclComm*;
struct UniqueId {
  char internal[128];
};
// ncclDataType_t
constexpr int kFloat32 = 7;
constexpr int kFloat64 = 8;
// ncclRedOp_t
constexpr int kSum = 0;

struct Api {
  Result (*get_version)(int*);
  Result (*get_unique_id)(UniqueId*);
  Result (*comm_init_rank)(Comm*, int nranks, UniqueId id, int rank);
  Result (*comm_destroy)(Comm);
  Result (*all_reduce)(const void* send, void* recv, size_t count, int type, int op, Comm, cudaStream_t);
  Result (*reduce_scatter)(const void* send, void* recv, size_t recv_count, int type, int op, Comm, cudaStream_t);
  Result (*all_gather)(const void* send, void* recv, size_t send_count, int type, Comm, cudaStream_t);
  Result (*group_start)();
  Result (*group_end)();
  const char* (*get_error_string)(Result);
};

// The loaded library, or null with the reason in *why. $DIXIE_NCCL: 0 never loads it (MPI through host memory),
// a path loads that file; otherwise libnccl.so.2 from the library path. Loaded once per process.
const Api* load(std::string* why);

}  // namespace dixie::cuda::nccl
