// GotoBLAS-style sgemm. For each block of up to kMaxBlockRows rows of op(A) and each KC-deep slice of K, one
// parallel region hands out (MC-row tile, kNChunk-column chunk) tasks. A task
//   1. packs the not-yet-claimed groups of its tile's A panels into the shared A block (whoever comes first
//      packs a group, the others pack the next; no barrier between packing and computing),
//   2. packs its columns of op(B) into NR-column panels (private; L1/L2-sized),
//   3. waits until its tile's A panels are all packed, and runs the MR x NR register-blocked micro-kernel
//      over them (B panel in L1, A tile in L2, A block in L3).
// Every element of B is thus read once per A block (decoding, M <= MC: exactly once), and A is packed once per
// slice and shared, so tasks can be small enough to balance two busy cores.
// Packed panels are zero-padded to MR/NR; the kernel is templated on the live row count and stores partial
// columns through masks.
// Decoding (M <= kSmallM rows) is bound by streaming B from memory, so it skips packing: NN streams B rows in
// long runs through register-blocked FMAs, NT takes dot products of A rows with B rows (AVX2 builds; others
// take the packed path).
#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <thread>
#include <type_traits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DIXIE_GEMM_AVX2 1
#endif

namespace dixie {

namespace {

constexpr int64_t kMR = 6;    // rows of the micro-tile
constexpr int64_t kNR = 16;   // columns of the micro-tile (two ymm)
constexpr int64_t kKC = 256;  // K slice: one NR panel of B (16 KB) stays in L1 across an MC tile
constexpr int64_t kKCSmallM = 1024;  // with a single A panel, B panels are used once: longer slices, fewer passes
constexpr int64_t kMC = 264;  // rows per task: 264 x 256 floats of packed A = 270 KB, inside the 512 KB L2
constexpr int64_t kMaxBlockRows = 8 * kMC;  // rows of A packed at once (2 MB at KC = 256)
constexpr int64_t kGroupPanels = 4;         // A panels packed by one claim
constexpr int64_t kMaxGroups = kMaxBlockRows / (kMR * kGroupPanels);
constexpr int64_t kNChunk = 128;            // columns per task: eight NR panels
constexpr double kSerialFlops = 1 << 17;    // below this a parallel region costs more than it saves

// A 64-byte-aligned buffer that only grows; one per thread, so steady-state calls allocate nothing.
class PackBuffer {
 public:
  float* get(int64_t floats) {
    if (floats > capacity_) {
      data_.reset(static_cast<float*>(::operator new[](static_cast<size_t>(floats) * sizeof(float),
                                                       std::align_val_t{64})));
      capacity_ = floats;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], Free> data_;
  int64_t capacity_ = 0;
};

thread_local PackBuffer t_a_pack;  // the calling thread's shared A block
thread_local PackBuffer t_b_pack;  // every thread's private B panel
// Per group of the calling thread's A block: 0 unclaimed, 1 being packed, 2 packed.
thread_local std::atomic<int> t_group_state[kMaxGroups];

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

#ifdef DIXIE_GEMM_AVX2
// Transposes the 8 x 8 block held in r[0..7] (row i in r[i]) in place.
inline void transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

// ---- packing ------------------------------------------------------------------------------------------

// Packing a panel from rows far apart in memory is bound by latency, not bandwidth: fetch this many rows ahead.
constexpr int64_t kPackAhead = 8;

inline void prefetch_bytes(const float* p, int64_t bytes) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(c + b);
  __builtin_prefetch(c + bytes - 1);
}

// Packs rows [i0, i0 + rows) x columns [k0, k0 + kc) of op(A) into consecutive MR-row panels of kc x MR floats,
// the last one zero-padded.
void pack_a_panels(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t rows, int64_t k0, int64_t kc,
                   float* dst) {
  const int64_t full = rows / kMR, tail = rows % kMR;
  if (trans_a) {  // op(A)[i][k] = A[k][i]: row k of A holds all the block's rows contiguously
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = A + (k0 + k) * lda + i0;
      if (k + kPackAhead < kc) prefetch_bytes(src + kPackAhead * lda, rows * 4);
      float* d = dst + k * kMR;
      for (int64_t p = 0; p < full; ++p) std::memcpy(d + p * kc * kMR, src + p * kMR, kMR * sizeof(float));
      if (tail != 0) {
        float* dt = d + full * kc * kMR;
        int64_t r = 0;
        for (; r < tail; ++r) dt[r] = src[full * kMR + r];
        for (; r < kMR; ++r) dt[r] = 0.0f;
      }
    }
    return;
  }
  // op(A)[i][k] = A[i][k]: a transpose of each panel's MR rows.
  for (int64_t p = 0; p < full + (tail != 0); ++p) {
    const int64_t live = std::min(kMR, rows - p * kMR);
    const float* src = A + (i0 + p * kMR) * lda + k0;
    float* d = dst + p * kc * kMR;
    int64_t k = 0;
#ifdef DIXIE_GEMM_AVX2
    if (live == kMR) {
      for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
        for (int64_t i = 0; i < kMR; ++i) r[i] = _mm256_loadu_ps(src + i * lda + k);
        r[6] = r[7] = _mm256_setzero_ps();
        transpose8x8(r);
        // Each 8-wide store spills two floats into the next k's slot, which the next store overwrites.
        for (int64_t q = 0; q < 7; ++q) _mm256_storeu_ps(d + (k + q) * kMR, r[q]);
        _mm_storeu_ps(d + (k + 7) * kMR, _mm256_castps256_ps128(r[7]));
        _mm_storel_pi(reinterpret_cast<__m64*>(d + (k + 7) * kMR + 4), _mm256_extractf128_ps(r[7], 1));
      }
    }
#endif
    for (; k < kc; ++k) {
      int64_t i = 0;
      for (; i < live; ++i) d[k * kMR + i] = src[i * lda + k];
      for (; i < kMR; ++i) d[k * kMR + i] = 0.0f;
    }
  }
}

// Packs columns [j0, j0 + cols) (cols <= NR) x rows [k0, k0 + kc) of op(B) = B into one panel of kc x NR floats.
void pack_b_panel(const float* B, int64_t ldb, int64_t j0, int64_t cols, int64_t k0, int64_t kc, float* dst) {
  for (int64_t k = 0; k < kc; ++k) {
    const float* src = B + (k0 + k) * ldb + j0;
    if (k + kPackAhead < kc) prefetch_bytes(src + kPackAhead * ldb, cols * 4);
    float* d = dst + k * kNR;
    if (cols == kNR) {
#ifdef DIXIE_GEMM_AVX2
      _mm256_store_ps(d, _mm256_loadu_ps(src));
      _mm256_store_ps(d + 8, _mm256_loadu_ps(src + 8));
#else
      std::memcpy(d, src, kNR * sizeof(float));
#endif
    } else {
      int64_t c = 0;
      for (; c < cols; ++c) d[c] = src[c];
      for (; c < kNR; ++c) d[c] = 0.0f;
    }
  }
}

// Packs columns [j0, j0 + cols) (cols <= NR) x rows [k0, k0 + kc) of op(B) = B^T into one panel.
void pack_b_panel_transposed(const float* B, int64_t ldb, int64_t j0, int64_t cols, int64_t k0, int64_t kc,
                             float* dst) {
  // op(B)[k][j] = B[j][k]: full panels go 8 x 8 through registers.
  int64_t k = 0;
#ifdef DIXIE_GEMM_AVX2
  if (cols == kNR) {
    for (; k + 8 <= kc; k += 8) {
      for (int64_t half = 0; half < 2; ++half) {
        const float* src = B + (j0 + half * 8) * ldb + k0 + k;
        __m256 r[8];
        for (int64_t i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ldb);
        transpose8x8(r);
        float* d = dst + k * kNR + half * 8;
        for (int64_t i = 0; i < 8; ++i) _mm256_store_ps(d + i * kNR, r[i]);
      }
    }
  }
#endif
  if (k < kc) {
    for (int64_t c = 0; c < kNR; ++c) {
      if (c < cols) {
        const float* src = B + (j0 + c) * ldb + k0;
        for (int64_t kk = k; kk < kc; ++kk) dst[kk * kNR + c] = src[kk];
      } else {
        for (int64_t kk = k; kk < kc; ++kk) dst[kk * kNR + c] = 0.0f;
      }
    }
  }
}

// ---- micro-kernel ---------------------------------------------------------------------------------------

// C[0:R, 0:cols] = alpha * (a @ b) + beta * C, a: kc x MR packed (first R rows live), b: kc x NR packed.
// beta == 0 never reads C.
#ifdef DIXIE_GEMM_AVX2
alignas(32) constexpr int32_t kMaskTable[32] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0};

// Accumulates row r of the tile into (x0, x1) when the tile has that row. Named registers, not arrays:
// GCC keeps an array of __m256 on the stack and would store it every iteration.
#define DIXIE_GEMM_ROW(r, x0, x1)                     \
  if constexpr (R > r) {                               \
    const __m256 ar = _mm256_broadcast_ss(a + r);      \
    x0 = _mm256_fmadd_ps(ar, b0, x0);                  \
    x1 = _mm256_fmadd_ps(ar, b1, x1);                  \
  }

template <int R>
void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta,
                  int64_t cols) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  // The C tile is read (beta != 0) or written only after the k loop: start fetching its lines now.
  for (int r = 0; r < R; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kNR - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
    DIXIE_GEMM_ROW(0, c00, c01)
    DIXIE_GEMM_ROW(1, c10, c11)
    DIXIE_GEMM_ROW(2, c20, c21)
    DIXIE_GEMM_ROW(3, c30, c31)
    DIXIE_GEMM_ROW(4, c40, c41)
    DIXIE_GEMM_ROW(5, c50, c51)
    a += kMR;
    b += kNR;
  }
  const __m256 acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 vb = _mm256_set1_ps(beta);
  if (cols == kNR) {
    for (int r = 0; r < R; ++r) {
      float* cr = c + r * ldc;
      __m256 v0 = _mm256_mul_ps(acc[r][0], va), v1 = _mm256_mul_ps(acc[r][1], va);
      if (beta == 1.0f) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8));
      } else if (beta != 0.0f) {
        v0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), v0);
        v1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), v1);
      }
      _mm256_storeu_ps(cr, v0);
      _mm256_storeu_ps(cr + 8, v1);
    }
    return;
  }
  const __m256i m0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 16 - cols));
  const __m256i m1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 24 - cols));
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    __m256 v0 = _mm256_mul_ps(acc[r][0], va), v1 = _mm256_mul_ps(acc[r][1], va);
    if (beta != 0.0f) {
      v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), v0);
      v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), v1);
    }
    _mm256_maskstore_ps(cr, m0, v0);
    _mm256_maskstore_ps(cr + 8, m1, v1);
  }
}
#undef DIXIE_GEMM_ROW
#else
template <int R>
void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta,
                  int64_t cols) {
  float acc[R][kNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int r = 0; r < R; ++r) {
      const float ar = a[r];
      for (int64_t j = 0; j < kNR; ++j) acc[r][j] += ar * b[j];
    }
    a += kMR;
    b += kNR;
  }
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    for (int64_t j = 0; j < cols; ++j) {
      cr[j] = beta == 0.0f ? alpha * acc[r][j] : alpha * acc[r][j] + beta * cr[j];
    }
  }
}
#endif

using MicroKernel = void (*)(int64_t, const float*, const float*, float*, int64_t, float, float, int64_t);
constexpr MicroKernel kKernels[kMR + 1] = {nullptr,          micro_kernel<1>, micro_kernel<2>, micro_kernel<3>,
                                           micro_kernel<4>, micro_kernel<5>, micro_kernel<6>};

// ---- small M (decoding) ----------------------------------------------------------------------------------
// With a handful of rows, C = A @ op(B) is bound by streaming B from memory. Packing B would copy it once
// more through strided rows, so these kernels read B in place, in long contiguous runs the hardware
// prefetcher follows. A arrives repacked with alpha folded in.
#ifdef DIXIE_GEMM_AVX2
constexpr int64_t kSmallM = 8;      // at most this many rows take the small-M path (measured crossover)
constexpr int64_t kSmallRows = 4;   // rows per register block
constexpr int64_t kSmallKB = 16;    // NN: B rows per pass over the task's columns (held in L1 for all row groups)
constexpr int64_t kSmallGroup = 24;  // NN: columns per register block (3 ymm x kSmallRows rows)
constexpr int64_t kSmallChunk = 16 * kSmallGroup;  // NN: most columns per task (8 x 384 sums stay in L1)
constexpr int64_t kSmallNTChunk = 64;             // NT: rows of B (columns of C) per task

#define DIXIE_UNROLL _Pragma("GCC unroll 16")

// Lanes [0, n) set, n in [0, 8].
inline __m256i lane_mask(int64_t n) {
  n = std::max<int64_t>(0, std::min<int64_t>(8, n));
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 16 - n));
}

// sums[0:R, 0:24] += a[kb:ke, 0:R] @ B[kb:ke, 0:live] (a k-major with a_stride floats per k; B row stride ldb).
template <int R, bool kPartial>
void small_nn_block(int64_t kb, int64_t ke, const float* a, int64_t a_stride, const float* b, int64_t ldb,
                    int64_t live, float* sums, int64_t sums_stride) {
  __m256 acc[R][3];
  DIXIE_UNROLL for (int r = 0; r < R; ++r) DIXIE_UNROLL for (int v = 0; v < 3; ++v) {
    acc[r][v] = _mm256_load_ps(sums + r * sums_stride + v * 8);
  }
  __m256i mask[3];
  DIXIE_UNROLL for (int v = 0; v < 3; ++v) mask[v] = lane_mask(live - v * 8);
  for (int64_t k = kb; k < ke; ++k) {
    const float* row = b + k * ldb;
    __builtin_prefetch(row + 4 * kSmallGroup);  // four blocks ahead on this row
    __builtin_prefetch(row + 4 * kSmallGroup + kSmallGroup - 1);
    __m256 bv[3];
    DIXIE_UNROLL for (int v = 0; v < 3; ++v) {
      bv[v] = kPartial ? _mm256_maskload_ps(row + v * 8, mask[v]) : _mm256_loadu_ps(row + v * 8);
    }
    DIXIE_UNROLL for (int r = 0; r < R; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + k * a_stride + r);
      DIXIE_UNROLL for (int v = 0; v < 3; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
  DIXIE_UNROLL for (int r = 0; r < R; ++r) DIXIE_UNROLL for (int v = 0; v < 3; ++v) {
    _mm256_store_ps(sums + r * sums_stride + v * 8, acc[r][v]);
  }
}

template <bool kPartial>
void small_nn_rows(int64_t M, int64_t kb, int64_t ke, const float* a, const float* b, int64_t ldb, int64_t live,
                   float* sums, int64_t sums_stride) {
  for (int64_t i = 0; i < M; i += kSmallRows) {
    const float* ai = a + i;
    float* si = sums + i * sums_stride;
    switch (std::min(kSmallRows, M - i)) {
      case 1: small_nn_block<1, kPartial>(kb, ke, ai, M, b, ldb, live, si, sums_stride); break;
      case 2: small_nn_block<2, kPartial>(kb, ke, ai, M, b, ldb, live, si, sums_stride); break;
      case 3: small_nn_block<3, kPartial>(kb, ke, ai, M, b, ldb, live, si, sums_stride); break;
      default: small_nn_block<4, kPartial>(kb, ke, ai, M, b, ldb, live, si, sums_stride); break;
    }
  }
}

// C[0:M, j0:j1] = a @ B[:, j0:j1] + beta * C, j1 - j0 <= kSmallChunk; a is K x M (k-major).
void small_nn(int64_t M, int64_t K, const float* a, const float* B, int64_t ldb, int64_t j0, int64_t j1, float beta,
              float* C, int64_t ldc) {
  alignas(32) float sums[kSmallM][kSmallChunk];
  const int64_t width = j1 - j0, groups = (width + kSmallGroup - 1) / kSmallGroup;
  for (int64_t i = 0; i < M; ++i) std::fill(sums[i], sums[i] + groups * kSmallGroup, 0.0f);
  // Passes of kSmallKB rows across all the task's columns: kSmallKB sequential streams through B.
  for (int64_t kb = 0; kb < K; kb += kSmallKB) {
    const int64_t ke = std::min(K, kb + kSmallKB);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t live = std::min(kSmallGroup, width - g * kSmallGroup);
      const float* b = B + j0 + g * kSmallGroup;
      if (live == kSmallGroup) {
        small_nn_rows<false>(M, kb, ke, a, b, ldb, live, &sums[0][g * kSmallGroup], kSmallChunk);
      } else {
        small_nn_rows<true>(M, kb, ke, a, b, ldb, live, &sums[0][g * kSmallGroup], kSmallChunk);
      }
    }
  }
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc + j0;
    for (int64_t j = 0; j < width; ++j) c[j] = beta == 0.0f ? sums[i][j] : sums[i][j] + beta * c[j];
  }
}

inline float hsum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// C[0:R, 0:NB] = a @ b^T + beta * C: R rows of a (row stride K) and NB rows of b, dot products along K.
template <int R, int NB>
void small_nt_block(int64_t K, const float* a, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  __m256 acc[R][NB];
  DIXIE_UNROLL for (int r = 0; r < R; ++r) DIXIE_UNROLL for (int n = 0; n < NB; ++n) acc[r][n] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 av[R];
    DIXIE_UNROLL for (int r = 0; r < R; ++r) av[r] = _mm256_loadu_ps(a + r * K + k);
    DIXIE_UNROLL for (int n = 0; n < NB; ++n) {
      const __m256 bv = _mm256_loadu_ps(b + n * ldb + k);
      DIXIE_UNROLL for (int r = 0; r < R; ++r) acc[r][n] = _mm256_fmadd_ps(av[r], bv, acc[r][n]);
    }
  }
  if (k < K) {
    const __m256i mask = lane_mask(K - k);
    __m256 av[R];
    DIXIE_UNROLL for (int r = 0; r < R; ++r) av[r] = _mm256_maskload_ps(a + r * K + k, mask);
    DIXIE_UNROLL for (int n = 0; n < NB; ++n) {
      const __m256 bv = _mm256_maskload_ps(b + n * ldb + k, mask);
      DIXIE_UNROLL for (int r = 0; r < R; ++r) acc[r][n] = _mm256_fmadd_ps(av[r], bv, acc[r][n]);
    }
  }
  DIXIE_UNROLL for (int r = 0; r < R; ++r) DIXIE_UNROLL for (int n = 0; n < NB; ++n) {
    const float dot = hsum8(acc[r][n]);
    float& out = c[r * ldc + n];
    out = beta == 0.0f ? dot : dot + beta * out;
  }
}

// All M rows against NB rows of b; b's rows stay in L1 while the row groups of a pass over them.
template <int NB>
void small_nt_rows(int64_t M, int64_t K, const float* a, const float* b, int64_t ldb, float beta, float* c,
                   int64_t ldc) {
  for (int64_t i = 0; i < M; i += kSmallRows) {
    const float* ai = a + i * K;
    float* ci = c + i * ldc;
    switch (std::min(kSmallRows, M - i)) {
      case 1: small_nt_block<1, NB>(K, ai, b, ldb, beta, ci, ldc); break;
      case 2: if constexpr (2 * NB <= 12) small_nt_block<2, NB>(K, ai, b, ldb, beta, ci, ldc); break;
      case 3: if constexpr (3 * NB <= 12) small_nt_block<3, NB>(K, ai, b, ldb, beta, ci, ldc); break;
      default: if constexpr (4 * NB <= 12) small_nt_block<4, NB>(K, ai, b, ldb, beta, ci, ldc); break;
    }
  }
}

// C[0:M, j0:j1] = a @ B[j0:j1, :]^T + beta * C; a is M x K. Blocks of as many B rows as keep the sums of one
// row group (NB x up to 4 rows) in registers.
void small_nt(int64_t M, int64_t K, const float* a, const float* B, int64_t ldb, int64_t j0, int64_t j1, float beta,
              float* C, int64_t ldc) {
  auto blocks = [&](auto nb) {
    constexpr int NB = decltype(nb)::value;
    int64_t j = j0;
    for (; j + NB <= j1; j += NB) small_nt_rows<NB>(M, K, a, B + j * ldb, ldb, beta, C + j, ldc);
    for (; j < j1; ++j) small_nt_rows<1>(M, K, a, B + j * ldb, ldb, beta, C + j, ldc);
  };
  switch (M) {
    case 1: blocks(std::integral_constant<int, 8>{}); break;
    case 2: blocks(std::integral_constant<int, 5>{}); break;
    case 3: blocks(std::integral_constant<int, 4>{}); break;
    default: blocks(std::integral_constant<int, 3>{}); break;
  }
}

#undef DIXIE_UNROLL

struct SmallGemm {
  bool trans_b;
  int64_t M, N, K;
  const float* a;  // repacked op(A) times alpha: NN k-major (K x M), NT row-major (M x K)
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  int64_t chunk;  // columns per task

  void compute(int64_t t) const {
    const int64_t j0 = t * chunk, j1 = std::min(N, j0 + chunk);
    (trans_b ? small_nt : small_nn)(M, K, a, B, ldb, j0, j1, beta, C, ldc);
  }
};
#endif

// ---- driver ---------------------------------------------------------------------------------------------

struct Gemm {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha, beta;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  int64_t kc_max;  // K slice length for this call
  // The current A block and K slice:
  int64_t i0 = 0, rows = 0, k0 = 0, kc = 0;
  float beta_slice = 0.0f;  // beta on the first K slice, 1 after
  float* a_pack = nullptr;
  std::atomic<int>* group_state = nullptr;
  int64_t a_panels = 0;
  int64_t tiles = 0, tile_panels = 0, chunks = 0;

  // Packs every group of A panels in [p_begin, p_end) that no other thread has claimed.
  void claim_and_pack_a(int64_t p_begin, int64_t p_end) const {
    for (int64_t g = p_begin / kGroupPanels; g * kGroupPanels < p_end; ++g) {
      int expected = 0;
      if (group_state[g].load(std::memory_order_relaxed) != 0 ||
          !group_state[g].compare_exchange_strong(expected, 1, std::memory_order_relaxed)) {
        continue;
      }
      const int64_t first = g * kGroupPanels * kMR;
      const int64_t n = std::min(kGroupPanels * kMR, rows - first);
      pack_a_panels(trans_a, A, lda, i0 + first, n, k0, kc, a_pack + first * kc);
      group_state[g].store(2, std::memory_order_release);
    }
  }

  // A packer that the OS has descheduled may take a while: spin briefly, then give the core away.
  void wait_for_a(int64_t p_begin, int64_t p_end) const {
    for (int64_t g = p_begin / kGroupPanels; g * kGroupPanels < p_end; ++g) {
      for (int spins = 0; group_state[g].load(std::memory_order_acquire) != 2; ++spins) {
        if (spins < 4096) {
          cpu_relax();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }

  // Task t covers A panels of tile t / chunks and columns of chunk t % chunks.
  void compute(int64_t t) const {
    const int64_t tile = t / chunks, chunk = t % chunks;
    const int64_t p_begin = tile * tile_panels, p_end = std::min(a_panels, p_begin + tile_panels);
    const int64_t j_begin = chunk * kNChunk, j_end = std::min(N, j_begin + kNChunk);
    claim_and_pack_a(p_begin, p_end);
    float* b = t_b_pack.get(kc_max * kNR);
    for (int64_t j = j_begin; j < j_end; j += kNR) {
      const int64_t cols = std::min(kNR, j_end - j);
      if (trans_b) {
        pack_b_panel_transposed(B, ldb, j, cols, k0, kc, b);
      } else {
        pack_b_panel(B, ldb, j, cols, k0, kc, b);
      }
      if (j == j_begin) wait_for_a(p_begin, p_end);
      const int64_t j_next = j + kNR, cols_next = std::min(kNR, j_end - j_next);
      for (int64_t p = p_begin; p < p_end; ++p) {
        if (cols_next > 0) prefetch_b_panel(j_next, cols_next, p - p_begin, p_end - p_begin);
        const int64_t r = std::min(kMR, rows - p * kMR);
        kKernels[r](kc, a_pack + p * kc * kMR, b, C + (i0 + p * kMR) * ldc + j, ldc, alpha, beta_slice, cols);
      }
    }
  }

  // Fetches part `part` of `parts` of the source of the op(B) panel at columns [j, j + cols) into cache while
  // the kernels work on the current panel, so packing it next reads from L2 instead of waiting on L3 or memory.
  void prefetch_b_panel(int64_t j, int64_t cols, int64_t part, int64_t parts) const {
    if (!trans_b) {  // kc rows of cols floats
      for (int64_t k = kc * part / parts, end = kc * (part + 1) / parts; k < end; ++k) {
        const char* row = reinterpret_cast<const char*>(B + (k0 + k) * ldb + j);
        __builtin_prefetch(row);
        __builtin_prefetch(row + cols * 4 - 1);
      }
      return;
    }
    const int64_t lines = (kc * 4 + 63) / 64 + 1;  // of each of the cols rows of kc floats (+1: misalignment)
    for (int64_t c = 0; c < cols; ++c) {
      const char* row = reinterpret_cast<const char*>(B + (j + c) * ldb + k0);
      for (int64_t l = lines * part / parts, end = lines * (part + 1) / parts; l < end; ++l) {
        __builtin_prefetch(std::min(row + l * 64, row + kc * 4 - 1));
      }
    }
  }
};

void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) {
      std::fill(c, c + N, 0.0f);
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  }
}

// Splits `n` into the fewest near-equal parts of at most `max_part`, each part a multiple of `align` but the last.
int64_t balanced_part(int64_t n, int64_t max_part, int64_t align) {
  const int64_t parts = (n + max_part - 1) / max_part;
  const int64_t part = (n + parts - 1) / parts;
  return std::min(max_part, (part + align - 1) / align * align);
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool& pool) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const bool serial = pool.size() == 1 || 2.0 * static_cast<double>(M) * N * K < kSerialFlops;
  // Every region's closure below holds one pointer, so std::function stores it inline: no allocation per call.
  auto run = [&](int64_t n_tasks, const auto& body) {
    if (serial) {
      for (int64_t t = 0; t < n_tasks; ++t) body(t, 0);
    } else {
      pool.run(n_tasks, body);
    }
  };
#ifdef DIXIE_GEMM_AVX2
  if (M <= kSmallM) {
    float* a = t_a_pack.get(M * K);
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t k = 0; k < K; ++k) {
        const float v = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);
        a[trans_b ? i * K + k : k * M + i] = v;
      }
    }
    // NN: the widest chunks that still give every thread the same number (long contiguous runs of each B row).
    const int64_t threads = pool.size();
    const int64_t nn_tasks = threads * ((N + threads * kSmallChunk - 1) / (threads * kSmallChunk));
    const int64_t nn_chunk = ((N + nn_tasks - 1) / nn_tasks + kSmallGroup - 1) / kSmallGroup * kSmallGroup;
    // NT: several tasks per thread, so a core taken by another process does not hold the rest up.
    const int64_t nt_chunk = std::min(kSmallNTChunk, (N + 4 * threads - 1) / (4 * threads));
    const int64_t chunk = trans_b ? nt_chunk : nn_chunk;
    const SmallGemm sg{trans_b, M, N, K, a, B, ldb, beta, C, ldc, chunk};
    const SmallGemm* sp = &sg;
    run((N + chunk - 1) / chunk, [sp](int64_t t, int) { sp->compute(t); });
    return;
  }
#endif

  Gemm g{trans_a, trans_b, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc, 0};
  g.kc_max = balanced_part(K, M <= kMR ? kKCSmallM : kKC, 8);
  const int64_t block_rows = balanced_part(M, kMaxBlockRows, kMR);
  g.a_pack = t_a_pack.get(block_rows * g.kc_max);
  g.group_state = t_group_state;
  g.chunks = (N + kNChunk - 1) / kNChunk;
  const Gemm* gp = &g;
  const auto compute = [gp](int64_t t, int) { gp->compute(t); };
  for (g.i0 = 0; g.i0 < M; g.i0 += block_rows) {
    g.rows = std::min(block_rows, M - g.i0);
    g.a_panels = (g.rows + kMR - 1) / kMR;
    const int64_t tile_rows = balanced_part(g.rows, kMC, kMR * kGroupPanels);
    g.tile_panels = tile_rows / kMR;
    g.tiles = (g.a_panels + g.tile_panels - 1) / g.tile_panels;
    for (g.k0 = 0; g.k0 < K; g.k0 += g.kc_max) {
      g.kc = std::min(g.kc_max, K - g.k0);
      g.beta_slice = g.k0 == 0 ? beta : 1.0f;
      for (int64_t grp = 0; grp * kGroupPanels < g.a_panels; ++grp) {
        g.group_state[grp].store(0, std::memory_order_relaxed);
      }
      run(g.tiles * g.chunks, compute);
    }
  }
}

bool sgemm_one_pass(int64_t M, int64_t K) {
#ifdef DIXIE_GEMM_AVX2
  return M <= kSmallM || K <= (M <= kMR ? kKCSmallM : kKC);
#else
  (void)M;
  (void)K;
  return false;  // the portable kernel's alpha * sum + C may be fused into one rounding
#endif
}

}  // namespace dixie
