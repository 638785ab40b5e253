#include "attention.cuh"

#include <cmath>
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
// bf16 tensor-core path: 64 query (or key) rows per block of 4 warps, 16 rows per warp, tiles of 64 keys (queries)
// ================================================================================================================
//
// mma.m16n8k16 fragment layouts (PTX ISA), g = lane / 4, t = lane % 4:
//   A 16x16: a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B 16x8:  b0 = (k = 2t..2t+1, n = g), b1 = (k = 2t+8..2t+9, n = g)
//   C 16x8:  c0, c1 = (g, 2t), (g, 2t+1); c2, c3 = (g+8, 2t), (g+8, 2t+1)
// The C fragments of two neighbouring 16x8 score tiles are, converted to bf16, exactly the A fragment of the
// 16x16 probability tile that multiplies V (or dO, Q, K): scores never leave registers.
//
// Two ways to keep the shared tiles and multiply by them, one kernel per pass for both (the Tiles parameter):
//   MmaTiles    any GPU from Ampere on: rows padded by 8 elements; mma.sync per 16x8 block, its B fragments read
//               by ldmatrix, four 8x8 matrices per instruction: as stored where the k index runs along a tile row
//               (K in Q K^T), transposed where it runs down the rows (V in P V).
//   WgmmaTiles  Hopper (sm_90a): rows of 128 bytes in the 128-byte swizzle, the layout wgmma reads B from; the
//               block's four warps are one warpgroup, and one wgmma.m64n64k16 multiplies all 64 rows by 16 of k.
//               A stays in registers in the same layout (wgmma's per warp is mma.sync's), and the accumulator of
//               each warp's 16 rows is the C layout of eight 16x8 blocks, so the kernels are the same.

constexpr int kTile = 64;
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
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
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
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
  __device__ static int at(int r, int c) { return r * kLd + c; }
  // Makes this thread's finished copies readable by the products (ordinary loads read them: nothing to do).
  __device__ static void publish() {}

  // acc[16 x 64] = A[16 x HS] @ tile[64 x HS]^T: scores of this warp's rows against the 64 rows of a tile.
  // One ldmatrix gives b0 and b1 (k halves) of two neighbouring 8-row groups of the tile.
  __device__ static void scores(float (&acc)[8][4], const uint32_t (&a)[HS / 16][4], const bf16* tile, int lane) {
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
        mma(acc[nt], a[kk], b[0], b[1]);
        mma(acc[nt + 1], a[kk], b[2], b[3]);
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

// ---- Hopper's warpgroup products (wgmma). The instructions exist only in code for sm_90a: the other passes
// compile the kernels without them, and they are launched only where wgmma_attention_available(). ----

// A shared-memory matrix descriptor for the 128-byte swizzle with 1024 bytes (8 rows) between row groups: B is
// K-major (16 k values along each row) for the scores and N-major (k down the rows, 64 columns along them) for
// the products with a tile. The leading offset goes unused by both (one 128-byte span along the row).
__device__ __forceinline__ uint64_t swizzled_desc(const bf16* p) {
  const uint64_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return ((addr & 0x3ffff) >> 4) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

// Orders this thread's register writes before the products that read them (the accumulators, A).
__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

// Waits for every product this thread's warpgroup issued.
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
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
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "n"(kTransB ? 1 : 0));
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
  // 16-byte chunk c of row r is stored at chunk c ^ (r % 8)
  __device__ static int at(int r, int c) { return r * HS + ((((c >> 3) ^ (r & 7)) << 3) | (c & 7)); }
  // The products read shared memory through the async proxy, the copies wrote it through the generic one.
  __device__ static void publish() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
  }

  // acc[16 x 64] = A[16 x HS] @ tile[64 x HS]^T, as MmaTiles::scores: tile rows are B's columns, k along them;
  // each 16 of k starts 32 bytes further along the rows.
  __device__ static void scores(float (&acc)[8][4], const uint32_t (&a)[HS / 16][4], const bf16* tile, int) {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < HS / 16; ++kk) wgmma_64x64x16<false>(acc, a[kk], swizzled_desc(tile + kk * 16));
    wgmma_wait();
    pin_all(acc);
  }

  // acc[16 x HS] += P[16 x 64] @ tile[64 x HS], as MmaTiles::accumulate: k runs down the tile, 16 rows each.
  __device__ static void accumulate(float (&acc)[HS / 8][4], const float (&p)[8][4], const bf16* tile, int) {
    uint32_t a[4][4];
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) probs_fragment(a[ks], p, ks);
    pin_all(acc);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) wgmma_64x64x16<true>(acc, a[ks], swizzled_desc(tile + ks * 16 * HS));
    wgmma_wait();
    pin_all(acc);
    pin_all(a);
  }
};

// The block's n shared tiles, from dynamic shared memory aligned for Tiles.
template <class Tiles>
__device__ __forceinline__ bf16* shared_tiles(float* smem) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return reinterpret_cast<bf16*>(reinterpret_cast<char*>(smem) + (Tiles::kAlign - addr % Tiles::kAlign) % Tiles::kAlign);
}
template <class Tiles>
constexpr size_t shared_tiles_bytes(int n) {
  return static_cast<size_t>(n) * Tiles::kElems * sizeof(bf16) + Tiles::kAlign;
}

// 16 bytes from global to shared memory without passing through registers (cp.async); zeros when !valid.
__device__ __forceinline__ void copy16_async(bf16* dst, const bf16* src, bool valid) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(src), "r"(valid ? 16 : 0));
}

// Waits for this thread's copies in flight and publishes them; a barrier after it makes every thread's visible.
template <class Tiles>
__device__ __forceinline__ void wait_async_copies() {
  asm volatile("cp.async.wait_all;\n" ::);
  Tiles::publish();
}

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

// The A fragments of this warp's 16 rows of a shared tile, over the whole head dimension.
template <class Tiles>
__device__ __forceinline__ void load_a_fragments(uint32_t (&a)[Tiles::kHs / 16][4], const bf16* tile, int warp, int g,
                                                 int t) {
  const int r = warp * 16 + g;
#pragma unroll
  for (int kk = 0; kk < Tiles::kHs / 16; ++kk) {
    const int c = kk * 16 + 2 * t;
    a[kk][0] = ld32(tile + Tiles::at(r, c));
    a[kk][1] = ld32(tile + Tiles::at(r + 8, c));
    a[kk][2] = ld32(tile + Tiles::at(r, c + 8));
    a[kk][3] = ld32(tile + Tiles::at(r + 8, c + 8));
  }
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

// Shared tiles: Q, then K and V twice (the next pair loads while the block computes with the current one).
constexpr int kForwardTiles = 5;

// At most four blocks share an SM's shared memory: each may hold 128 registers a thread, where ptxas would
// otherwise, not knowing the dynamic shared memory, spill to fit more.
template <class Tiles>
__global__ void __launch_bounds__(128, 4) attention_forward_mma(bf16* out, float* lse, const bf16* qkv, int T, int C,
                                                            int NH, float scale) {
  constexpr int HS = Tiles::kHs;
  extern __shared__ float smem[];
  bf16* qs = shared_tiles<Tiles>(smem);
  auto ks = [&](int i) { return qs + (1 + i) * Tiles::kElems; };
  auto vs = [&](int i) { return qs + (3 + i) * Tiles::kElems; };
  const int qb = gridDim.x - 1 - blockIdx.x;  // the longest rows first
  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t C3 = 3 * static_cast<int64_t>(C);
  const bf16* base = qkv + static_cast<int64_t>(b) * T * C3 + h * HS;
  const int q0 = qb * kTile;
  const int row0 = q0 + warp * 16 + g;  // this thread's rows: row0 and row0 + 8

  load_tile_rows<Tiles>(qs, base, C3, q0, T);
  load_tile_rows<Tiles>(ks(0), base + C, C3, 0, T);
  load_tile_rows<Tiles>(vs(0), base + 2 * C, C3, 0, T);
  wait_async_copies<Tiles>();
  __syncthreads();
  uint32_t qa[HS / 16][4];
  load_a_fragments<Tiles>(qa, qs, warp, g, t);

  // Scores are kept in base 2 (scaled by log2(e)), so that each exponential is one exp2.
  const float scale2 = scale * kLog2e;
  float o[HS / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // per row; l holds this thread's columns only
  for (int kt = 0; kt <= qb; ++kt) {
    const int cur = kt % 2;
    if (kt < qb) {  // into the pair that every thread finished reading before the last barrier
      load_tile_rows<Tiles>(ks(cur ^ 1), base + C, C3, (kt + 1) * kTile, T);
      load_tile_rows<Tiles>(vs(cur ^ 1), base + 2 * C, C3, (kt + 1) * kTile, T);
    }
    float s[8][4];
    Tiles::scores(s, qa, ks(cur), lane);
    // Keys past the row exist only in the diagonal tile. Every row sees key kt * 64 (kt <= qb), so each row's
    // maximum is finite and no exp sees inf - inf.
    if (kt == qb) mask_future_keys(s, kt * kTile, row0, t);
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
        const float p = exp2f(fmaf(s[nt][e], scale2, -m[e >> 1]));
        s[nt][e] = p;
        sum[e >> 1] += p;
      }
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = l[i] * corr[i] + sum[i];
#pragma unroll
    for (int dt = 0; dt < HS / 8; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[dt][e] *= corr[e >> 1];
    Tiles::accumulate(o, s, vs(cur), lane);
    wait_async_copies<Tiles>();
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
  store_rows<HS>(out + static_cast<int64_t>(b) * T * C + h * HS, C, o, row0, T, 1.0f / l[0], 1.0f / l[1], g, t);
  if (t == 0) {
    float* row_lse = lse + (static_cast<int64_t>(b) * NH + h) * T;
    if (row0 < T) row_lse[row0] = (m[0] + log2f(l[0])) * kLn2;
    if (row0 + 8 < T) row_lse[row0 + 8] = (m[1] + log2f(l[1])) * kLn2;
  }
}

// The backward kernels' slices of batch row b, head h: Q at qkv (K at + C, V at + 2C, rows 3C apart), dO (rows C
// apart), and the rows' lse and delta.
template <int HS>
struct HeadSlices {
  const bf16 *qkv, *dout;
  const float *lse, *delta;
  __device__ HeadSlices(const bf16* qkv_all, const bf16* dout_all, const float* lse_all, const float* delta_all, int b,
                        int h, int T, int C, int NH) {
    qkv = qkv_all + static_cast<int64_t>(b) * T * 3 * C + h * HS;
    dout = dout_all + static_cast<int64_t>(b) * T * C + h * HS;
    lse = lse_all + (static_cast<int64_t>(b) * NH + h) * T;
    delta = delta_all + (static_cast<int64_t>(b) * NH + h) * T;
  }
};

// The backward kernels' four shared tiles: one pair is read into registers once at the start, then the two pairs
// are the double buffer of the other operands: pair 0 is tiles 2 and 3, pair 1 tiles 0 and 1.
constexpr int kBackwardTiles = 4;
template <class Tiles>
__device__ __forceinline__ bf16* pair_tile(bf16* tiles, int pair, int which) {
  return tiles + (2 - 2 * pair + which) * Tiles::kElems;
}

// dQ for 64 query rows per block: dq = scale * dS @ K with dS = P * (dO V^T - delta)
template <class Tiles>
__global__ void __launch_bounds__(128) attention_dq_mma(bf16* dqkv, const float* delta, const bf16* dout,
                                                       const bf16* qkv, const float* lse, int T, int C, int NH,
                                                       float scale) {
  constexpr int HS = Tiles::kHs;
  // Q and dO are read once into registers; then their tiles hold the second K, V pair (double buffering).
  extern __shared__ float smem[];
  bf16* tiles = shared_tiles<Tiles>(smem);
  bf16 *qs = tiles, *gs = tiles + Tiles::kElems;
  auto ks = [&](int pair) { return pair_tile<Tiles>(tiles, pair, 0); };
  auto vs = [&](int pair) { return pair_tile<Tiles>(tiles, pair, 1); };
  const int qb = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t C3 = 3 * static_cast<int64_t>(C);
  const HeadSlices<HS> head(qkv, dout, lse, delta, b, h, T, C, NH);
  const bf16 *base = head.qkv, *g_base = head.dout;
  const float *row_lse = head.lse, *row_delta = head.delta;
  const int q0 = qb * kTile;
  const int row0 = q0 + warp * 16 + g;

  load_tile_rows<Tiles>(qs, base, C3, q0, T);
  load_tile_rows<Tiles>(gs, g_base, C, q0, T);
  load_tile_rows<Tiles>(ks(0), base + C, C3, 0, T);
  load_tile_rows<Tiles>(vs(0), base + 2 * C, C3, 0, T);
  wait_async_copies<Tiles>();
  __syncthreads();
  uint32_t qa[HS / 16][4], ga[HS / 16][4];
  load_a_fragments<Tiles>(qa, qs, warp, g, t);
  load_a_fragments<Tiles>(ga, gs, warp, g, t);
  __syncthreads();  // qs and gs are free for the second pair
  const float scale2 = scale * kLog2e;
  float lse_r[2], delta_r[2];  // lse in base 2
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = row0 + 8 * i;
    lse_r[i] = row < T ? row_lse[row] * kLog2e : 0.0f;
    delta_r[i] = row < T ? row_delta[row] : 0.0f;
  }

  float dq[HS / 8][4] = {};
  for (int kt = 0; kt <= qb; ++kt) {
    const int cur = kt % 2;
    if (kt < qb) {
      load_tile_rows<Tiles>(ks(cur ^ 1), base + C, C3, (kt + 1) * kTile, T);
      load_tile_rows<Tiles>(vs(cur ^ 1), base + 2 * C, C3, (kt + 1) * kTile, T);
    }
    float s[8][4], dp[8][4];
    Tiles::scores(s, qa, ks(cur), lane);
    Tiles::scores(dp, ga, vs(cur), lane);
    if (kt == qb) mask_future_keys(s, kt * kTile, row0, t);
    // Rows past T are neither stored nor mixed into others: their values do not matter.
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        const float p = exp2f(fmaf(s[nt][e], scale2, -lse_r[i]));
        s[nt][e] = p * (dp[nt][e] - delta_r[i]);  // dS
      }
    Tiles::accumulate(dq, s, ks(cur), lane);
    wait_async_copies<Tiles>();
    __syncthreads();
  }
  store_rows<HS>(dqkv + static_cast<int64_t>(b) * T * C3 + h * HS, C3, dq, row0, T, scale, scale, g, t);
}

// dK and dV for 64 key rows per block, over the query tiles at or after them:
// dV = P^T @ dO, dK = scale * dS^T @ Q, computed from S^T = K Q^T and dP^T = V dO^T.
template <class Tiles>
__global__ void __launch_bounds__(128) attention_dkv_mma(bf16* dqkv, const float* delta, const bf16* dout,
                                                        const bf16* qkv, const float* lse, int T, int C, int NH,
                                                        float scale) {
  constexpr int HS = Tiles::kHs;
  // K and V are read once into registers; then their tiles hold the second Q, dO pair (double buffering).
  extern __shared__ float smem[];
  bf16* tiles = shared_tiles<Tiles>(smem);
  __shared__ float lse_s[2][kTile], delta_s[2][kTile];  // of the query tiles; lse in base 2
  bf16 *ks = tiles, *vs = tiles + Tiles::kElems;
  auto qs = [&](int pair) { return pair_tile<Tiles>(tiles, pair, 0); };
  auto gs = [&](int pair) { return pair_tile<Tiles>(tiles, pair, 1); };
  const int kb = blockIdx.x;  // the first key blocks see the most queries: they are handed out first
  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t C3 = 3 * static_cast<int64_t>(C);
  const HeadSlices<HS> head(qkv, dout, lse, delta, b, h, T, C, NH);
  const bf16 *base = head.qkv, *g_base = head.dout;
  const float *row_lse = head.lse, *row_delta = head.delta;
  const int k0 = kb * kTile;
  const int key0 = k0 + warp * 16 + g;  // this thread's keys: key0 and key0 + 8

  const float scale2 = scale * kLog2e;
  // The query tile qt into pair i: Q, dO and the rows' statistics.
  auto load_query_tile = [&](int i, int qt) {
    const int q0 = qt * kTile;
    load_tile_rows<Tiles>(qs(i), base, C3, q0, T);
    load_tile_rows<Tiles>(gs(i), g_base, C, q0, T);
    if (threadIdx.x < kTile) {
      const int q = q0 + threadIdx.x;
      lse_s[i][threadIdx.x] = q < T ? row_lse[q] * kLog2e : 0.0f;
      delta_s[i][threadIdx.x] = q < T ? row_delta[q] : 0.0f;
    }
  };
  load_tile_rows<Tiles>(ks, base + C, C3, k0, T);
  load_tile_rows<Tiles>(vs, base + 2 * C, C3, k0, T);
  load_query_tile(0, kb);
  wait_async_copies<Tiles>();
  __syncthreads();
  uint32_t ka[HS / 16][4], va[HS / 16][4];
  load_a_fragments<Tiles>(ka, ks, warp, g, t);
  load_a_fragments<Tiles>(va, vs, warp, g, t);
  __syncthreads();  // ks and vs are free for the second pair

  float dk[HS / 8][4] = {}, dv[HS / 8][4] = {};
  const int q_tiles = static_cast<int>(ceil_div(T, kTile));
  for (int qt = kb; qt < q_tiles; ++qt) {
    const int q0 = qt * kTile, cur = (qt - kb) % 2;
    if (qt + 1 < q_tiles) load_query_tile(cur ^ 1, qt + 1);
    const float* lse_q = lse_s[cur];
    const float* delta_q = delta_s[cur];
    float st[8][4], dpt[8][4];  // S^T and dP^T: this warp's 16 keys x 64 queries
    Tiles::scores(st, ka, qs(cur), lane);
    Tiles::scores(dpt, va, gs(cur), lane);
    // Only the diagonal tile has queries before a key, and only the last can have queries past T.
    if (qt == kb || q0 + kTile > T) {
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int query = q0 + nt * 8 + 2 * t + (e & 1), key = key0 + (e >> 1) * 8;
          if (key > query || query >= T) st[nt][e] = -INFINITY;
        }
    }
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qi = nt * 8 + 2 * t + (e & 1);
        const float p = exp2f(fmaf(st[nt][e], scale2, -lse_q[qi]));
        st[nt][e] = p;
        dpt[nt][e] = p * (dpt[nt][e] - delta_q[qi]);  // dS^T
      }
    Tiles::accumulate(dv, st, gs(cur), lane);
    Tiles::accumulate(dk, dpt, qs(cur), lane);
    wait_async_copies<Tiles>();
    __syncthreads();
  }
  bf16* d = dqkv + static_cast<int64_t>(b) * T * C3 + h * HS;
  store_rows<HS>(d + C, C3, dk, key0, T, scale, scale, g, t);
  store_rows<HS>(d + 2 * C, C3, dv, key0, T, 1.0f, 1.0f, g, t);
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

template <class Tiles>
void attention_forward_tiles(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH, float scale,
                             cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(T, kTile)), NH, B);
  attention_forward_mma<Tiles><<<grid, 128, shared_tiles_bytes<Tiles>(kForwardTiles), stream>>>(out, lse, qkv, T, C, NH, scale);
  DIXIE_CUDA_LAUNCHED();
}

template <class Tiles>
void attention_backward_tiles(bf16* dqkv, const float* delta, const bf16* dout, const bf16* qkv, const float* lse,
                              int B, int T, int C, int NH, float scale, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(T, kTile)), NH, B);
  const size_t bytes = shared_tiles_bytes<Tiles>(kBackwardTiles);
  attention_dq_mma<Tiles><<<grid, 128, bytes, stream>>>(dqkv, delta, dout, qkv, lse, T, C, NH, scale);
  DIXIE_CUDA_LAUNCHED();
  attention_dkv_mma<Tiles><<<grid, 128, bytes, stream>>>(dqkv, delta, dout, qkv, lse, T, C, NH, scale);
  DIXIE_CUDA_LAUNCHED();
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
      if (tiles == AttentionTiles::kWgmma)
        attention_forward_tiles<WgmmaTiles<kMmaHeadSize>>(out, lse, qkv, B, T, C, NH, scale, stream);
      else
        attention_forward_tiles<MmaTiles<kMmaHeadSize>>(out, lse, qkv, B, T, C, NH, scale, stream);
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
      if (tiles == AttentionTiles::kWgmma)
        attention_backward_tiles<WgmmaTiles<kMmaHeadSize>>(dqkv, delta, dout, qkv, lse, B, T, C, NH, scale, stream);
      else
        attention_backward_tiles<MmaTiles<kMmaHeadSize>>(dqkv, delta, dout, qkv, lse, B, T, C, NH, scale, stream);
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
