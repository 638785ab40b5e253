// What every file of the CUDA backend shares: error checks that throw, device arrays, streams and graphs that free
// themselves, the activation element types (float, or bf16 in mixed precision), 16-byte packs of them and
// warp/block reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace dixie::cuda {

using bf16 = __nv_bfloat16;

// Whether the environment switch `name` is 1: how work prepared before a GPU measured it is turned on.
inline bool switch_on(const char* name) {
  const char* value = std::getenv(name);
  return value && std::strcmp(value, "1") == 0;
}

// A CUDA call that failed; the message names the call and where it was made, and what a kernel that gave up a
// wait said of it (StuckWait).
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);

// Where a kernel's thread gave up waiting on an mbarrier, written by that thread before it traps. A trap says
// nothing of its own, and printf is a function call, across which ptxas serializes every wgmma of the kernel; so
// the record is page-locked host memory the device writes through, which the host can still read once the trap
// has made the context unusable.
struct StuckWait {
  uint32_t reported;  // 1 once a thread has written the rest
  uint32_t block[3], thread, seconds, parity, shared_address;
};

// The device's address of the one record, made on first use.
StuckWait* stuck_wait_record();

#define DIXIE_CUDA_CHECK(call)                                                                 \
  do {                                                                                         \
    const cudaError_t dixie_err_ = (call);                                                     \
    if (dixie_err_ != cudaSuccess) ::dixie::cuda::throw_cuda_error(dixie_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch errors (bad configuration) surface here, execution errors at the next sync.
#define DIXIE_CUDA_LAUNCHED() DIXIE_CUDA_CHECK(cudaGetLastError())

// Device memory ran out: a distinct type so that callers (the batch-size search of bench/gpu.sh) can tell it
// from other failures.
class DeviceOutOfMemory : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Device memory for n elements of T, uninitialised, freed on destruction. Allocated once, where the memory
// plan is made; never per step.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(size_t n, const char* what) { allocate(n, what); }
  DeviceArray(DeviceArray&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr; o.size_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      release();
      data_ = o.data_;
      size_ = o.size_;
      o.data_ = nullptr;
      o.size_ = 0;
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { release(); }

  void allocate(size_t n, const char* what);
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  void release() {
    if (data_) cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }
  T* data_ = nullptr;
  size_t size_ = 0;
};

// Raw device bytes with a name for the out-of-memory message; DeviceArray's allocation goes through it.
void* device_alloc(size_t bytes, const char* what);

template <typename T>
void DeviceArray<T>::allocate(size_t n, const char* what) {
  release();
  if (n == 0) return;
  data_ = static_cast<T*>(device_alloc(n * sizeof(T), what));
  size_ = n;
}

// A non-blocking stream, destroyed with its owner.
class CudaStream {
 public:
  CudaStream() { DIXIE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~CudaStream() {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// An instantiated CUDA graph: the work queued on `stream` by `queue`, captured once and launched as a whole,
// destroyed with its owner. Everything the queued work touches must stay where it is while the graph lives.
class CudaGraph {
 public:
  template <typename Queue>
  CudaGraph(cudaStream_t stream, Queue queue) {
    DIXIE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      queue();
    } catch (...) {
      cudaStreamEndCapture(stream, &graph);  // leaves the stream usable
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    DIXIE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    const cudaError_t err = cudaGraphInstantiate(&exec_, graph, 0);
    cudaGraphDestroy(graph);
    DIXIE_CUDA_CHECK(err);
  }
  ~CudaGraph() {
    if (exec_) cudaGraphExecDestroy(exec_);
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  void launch(cudaStream_t stream) { DIXIE_CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

 private:
  cudaGraphExec_t exec_ = nullptr;
};

// Page-locked host memory, for transfers that run asynchronously on the stream.
template <typename T>
class PinnedArray {
 public:
  PinnedArray() = default;
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;
  ~PinnedArray() {
    if (data_) cudaFreeHost(data_);
  }
  void allocate(size_t n) {
    if (data_) cudaFreeHost(data_);
    data_ = nullptr;
    size_ = 0;
    if (n == 0) return;
    DIXIE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&data_), n * sizeof(T)));
    size_ = n;
  }
  T* data() { return data_; }
  size_t size() const { return size_; }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid size for a grid-stride loop over n items: enough blocks to fill the device, no more.
inline unsigned grid_for(int64_t n, int block, int max_blocks = 65536) {
  const int64_t blocks = ceil_div(n, block);
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

// ---- element types: activations are float (the float32 reference) or bf16 (mixed precision) ----

template <typename T>
__device__ __forceinline__ float to_f32(T x);
template <>
__device__ __forceinline__ float to_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_f32<bf16>(bf16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }

// K elements of X read or written as one access: a 16-byte pack (the default), or 1 where arrays do not allow it.
template <typename X, int K = 16 / sizeof(X)>
struct alignas(K * sizeof(X)) Pack {
  static constexpr int kN = K;
  X v[K];
};

// Whether arrays of n elements can be read in 16-byte packs (they can in the planned memory).
template <typename X>
inline bool packable(int64_t n, std::initializer_list<const void*> arrays) {
  for (const void* p : arrays)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return n % Pack<X>::kN == 0;
}

// ---- reductions ----

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ double warp_sum_f64(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

struct WarpSum {
  __device__ __forceinline__ float operator()(float v) const { return warp_sum(v); }
  __device__ __forceinline__ double operator()(double v) const { return warp_sum_f64(v); }
};
struct WarpMax {
  __device__ __forceinline__ float operator()(float v) const { return warp_max(v); }
};

// A reduction over the block; every thread gets the result. scratch: 32 values of shared memory. The order
// of the operations is fixed by the block shape, so a sum is the same on every run. The leading barrier lets
// a block reduce several times in a row with one scratch.
template <typename T, typename WarpOp>
__device__ __forceinline__ T block_reduce(T v, T* scratch, T identity, WarpOp warp_op) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  v = warp_op(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < warps ? scratch[lane] : identity;
  if (warp == 0) {
    r = warp_op(r);
    if (lane == 0) scratch[0] = r;
  }
  __syncthreads();
  return scratch[0];
}

__device__ __forceinline__ float block_sum(float v, float* scratch) { return block_reduce(v, scratch, 0.0f, WarpSum()); }
__device__ __forceinline__ float block_max(float v, float* scratch) { return block_reduce(v, scratch, -INFINITY, WarpMax()); }
__device__ __forceinline__ double block_sum_f64(double v, double* scratch) { return block_reduce(v, scratch, 0.0, WarpSum()); }

}  // namespace dixie::cuda
