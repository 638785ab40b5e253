// The CUDA runtime calls of native/cuda, on host memory, for the emulator (emu.h): one fake device, streams and
// events that do nothing, copies that are memmove, graphs that are lists of launches and copies. Linked instead
// of the CUDA runtime, with the one driver call the kernels need (found through the runtime). A call that waits
// for the stream while it captures fails, as it does on a GPU, and so does a captured copy from or to pageable
// host memory.
#include "emu.h"

#include <cuda.h>

#include <cstdio>
#include <cstdlib>
#include <map>

using EmuGraph = std::vector<std::function<void()>>;

namespace {
EmuGraph* capture = nullptr;  // the graph being captured, if any
std::map<const char*, size_t> pinned;  // cudaMallocHost's allocations: start, bytes

// A copy captured into a graph must have its host side in page-locked memory, which the graph's replay can reach
// on its own; a GPU refuses a pageable one, so the emulator does too (its device memory is host memory as well, so
// the copy's kind says which side is the host's).
cudaError_t capturable(const void* host, size_t bytes) {
  if (!capture || !host) return cudaSuccess;
  const char* p = static_cast<const char*>(host);
  auto at = pinned.upper_bound(p);
  if (at != pinned.begin() && p + bytes <= (--at)->first + at->second) return cudaSuccess;
  std::fprintf(stderr, "emu: a copy captured into a graph from or to pageable host memory\n");
  return cudaErrorStreamCaptureUnsupported;
}
const void* host_side(const void* d, const void* s, cudaMemcpyKind kind) {
  return kind == cudaMemcpyHostToDevice ? s : kind == cudaMemcpyDeviceToHost ? d : nullptr;
}
}  // namespace

void emu_queue(std::function<void()> op) {
  if (capture) capture->push_back(std::move(op));
  else op();
}

// emu.h's fiber switch (System V x86-64: rbx, rbp and r12-r15 are the callee's to keep).
asm(R"(
  .text
  .globl emu_switch
  .type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch, .-emu_switch
)");

namespace {
cudaError_t queued(std::function<void()> op) {
  emu_queue(std::move(op));
  return cudaSuccess;
}
// A call that waits for the stream: it reports a kernel's trap, as every later call does on a GPU.
cudaError_t unless_capturing() {
  return emu_trapped ? cudaErrorLaunchFailure : capture ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}

// The driver's cuTensorMapEncodeTiled for the maps emu_tma_load_box reads: bf16, element strides of 1, no
// interleave, zeros outside, and the driver's rules on alignment, strides and boxes.
CUresult emu_encode_tiled(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank, void* base, const cuuint64_t* dims,
                          const cuuint64_t* strides, const cuuint32_t* box, const cuuint32_t* element_steps,
                          CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle, CUtensorMapL2promotion,
                          CUtensorMapFloatOOBfill fill) {
  static_assert(sizeof(EmuTensorMap) <= sizeof(CUtensorMap));
  const bool swizzled = swizzle == CU_TENSOR_MAP_SWIZZLE_128B;
  bool ok = type == CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 && rank >= 1 && rank <= 5 && reinterpret_cast<uintptr_t>(base) % 16 == 0 &&
            interleave == CU_TENSOR_MAP_INTERLEAVE_NONE && fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE &&
            (swizzled || swizzle == CU_TENSOR_MAP_SWIZZLE_NONE) && box[0] * 2 % 16 == 0 && (!swizzled || box[0] * 2 <= 128);
  for (cuuint32_t i = 0; ok && i < rank; ++i) {
    ok = box[i] >= 1 && box[i] <= 256 && element_steps[i] == 1 && dims[i] >= 1 && dims[i] <= (1ull << 32);
    if (i + 1 < rank) ok = ok && strides[i] % 16 == 0 && strides[i] < (1ull << 40);
  }
  if (!ok) return CUDA_ERROR_INVALID_VALUE;
  EmuTensorMap m{static_cast<const unsigned char*>(base), rank, 2, swizzled ? 128u : 0u, {}, {}, {}};
  m.strides[0] = 2;
  for (cuuint32_t i = 0; i < rank; ++i) {
    m.dims[i] = dims[i];
    m.box[i] = box[i];
    if (i + 1 < rank) m.strides[i + 1] = strides[i];
  }
  std::memset(map, 0, sizeof(*map));
  std::memcpy(map, &m, sizeof(m));
  return CUDA_SUCCESS;
}
}  // namespace

extern "C" {
cudaError_t cudaGetLastError(void) { return emu_trapped ? cudaErrorLaunchFailure : cudaSuccess; }
const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
cudaError_t cudaMalloc(void** p, size_t n) { *p = std::aligned_alloc(256, (n + 255) / 256 * 256); if (*p) std::memset(*p, 0xcd, n); return *p ? cudaSuccess : cudaErrorMemoryAllocation; }
cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
cudaError_t cudaMallocHost(void** p, size_t n) {
  *p = std::malloc(n);
  pinned[static_cast<const char*>(*p)] = n;
  return cudaSuccess;
}
// Mapped memory: the emulated device's address of host memory is its host address.
cudaError_t cudaHostAlloc(void** p, size_t n, unsigned int) { return cudaMallocHost(p, n); }
cudaError_t cudaHostGetDevicePointer(void** d, void* p, unsigned int) {
  *d = p;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  pinned.erase(static_cast<const char*>(p));
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind kind, cudaStream_t) {
  if (const cudaError_t e = capturable(host_side(d, s, kind), n)) return e;
  return queued([=] { std::memmove(d, s, n); });
}
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) { return queued([=] { std::memset(d, v, n); }); }
cudaError_t cudaMemcpy2DAsync(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t h, cudaMemcpyKind kind, cudaStream_t) {
  if (const cudaError_t e = capturable(host_side(d, s, kind), h == 0 ? 0 : (h - 1) * (kind == cudaMemcpyHostToDevice ? sp : dp) + w)) return e;
  return queued([=] {
    for (size_t r = 0; r < h; ++r) std::memcpy(static_cast<char*>(d) + r * dp, static_cast<const char*>(s) + r * sp, w);
  });
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) { *s = reinterpret_cast<cudaStream_t>(0x1); return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return unless_capturing(); }
cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) { std::memset(p, 0, sizeof(*p)); std::strcpy(p->name, "Emulated"); p->major = 9; p->minor = 0; p->multiProcessorCount = 1; p->cooperativeLaunch = 1; p->totalGlobalMem = 8ull << 30; return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t* f, size_t* t) { *f = 4ull << 30; *t = 8ull << 30; return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e) { *e = reinterpret_cast<cudaEvent_t>(0x1); return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return unless_capturing(); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) { *e = reinterpret_cast<cudaEvent_t>(0x1); return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) { *ms = 0; return cudaSuccess; }
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrCooperativeLaunch || a == cudaDevAttrMultiProcessorCount ? 1 : 0;
  return cudaSuccess;
}
// Blocks resident together on the one multiprocessor: a cooperative launch then runs blocks that take turns.
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* n, const void*, int, size_t, unsigned int) {
  *n = emu_resident_blocks;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return unless_capturing(); }
cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** fn, unsigned int, unsigned long long,
                                             cudaDriverEntryPointQueryResult* status) {
  const bool known = std::strcmp(symbol, "cuTensorMapEncodeTiled") == 0;
  *fn = known ? reinterpret_cast<void*>(&emu_encode_tiled) : nullptr;
  if (status) *status = known ? cudaDriverEntryPointSuccess : cudaDriverEntryPointSymbolNotFound;
  return cudaSuccess;
}
cudaError_t cudaProfilerStart(void) { return cudaSuccess; }
cudaError_t cudaProfilerStop(void) { return cudaSuccess; }
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
  if (capture) return cudaErrorIllegalState;
  capture = new EmuGraph;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* g) {
  if (!capture) return cudaErrorIllegalState;
  *g = reinterpret_cast<cudaGraph_t>(capture);
  capture = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  *e = reinterpret_cast<cudaGraphExec_t>(new EmuGraph(*reinterpret_cast<EmuGraph*>(g)));
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
  if (capture) return cudaErrorStreamCaptureUnsupported;
  for (auto& op : *reinterpret_cast<EmuGraph*>(e)) op();
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete reinterpret_cast<EmuGraph*>(g); return cudaSuccess; }
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete reinterpret_cast<EmuGraph*>(e); return cudaSuccess; }
}
