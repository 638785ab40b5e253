#include "decode_matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <type_traits>

#include "core/dtype.h"
#include "vec_math.h"

#if defined(DIXIE_AVX2) && defined(__F16C__)
#define DIXIE_F16C 1
#endif

namespace dixie {

namespace {

// Loaders: one element, or (with AVX2) eight elements, of a weight type as float32 (exact for all three).
struct LoadF32 {
  using T = float;
  static float one(const float* p) { return *p; }
#ifdef DIXIE_AVX2
  static __m256 eight(const float* p) { return _mm256_loadu_ps(p); }
#endif
};

struct LoadF16 {
  using T = uint16_t;
  static float one(const uint16_t* p) { return f16_to_f32(*p); }
#ifdef DIXIE_AVX2
  static __m256 eight(const uint16_t* p) {
#ifdef DIXIE_F16C
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
    alignas(32) float f[8];
    for (int i = 0; i < 8; ++i) f[i] = f16_to_f32(p[i]);
    return _mm256_load_ps(f);
#endif
  }
#endif
};

struct LoadBF16 {
  using T = uint16_t;
  static float one(const uint16_t* p) { return bf16_to_f32(*p); }
#ifdef DIXIE_AVX2
  static __m256 eight(const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
#endif
};

int num_parts(int C) { return (C + kPartRows - 1) / kPartRows; }

// out[0, n) = epilogue(y[0, n)). Vector and scalar paths give the same bits (gelu1 is a lane of gelu256), so
// where the vectors start does not change a result.
void finish(float* out, const float* y, int n, Epilogue epilogue) {
  int i = 0;
#ifdef DIXIE_AVX2
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(y + i);
    switch (epilogue) {
      case Epilogue::kStore: _mm256_storeu_ps(out + i, v); break;
      case Epilogue::kGelu: _mm256_storeu_ps(out + i, gelu256(v)); break;
      case Epilogue::kResidual: _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), v)); break;
    }
  }
#endif
  for (; i < n; ++i) {
    switch (epilogue) {
      case Epilogue::kStore: out[i] = y[i]; break;
      case Epilogue::kGelu: out[i] = gelu1(y[i]); break;
      case Epilogue::kResidual: out[i] += y[i]; break;
    }
  }
}

// ---- streaming schedule (few rows) ---------------------------------------------------------------------------

// acc[R, OC] = inp[R, 0:kn] @ w[0:kn, 0:OC] (rows of inp ldx apart, w at the part's first row), each element an
// fma chain over k from 0. Eight rows of w are read together (eight streams through memory, which is what
// keeps it busy); the sums of at most kStreamRows rows stay in L1/L2. kRows > 0 fixes R at compile time, so
// that a single row keeps its inputs in registers.
template <class W, int kRows>
void stream_part(float* acc, const float* inp, int ldx, const typename W::T* w, int R, int kn, int OC) {
  if (kRows > 0) R = kRows;
  std::fill(acc, acc + static_cast<size_t>(R) * OC, 0.0f);
  constexpr int KB = 8;
  int k = 0;
#ifdef DIXIE_AVX2
  for (; k + KB <= kn; k += KB) {
    const typename W::T* wk = w + static_cast<size_t>(k) * OC;
    __m256 x1[KB];  // the inputs of a single row
    if (kRows == 1)
      for (int i = 0; i < KB; ++i) x1[i] = _mm256_set1_ps(inp[k + i]);
    int j = 0;
    for (; j + 8 <= OC; j += 8) {
      __m256 v[KB];
      for (int i = 0; i < KB; ++i) v[i] = W::eight(wk + static_cast<size_t>(i) * OC + j);
      for (int r = 0; r < R; ++r) {
        const float* x = inp + static_cast<size_t>(r) * ldx + k;
        float* o = acc + static_cast<size_t>(r) * OC + j;
        __m256 a = _mm256_loadu_ps(o);
        for (int i = 0; i < KB; ++i) a = _mm256_fmadd_ps(kRows == 1 ? x1[i] : _mm256_broadcast_ss(x + i), v[i], a);
        _mm256_storeu_ps(o, a);
      }
    }
    for (; j < OC; ++j)
      for (int r = 0; r < R; ++r) {
        float& o = acc[static_cast<size_t>(r) * OC + j];
        for (int i = 0; i < KB; ++i) o = std::fma(inp[static_cast<size_t>(r) * ldx + k + i], W::one(wk + static_cast<size_t>(i) * OC + j), o);
      }
  }
#endif
  for (; k < kn; ++k) {
    const typename W::T* wk = w + static_cast<size_t>(k) * OC;
    for (int j = 0; j < OC; ++j) {
      const float v = W::one(wk + j);
      for (int r = 0; r < R; ++r) {
        float& o = acc[static_cast<size_t>(r) * OC + j];
        o = std::fma(inp[static_cast<size_t>(r) * ldx + k], v, o);
      }
    }
  }
}

// Waits (spinning, then yielding the core) until counter reaches target.
void wait_for(const std::atomic<int>& counter, int target) {
  for (int spins = 0; counter.load(std::memory_order_acquire) < target; ++spins) {
    if (spins < 4096) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

template <class W>
void stream_matmul(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* partials, ThreadPool& pool) {
  // Tasks [0, parts) stream a part each into its partial sums; tasks after them wait for all parts and write
  // out = epilogue(((bias + P_0) + P_1) + ...) for a block of columns each. Tasks are handed out in order, so
  // a thread waits only on parts already running: the sums are added by all threads in the same dispatch.
  constexpr int kBlock = 128;
  const int parts = num_parts(C);
  const int blocks = (OC + kBlock - 1) / kBlock;
  std::atomic<int> parts_done{0};
  pool.run(parts + blocks, [&](int64_t task, int) {
    if (task < parts) {
      const int k0 = static_cast<int>(task) * kPartRows;
      float* acc = partials + static_cast<size_t>(task) * R * OC;
      const typename W::T* wp = w + static_cast<size_t>(k0) * OC;
      const int kn = std::min(kPartRows, C - k0);
      if (R == 1) stream_part<W, 1>(acc, inp + k0, C, wp, R, kn, OC);
      else stream_part<W, 0>(acc, inp + k0, C, wp, R, kn, OC);
      parts_done.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    wait_for(parts_done, parts);
    const int j0 = static_cast<int>(task - parts) * kBlock, n = std::min(kBlock, OC - j0);
    float y[kBlock];
    for (int r = 0; r < R; ++r) {
      if (bias) std::copy(bias + j0, bias + j0 + n, y);
      else std::fill(y, y + n, 0.0f);
      for (int p = 0; p < parts; ++p) {
        const float* part = partials + (static_cast<size_t>(p) * R + r) * OC + j0;
        int i = 0;
#ifdef DIXIE_AVX2
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(part + i)));
#endif
        for (; i < n; ++i) y[i] += part[i];
      }
      finish(out + static_cast<size_t>(r) * OC + j0, y, n, epilogue);
    }
  });
}

// ---- packed schedule (many rows) -----------------------------------------------------------------------------

constexpr int kStrip = 16;  // columns of one strip of a packed panel: the width of the main micro-kernel

// pack = float32 of w[0:kn, 0:cols] (rows of w OC apart) as kPanelCols / kStrip strips [kPartRows, kStrip], so a
// micro-kernel reads its columns as one contiguous run; zero beyond cols. The same columns of the next part's
// kn_next rows (at next) are prefetched into L2: they are a column of short runs that the hardware prefetcher
// does not follow, and this part's FMAs hide the wait.
template <class W>
void pack_panel(float* pack, const typename W::T* w, const typename W::T* next, int OC, int kn_next, int kn, int cols) {
  constexpr int kLine = 64 / sizeof(typename W::T);
  for (int k = 0; k < kn_next; ++k)
    for (int j = 0; j < cols; j += kLine) _mm_prefetch(reinterpret_cast<const char*>(next + static_cast<size_t>(k) * OC + j), _MM_HINT_T1);
  for (int k = 0; k < kn; ++k) {
    const typename W::T* wk = w + static_cast<size_t>(k) * OC;
    for (int s = 0; s < kPanelCols; s += kStrip) {
      float* dst = pack + static_cast<size_t>(s) * kPartRows + static_cast<size_t>(k) * kStrip;
      const int n = std::max(0, std::min(kStrip, cols - s));
      int j = 0;
#ifdef DIXIE_AVX2
      for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, W::eight(wk + s + j));
#endif
      for (; j < n; ++j) dst[j] = W::one(wk + s + j);
      for (; j < kStrip; ++j) dst[j] = 0.0f;
    }
  }
}

#ifdef DIXIE_AVX2
#define DIXIE_UNROLL _Pragma("GCC unroll 8")

// tile[MR, 8 NV] += x[MR, 0:kn] @ pack[0:kn, 8 NV] (NV / 2 strips from `pack`), the product an fma chain over k
// from 0 in registers; rows of x ldx apart, of tile kPanelCols apart.
template <int MR, int NV>
void micro_kernel(float* tile, const float* x, int ldx, const float* pack, int kn) {
  static_assert(NV % 2 == 0, "whole strips");
  __m256 acc[MR][NV];
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int k = 0; k < kn; ++k) {
    __m256 b[NV];
    DIXIE_UNROLL for (int v = 0; v < NV; ++v)
      b[v] = _mm256_loadu_ps(pack + static_cast<size_t>(v / 2) * kPartRows * kStrip + k * kStrip + (v % 2) * 8);
    DIXIE_UNROLL for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(x + static_cast<size_t>(r) * ldx + k);
      DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) {
      float* t = tile + static_cast<size_t>(r) * kPanelCols + 8 * v;
      _mm256_storeu_ps(t, _mm256_add_ps(_mm256_loadu_ps(t), acc[r][v]));
    }
}

// tile[R, kPanelCols] += x[R, 0:kn] @ pack, in blocks of 6 rows x one strip (12 accumulators) and the last rows in
// the widest block that keeps enough chains independent. Strips outermost: a strip (8 KB) stays in L1 while the
// rows pass over it.
void panel_rows(float* tile, const float* x, int ldx, const float* pack, int R, int kn) {
  const int full = R / 6 * 6;
  float* rest_tile = tile + static_cast<size_t>(full) * kPanelCols;
  const float* rest_x = x + static_cast<size_t>(full) * ldx;
  for (int s = 0; s < kPanelCols; s += kStrip) {
    const float* strip = pack + static_cast<size_t>(s) * kPartRows;
    for (int r = 0; r < full; r += 6)
      micro_kernel<6, 2>(tile + static_cast<size_t>(r) * kPanelCols + s, x + static_cast<size_t>(r) * ldx, ldx, strip, kn);
    const bool pair = s % (2 * kStrip) == 0;  // the first strip of two, for the two-strip kernels
    switch (R - full) {
      case 1: if (pair) micro_kernel<1, 4>(rest_tile + s, rest_x, ldx, strip, kn); break;
      case 2: if (pair) micro_kernel<2, 4>(rest_tile + s, rest_x, ldx, strip, kn); break;
      case 3: micro_kernel<3, 2>(rest_tile + s, rest_x, ldx, strip, kn); break;
      case 4: micro_kernel<4, 2>(rest_tile + s, rest_x, ldx, strip, kn); break;
      case 5: micro_kernel<5, 2>(rest_tile + s, rest_x, ldx, strip, kn); break;
      default: break;
    }
  }
}
#undef DIXIE_UNROLL
#else
void panel_rows(float* tile, const float* x, int ldx, const float* pack, int R, int kn) {
  for (int r = 0; r < R; ++r) {
    float acc[kPanelCols] = {};
    for (int k = 0; k < kn; ++k) {
      const float a = x[static_cast<size_t>(r) * ldx + k];
      for (int c = 0; c < kPanelCols; ++c)
        acc[c] = std::fma(a, pack[static_cast<size_t>(c / kStrip) * kPartRows * kStrip + k * kStrip + c % kStrip], acc[c]);
    }
    for (int c = 0; c < kPanelCols; ++c) tile[static_cast<size_t>(r) * kPanelCols + c] += acc[c];
  }
}
#endif

template <class W>
void packed_matmul(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool) {
  // inp goes first into parts [parts][R][kPartRows]: rows of the micro-kernels' loads then sit kPartRows apart, not
  // C apart (4C = 12 KB would put six rows in one L1 set).
  const int parts = num_parts(C);
  float* xpack = scratch;
  pool.run(parts, [&](int64_t p, int) {
    const int k0 = static_cast<int>(p) * kPartRows, kn = std::min(kPartRows, C - k0);
    for (int r = 0; r < R; ++r)
      std::copy(inp + static_cast<size_t>(r) * C + k0, inp + static_cast<size_t>(r) * C + k0 + kn,
                xpack + (static_cast<size_t>(p) * R + r) * kPartRows);
  });
  const int panels = (OC + kPanelCols - 1) / kPanelCols;
  float* per_thread_scratch = xpack + static_cast<size_t>(parts) * R * kPartRows;
  const size_t per_thread = static_cast<size_t>(R) * kPanelCols + static_cast<size_t>(kPartRows) * kPanelCols;
  pool.run(panels, [&](int64_t panel, int thread) {
    const int j0 = static_cast<int>(panel) * kPanelCols, cols = std::min(kPanelCols, OC - j0);
    float* tile = per_thread_scratch + thread * per_thread;  // [R, kPanelCols]: bias + the parts so far
    float* pack = tile + static_cast<size_t>(R) * kPanelCols;
    for (int r = 0; r < R; ++r) {
      float* t = tile + static_cast<size_t>(r) * kPanelCols;
      if (bias) std::copy(bias + j0, bias + j0 + cols, t);
      else std::fill(t, t + cols, 0.0f);
      std::fill(t + cols, t + kPanelCols, 0.0f);
    }
    for (int p = 0; p < parts; ++p) {
      const int k0 = p * kPartRows, kn = std::min(kPartRows, C - k0);
      const typename W::T* part = w + static_cast<size_t>(k0) * OC + j0;
      const int kn_next = std::max(0, std::min(kPartRows, C - k0 - kPartRows));
      pack_panel<W>(pack, part, part + static_cast<size_t>(kPartRows) * OC, OC, kn_next, kn, cols);
      panel_rows(tile, xpack + static_cast<size_t>(p) * R * kPartRows, kPartRows, pack, R, kn);
    }
    for (int r = 0; r < R; ++r) finish(out + static_cast<size_t>(r) * OC + j0, tile + static_cast<size_t>(r) * kPanelCols, cols, epilogue);
  });
}

template <class W>
void matmul_t(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
              Epilogue epilogue, float* scratch, ThreadPool& pool) {
  if (R <= kStreamRows) stream_matmul<W>(out, inp, w, bias, R, C, OC, epilogue, scratch, pool);
  else packed_matmul<W>(out, inp, w, bias, R, C, OC, epilogue, scratch, pool);
}

// ---- output head ----------------------------------------------------------------------------------------------

constexpr int kHeadTask = 64;  // vocabulary rows per task

// out[r * ldo + i] = dot(inp[r], w[i]) for RB rows of inp and NB rows of w (both C long): per output one 8-lane
// fma chain over C, a horizontal sum, then the tail, whatever the block shape.
template <class W, int RB, int NB>
void dot_block(float* out, int ldo, const float* inp, const typename W::T* w, int C) {
  float sums[RB][NB];
  int c = 0;
#ifdef DIXIE_AVX2
  __m256 acc[RB][NB];
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) acc[r][i] = _mm256_setzero_ps();
  for (; c + 8 <= C; c += 8) {
    __m256 v[NB];
    for (int i = 0; i < NB; ++i) v[i] = W::eight(w + static_cast<size_t>(i) * C + c);
    for (int r = 0; r < RB; ++r) {
      const __m256 x = _mm256_loadu_ps(inp + static_cast<size_t>(r) * C + c);
      for (int i = 0; i < NB; ++i) acc[r][i] = _mm256_fmadd_ps(x, v[i], acc[r][i]);
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) sums[r][i] = hsum(acc[r][i]);
#else
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) sums[r][i] = 0.0f;
#endif
  for (; c < C; ++c)
    for (int r = 0; r < RB; ++r)
      for (int i = 0; i < NB; ++i)
        sums[r][i] = std::fma(inp[static_cast<size_t>(r) * C + c], W::one(w + static_cast<size_t>(i) * C + c), sums[r][i]);
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) out[static_cast<size_t>(r) * ldo + i] = sums[r][i];
}

// out[R, n] (rows ldo apart) = inp[R, C] @ w[n, C]^T. One row reads eight rows of w at once (eight streams
// through memory); more rows share four rows of w between pairs of rows.
template <class W>
void dot_rows(float* out, int ldo, const float* inp, const typename W::T* w, int n, int R, int C) {
  int j = 0;
  if (R == 1) {
    for (; j + 8 <= n; j += 8) dot_block<W, 1, 8>(out + j, ldo, inp, w + static_cast<size_t>(j) * C, C);
  } else {
    for (; j + 4 <= n; j += 4) {
      int r = 0;
      for (; r + 2 <= R; r += 2)
        dot_block<W, 2, 4>(out + static_cast<size_t>(r) * ldo + j, ldo, inp + static_cast<size_t>(r) * C, w + static_cast<size_t>(j) * C, C);
      if (r < R)
        dot_block<W, 1, 4>(out + static_cast<size_t>(r) * ldo + j, ldo, inp + static_cast<size_t>(r) * C, w + static_cast<size_t>(j) * C, C);
    }
  }
  for (; j < n; ++j)
    for (int r = 0; r < R; ++r)
      dot_block<W, 1, 1>(out + static_cast<size_t>(r) * ldo + j, ldo, inp + static_cast<size_t>(r) * C, w + static_cast<size_t>(j) * C, C);
}

template <class W>
void convert_rows(float* dst, const typename W::T* src, size_t n) {
  size_t i = 0;
#ifdef DIXIE_AVX2
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, W::eight(src + i));
#endif
  for (; i < n; ++i) dst[i] = W::one(src + i);
}

template <class W>
void head_matmul_t(float* out, const float* inp, const typename W::T* w, int R, int C, int V, float* scratch,
                   ThreadPool& pool) {
  // 16-bit rows are converted once, four at a time, into the thread's scratch when several row pairs would each
  // convert them.
  constexpr bool is_16bit = !std::is_same<typename W::T, float>::value;
  const bool convert = is_16bit && R > 2;
  pool.run((V + kHeadTask - 1) / kHeadTask, [&](int64_t task, int thread) {
    const int begin = static_cast<int>(task) * kHeadTask, n = std::min(V, begin + kHeadTask) - begin;
    const typename W::T* wt = w + static_cast<size_t>(begin) * C;
    if (!convert) {
      dot_rows<W>(out + begin, V, inp, wt, n, R, C);
      return;
    }
    float* rows = scratch + static_cast<size_t>(thread) * 4 * C;
    for (int j = 0; j < n; j += 4) {
      const int m = std::min(4, n - j);
      convert_rows<W>(rows, wt + static_cast<size_t>(j) * C, static_cast<size_t>(m) * C);
      dot_rows<LoadF32>(out + begin + j, V, inp, rows, m, R, C);
    }
  });
}

}  // namespace

size_t decode_matmul_scratch(int max_rows, int C, int OC, int threads) {
  const size_t stream = static_cast<size_t>(num_parts(C)) * std::min(max_rows, kStreamRows) * OC;
  const size_t packed = static_cast<size_t>(num_parts(C)) * max_rows * kPartRows +
                        static_cast<size_t>(threads) * (static_cast<size_t>(max_rows) + kPartRows) * kPanelCols;
  return std::max(stream, packed);
}

void decode_matmul(float* out, const float* inp, WeightsView w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool) {
  switch (w.dtype) {
    case DType::F32: matmul_t<LoadF32>(out, inp, w.f32, bias, R, C, OC, epilogue, scratch, pool); break;
    case DType::F16: matmul_t<LoadF16>(out, inp, w.u16, bias, R, C, OC, epilogue, scratch, pool); break;
    case DType::BF16: matmul_t<LoadBF16>(out, inp, w.u16, bias, R, C, OC, epilogue, scratch, pool); break;
  }
}

size_t head_matmul_scratch(int C, int threads) { return static_cast<size_t>(threads) * 4 * C; }

void head_matmul(float* out, const float* inp, WeightsView wte, int R, int C, int V, float* scratch, ThreadPool& pool) {
  switch (wte.dtype) {
    case DType::F32: head_matmul_t<LoadF32>(out, inp, wte.f32, R, C, V, scratch, pool); break;
    case DType::F16: head_matmul_t<LoadF16>(out, inp, wte.u16, R, C, V, scratch, pool); break;
    case DType::BF16: head_matmul_t<LoadBF16>(out, inp, wte.u16, R, C, V, scratch, pool); break;
  }
}

void convert_to_f32(float* dst, WeightsView src, size_t n, ThreadPool& pool) {
  pool.parallel_for(static_cast<int64_t>(n), 1 << 16, [&](int64_t begin, int64_t end) {
    const size_t count = static_cast<size_t>(end - begin);
    switch (src.dtype) {
      case DType::F32: std::copy(src.f32 + begin, src.f32 + end, dst + begin); break;
      case DType::F16: convert_rows<LoadF16>(dst + begin, src.u16 + begin, count); break;
      case DType::BF16: convert_rows<LoadBF16>(dst + begin, src.u16 + begin, count); break;
    }
  });
}

}  // namespace dixie
