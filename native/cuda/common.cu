#include "common.cuh"

#include <unistd.h>

#include "core/backend.h"

namespace dixie {

namespace cuda {

namespace {
volatile StuckWait* stuck_wait = nullptr;  // the host's address of the record, once made
}

StuckWait* stuck_wait_record() {
  static StuckWait* const device_address = [] {
    StuckWait* host = nullptr;
    DIXIE_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host), sizeof(StuckWait),
                                   cudaHostAllocMapped | cudaHostAllocPortable));
    std::memset(host, 0, sizeof(StuckWait));
    StuckWait* device = nullptr;
    DIXIE_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&device), host, 0));
    stuck_wait = host;
    return device;
  }();
  return device_address;
}

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  std::string where = file;
  const size_t slash = where.find_last_of('/');
  if (slash != std::string::npos) where = where.substr(slash + 1);
  std::string message = std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") in " +
                        call + " at " + where + ":" + std::to_string(line);
  if (const volatile StuckWait* s = stuck_wait; s && s->reported) {
    message += "; before it, thread " + std::to_string(s->thread) + " of block (" + std::to_string(s->block[0]) + ", " +
               std::to_string(s->block[1]) + ", " + std::to_string(s->block[2]) + ") gave up after waiting " +
               std::to_string(s->seconds) + " s for the phase of parity " + std::to_string(s->parity) +
               " of the mbarrier at shared address " + std::to_string(s->shared_address) + " (a deadlock)";
  }
  throw std::runtime_error(message);
}

void* device_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaSuccess) return p;
  cudaGetLastError();  // an allocation failure is not sticky: clear it so later calls do not report it
  if (err == cudaErrorMemoryAllocation) {
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw DeviceOutOfMemory("CUDA out of memory: " + std::to_string(bytes >> 20) + " MiB for " + what + " (" +
                            std::to_string(free_bytes >> 20) + " of " + std::to_string(total_bytes >> 20) +
                            " MiB free)");
  }
  throw_cuda_error(err, "cudaMalloc", __FILE__, __LINE__);
}

}  // namespace cuda

// The runtime answers "driver too old" on a machine with no NVIDIA driver at all, which is how a machine without a
// GPU looks; the driver's device node tells the two apart, so that only a real GPU hears about its driver.
int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    const bool no_gpu = err == cudaErrorNoDevice || (err == cudaErrorInsufficientDriver && access("/dev/nvidiactl", F_OK) != 0);
    if (why) *why = no_gpu ? "no GPU found" : std::string("the GPU is not usable: ") + cudaGetErrorName(err) + ", " + cudaGetErrorString(err);
    return 0;
  }
  if (n == 0 && why) *why = "no GPU found";
  return n;
}

}  // namespace dixie
