// A CPU emulation of the CUDA features native/cuda uses, so that the kernels' indexing, synchronisation and
// fragment layouts can be checked on a machine without a GPU (see build.sh). The threads of a block are fibers
// on one OS thread, switched only at barriers; blocks run one after another, or all together in a cooperative
// launch (of no more blocks than the device holds at once), whose grid.sync() waits for every thread;
// __syncthreads and __syncwarp are barriers of the block's and the warp's live threads; shuffles and ballots go
// through a per-warp exchange buffer; mma.sync.m16n8k16 (bf16) is a warp-collective product assembled from the PTX
// ISA's fragment layouts, wgmma.m64nNk16 one that reads B, and A unless it is in registers, from shared memory
// through descriptor and swizzle, computed when its group is waited for; a cp.async copy lands at its wait, its
// destination NaN until then, and a TMA box when a thread waits on the mbarrier that counts its bytes; an mbarrier
// wait yields until its phase completes, as does a named barrier's (bar.sync, bar.arrive); a trap ends the kernel
// and fails the calls after it; a captured graph is the list of its launches and copies (of page-locked host memory
// only), replayed with the arguments they were captured with.
// It checks what the code computes, not how fast: races between barriers and shared-memory limits go unseen.
// Included before everything else (g++ -include), with the CUDA headers in host mode. x86-64 only: fibers switch
// by emu_switch (runtime.cpp), which saves the callee-saved registers and nothing else, where swapcontext would
// spend most of the time in a system call for the signal mask.
#pragma once
#define __shared__ static
#define __launch_bounds__(...)
#include <cuda_runtime.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
// Saves the callee-saved registers on the current stack, stores its pointer in *save and resumes the stack at
// `load` (as saved by an earlier switch, or prepared by emu_launch).
extern "C" void emu_switch(void** save, void* load);
// The threads waiting at a barrier (of a warp, a block or the grid) and the count that releases them.
struct EmuBarrier {
  int arrived = 0, alive = 0;
  uint64_t gen = 0;
};
struct EmuWarp {
  uint64_t buf[32];
  float mma_a[32][8];
  float mma_b[32][4];
  float mma_c[32][4];
  float mma_d[16][8];  // the warp's mma product, computed in barrier generation mma_d_gen
  uint64_t mma_d_gen = 0;
  EmuBarrier barrier;
};
// An mbarrier: a phase completes when `count` arrivals are in and the bytes it expects (tx) have landed.
struct EmuMbarrier {
  int count = 0, pending = 0;
  int64_t tx = 0;
  uint32_t phase = 0;
};
// A named barrier (bar.sync / bar.arrive with an id and a thread count): a phase completes when `count` threads
// have arrived, waiting (sync) or not (arrive); every arrival of a phase must give the same count.
struct EmuNamedBarrier {
  int count = 0, arrived = 0;
  uint64_t gen = 0;
};
struct EmuBlock {
  uint3 idx;
  EmuBarrier barrier;
  std::vector<EmuWarp> warps;
  std::vector<unsigned char> dyn_smem;  // its dynamic shared memory (static __shared__ is one for all blocks)
  std::unordered_map<const void*, EmuMbarrier> mbarriers;
  struct Landing {  // a TMA box in flight: its bytes, where they land, and the barrier that counts them
    const void* bar;
    uint32_t start;
    std::vector<unsigned char> bytes;
  };
  std::vector<Landing> tma_in_flight;
  EmuNamedBarrier named[16];  // ids 1 to 15 (0 is __syncthreads')
  uint64_t failed_waits = 0;  // mbarrier and named barrier waits that found their phase open since a phase last completed
};
// A wgmma issued and not yet waited for: what it multiplies, read when its group is waited for.
struct EmuWgmma {
  float* d;
  int n;
  const uint32_t* a;  // A's registers, or null: A in shared memory at desc_a
  uint64_t desc_a, desc_b;
  bool trans_b, accumulate;  // accumulate: d += A B, else d = A B
};
// A cp.async copy in flight: the 16 bytes it read, and where they land at the thread's wait.
struct EmuCopy {
  void* dst;
  unsigned char bytes[16];
};
struct EmuFiber {
  void* sp;
  std::vector<char> stack;
  uint3 tid;
  EmuBlock* block;
  bool done = false;
  std::vector<EmuWgmma> wgmma;       // in flight, in the order issued
  std::vector<size_t> wgmma_groups;  // where each committed group ends in wgmma
  bool wgmma_fenced = false;         // a wgmma.fence since the thread's last wait
  std::vector<EmuCopy> copies;       // cp.async, not yet waited for
};
inline void* emu_main_sp;
inline std::vector<EmuFiber>* emu_fibers = nullptr;
inline int emu_current = 0;
inline EmuBlock* emu_block = nullptr;  // the running thread's
inline EmuBarrier emu_grid;            // every thread of a cooperative launch

inline EmuFiber& emu_fiber() { return (*emu_fibers)[emu_current]; }  // the running thread's
inline void emu_yield() { emu_switch(&emu_fiber().sp, emu_main_sp); }

inline void emu_wait(EmuBarrier& b) {
  const uint64_t gen = b.gen;
  if (++b.arrived == b.alive) {
    b.arrived = 0;
    ++b.gen;
    return;
  }
  while (b.gen == gen) emu_yield();
}
// A thread that returns leaves the count; others may have been waiting for exactly it.
inline void emu_leave(EmuBarrier& b) {
  if (--b.alive > 0 && b.arrived == b.alive) {
    b.arrived = 0;
    ++b.gen;
  }
}
inline void __syncthreads() { emu_wait(emu_block->barrier); }
inline int emu_thread() { return static_cast<int>(threadIdx.x + threadIdx.y * blockDim.x); }  // in its block
inline int emu_lane() { return emu_thread() % 32; }
inline EmuWarp& emu_warp() { return emu_block->warps[emu_thread() / 32]; }
inline void emu_warp_barrier() { emu_wait(emu_warp().barrier); }
// cooperative_groups' grid.sync(), in a cooperative launch (emu_launch_cooperative)
inline void emu_grid_sync() { emu_wait(emu_grid); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu_warp_barrier(); }

template <typename T>
T emu_exchange(T v, int src_lane, bool use_src) {
  EmuWarp& w = emu_warp();
  const int lane = emu_lane();
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  w.buf[lane] = bits;
  emu_warp_barrier();
  T out = v;
  if (use_src) std::memcpy(&out, &w.buf[src_lane], sizeof(T));
  emu_warp_barrier();
  return out;
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int o) { return emu_exchange(v, emu_lane() ^ o, true); }
template <typename T>
T __shfl_up_sync(unsigned, T v, int d) { return emu_exchange(v, emu_lane() - d, emu_lane() >= d); }
inline unsigned __ballot_sync(unsigned, bool pred) {
  EmuWarp& w = emu_warp();
  w.buf[emu_lane()] = pred ? 1 : 0;
  emu_warp_barrier();
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= (w.buf[i] ? 1u : 0u) << i;
  emu_warp_barrier();
  return r;
}
inline int __ffs(unsigned x) { return __builtin_ffs(static_cast<int>(x)); }

inline unsigned atomicAdd(unsigned* p, unsigned v) { const unsigned o = *p; *p += v; return o; }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { const unsigned long long o = *p; *p += v; return o; }
inline float atomicAdd(float* p, float v) { const float o = *p; *p += v; return o; }
inline unsigned atomicExch(unsigned* p, unsigned v) { const unsigned o = *p; *p = v; return o; }
inline unsigned atomicCAS(unsigned* p, unsigned compare, unsigned v) { const unsigned o = *p; if (o == compare) *p = v; return o; }
inline void __threadfence_system() {}
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline unsigned long long __float2ull_rn(float f) { return static_cast<unsigned long long>(std::nearbyint(f)); }
using std::min;
using std::max;

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 from the documented fragment layouts, g = lane/4, t = lane%4:
// A: a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
// B: b0 = (k = 2t..2t+1, n = g), b1 = (k = 2t+8.., n = g); C/D: (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)
inline float emu_lo(uint32_t r) { return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(r & 0xffff))); }
inline float emu_hi(uint32_t r) { return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(r >> 16))); }
// This lane's A fragment into the warp's exchange buffer, and, after a warp barrier, the warp's 16x16 A from it.
inline void emu_put_a(EmuWarp& w, int lane, const uint32_t* a) {
  for (int i = 0; i < 4; ++i) {
    w.mma_a[lane][2 * i] = emu_lo(a[i]);
    w.mma_a[lane][2 * i + 1] = emu_hi(a[i]);
  }
}
inline void emu_take_a(float (&A)[16][16], const EmuWarp& w) {
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < 8; ++i) {
      const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
      const int col = (i < 4) ? 2 * t + (i & 1) : 2 * t + 8 + (i & 1);
      A[row][col] = w.mma_a[l][i];
    }
  }
}

inline void emu_mma(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
  EmuWarp& w = emu_warp();
  const int lane = emu_lane();
  emu_put_a(w, lane, a);
  for (int i = 0; i < 4; ++i) w.mma_c[lane][i] = d[i];
  w.mma_b[lane][0] = emu_lo(b0);
  w.mma_b[lane][1] = emu_hi(b0);
  w.mma_b[lane][2] = emu_lo(b1);
  w.mma_b[lane][3] = emu_hi(b1);
  emu_warp_barrier();
  // The whole 16x8 product, once for the warp by whichever of its threads runs first after the barrier: gathering
  // the fragments is most of the work, and every lane's share of D needs all of them.
  if (w.mma_d_gen != w.barrier.gen) {
    w.mma_d_gen = w.barrier.gen;
    float A[16][16], B[16][8], C[16][8];
    emu_take_a(A, w);
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;
      for (int i = 0; i < 4; ++i) {
        const int k = (i < 2) ? 2 * t + (i & 1) : 2 * t + 8 + (i & 1);
        B[k][g] = w.mma_b[l][i];
      }
      for (int i = 0; i < 4; ++i) C[i < 2 ? g : g + 8][2 * t + (i & 1)] = w.mma_c[l][i];
    }
    for (int row = 0; row < 16; ++row)
      for (int col = 0; col < 8; ++col) {
        float s = C[row][col];
        for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
        w.mma_d[row][col] = s;
      }
  }
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) d[i] = w.mma_d[i < 2 ? g : g + 8][2 * t + (i & 1)];
  emu_warp_barrier();
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane l gives the address of row l % 8 of matrix l / 8 and
// receives in r[i] the pair (row l / 4, columns 2 (l % 4) + 0, 1) of matrix i, transposed: (rows 2 (l % 4) + 0, 1,
// column l / 4).
inline void emu_ldmatrix_x4(uint32_t* r, const __nv_bfloat16* row, bool trans) {
  EmuWarp& w = emu_warp();
  const int lane = emu_lane();
  w.buf[lane] = reinterpret_cast<uint64_t>(row);
  emu_warp_barrier();
  auto at = [&](int matrix, int rr, int c) {
    const auto* p = reinterpret_cast<const unsigned short*>(w.buf[matrix * 8 + rr]);
    return static_cast<uint32_t>(p[c]);
  };
  for (int i = 0; i < 4; ++i) {
    const int a = lane / 4, b = 2 * (lane % 4);
    r[i] = trans ? at(i, b, a) | (at(i, b + 1, a) << 16) : at(i, a, b) | (at(i, a, b + 1) << 16);
  }
  emu_warp_barrier();
}

// A pointer into dynamic shared memory as its offset there: the emulator's shared address space, from which
// the 128-byte swizzle is reckoned as on a GPU.
inline uint32_t emu_shared_address(const void* p) {
  return static_cast<uint32_t>(static_cast<const unsigned char*>(p) - emu_block->dyn_smem.data());
}

// Element (k, mn) of a wgmma operand in shared memory, read through its matrix descriptor (start, leading and
// stride byte offsets >> 4 at bits 0, 16 and 32; layout at 62, of which the emulator knows 1, the 128-byte
// swizzle). K-major: row mn (of A's rows or B's columns) is 8-row group mn / 8 (stride offset apart), row mn % 8
// (128 bytes apart), k along it. N-major (B only): k is 8-row group k / 8, row k % 8, and n along it, 64 to a
// 128-byte span (leading offset apart). The swizzle then moves 16-byte chunk bits 4-6 of the address by bits 7-9.
inline float emu_wgmma_operand(uint64_t desc, int k, int mn, bool n_major) {
  const uint64_t start = (desc & 0x3fff) << 4, leading = ((desc >> 16) & 0x3fff) << 4;
  const uint64_t stride = ((desc >> 32) & 0x3fff) << 4;
  if (desc >> 62 != 1 || ((desc >> 49) & 7) != 0) {
    std::fprintf(stderr, "emu_wgmma: only the 128-byte swizzle with base offset 0 is emulated\n");
    std::abort();
  }
  uint64_t at = n_major ? start + (k / 8) * stride + (k % 8) * 128 + (mn / 64) * leading + (mn % 64) * 2
                        : start + (mn / 8) * stride + (mn % 8) * 128 + k * 2;
  at ^= ((at >> 7) & 7) << 4;
  unsigned short bits;
  std::memcpy(&bits, emu_block->dyn_smem.data() + at, 2);
  return __bfloat162float(__ushort_as_bfloat16(bits));
}

// d[16 x n] = A[16 x 16] @ B[16 x n] (+ d where accumulate): this warp's rows of a wgmma, in the C layout of n / 8
// 16x8 blocks.
inline void emu_wgmma_rows(float* d, int n, const float (&A)[16][16], uint64_t desc_b, bool trans_b, bool accumulate) {
  const int lane = emu_lane(), g = lane / 4, t = lane % 4;
  for (int j = 0; j < n / 8; ++j)
    for (int i = 0; i < 4; ++i) {
      const int row = i < 2 ? g : g + 8, col = 8 * j + 2 * t + (i & 1);
      float s = accumulate ? d[4 * j + i] : 0.0f;
      for (int k = 0; k < 16; ++k) s += A[row][k] * emu_wgmma_operand(desc_b, k, col, trans_b);
      d[4 * j + i] = s;
    }
}

// wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16 with A in registers: d[64 x n] += A[64 x 16] @ B[16 x n] over
// the warpgroup. Warp w holds rows 16w.. of A (the m16n8k16 A layout, as emu_mma) and of d (the C layout of n / 8
// 16x8 blocks), so each warp's rows need only its own A. B is K-major or, with trans_b, N-major.
inline void emu_wgmma(float* d, int n, const uint32_t* a, uint64_t desc, bool trans_b) {
  EmuWarp& w = emu_warp();
  emu_put_a(w, emu_lane(), a);
  emu_warp_barrier();
  float A[16][16];
  emu_take_a(A, w);
  emu_warp_barrier();
  emu_wgmma_rows(d, n, A, desc, trans_b, true);
}

// The same with A from shared memory too, both K-major: warp w of the warpgroup reads A's rows 16w.. ; d added
// where accumulate (the instruction's scale-d).
inline void emu_wgmma_shared(float* d, int n, uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  const int warp = emu_thread() / 32 % 4;
  float A[16][16];
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k) A[r][k] = emu_wgmma_operand(desc_a, k, 16 * warp + r, false);
  emu_wgmma_rows(d, n, A, desc_b, false, accumulate);
}

// wgmma.mma_async is asynchronous: a product reads its registers (A, the accumulators) and shared tiles, and
// writes its accumulators, at any time before the wait for its group. The emulator does it all at the wait, the
// latest a card may, so that registers or tiles changed before the wait, or accumulators read before it, give
// other results here too. A product issued with no wgmma.fence since the thread last waited (registers written
// since may not be ready for it) stops the run.
inline void emu_wgmma_fence() { emu_fiber().wgmma_fenced = true; }
inline void emu_wgmma_issue(float* d, int n, const uint32_t* a, uint64_t desc_a, uint64_t desc_b, bool trans_b,
                            bool accumulate) {
  EmuFiber& f = emu_fiber();
  if (!f.wgmma_fenced) {
    std::fprintf(stderr, "emu: a wgmma issued with no wgmma.fence since the thread's last wait\n");
    std::abort();
  }
  f.wgmma.push_back(EmuWgmma{d, n, a, desc_a, desc_b, trans_b, accumulate});
}
inline void emu_wgmma_commit() { emu_fiber().wgmma_groups.push_back(emu_fiber().wgmma.size()); }
// wgmma.wait_group pending: the products of all committed groups but the newest `pending`.
inline void emu_wgmma_wait(int pending) {
  EmuFiber& f = emu_fiber();
  f.wgmma_fenced = false;
  const int done = static_cast<int>(f.wgmma_groups.size()) - pending;
  if (done <= 0) return;
  const size_t end = f.wgmma_groups[done - 1];
  const std::vector<EmuWgmma> due(f.wgmma.begin(), f.wgmma.begin() + end);
  f.wgmma.erase(f.wgmma.begin(), f.wgmma.begin() + end);
  f.wgmma_groups.erase(f.wgmma_groups.begin(), f.wgmma_groups.begin() + done);
  for (size_t& g : f.wgmma_groups) g -= end;
  for (const EmuWgmma& w : due) {  // warp-collective: every lane of the warp waits here too
    if (w.a) emu_wgmma(w.d, w.n, w.a, w.desc_b, w.trans_b);
    else emu_wgmma_shared(w.d, w.n, w.desc_a, w.desc_b, w.accumulate);
  }
}

// ---- mbarriers and the TMA (Hopper). A wait that finds its phase open yields; one that would never end (the
// arrivals and bytes do not add up) aborts after many rounds without any phase completing. ----
inline EmuMbarrier& emu_mbarrier(const void* bar) {
  const auto it = emu_block->mbarriers.find(bar);
  if (it == emu_block->mbarriers.end()) {
    std::fprintf(stderr, "emu: mbarrier used before mbarrier.init\n");
    std::abort();
  }
  return it->second;
}
inline void emu_mbarrier_init(uint64_t* bar, int count) { emu_block->mbarriers[bar] = EmuMbarrier{count, count, 0, 0}; }
inline void emu_mbarrier_update(EmuMbarrier& m) {
  if (m.pending < 0) {
    std::fprintf(stderr, "emu: more arrivals on an mbarrier than its count (%d)\n", m.count);
    std::abort();
  }
  if (m.pending == 0 && m.tx == 0) {
    ++m.phase;
    m.pending = m.count;
    emu_block->failed_waits = 0;
  }
}
inline void emu_mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t tx) {
  EmuMbarrier& m = emu_mbarrier(bar);
  m.tx += tx;
  --m.pending;
  emu_mbarrier_update(m);
}
inline void emu_mbarrier_arrive(uint64_t* bar) {
  EmuMbarrier& m = emu_mbarrier(bar);
  --m.pending;
  emu_mbarrier_update(m);
}
// %globaltimer: the host's clock, in nanoseconds.
inline uint64_t emu_global_ns() {
  const auto since_epoch = std::chrono::steady_clock::now().time_since_epoch();
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch).count());
}
// A trap stops the kernel, and leaves the device unusable: every later launch does nothing, and the runtime's calls
// that report errors (runtime.cpp) report a launch failure.
inline bool emu_trapped = false;
inline void __trap() {
  emu_trapped = true;
  emu_fiber().done = true;
  emu_yield();  // to emu_launch, which abandons the grid; this thread never runs again
  __builtin_unreachable();
}

// Stops a run whose waits (of an mbarrier or a named barrier, `what`) can never end, saying which named barriers
// are mid-phase: whichever waiter gives up first, the others may be what is stuck.
[[noreturn]] inline void emu_never_ending(const char* what) {
  std::fprintf(stderr, "emu: %s waits that can never end (no phase completes)", what);
  for (int id = 1; id < 16; ++id) {
    const EmuNamedBarrier& b = emu_block->named[id];
    if (b.arrived) std::fprintf(stderr, "; named barrier %d has %d of %d arrivals", id, b.arrived, b.count);
  }
  std::fprintf(stderr, "\n");
  std::abort();
}

inline void emu_tma_land(const void* bar);
// mbarrier.try_wait.parity, after the boxes in flight that bar counts land: whether the phase of this parity has
// completed (the current phase has the other parity), else a yield and false.
inline uint32_t emu_mbarrier_try_wait(uint64_t* bar, uint32_t parity) {
  emu_tma_land(bar);
  if ((emu_mbarrier(bar).phase & 1) != parity) return 1;
  if (++emu_block->failed_waits > 50'000'000) emu_never_ending("mbarrier");
  emu_yield();
  return 0;
}

// bar.sync id, count (wait) and bar.arrive id, count: count threads, in whole warps, release a phase of barrier id;
// an arrival does not wait for it. A barrier whose arrivals disagree on the count stops the run, and so does a
// wait that can never end (no phase of any barrier completing for many rounds) and, at the block's end, a barrier
// left with arrivals (emu_launch): a card would hang there, or leave the next user of the id its arrivals.
inline void emu_named_barrier(int id, int count, bool wait) {
  if (id <= 0 || id >= 16 || count <= 0 || count % 32 ||
      count > static_cast<int>(blockDim.x * blockDim.y * blockDim.z)) {
    std::fprintf(stderr, "emu: a named barrier needs an id from 1 to 15 and a count of whole warps of the block (id %d, count %d)\n",
                 id, count);
    std::abort();
  }
  EmuNamedBarrier& b = emu_block->named[id];
  if (b.arrived == 0) {
    b.count = count;
  } else if (b.count != count) {
    std::fprintf(stderr, "emu: named barrier %d arrived on with counts %d and %d in one phase\n", id, b.count, count);
    std::abort();
  }
  const uint64_t gen = b.gen;
  if (++b.arrived == b.count) {
    b.arrived = 0;
    ++b.gen;
    emu_block->failed_waits = 0;
    return;
  }
  while (wait && b.gen == gen) {
    if (++emu_block->failed_waits > 50'000'000) emu_never_ending("named barrier");
    emu_yield();
  }
}

// cuTensorMapEncodeTiled's map as the emulator keeps it in CUtensorMap's opaque bytes (runtime.cpp).
struct EmuTensorMap {
  const unsigned char* base;
  uint32_t rank, elem_bytes, swizzle_bytes;  // swizzle: 0 or 128
  uint64_t dims[5], strides[5];              // strides in bytes, strides[0] the element's
  uint32_t box[5];
};

// cp.async.bulk.tensor.4d ... mbarrier::complete_tx::bytes: the box at (0, c1, c2, c3) into dst, elements outside
// the tensor zero; with the 128-byte swizzle, 16-byte chunk bits 4-6 of each shared address move by bits 7-9.
// Until it lands dst is undefined: NaNs here, so that a stage still being read when its next box is loaded reads
// them. It lands, its bytes counted on bar, when a thread next waits on bar.
inline void emu_tma_load_box(void* dst, const void* map, int c1, int c2, int c3, uint64_t* bar) {
  const EmuTensorMap& m = *static_cast<const EmuTensorMap*>(map);
  const uint32_t start = emu_shared_address(dst);
  if (m.rank != 4 || (m.swizzle_bytes && start % 1024)) {
    std::fprintf(stderr, "emu: a 4-D TMA box needs a 4-D map, and a swizzled one a 1024-byte aligned destination\n");
    std::abort();
  }
  const int64_t c[4] = {0, c1, c2, c3};
  bool overlaps = true;  // the kernels never ask for a box wholly outside: what a card does then is not emulated
  for (int k = 0; k < 4; ++k) overlaps = overlaps && c[k] + m.box[k] > 0 && c[k] < static_cast<int64_t>(m.dims[k]);
  if (!overlaps) {
    std::fprintf(stderr, "emu: a TMA box wholly outside its tensor\n");
    std::abort();
  }
  std::vector<unsigned char> box(static_cast<size_t>(m.box[0]) * m.box[1] * m.box[2] * m.box[3] * m.elem_bytes);
  if (m.swizzle_bytes && box.size() % 1024) {
    std::fprintf(stderr, "emu: a swizzled TMA box of whole 1024-byte periods is what the emulator knows\n");
    std::abort();
  }
  uint64_t at = 0;  // from start, which the swizzle is reckoned from (start % 1024 == 0): it stays inside the box
  for (uint32_t i3 = 0; i3 < m.box[3]; ++i3)
    for (uint32_t i2 = 0; i2 < m.box[2]; ++i2)
      for (uint32_t i1 = 0; i1 < m.box[1]; ++i1)
        for (uint32_t i0 = 0; i0 < m.box[0]; ++i0, at += m.elem_bytes) {
          const int64_t x[4] = {c[0] + i0, c[1] + i1, c[2] + i2, c[3] + i3};
          bool inside = true;
          uint64_t from = 0;
          for (int k = 0; k < 4; ++k) {
            inside = inside && x[k] >= 0 && static_cast<uint64_t>(x[k]) < m.dims[k];
            from += static_cast<uint64_t>(x[k]) * m.strides[k];
          }
          const uint64_t to = m.swizzle_bytes ? at ^ (((at >> 7) & 7) << 4) : at;
          if (inside) std::memcpy(box.data() + to, m.base + from, m.elem_bytes);
        }
  std::memset(emu_block->dyn_smem.data() + start, 0xff, box.size());
  emu_mbarrier(bar);  // one that was never initialised stops the run now, not at the wait
  emu_block->tma_in_flight.push_back(EmuBlock::Landing{bar, start, std::move(box)});
}
// The boxes in flight that bar counts land, their bytes counted on it.
inline void emu_tma_land(const void* bar) {
  auto& flying = emu_block->tma_in_flight;
  for (auto it = flying.begin(); it != flying.end();) {
    if (it->bar != bar) {
      ++it;
      continue;
    }
    std::memcpy(emu_block->dyn_smem.data() + it->start, it->bytes.data(), it->bytes.size());
    EmuMbarrier& b = emu_mbarrier(bar);
    b.tx -= static_cast<int64_t>(it->bytes.size());
    emu_mbarrier_update(b);
    it = flying.erase(it);
  }
}

// cp.async.cg.shared.global, 16 bytes (zeros where !valid): until the thread waits for it, what its destination
// holds is undefined, so the emulator fills it with NaNs at once and lands the bytes at the wait. A tile read
// before its copy was waited for, or still being read when a copy into it starts, reads NaNs.
inline void emu_copy16(void* dst, const void* src, bool valid) {
  EmuCopy c{dst, {}};
  if (valid) std::memcpy(c.bytes, src, 16);
  std::memset(dst, 0xff, 16);
  emu_fiber().copies.push_back(c);
}
// cp.async.wait_all
inline void emu_copy_wait_all() {
  for (const EmuCopy& c : emu_fiber().copies) std::memcpy(c.dst, c.bytes, 16);
  emu_fiber().copies.clear();
}

// Runs body for every thread of every block. A thread that returns early leaves the barriers' counts.
inline std::function<void()>* emu_body = nullptr;
inline void emu_fiber_entry() {
  (*emu_body)();
  if (!emu_fiber().wgmma.empty() || !emu_fiber().copies.empty()) {
    std::fprintf(stderr, "emu: a thread ended with wgmma products or cp.async copies it never waited for\n");
    std::abort();
  }
  emu_fiber().done = true;
  emu_leave(emu_block->barrier);
  emu_leave(emu_warp().barrier);
  emu_leave(emu_grid);
}

// A fiber's first switch lands here; it never returns, and is never resumed once its thread is done.
[[noreturn]] inline void emu_fiber_start() {
  emu_fiber_entry();
  void* unused;
  emu_switch(&unused, emu_main_sp);
  __builtin_unreachable();
}

// A fresh stack as emu_switch leaves one: zero callee-saved registers under the address of emu_fiber_start, which
// then starts with its stack aligned as after a call.
inline void* emu_fiber_stack(std::vector<char>& stack) {
  auto top = reinterpret_cast<uintptr_t>(stack.data() + stack.size()) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;  // emu_fiber_start's return address, never used
  *--sp = reinterpret_cast<uint64_t>(&emu_fiber_start);
  for (int r = 0; r < 6; ++r) *--sp = 0;
  return sp;
}

// Runs the blocks of the grid one after another, or with `together` (a cooperative launch) all at once, so that
// emu_grid_sync can wait for every thread; a kernel launched so keeps its shared memory dynamic.
template <typename F>
void emu_launch(dim3 grid, dim3 block, size_t smem, F body, bool together = false) {
  if (emu_trapped) return;
  gridDim = grid;
  blockDim = block;
  const int n = static_cast<int>(block.x * block.y * block.z);
  std::function<void()> fn = body;
  emu_body = &fn;
  std::vector<EmuBlock> blocks;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) blocks.push_back(EmuBlock{uint3{bx, by, bz}, EmuBarrier{0, n, 0}, {}, {}});
  const int wave = together ? static_cast<int>(blocks.size()) : 1, threads = wave * n;
  static std::vector<EmuFiber> fibers;
  if (static_cast<int>(fibers.size()) < threads) fibers.resize(threads);
  emu_fibers = &fibers;
  for (size_t first = 0; first < blocks.size(); first += wave) {
    emu_grid = EmuBarrier{0, threads, 0};
    for (int i = 0; i < threads; ++i) {
      EmuBlock& b = blocks[first + i / n];
      if (i % n == 0) {
        b.warps.resize((n + 31) / 32);
        for (size_t w = 0; w < b.warps.size(); ++w) b.warps[w].barrier.alive = std::min(32, n - static_cast<int>(w) * 32);
        b.dyn_smem.assign(smem + 16, 0);
      }
      const int t = i % n;
      EmuFiber& f = fibers[i];
      f.done = false;
      f.wgmma.clear();
      f.wgmma_groups.clear();
      f.wgmma_fenced = false;
      f.copies.clear();
      f.block = &b;
      f.tid = uint3{static_cast<unsigned>(t % block.x), static_cast<unsigned>((t / block.x) % block.y), static_cast<unsigned>(t / (block.x * block.y))};
      if (f.stack.empty()) f.stack.resize(256 << 10);
      f.sp = emu_fiber_stack(f.stack);
    }
    for (int remaining = threads; remaining > 0;) {
      remaining = 0;
      for (int i = 0; i < threads; ++i) {
        EmuFiber& f = fibers[i];
        if (f.done) continue;
        emu_current = i;
        emu_block = f.block;
        blockIdx = f.block->idx;
        threadIdx = f.tid;
        emu_switch(&emu_main_sp, f.sp);
        if (emu_trapped) return;
        if (!f.done) ++remaining;
      }
    }
    // A block's pipeline ends between phases: a barrier left mid-phase had arrivals or bytes that did not add up.
    for (size_t i = first; i < first + wave; ++i) {
      for (const auto& [bar, m] : blocks[i].mbarriers)
        if (m.pending != m.count || m.tx != 0) {
          std::fprintf(stderr, "emu: an mbarrier ended mid-phase (%d of %d arrivals, %lld bytes owed)\n",
                       m.count - m.pending, m.count, static_cast<long long>(m.tx));
          std::abort();
        }
      for (int id = 1; id < 16; ++id)
        if (blocks[i].named[id].arrived) {
          std::fprintf(stderr, "emu: named barrier %d ended its block mid-phase (%d of %d arrivals)\n", id,
                       blocks[i].named[id].arrived, blocks[i].named[id].count);
          std::abort();
        }
    }
  }
}

// Work queued on a stream (runtime.cpp): run now, or recorded while the stream captures a graph, whose launch runs
// the recording.
void emu_queue(std::function<void()> op);

// A kernel launch (transform.py): `kernel` calls the kernel with the arguments, which were evaluated at the launch.
template <typename F, typename... A>
void emu_launch4(dim3 grid, dim3 block, size_t smem, cudaStream_t, F kernel, A... args) {
  emu_queue([=] { emu_launch(grid, block, smem, [&] { kernel(args...); }); });
}

// The blocks the emulated device (one multiprocessor) holds at once, whatever the kernel: what runtime.cpp's
// occupancy query answers, and so the most a cooperative launch may have.
inline constexpr int emu_resident_blocks = 2;

// cudaLaunchKernelEx with the cooperative attribute (transform.py): every block at once, refused (as a GPU refuses
// it) where the device cannot hold them all.
template <typename F, typename... A>
cudaError_t emu_launch_cooperative(const cudaLaunchConfig_t& config, F kernel, A... args) {
  if (config.gridDim.x * config.gridDim.y * config.gridDim.z > static_cast<unsigned>(emu_resident_blocks)) {
    std::fprintf(stderr, "emu: a cooperative launch of more blocks than the device holds at once\n");
    return cudaErrorCooperativeLaunchTooLarge;
  }
  emu_queue([=] { emu_launch(config.gridDim, config.blockDim, config.dynamicSmemBytes, [&] { kernel(args...); }, true); });
  return cudaSuccess;
}
