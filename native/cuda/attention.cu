#include "attention.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cmath>
#include <stdexcept>
#include <type_traits>

namespace dixie::cuda {

namespace {

// ================================================================================================================
// float32 path: one warp per row, each lane holding up to 4 of the row's head dimensions (d = lane + 32 i)
// ================================================================================================================

constexpr int kMaxHeadSize = 128;
constexpr int kDimsPerLane = kMaxHeadSize / 32;
constexpr int kWarpsPerBlock = 4;

struct RowIndex {
  int b, h, t;
};

// The warp's (b, h, t), t fastest, or false past the end.
__device__ __forceinline__ bool warp_row(RowIndex& ix, int B, int NH, int T) {
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (w >= static_cast<int64_t>(B) * NH * T) return false;
  ix.t = static_cast<int>(w % T);
  ix.h = static_cast<int>((w / T) % NH);
  ix.b = static_cast<int>(w / (static_cast<int64_t>(T) * NH));
  return true;
}

template <typename X>
__device__ __forceinline__ void load_head(float (&v)[kDimsPerLane], const X* p, int hs, int lane) {
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    v[i] = d < hs ? to_f32(p[d]) : 0.0f;
  }
}

template <typename X>
__device__ __forceinline__ float partial_dot(const float (&a)[kDimsPerLane], const X* p, int hs, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hs) s += a[i] * to_f32(p[d]);
  }
  return s;
}

template <typename X>
__device__ __forceinline__ void add_scaled(float (&acc)[kDimsPerLane], float c, const X* p, int hs, int lane) {
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hs) acc[i] += c * to_f32(p[d]);
  }
}

template <typename X>
__device__ __forceinline__ void store_head(X* p, const float (&v)[kDimsPerLane], float scale, int hs, int lane) {
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hs) p[d] = from_f32<X>(v[i] * scale);
  }
}

template <typename X>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) attention_forward_rows(X* out, float* lse, const X* qkv, int B,
                                                                             int T, int C, int NH, float scale) {
  RowIndex ix;
  if (!warp_row(ix, B, NH, T)) return;
  const int lane = threadIdx.x % 32, hs = C / NH;
  const int64_t C3 = 3 * static_cast<int64_t>(C);
  const X* base = qkv + static_cast<int64_t>(ix.b) * T * C3 + ix.h * hs;
  float q[kDimsPerLane], o[kDimsPerLane] = {};
  load_head(q, base + ix.t * C3, hs, lane);
  float m = -INFINITY, l = 0.0f;
  for (int j = 0; j <= ix.t; ++j) {
    const float s = warp_sum(partial_dot(q, base + j * C3 + C, hs, lane)) * scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // 0 on the first key
    const float p = expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) o[i] *= corr;
    add_scaled(o, p, base + j * C3 + 2 * C, hs, lane);
    m = m_new;
  }
  store_head(out + (static_cast<int64_t>(ix.b) * T + ix.t) * C + ix.h * hs, o, 1.0f / l, hs, lane);
  if (lane == 0) lse[(static_cast<int64_t>(ix.b) * NH + ix.h) * T + ix.t] = m + logf(l);
}

// delta[b, h, t] = dout[b, t, h] . out[b, t, h]: the sum over keys of p * dp that the softmax backward subtracts.
// Eight lanes per (row, head), h fastest, each reading K elements (a 16-byte pack, or 1) at a time: a warp reads
// four heads' contiguous spans of a row.
constexpr int kDeltaLanes = 8;

template <typename X, int K>
__global__ void attention_delta_rows(float* delta, const X* dout, const X* out, int B, int T, int C, int NH) {
  using P = Pack<X, K>;
  const int64_t item = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kDeltaLanes;
  const int sub = threadIdx.x % kDeltaLanes, hs = C / NH;
  const bool live = item < static_cast<int64_t>(B) * T * NH;  // every lane stays for the shuffles
  const int64_t row = item / NH;
  const int h = static_cast<int>(item % NH);
  const int64_t o = row * C + h * hs;
  float s = 0.0f;
  for (int p = sub; live && p < hs / P::kN; p += kDeltaLanes) {
    const P g = reinterpret_cast<const P*>(dout + o)[p], y = reinterpret_cast<const P*>(out + o)[p];
#pragma unroll
    for (int k = 0; k < P::kN; ++k) s += to_f32(g.v[k]) * to_f32(y.v[k]);
  }
#pragma unroll
  for (int m = kDeltaLanes / 2; m > 0; m /= 2) s += __shfl_xor_sync(0xffffffffu, s, m);  // within the eight
  if (live && sub == 0) delta[(row / T * NH + h) * T + row % T] = s;
}

// dq_t = scale * sum_{j <= t} p_tj (dout_t . v_j - delta_t) k_j
template <typename X>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) attention_dq_rows(X* dqkv, const float* delta, const X* dout,
                                                                        const X* qkv, const float* lse, int B, int T,
                                                                        int C, int NH, float scale) {
  RowIndex ix;
  if (!warp_row(ix, B, NH, T)) return;
  const int lane = threadIdx.x % 32, hs = C / NH;
  const int64_t C3 = 3 * static_cast<int64_t>(C);
  const X* base = qkv + static_cast<int64_t>(ix.b) * T * C3 + ix.h * hs;
  const int64_t stat = (static_cast<int64_t>(ix.b) * NH + ix.h) * T + ix.t;
  const float row_lse = lse[stat], row_delta = delta[stat];
  float q[kDimsPerLane], g[kDimsPerLane], dq[kDimsPerLane] = {};
  load_head(q, base + ix.t * C3, hs, lane);
  load_head(g, dout + (static_cast<int64_t>(ix.b) * T + ix.t) * C + ix.h * hs, hs, lane);
  for (int j = 0; j <= ix.t; ++j) {
    const float s = warp_sum(partial_dot(q, base + j * C3 + C, hs, lane)) * scale;
    const float dp = warp_sum(partial_dot(g, base + j * C3 + 2 * C, hs, lane));
    const float ds = expf(s - row_lse) * (dp - row_delta) * scale;
    add_scaled(dq, ds, base + j * C3 + C, hs, lane);
  }
  store_head(dqkv + (static_cast<int64_t>(ix.b) * T + ix.t) * C3 + ix.h * hs, dq, 1.0f, hs, lane);
}

// For key row j: dv_j = sum_{t >= j} p_tj dout_t, dk_j = scale * sum_{t >= j} p_tj (dout_t . v_j - delta_t) q_t
template <typename X>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) attention_dkv_rows(X* dqkv, const float* delta, const X* dout,
                                                                         const X* qkv, const float* lse, int B, int T,
                                                                         int C, int NH, float scale) {
  RowIndex ix;
  if (!warp_row(ix, B, NH, T)) return;
  const int lane = threadIdx.x % 32, hs = C / NH, j = ix.t;
  const int64_t C3 = 3 * static_cast<int64_t>(C);
  const X* base = qkv + static_cast<int64_t>(ix.b) * T * C3 + ix.h * hs;
  const X* g_base = dout + static_cast<int64_t>(ix.b) * T * C + ix.h * hs;
  const int64_t stat = (static_cast<int64_t>(ix.b) * NH + ix.h) * T;
  float k[kDimsPerLane], v[kDimsPerLane], dk[kDimsPerLane] = {}, dv[kDimsPerLane] = {};
  load_head(k, base + j * C3 + C, hs, lane);
  load_head(v, base + j * C3 + 2 * C, hs, lane);
  for (int t = j; t < T; ++t) {
    const float s = warp_sum(partial_dot(k, base + t * C3, hs, lane)) * scale;
    const float dp = warp_sum(partial_dot(v, g_base + static_cast<int64_t>(t) * C, hs, lane));
    const float p = expf(s - lse[stat + t]);
    const float ds = p * (dp - delta[stat + t]) * scale;
    add_scaled(dv, p, g_base + static_cast<int64_t>(t) * C, hs, lane);
    add_scaled(dk, ds, base + t * C3, hs, lane);
  }
  X* d = dqkv + (static_cast<int64_t>(ix.b) * T + j) * C3 + ix.h * hs;
  store_head(d + C, dk, 1.0f, hs, lane);
  store_head(d + 2 * C, dv, 1.0f, hs, lane);
}

// ================================================================================================================
// bf16 tensor-core path: each consumer warpgroup (4 warps) owns 64 query (or key) rows, 16 to a warp, and streams
// tiles of 64 keys (queries) past them
// ================================================================================================================
//
// mma.m16n8k16 fragment layouts (PTX ISA), g = lane / 4, t = lane % 4:
//   A 16x16: a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B 16x8:  b0 = (k = 2t..2t+1, n = g), b1 = (k = 2t+8..2t+9, n = g)
//   C 16x8:  c0, c1 = (g, 2t), (g, 2t+1); c2, c3 = (g+8, 2t), (g+8, 2t+1)
// The C fragments of two neighbouring 16x8 score tiles are, converted to bf16, exactly the A fragment of the
// 16x16 probability tile that multiplies V (or dO, Q, K): scores never leave registers.
//
// Each pass (forward, dQ, dK/dV) is written once, as what a warpgroup does with its rows (ForwardRows, DqRows,
// DkvRows), over two choices:
//   Tiles  how shared tiles are laid out and multiplied by.
//          MmaTiles    any GPU from Ampere on: rows padded by 8 elements; mma.sync per 16x8 block, its B fragments
//                      read by ldmatrix, four 8x8 matrices per instruction: as stored where the k index runs along a
//                      tile row (K in Q K^T), transposed where it runs down the rows (V in P V).
//          WgmmaTiles  Hopper (sm_90a): rows of 128 bytes in the 128-byte swizzle, the layout wgmma reads its
//                      operands from; one wgmma.m64n64k16 multiplies the warpgroup's 64 rows by 16 of k. The scores
//                      read both sides from shared memory; the probabilities are A in registers, in mma.sync's
//                      layout (wgmma's per warp is mma.sync's), and the accumulator of each warp's 16 rows is the C
//                      layout of eight 16x8 blocks, so the passes are the same.
//   Feed   how the tiles get there (CopyFeed with MmaTiles, TmaFeed with WgmmaTiles).

constexpr int kTile = 64;
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// The A fragment of the 16x16 probability block ks, from the C fragments of score blocks 2 ks and 2 ks + 1.
__device__ __forceinline__ void probs_fragment(uint32_t (&a)[4], const float (&p)[8][4], int ks) {
  a[0] = pack2(p[2 * ks][0], p[2 * ks][1]);
  a[1] = pack2(p[2 * ks][2], p[2 * ks][3]);
  a[2] = pack2(p[2 * ks + 1][0], p[2 * ks + 1][1]);
  a[3] = pack2(p[2 * ks + 1][2], p[2 * ks + 1][3]);
}

__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 bf16 matrices from shared memory: lane l gives the address of row l % 8 of matrix l / 8 and receives in
// r[i] the pair (row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1) of matrix i, or with kTrans the pair (rows
// 2 (l % 4) and 2 (l % 4) + 1, column l / 4). Rows must be 16-byte aligned.
template <bool kTrans>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* row) {
  const uint32_t addr = shared_address(row);
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

template <int HS>
struct MmaTiles {
  static constexpr int kHs = HS;
  static constexpr int kLd = HS + 8;  // padded row (bank spread for the fragment loads)
  static constexpr int kElems = kTile * kLd;
  static constexpr int kAlign = 16;
  static constexpr bool kAsync = false;
  __device__ static int at(int r, int c) { return r * kLd + c; }

  // The own rows' side of the scores: this warp's A fragments over the whole head dimension, in registers (the
  // tile's place may then take other tiles).
  struct OwnA {
    uint32_t f[HS / 16][4];
  };
  __device__ static OwnA own_a(const bf16* tile, int warp, int g, int t) {
    OwnA a;
    const int r = warp * 16 + g;
#pragma unroll
    for (int kk = 0; kk < HS / 16; ++kk) {
      const int c = kk * 16 + 2 * t;
      a.f[kk][0] = ld32(tile + at(r, c));
      a.f[kk][1] = ld32(tile + at(r + 8, c));
      a.f[kk][2] = ld32(tile + at(r, c + 8));
      a.f[kk][3] = ld32(tile + at(r + 8, c + 8));
    }
    return a;
  }

  // acc[16 x 64] = A[16 x HS] @ tile[64 x HS]^T: scores of this warp's rows against the 64 rows of a tile.
  // One ldmatrix gives b0 and b1 (k halves) of two neighbouring 8-row groups of the tile.
  __device__ static void scores(float (&acc)[8][4], const OwnA& a, const bf16* tile, int lane) {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;
    const int m = lane / 8, r = lane % 8;  // the matrix and row whose address this lane gives
#pragma unroll
    for (int kk = 0; kk < HS / 16; ++kk) {
#pragma unroll
      for (int nt = 0; nt < 8; nt += 2) {
        uint32_t b[4];
        ldmatrix_x4<false>(b, tile + ((nt + m / 2) * 8 + r) * kLd + kk * 16 + (m % 2) * 8);
        mma(acc[nt], a.f[kk], b[0], b[1]);
        mma(acc[nt + 1], a.f[kk], b[2], b[3]);
      }
    }
  }

  // acc[16 x HS] += P[16 x 64] @ tile[64 x HS], P given as the C fragments of 8 score blocks. One transposed
  // ldmatrix gives b0 and b1 (k halves) of two neighbouring 8-column groups.
  __device__ static void accumulate(float (&acc)[HS / 8][4], const float (&p)[8][4], const bf16* tile, int lane) {
    const int m = lane / 8, r = lane % 8;
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      uint32_t a[4];
      probs_fragment(a, p, ks);
#pragma unroll
      for (int dt = 0; dt < HS / 8; dt += 2) {
        uint32_t b[4];
        ldmatrix_x4<true>(b, tile + (ks * 16 + (m % 2) * 8 + r) * kLd + (dt + m / 2) * 8);
        mma(acc[dt], a, b[0], b[1]);
        mma(acc[dt + 1], a, b[2], b[3]);
      }
    }
  }
};

// ---- Hopper's instructions: wgmma, mbarriers and the Tensor Memory Accelerator (TMA). They exist only in code for
// sm_90a: the other passes compile the kernels without them, and they are launched only where
// wgmma_attention_available(). ----

// A shared-memory matrix descriptor for the 128-byte swizzle with 1024 bytes (8 rows) between row groups: B is
// K-major (16 k values along each row) for the scores and N-major (k down the rows, 64 columns along them) for
// the products with a tile. The leading offset goes unused by both (one 128-byte span along the row).
__device__ __forceinline__ uint64_t swizzled_desc(const bf16* p) {
  const uint64_t addr = shared_address(p);
  return ((addr & 0x3ffff) >> 4) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

// Orders this thread's register writes before the products that read them (the accumulators, A).
__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

// Closes the group of the products this thread's warpgroup issued since the last one.
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

// Waits for the products of every committed group but the newest kPending.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
}

// Keeps the compiler from moving a register's uses across the products in flight, which it cannot see.
__device__ __forceinline__ void pin(float& x) { asm volatile("" : "+f"(x)::"memory"); }
__device__ __forceinline__ void pin(uint32_t& x) { asm volatile("" : "+r"(x)::"memory"); }
template <typename T, int N, int M>
__device__ __forceinline__ void pin_all(T (&x)[N][M]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int j = 0; j < M; ++j) pin(x[i][j]);
}

// The 32 accumulator operands of a 64 x 64 wgmma: this warp's 16 rows of d, as eight 16x8 C blocks.
#define DIXIE_WGMMA_64X64_D(d)                                                                                        \
  "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),         \
      "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),     \
      "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),     \
      "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),     \
      "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])

// d[64 x 64] += A[64 x 16] @ B[16 x 64] over the warpgroup: this warp's 16 rows of A in a (the m16n8k16 layout)
// and of d (eight 16x8 C blocks); B at desc, K-major or, with kTransB, N-major.
template <bool kTransB>
__device__ __forceinline__ void wgmma_64x64x16(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, 1, 1, 1, %37;\n"
      : DIXIE_WGMMA_64X64_D(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "n"(kTransB ? 1 : 0));
#else
  __trap();
#endif
}

// An mbarrier's phase completes when its count of arrivals is in and the bytes it was told to expect have landed;
// then the next phase starts with the same count.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, int count) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(count) : "memory");
#endif
}

// Makes the initialised barriers visible to the TMA unit (a barrier after it, to the other threads).
__device__ __forceinline__ void mbarrier_init_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// Arrives on bar, first adding tx bytes to those its phase waits for.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t tx) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(shared_address(bar)), "r"(tx) : "memory");
#endif
}

__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(shared_address(bar)) : "memory");
#endif
}

// Named barrier id (1 to 15; 0 is __syncthreads'), whose phase completes when count threads (whole warps) have
// arrived: sync arrives and waits for that, arrive does not wait.
__device__ __forceinline__ void named_barrier_sync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

// Whether a thread of this launch has already written the record of a stuck wait: the first one to give up does.
__device__ unsigned int stuck_wait_claimed = 0;

// Waits for the completion of bar's phase of this parity: the current phase, or (passing at once) the one before,
// which a fresh barrier counts as complete for parity 1. A correct block waits microseconds; one that has waited
// 10 s is waiting for arrivals or bytes that will never come, so the thread writes where it is into `stuck` (the
// host adds it to the launch failure's message) and stops the kernel, rather than hang a training run or a server
// for good. Nothing here may be a function call (printf is one), or ptxas would serialize the kernel's wgmma.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity, StuckWait* stuck) {
  constexpr unsigned kDeadlockSeconds = 10;
  uint32_t done = 0;
  uint64_t since = 0;
  while (!done) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }\n"
                 : "=r"(done) : "r"(shared_address(bar)), "r"(parity) : "memory");
#else
    __trap();
#endif
    if (done) break;
    const uint64_t now = global_ns();
    if (since == 0) {
      since = now;
    } else if (now - since > kDeadlockSeconds * 1'000'000'000ull) {
      if (atomicCAS(&stuck_wait_claimed, 0u, 1u) == 0u) {
        volatile StuckWait* r = stuck;
        r->block[0] = blockIdx.x;
        r->block[1] = blockIdx.y;
        r->block[2] = blockIdx.z;
        r->thread = threadIdx.x;
        r->seconds = kDeadlockSeconds;
        r->parity = parity;
        r->shared_address = shared_address(bar);
        __threadfence_system();  // the fields reach the host before the flag that says they are there
        r->reported = 1;
        __threadfence_system();
      }
      __trap();
    }
  }
}

// The box at coordinates (0, slot, row, b) of a 4-D tensor map into dst (1024-byte aligned for the 128-byte
// swizzle), its bytes counted on bar as they land. The map must live in parameter, constant or global memory.
__device__ __forceinline__ void tma_load_box(bf16* dst, const CUtensorMap* map, int slot, int row, int b,
                                             uint64_t* bar) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
               ::"r"(shared_address(dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(0), "r"(slot), "r"(row), "r"(b),
                 "r"(shared_address(bar))
               : "memory");
#else
  __trap();
#endif
}

// d[64 x 64] = A[64 x 16] @ B[16 x 64] (+ d where accumulate) over the warpgroup, both from shared memory, K-major
// (k along the rows): A at desc_a, B at desc_b; this warp's 16 rows of d as eight 16x8 C blocks. Starting a sum
// with accumulate 0 leaves d unwritten by the threads: zeros written to it after the products before it were
// issued would make ptxas wait for those products first.
__device__ __forceinline__ void wgmma_64x64x16_shared(float (&d)[8][4], uint64_t desc_a, uint64_t desc_b, int accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, 0, 0;\n}\n"
      : DIXIE_WGMMA_64X64_D(d)
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
#else
  __trap();
#endif
}

template <int HS>
struct WgmmaTiles {
  static_assert(HS == 64, "a swizzled row is 128 bytes: 64 bf16");
  static constexpr int kHs = HS;
  static constexpr int kElems = kTile * HS;
  static constexpr int kAlign = 1024;  // the swizzle is reckoned from the address: tiles start on its period
  static constexpr bool kAsync = true;  // products run on after their issue, to a wait (scores_async, ...)
  // (TMA writes its tiles, and wgmma's descriptors read them, with 16-byte chunk c of row r at chunk c ^ (r % 8))

  // The own rows' side of the scores: their shared tile, which wgmma reads as A (it must stay there).
  using OwnA = const bf16*;
  __device__ static OwnA own_a(const bf16* tile, int, int, int) { return tile; }

  // acc[16 x 64] = A[16 x HS] @ tile[64 x HS]^T, as MmaTiles::scores: tile rows are B's columns, k along them,
  // as A's rows are its rows; each 16 of k starts 32 bytes further along the rows. Issued as a group of its own:
  // acc and the tiles are the products' until a wait for it.
  __device__ static void scores_async(float (&acc)[8][4], OwnA a, const bf16* tile) {
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < HS / 16; ++kk)
      wgmma_64x64x16_shared(acc, swizzled_desc(a + kk * 16), swizzled_desc(tile + kk * 16), kk > 0);
    wgmma_commit();
  }

  // acc[16 x HS] += P[16 x 64] @ tile[64 x HS], P as the A fragments of its four 16 x 16 blocks (probs_fragment):
  // k runs down the tile, 16 rows each. A group of its own, as scores_async; p too is the products' until the wait.
  __device__ static void accumulate_async(float (&acc)[HS / 8][4], uint32_t (&p)[4][4], const bf16* tile) {
    pin_all(acc);
    pin_all(p);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) wgmma_64x64x16<true>(acc, p[ks], swizzled_desc(tile + ks * 16 * HS));
    wgmma_commit();
  }

  __device__ static void scores(float (&acc)[8][4], OwnA a, const bf16* tile, int) {
    scores_async(acc, a, tile);
    wgmma_wait<0>();
    pin_all(acc);
  }

  // As MmaTiles::accumulate.
  __device__ static void accumulate(float (&acc)[HS / 8][4], const float (&p)[8][4], const bf16* tile, int) {
    uint32_t a[4][4];
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) probs_fragment(a[ks], p, ks);
    accumulate_async(acc, a, tile);
    wgmma_wait<0>();
    pin_all(acc);
    pin_all(a);
  }
};

// The block's shared tiles, from dynamic shared memory aligned for Tiles, and the bytes that n of them take.
template <class Tiles>
__device__ __forceinline__ bf16* shared_tiles(float* smem) {
  const uint32_t addr = shared_address(smem);
  return reinterpret_cast<bf16*>(reinterpret_cast<char*>(smem) + (Tiles::kAlign - addr % Tiles::kAlign) % Tiles::kAlign);
}
template <class Tiles>
constexpr size_t shared_tiles_bytes(int n) {
  return static_cast<size_t>(n) * Tiles::kElems * sizeof(bf16) + Tiles::kAlign;
}

// Stores this warp's 16 rows x HS of acc * scale (rows >= T skipped) at dst + row * ld.
template <int HS>
__device__ __forceinline__ void store_rows(bf16* dst, int64_t ld, const float (&acc)[HS / 8][4], int row0, int T,
                                           float scale0, float scale1, int g, int t) {
#pragma unroll
  for (int dt = 0; dt < HS / 8; ++dt) {
    const int col = dt * 8 + 2 * t;
    if (row0 < T)
      *reinterpret_cast<__nv_bfloat162*>(dst + static_cast<int64_t>(row0) * ld + col) =
          __floats2bfloat162_rn(acc[dt][0] * scale0, acc[dt][1] * scale0);
    if (row0 + 8 < T)
      *reinterpret_cast<__nv_bfloat162*>(dst + static_cast<int64_t>(row0 + 8) * ld + col) =
          __floats2bfloat162_rn(acc[dt][2] * scale1, acc[dt][3] * scale1);
  }
}

// Scores of keys after their row (key0 + column > row) become -inf: this thread's elements of a 16 x 64 tile.
__device__ __forceinline__ void mask_future_keys(float (&s)[8][4], int key0, int row0, int t) {
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (key0 + nt * 8 + 2 * t + (e & 1) > row0 + (e >> 1) * 8) s[nt][e] = -INFINITY;
}

// ---- the passes, as a consumer warpgroup sees them ----

// A pass's tensors and shape: qkv [B, T, 3C], dout and out [B, T, C], lse and delta [B, NH, T]. Each pass reads
// and writes its own part of them.
struct PassArgs {
  const bf16* qkv;
  const bf16* dout;
  bf16* out;
  float* lse_out;    // the forward's
  const float* lse;  // the backward's
  bf16* dqkv;
  const float* delta;
  int T, C, NH;
  float scale;
};

// The head slices that tiles are cut from: Q, K, V (in this order in a row of qkv), or dO.
enum class Slice { kQ, kK, kV, kDout };

// Where rows of slice s of batch row b, head h start, and their stride (ld).
__device__ __forceinline__ const bf16* slice_rows(const PassArgs& a, Slice s, int b, int h, int64_t& ld) {
  const int hs = a.C / a.NH;
  if (s == Slice::kDout) {
    ld = a.C;
    return a.dout + static_cast<int64_t>(b) * a.T * a.C + h * hs;
  }
  ld = 3 * static_cast<int64_t>(a.C);
  return a.qkv + static_cast<int64_t>(b) * a.T * ld + static_cast<int>(s) * a.C + h * hs;
}

// The statistics of streamed row r0 + i (dK/dV's queries) into stats [lse in base 2, delta][64]: zero past T.
__device__ __forceinline__ void load_row_stats(float* stats, const PassArgs& a, int b, int h, int r0, int i) {
  const int64_t head = (static_cast<int64_t>(b) * a.NH + h) * a.T;
  const int r = r0 + i;
  stats[i] = r < a.T ? a.lse[head + r] * kLog2e : 0.0f;
  stats[kTile + i] = r < a.T ? a.delta[head + r] : 0.0f;
}

// The 64 rows a consumer warpgroup owns, from own0, 16 to a warp: this thread's are row0 and row0 + 8.
struct OwnRows {
  int b, h, own0, warp, lane, g, t, row0;
  __device__ OwnRows(int b_, int h_, int own0_)
      : b(b_), h(h_), own0(own0_), warp((threadIdx.x / 32) % 4), lane(threadIdx.x % 32), g(lane / 4), t(lane % 4),
        row0(own0 + warp * 16 + g) {}
};

// A pass is a class over its rows with:
//   own_slice(i) for i < kOwnTiles   the tiles of its own rows, taken once by the constructor as Tiles::OwnA
//   streamed_slice(0), (1)           the pair of tiles streamed past them, with the streamed rows' statistics
//                                    where kStats
//   kStreamAfter                     the streamed tiles at or after the own rows (dK/dV), else at or before them
//   step(i, first, second, stats, issued)
//                                    the work with streamed tile i; issued() once it has issued every product
//                                    of the step (where kDefers, before waiting for them)
//   kDefers                          whether step leaves a product that reads tile i's stage in flight, to be
//                                    waited for by step(i + 1) or flush() (DeferredProduct)
//   finish()                         the results stored
//   min_blocks_copied()              the blocks an SM must hold with CopyFeed (launch bounds: registers)

// The product acc += P @ tile that a step leaves to the next where products are asynchronous (kDefers, wgmma):
// issued after the next tile's scores, it runs on the tensor cores while the threads work on those scores
// (FlashAttention-3's overlap within a warpgroup). Its tile is read until the wait for it, in the next step or in
// flush, so the feed holds that tile's stage until then.
template <class Tiles>
struct DeferredProduct {
  static constexpr int HS = Tiles::kHs;
  uint32_t p[4][4];              // P, as the A fragments of its four 16 x 16 blocks
  const bf16* tile = nullptr;   // none before the first step

  // Issued after the step's own products (committed), then issued() (the step's products are all out), then a
  // wait for the step's own products only. One branch for the three: ptxas serializes every product of a kernel
  // whose waits and issues are split across branches taken apart (C7514).
  template <class Issued>
  __device__ void issue_then_wait_for_the_rest(float (&acc)[HS / 8][4], Issued& issued) {
    if (tile) {
      Tiles::accumulate_async(acc, p, tile);
      issued();
      wgmma_wait<1>();
    } else {
      issued();
      wgmma_wait<0>();
    }
  }
  // acc and p are the thread's again.
  __device__ void wait(float (&acc)[HS / 8][4]) {
    wgmma_wait<0>();
    pin_all(acc);
    pin_all(p);
  }
  // The next product, after wait: P from the C fragments of 8 score blocks.
  __device__ void defer(const float (&probs)[8][4], const bf16* next) {
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) probs_fragment(p[ks], probs, ks);
    tile = next;
  }
  __device__ void flush(float (&acc)[HS / 8][4]) {
    Tiles::accumulate_async(acc, p, tile);
    wait(acc);
    tile = nullptr;
  }
};

// The forward: out = softmax(Q K^T * scale) V for the own query rows, with each row's log-sum-exp.
// Where products are asynchronous a step's P V is deferred to the next (DeferredProduct), under whose softmax it
// runs; O is rescaled between the two products as before, so the sums are the same, in the same order.
template <class TilesT>
struct ForwardRows : OwnRows {
  using Tiles = TilesT;
  static constexpr int HS = Tiles::kHs, kOwnTiles = 1;
  static constexpr bool kStreamAfter = false, kStats = false, kDefers = Tiles::kAsync;
  // Four blocks share an SM's shared memory: each may hold 128 registers a thread, where ptxas would otherwise,
  // not knowing the dynamic shared memory, spill to fit more.
  static constexpr int min_blocks_copied() { return 4; }
  __device__ static constexpr Slice own_slice(int) { return Slice::kQ; }
  __device__ static constexpr Slice streamed_slice(int i) { return i == 0 ? Slice::kK : Slice::kV; }

  const PassArgs& args;
  const float scale2;  // scores are kept in base 2 (scaled by log2(e)), so that each exponential is one exp2
  const typename Tiles::OwnA qa;
  float o[HS / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // per row; l holds this thread's columns only
  DeferredProduct<Tiles> pv;  // kDefers

  __device__ ForwardRows(const PassArgs& a, int b, int h, int own0, const bf16* q, const bf16*)
      : OwnRows(b, h, own0), args(a), scale2(a.scale * kLog2e), qa(Tiles::own_a(q, warp, g, t)) {}

  template <class Issued>
  __device__ void step(int kt, const bf16* ks, const bf16* vs, const float*, Issued issued) {
    float s[8][4];
    if constexpr (kDefers) {
      Tiles::scores_async(s, qa, ks);
      pv.issue_then_wait_for_the_rest(o, issued);
      pin_all(s);
    } else {
      Tiles::scores(s, qa, ks, lane);
    }
    // Keys past the row exist only in the diagonal tile. Every row sees key kt * 64 (kt <= the diagonal), so each
    // row's maximum is finite and no exp sees inf - inf.
    if (kt * kTile == own0) mask_future_keys(s, kt * kTile, row0, t);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
    float corr[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));  // the 4 lanes of a row group
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      const float m_new = fmaxf(m[i], mx[i] * scale2);
      corr[i] = exp2f(m[i] - m_new);
      m[i] = m_new;
    }
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float pe = exp2f(fmaf(s[nt][e], scale2, -m[e >> 1]));
        s[nt][e] = pe;
        sum[e >> 1] += pe;
      }
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = l[i] * corr[i] + sum[i];
    if constexpr (kDefers) pv.wait(o);
#pragma unroll
    for (int dt = 0; dt < HS / 8; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[dt][e] *= corr[e >> 1];
    if constexpr (kDefers) {
      pv.defer(s, vs);
    } else {
      Tiles::accumulate(o, s, vs, lane);
      issued();
    }
  }

  __device__ void flush() {
    if constexpr (kDefers) pv.flush(o);
  }

  __device__ void finish() {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
      l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    }
    const int T = args.T;
    store_rows<HS>(args.out + static_cast<int64_t>(b) * T * args.C + h * HS, args.C, o, row0, T, 1.0f / l[0],
                   1.0f / l[1], g, t);
    if (t == 0) {
      float* row_lse = args.lse_out + (static_cast<int64_t>(b) * args.NH + h) * T;
      if (row0 < T) row_lse[row0] = (m[0] + log2f(l[0])) * kLn2;
      if (row0 + 8 < T) row_lse[row0 + 8] = (m[1] + log2f(l[1])) * kLn2;
    }
  }
};

// dQ for the own query rows: dq = scale * dS @ K with dS = P * (dO V^T - delta)
template <class TilesT>
struct DqRows : OwnRows {
  using Tiles = TilesT;
  static constexpr int HS = Tiles::kHs, kOwnTiles = 2;
  static constexpr bool kStreamAfter = false, kStats = false, kDefers = Tiles::kAsync;
  static constexpr int min_blocks_copied() { return 3; }  // 168 registers, which it needs without spilling
  __device__ static constexpr Slice own_slice(int i) { return i == 0 ? Slice::kQ : Slice::kDout; }
  __device__ static constexpr Slice streamed_slice(int i) { return i == 0 ? Slice::kK : Slice::kV; }

  const PassArgs& args;
  const float scale2;
  const typename Tiles::OwnA qa, ga;
  float lse_r[2], delta_r[2];  // lse in base 2
  float dq[HS / 8][4] = {};
  DeferredProduct<Tiles> dsk;  // kDefers: dS K, under the next tile's dS

  __device__ DqRows(const PassArgs& a, int b, int h, int own0, const bf16* q, const bf16* dout)
      : OwnRows(b, h, own0), args(a), scale2(a.scale * kLog2e), qa(Tiles::own_a(q, warp, g, t)),
        ga(Tiles::own_a(dout, warp, g, t)) {
    const int64_t head = (static_cast<int64_t>(b) * a.NH + h) * a.T;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = row0 + 8 * i;
      lse_r[i] = row < a.T ? a.lse[head + row] * kLog2e : 0.0f;
      delta_r[i] = row < a.T ? a.delta[head + row] : 0.0f;
    }
  }

  template <class Issued>
  __device__ void step(int kt, const bf16* ks, const bf16* vs, const float*, Issued issued) {
    float s[8][4], dp[8][4];
    if constexpr (kDefers) {
      Tiles::scores_async(s, qa, ks);
      Tiles::scores_async(dp, ga, vs);
      dsk.issue_then_wait_for_the_rest(dq, issued);
      pin_all(s);
      pin_all(dp);
    } else {
      Tiles::scores(s, qa, ks, lane);
      Tiles::scores(dp, ga, vs, lane);
    }
    if (kt * kTile == own0) mask_future_keys(s, kt * kTile, row0, t);
    // Rows past T are neither stored nor mixed into others: their values do not matter.
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        const float p = exp2f(fmaf(s[nt][e], scale2, -lse_r[i]));
        s[nt][e] = p * (dp[nt][e] - delta_r[i]);  // dS
      }
    if constexpr (kDefers) {
      dsk.wait(dq);
      dsk.defer(s, ks);
    } else {
      Tiles::accumulate(dq, s, ks, lane);
      issued();
    }
  }

  __device__ void flush() {
    if constexpr (kDefers) dsk.flush(dq);
  }

  __device__ void finish() {
    const int64_t C3 = 3 * static_cast<int64_t>(args.C);
    store_rows<HS>(args.dqkv + static_cast<int64_t>(b) * args.T * C3 + h * HS, C3, dq, row0, args.T, args.scale,
                   args.scale, g, t);
  }
};

// dK and dV for the own key rows, over the query tiles at or after them: dV = P^T @ dO, dK = scale * dS^T @ Q,
// computed from S^T = K Q^T and dP^T = V dO^T.
template <class TilesT>
struct DkvRows : OwnRows {
  using Tiles = TilesT;
  static constexpr int HS = Tiles::kHs, kOwnTiles = 2;
  static constexpr bool kStreamAfter = true, kStats = true, kDefers = false;
  static constexpr int min_blocks_copied() { return 1; }
  __device__ static constexpr Slice own_slice(int i) { return i == 0 ? Slice::kK : Slice::kV; }
  __device__ static constexpr Slice streamed_slice(int i) { return i == 0 ? Slice::kQ : Slice::kDout; }

  const PassArgs& args;
  const float scale2;
  const typename Tiles::OwnA ka, va;
  float dk[HS / 8][4] = {}, dv[HS / 8][4] = {};

  __device__ DkvRows(const PassArgs& a, int b, int h, int own0, const bf16* k, const bf16* v)
      : OwnRows(b, h, own0), args(a), scale2(a.scale * kLog2e), ka(Tiles::own_a(k, warp, g, t)),
        va(Tiles::own_a(v, warp, g, t)) {}

  // stats: the query tile's [lse in base 2, delta][64]
  template <class Issued>
  __device__ void step(int qt, const bf16* qs, const bf16* gs, const float* stats, Issued issued) {
    const int q0 = qt * kTile;
    float st[8][4], dpt[8][4];  // S^T and dP^T: this warp's 16 keys x 64 queries
    Tiles::scores(st, ka, qs, lane);
    Tiles::scores(dpt, va, gs, lane);
    // Only the diagonal tile has queries before a key, and only the last can have queries past T.
    if (q0 == own0 || q0 + kTile > args.T) {
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int query = q0 + nt * 8 + 2 * t + (e & 1), key = row0 + (e >> 1) * 8;
          if (key > query || query >= args.T) st[nt][e] = -INFINITY;
        }
    }
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qi = nt * 8 + 2 * t + (e & 1);
        const float p = exp2f(fmaf(st[nt][e], scale2, -stats[qi]));
        st[nt][e] = p;
        dpt[nt][e] = p * (dpt[nt][e] - stats[kTile + qi]);  // dS^T
      }
    Tiles::accumulate(dv, st, gs, lane);
    Tiles::accumulate(dk, dpt, qs, lane);
    issued();
  }

  __device__ void finish() {
    const int64_t C3 = 3 * static_cast<int64_t>(args.C);
    bf16* d = args.dqkv + static_cast<int64_t>(b) * args.T * C3 + h * HS;
    store_rows<HS>(d + args.C, C3, dk, row0, args.T, args.scale, args.scale, g, t);
    store_rows<HS>(d + 2 * args.C, C3, dv, row0, args.T, 1.0f, 1.0f, g, t);
  }
};

// The first of the block's own rows, n of them to a block: the blocks with the most tiles to stream go first.
template <class Rows>
__device__ __forceinline__ int block_own0(int n) {
  return (Rows::kStreamAfter ? blockIdx.x : gridDim.x - 1 - blockIdx.x) * n;
}

// The streamed tiles [first, last] that own rows [own0, own0 + n) meet: those at or before them (the forward,
// dQ), or at or after them (dK/dV); none (first > last) where the rows are all past T.
template <class Rows>
__device__ __forceinline__ void streamed_tiles(int own0, int n, int T, int& first, int& last) {
  const int tiles = static_cast<int>(ceil_div(T, kTile));
  first = Rows::kStreamAfter ? own0 / kTile : 0;
  last = own0 >= T ? -1 : Rows::kStreamAfter ? tiles - 1 : min((own0 + n - 1) / kTile, tiles - 1);
}

// ---- CopyFeed: any GPU from Ampere on. A block is one warpgroup, whose threads copy the next streamed pair
// (cp.async) into one half of a double buffer while they compute with the other. ----

struct CopyFeed {
  static constexpr int kConsumers = 1, kThreads = 128;
  static constexpr size_t kMaxSharedBytes = 99u << 10;  // a block's most on the GPUs it runs on: sm_86 and sm_89's
  template <class Rows>
  static constexpr int min_blocks() {
    return Rows::min_blocks_copied();
  }
  // the two stages' pairs, and their statistics where the pass has them
  template <class Rows>
  static constexpr size_t shared_bytes() {
    return shared_tiles_bytes<typename Rows::Tiles>(4) + (Rows::kStats ? 2 * 2 * kTile * sizeof(float) : 0);
  }
};

// 16 bytes from global to shared memory without passing through registers (cp.async); zeros when !valid.
__device__ __forceinline__ void copy16_async(bf16* dst, const bf16* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src), "r"(valid ? 16 : 0));
}

// Waits for this thread's copies in flight; a barrier after it makes every thread's visible.
__device__ __forceinline__ void wait_async_copies() { asm volatile("cp.async.wait_all;\n" ::); }

// dst[r][0, HS) = src[(r0 + r) * ld + (0, HS)] for the 64 rows of a tile, zero past row T: 16-byte copies that
// run on while the block computes (see wait_async_copies). r0 < T.
template <class Tiles>
__device__ __forceinline__ void load_tile_rows(bf16* dst, const bf16* src, int64_t ld, int r0, int T) {
  constexpr int kChunks = Tiles::kHs / 8;
  for (int c = threadIdx.x; c < kTile * kChunks; c += blockDim.x) {
    const int r = c / kChunks, d = (c % kChunks) * 8;
    const bool valid = r0 + r < T;
    copy16_async(dst + Tiles::at(r, d), src + static_cast<int64_t>(valid ? r0 + r : r0) * ld + d, valid);
  }
}

template <class Rows>
__device__ void run_pass(const CopyFeed&, const PassArgs& args) {
  using Tiles = typename Rows::Tiles;
  static_assert(!std::is_pointer<typename Tiles::OwnA>::value, "the own tiles' place is reused: their A must be in registers");
  static_assert(!Rows::kDefers, "a stage is copied over once its step returns");
  extern __shared__ float smem[];
  bf16* tiles = shared_tiles<Tiles>(smem);
  // the pair of each stage; the own tiles are copied to stage 1 first, and read into registers before the
  // stream's second pair lands there
  auto tile = [&](int stage, int which) { return tiles + (2 * stage + which) * Tiles::kElems; };
  float* stats = reinterpret_cast<float*>(tiles + 4 * Tiles::kElems);  // [stage][lse, delta][64]
  const int h = blockIdx.y, b = blockIdx.z;
  const int own0 = block_own0<Rows>(kTile);
  int first, last;
  streamed_tiles<Rows>(own0, kTile, args.T, first, last);
  auto copy = [&](bf16* dst, Slice s, int r0) {
    int64_t ld;
    const bf16* src = slice_rows(args, s, b, h, ld);
    load_tile_rows<Tiles>(dst, src, ld, r0, args.T);
  };
  auto copy_streamed = [&](int stage, int i) {
    copy(tile(stage, 0), Rows::streamed_slice(0), i * kTile);
    copy(tile(stage, 1), Rows::streamed_slice(1), i * kTile);
    if (Rows::kStats && threadIdx.x < kTile) load_row_stats(stats + stage * 2 * kTile, args, b, h, i * kTile, threadIdx.x);
  };
#pragma unroll
  for (int i = 0; i < Rows::kOwnTiles; ++i) copy(tile(1, i), Rows::own_slice(i), own0);
  copy_streamed(0, first);
  wait_async_copies();
  __syncthreads();
  Rows rows(args, b, h, own0, tile(1, 0), tile(1, 1));
  __syncthreads();  // stage 1 is free for the stream
  for (int i = first; i <= last; ++i) {
    const int cur = (i - first) % 2;
    if (i < last) copy_streamed(cur ^ 1, i + 1);  // into the pair every thread finished with before the last barrier
    rows.step(i, tile(cur, 0), tile(cur, 1), stats + cur * 2 * kTile, [] {});
    wait_async_copies();
    __syncthreads();
  }
  rows.finish();
}

// ---- TmaFeed: Hopper, in the manner of FlashAttention-3. A block is kConsumers warpgroups of 64 own rows each and
// one producer warp after them (a warpgroup's warps must start at a multiple of four). The producer's first lane
// brings every tile in with the TMA, one instruction a tile, swizzled for wgmma on the way, into a ring of kStages
// pairs; its lanes write the streamed rows' statistics. A pair's full barrier counts the producer's 32 arrivals
// and the bytes landed, its empty barrier the consumer threads done with it. The consumers never copy, and wait for
// each other only to take turns at issuing products (where the pass defers them): loads run ahead while they
// multiply. ----

struct TmaFeed {
  CUtensorMap qkv, dout;  // views {hs, heads, T, B} in boxes of 64 rows of one head (see head_tiles)
  StuckWait* stuck;       // where a thread that gives up a wait says so (mbarrier_wait)
  static constexpr int kConsumers = 2, kStages = 3, kThreads = kConsumers * 128 + 32;
  static constexpr size_t kMaxSharedBytes = 227u << 10;  // a block's most on Hopper
  template <class Rows>
  static constexpr int min_blocks() {
    return 1;
  }
  // the own tiles, the ring, its statistics, and the barriers: own tiles landed, and each stage's full and empty
  template <class Rows>
  static constexpr size_t shared_bytes() {
    return shared_tiles_bytes<typename Rows::Tiles>(kConsumers * Rows::kOwnTiles + 2 * kStages) +
           kStages * 2 * kTile * sizeof(float) + (1 + 2 * kStages) * sizeof(uint64_t);
  }
};

template <class Rows>
__device__ void run_pass(const TmaFeed& feed, const PassArgs& args) {
  using Tiles = typename Rows::Tiles;
  constexpr int kC = TmaFeed::kConsumers, kS = TmaFeed::kStages, kOwn = Rows::kOwnTiles;
  constexpr uint32_t kTileBytes = Tiles::kElems * sizeof(bf16);
  extern __shared__ float smem[];
  bf16* own = shared_tiles<Tiles>(smem);                                   // [consumer][own tile]
  bf16* ring = own + kC * kOwn * Tiles::kElems;                            // [stage][pair]
  float* stats = reinterpret_cast<float*>(ring + 2 * kS * Tiles::kElems);  // [stage][lse, delta][64]
  uint64_t* own_full = reinterpret_cast<uint64_t*>(stats + kS * 2 * kTile);
  uint64_t *full = own_full + 1, *empty = full + kS;
  const int h = blockIdx.y, b = blockIdx.z, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int own0 = block_own0<Rows>(kC * kTile);
  int first, last;
  streamed_tiles<Rows>(own0, kC * kTile, args.T, first, last);
  if (threadIdx.x == 0) {
    mbarrier_init(own_full, 1);
    for (int s = 0; s < kS; ++s) {
      mbarrier_init(&full[s], 32);
      mbarrier_init(&empty[s], kC * 128);
    }
    mbarrier_init_fence();
  }
  __syncthreads();

  if (warp == 4 * kC) {  // the producer
    auto load = [&](bf16* dst, Slice s, int row, uint64_t* bar) {
      if (s == Slice::kDout) tma_load_box(dst, &feed.dout, h, row, b, bar);
      else tma_load_box(dst, &feed.qkv, static_cast<int>(s) * args.NH + h, row, b, bar);
    };
    if (lane == 0) {  // the own tiles of the consumers with rows before T (the others have nothing to do)
      const int live = min(kC, static_cast<int>(ceil_div(args.T - own0, kTile)));
      mbarrier_arrive_expect_tx(own_full, live * kOwn * kTileBytes);
      for (int c = 0; c < live; ++c)
        for (int i = 0; i < kOwn; ++i) load(own + (c * kOwn + i) * Tiles::kElems, Rows::own_slice(i), own0 + c * kTile, own_full);
    }
    for (int i = first; i <= last; ++i) {
      const int s = (i - first) % kS;
      mbarrier_wait(&empty[s], (((i - first) / kS) & 1) ^ 1, feed.stuck);  // the first round passes at once
      if (Rows::kStats) {
        load_row_stats(stats + s * 2 * kTile, args, b, h, i * kTile, lane);
        load_row_stats(stats + s * 2 * kTile, args, b, h, i * kTile, lane + 32);
      }
      if (lane == 0) {  // after its statistics: an arrival releases the lane's writes before it
        mbarrier_arrive_expect_tx(&full[s], 2 * kTileBytes);
        load(ring + 2 * s * Tiles::kElems, Rows::streamed_slice(0), i * kTile, &full[s]);
        load(ring + (2 * s + 1) * Tiles::kElems, Rows::streamed_slice(1), i * kTile, &full[s]);
      } else {
        mbarrier_arrive(&full[s]);
      }
    }
    return;
  }

  const int c = warp / 4, mine0 = own0 + c * kTile;
  mbarrier_wait(own_full, 0, feed.stuck);
  Rows rows(args, b, h, mine0, own + c * kOwn * Tiles::kElems, own + (c * kOwn + kOwn - 1) * Tiles::kElems);
  int mine_first, mine_last;
  streamed_tiles<Rows>(mine0, kTile, args.T, mine_first, mine_last);
  // Where the passes defer products, the consumers take turns issuing them, consumer c's products of tile i after
  // c - 1's (FlashAttention-3's ping-pong): while one warpgroup's products run, the other does its softmax, rather
  // than both waiting for the tensor cores at once. Consumer c waits on barrier kTurn + c, which its predecessor
  // arrives on once it has issued; each takes a turn at every tile, its own or not, so that the turns alternate to
  // the end. The first turn has no predecessor and the last no successor, which leaves every barrier between phases.
  constexpr int kTurn = 1, kTurnThreads = 2 * 128;
  auto take_turn = [&](int i) {
    if (Rows::kDefers && (c > 0 || i > first)) named_barrier_sync(kTurn + c, kTurnThreads);
  };
  auto pass_turn = [&](int i) {
    if (Rows::kDefers && (c < kC - 1 || i < last)) named_barrier_arrive(kTurn + (c + 1) % kC, kTurnThreads);
  };
  for (int i = first; i <= last; ++i) {
    const int s = (i - first) % kS;
    mbarrier_wait(&full[s], ((i - first) / kS) & 1, feed.stuck);
    take_turn(i);
    if (i < mine_first || i > mine_last) {
      pass_turn(i);
      mbarrier_arrive(&empty[s]);
      continue;
    }
    rows.step(i, ring + 2 * s * Tiles::kElems, ring + (2 * s + 1) * Tiles::kElems, stats + s * 2 * kTile,
              [&] { pass_turn(i); });
    if constexpr (Rows::kDefers) {
      // A stage is free once the last product that reads it is waited for: the previous tile's, in this step;
      // the last tile's, in flush.
      if (i > mine_first) mbarrier_arrive(&empty[(i - 1 - first) % kS]);
      if (i < mine_last) continue;
      rows.flush();
    }
    mbarrier_arrive(&empty[s]);
  }
  rows.finish();
}

template <class Rows, class Feed>
__global__ void __launch_bounds__(Feed::kThreads, Feed::template min_blocks<Rows>())
    attention_pass(const __grid_constant__ Feed feed, const __grid_constant__ PassArgs args) {
  run_pass<Rows>(feed, args);
}

// ================================================================================================================
// decoding: one warp per (row, head) over the slot's cached keys; scores in shared memory
// ================================================================================================================

template <typename X>
__global__ void attention_decode_kernel(X* out, const X* qkv, const X* k_cache, const X* v_cache,
                                        const int32_t* row_slot, const int32_t* row_pos, int R, int C, int NH,
                                        int n_ctx, float scale) {
  extern __shared__ float smem[];
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int item = blockIdx.x * warps + warp;
  if (item >= R * NH) return;
  const int r = item / NH, h = item % NH, hs = C / NH;
  float* q = smem + static_cast<int64_t>(warp) * (hs + n_ctx);
  float* score = q + hs;
  for (int d = lane; d < hs; d += 32) q[d] = to_f32(qkv[static_cast<int64_t>(r) * 3 * C + h * hs + d]);
  __syncwarp();
  const int n = row_pos[r] + 1;
  const int64_t slot_base = static_cast<int64_t>(row_slot[r]) * n_ctx * C + h * hs;
  const X* K = k_cache + slot_base;
  const X* V = v_cache + slot_base;
  float mx = -INFINITY;
  for (int j = lane; j < n; j += 32) {
    const X* k = K + static_cast<int64_t>(j) * C;
    float s = 0.0f;
    for (int d = 0; d < hs; ++d) s += q[d] * to_f32(k[d]);
    s *= scale;
    score[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int j = lane; j < n; j += 32) {
    const float e = expf(score[j] - mx);
    score[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  __syncwarp();
  for (int d = lane; d < hs; d += 32) {
    float acc = 0.0f;
    int j = 0;
    for (; j + 4 <= n; j += 4) {  // four independent loads in flight
      const float v0 = to_f32(V[static_cast<int64_t>(j) * C + d]), v1 = to_f32(V[static_cast<int64_t>(j + 1) * C + d]);
      const float v2 = to_f32(V[static_cast<int64_t>(j + 2) * C + d]), v3 = to_f32(V[static_cast<int64_t>(j + 3) * C + d]);
      acc += score[j] * v0 + score[j + 1] * v1 + score[j + 2] * v2 + score[j + 3] * v3;
    }
    for (; j < n; ++j) acc += score[j] * to_f32(V[static_cast<int64_t>(j) * C + d]);
    out[static_cast<int64_t>(r) * C + h * hs + d] = from_f32<X>(acc / sum);
  }
}

constexpr int kMmaHeadSize = 64;

bool use_mma(int C, int NH) { return C / NH == kMmaHeadSize && C % 8 == 0; }

using TensorMapEncoder = PFN_cuTensorMapEncodeTiled_v12000;

// The driver's cuTensorMapEncodeTiled, found through the runtime: the backend does not link the driver library.
TensorMapEncoder tensor_map_encoder() {
  static const TensorMapEncoder encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    DIXIE_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
#else
    DIXIE_CUDA_CHECK(cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &found));
#endif
    if (found != cudaDriverEntryPointSuccess || !fn)
      throw std::runtime_error("the CUDA driver has no cuTensorMapEncodeTiled, which the Hopper attention needs");
    return reinterpret_cast<TensorMapEncoder>(fn);
  }();
  return encode;
}

// Rows [B, T, heads * 64] of bf16 as the 4-D view {64, heads, T, B}, in boxes of one head's 64 rows stored in the
// 128-byte swizzle (WgmmaTiles' layout); rows past T read as zeros.
CUtensorMap head_tiles(const bf16* rows, int heads, int T, int B) {
  constexpr cuuint64_t kRowBytes = kMmaHeadSize * sizeof(bf16);
  const cuuint64_t dims[4] = {kMmaHeadSize, static_cast<cuuint64_t>(heads), static_cast<cuuint64_t>(T),
                              static_cast<cuuint64_t>(B)};
  const cuuint64_t strides[3] = {kRowBytes, heads * kRowBytes, static_cast<cuuint64_t>(T) * heads * kRowBytes};
  const cuuint32_t box[4] = {kMmaHeadSize, 1, kTile, 1}, element_steps[4] = {1, 1, 1, 1};
  CUtensorMap map;
  const CUresult r = tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, const_cast<bf16*>(rows), dims, strides,
                                          box, element_steps, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw std::runtime_error("cuTensorMapEncodeTiled failed (error " + std::to_string(r) + ") for the attention's tiles");
  return map;
}

template <class Rows, class Feed>
void launch_pass(const Feed& feed, const PassArgs& args, int B, cudaStream_t stream) {
  constexpr size_t bytes = Feed::template shared_bytes<Rows>();
  static_assert(bytes <= Feed::kMaxSharedBytes, "more shared memory than a block may have on the GPUs this feed runs on");
  if constexpr (bytes > (48u << 10)) {
    auto kernel = attention_pass<Rows, Feed>;
    DIXIE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
  const dim3 grid(static_cast<unsigned>(ceil_div(args.T, kTile * Feed::kConsumers)), args.NH, B);
  attention_pass<Rows, Feed><<<grid, Feed::kThreads, bytes, stream>>>(feed, args);
  DIXIE_CUDA_LAUNCHED();
}

// The passes on the tensor cores, in order: Hopper's (wgmma, TMA) where asked and where the tensors are 16-byte
// aligned as TMA needs, else mma.sync's.
template <template <class> class... Passes>
void tensor_core_passes(const PassArgs& args, int B, AttentionTiles tiles, cudaStream_t stream) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (tiles == AttentionTiles::kWgmma && aligned(args.qkv) && aligned(args.dout)) {
    const TmaFeed feed{head_tiles(args.qkv, 3 * args.NH, args.T, B),
                       args.dout ? head_tiles(args.dout, args.NH, args.T, B) : CUtensorMap{}, stuck_wait_record()};
    (launch_pass<Passes<WgmmaTiles<kMmaHeadSize>>>(feed, args, B, stream), ...);
  } else {
    (launch_pass<Passes<MmaTiles<kMmaHeadSize>>>(CopyFeed{}, args, B, stream), ...);
  }
}

unsigned row_blocks(int B, int T, int NH) {
  return static_cast<unsigned>(ceil_div(static_cast<int64_t>(B) * NH * T, kWarpsPerBlock));
}

template <typename X>
void attention_backward_rows_launch(X* dqkv, const float* delta, const X* dout, const X* qkv, const float* lse, int B,
                                    int T, int C, int NH, float scale, cudaStream_t stream) {
  attention_dq_rows<<<row_blocks(B, T, NH), kWarpsPerBlock * 32, 0, stream>>>(dqkv, delta, dout, qkv, lse, B, T, C, NH, scale);
  DIXIE_CUDA_LAUNCHED();
  attention_dkv_rows<<<row_blocks(B, T, NH), kWarpsPerBlock * 32, 0, stream>>>(dqkv, delta, dout, qkv, lse, B, T, C, NH, scale);
  DIXIE_CUDA_LAUNCHED();
}

}  // namespace

bool attention_supported(int C, int NH, std::string* why) {
  const int hs = C / NH;
  if (hs > kMaxHeadSize) {
    if (why) *why = "head size " + std::to_string(hs) + " is above the CUDA backend's limit of " + std::to_string(kMaxHeadSize);
    return false;
  }
  return true;
}

bool wgmma_attention_available() {
#if defined(DIXIE_CUDA_SM90A)
  int device = 0;
  cudaDeviceProp props;
  DIXIE_CUDA_CHECK(cudaGetDevice(&device));
  DIXIE_CUDA_CHECK(cudaGetDeviceProperties(&props, device));
  return props.major == 9 && props.minor == 0;
#else
  return false;
#endif
}

template <typename X>
void attention_forward(X* out, float* lse, const X* qkv, int B, int T, int C, int NH, AttentionTiles tiles,
                       cudaStream_t stream) {
  const float scale = 1.0f / sqrtf(static_cast<float>(C / NH));
  if constexpr (std::is_same<X, bf16>::value) {
    if (use_mma(C, NH)) {
      tensor_core_passes<ForwardRows>(PassArgs{qkv, nullptr, out, lse, nullptr, nullptr, nullptr, T, C, NH, scale}, B,
                                      tiles, stream);
      return;
    }
  }
  attention_forward_rows<<<row_blocks(B, T, NH), kWarpsPerBlock * 32, 0, stream>>>(out, lse, qkv, B, T, C, NH, scale);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void attention_backward(X* dqkv, float* delta, const X* dout, const X* qkv, const X* out, const float* lse, int B,
                        int T, int C, int NH, AttentionTiles tiles, cudaStream_t stream) {
  const float scale = 1.0f / sqrtf(static_cast<float>(C / NH));
  const int64_t delta_threads = static_cast<int64_t>(B) * T * NH * kDeltaLanes;
  const unsigned delta_blocks = static_cast<unsigned>(ceil_div(delta_threads, 256));
  constexpr int K = Pack<X>::kN;
  if (packable<X>(C / NH, {dout, out})) attention_delta_rows<X, K><<<delta_blocks, 256, 0, stream>>>(delta, dout, out, B, T, C, NH);
  else attention_delta_rows<X, 1><<<delta_blocks, 256, 0, stream>>>(delta, dout, out, B, T, C, NH);
  DIXIE_CUDA_LAUNCHED();
  if constexpr (std::is_same<X, bf16>::value) {
    if (use_mma(C, NH)) {
      tensor_core_passes<DqRows, DkvRows>(PassArgs{qkv, dout, nullptr, nullptr, lse, dqkv, delta, T, C, NH, scale}, B,
                                          tiles, stream);
      return;
    }
  }
  attention_backward_rows_launch(dqkv, delta, dout, qkv, lse, B, T, C, NH, scale, stream);
}

template <typename X>
void attention_decode(X* out, const X* qkv, const X* k_cache, const X* v_cache, const int32_t* row_slot,
                      const int32_t* row_pos, int R, int C, int NH, int n_ctx, cudaStream_t stream) {
  const int hs = C / NH;
  const size_t per_warp = static_cast<size_t>(hs + n_ctx) * sizeof(float);
  const int warps = per_warp * 4 <= (48u << 10) ? 4 : 1;
  const size_t bytes = per_warp * warps;
  if (bytes > (48u << 10))
    DIXIE_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel<X>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
  const unsigned blocks = static_cast<unsigned>(ceil_div(static_cast<int64_t>(R) * NH, warps));
  attention_decode_kernel<<<blocks, warps * 32, bytes, stream>>>(out, qkv, k_cache, v_cache, row_slot, row_pos, R, C,
                                                                 NH, n_ctx, 1.0f / sqrtf(static_cast<float>(hs)));
  DIXIE_CUDA_LAUNCHED();
}

template void attention_forward<float>(float*, float*, const float*, int, int, int, int, AttentionTiles, cudaStream_t);
template void attention_forward<bf16>(bf16*, float*, const bf16*, int, int, int, int, AttentionTiles, cudaStream_t);
template void attention_backward<float>(float*, float*, const float*, const float*, const float*, const float*, int,
                                        int, int, int, AttentionTiles, cudaStream_t);
template void attention_backward<bf16>(bf16*, float*, const bf16*, const bf16*, const bf16*, const float*, int, int,
                                       int, int, AttentionTiles, cudaStream_t);
template void attention_decode<float>(float*, const float*, const float*, const float*, const int32_t*, const int32_t*,
                                      int, int, int, int, cudaStream_t);
template void attention_decode<bf16>(bf16*, const bf16*, const bf16*, const bf16*, const int32_t*, const int32_t*, int,
                                     int, int, int, cudaStream_t);

}  // namespace dixie::cuda
