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

int num_parts(int C) { return (C + part_rows(C) - 1) / part_rows(C); }
int num_panels(int OC) { return (OC + kPanelCols - 1) / kPanelCols; }

constexpr int kStrip = 16;  // columns of one strip of a panel: the width of the main micro-kernel
// Elements of one (part, panel) block of a w[C, *].
size_t panel_block(int C) { return static_cast<size_t>(part_rows(C)) * kPanelCols; }

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

// ---- products over panels -------------------------------------------------------------------------------------

#ifdef DIXIE_AVX2
#define DIXIE_UNROLL _Pragma("GCC unroll 8")

// tile[MR, 8 NV] (+)= x[MR, 0:kn] @ strips[0:kn, 8 NV] (NV / 2 strips from `strips`, `height` rows each), the
// product an fma chain over k from 0 in registers, then added to the tile (kAdd) or stored; rows of x ldx apart,
// of tile kPanelCols apart.
template <class W, bool kAdd, int MR, int NV>
void micro_kernel(float* tile, const float* x, int ldx, const typename W::T* strips, int height, int kn) {
  static_assert(NV % 2 == 0, "whole strips");
  __m256 acc[MR][NV];
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int k = 0; k < kn; ++k) {
    __m256 b[NV];
    DIXIE_UNROLL for (int v = 0; v < NV; ++v)
      b[v] = W::eight(strips + static_cast<size_t>(v / 2) * height * kStrip + k * kStrip + (v % 2) * 8);
    DIXIE_UNROLL for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(x + static_cast<size_t>(r) * ldx + k);
      DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) {
      float* t = tile + static_cast<size_t>(r) * kPanelCols + 8 * v;
      _mm256_storeu_ps(t, kAdd ? _mm256_add_ps(_mm256_loadu_ps(t), acc[r][v]) : acc[r][v]);
    }
}

// tile[R, kPanelCols] (+)= x[R, 0:kn] @ panel (strips of `height` rows), in blocks of 6 rows x one strip (12
// accumulators) and the last rows in the widest block that keeps enough chains independent. Strips outermost: a
// strip stays in L1 while the rows pass over it.
template <class W, bool kAdd>
void panel_rows(float* tile, const float* x, int ldx, const typename W::T* panel, int R, int height, int kn) {
  const int full = R / 6 * 6;
  float* rest_tile = tile + static_cast<size_t>(full) * kPanelCols;
  const float* rest_x = x + static_cast<size_t>(full) * ldx;
  for (int s = 0; s < kPanelCols; s += kStrip) {
    const typename W::T* strip = panel + static_cast<size_t>(s) * height;
    for (int r = 0; r < full; r += 6)
      micro_kernel<W, kAdd, 6, 2>(tile + static_cast<size_t>(r) * kPanelCols + s, x + static_cast<size_t>(r) * ldx, ldx, strip, height, kn);
    const bool pair = s % (2 * kStrip) == 0;  // the first strip of two, for the two-strip kernels
    switch (R - full) {
      case 1: if (s == 0) micro_kernel<W, kAdd, 1, 8>(rest_tile, rest_x, ldx, strip, height, kn); break;  // the whole panel: four runs
      case 2: if (pair) micro_kernel<W, kAdd, 2, 4>(rest_tile + s, rest_x, ldx, strip, height, kn); break;
      case 3: micro_kernel<W, kAdd, 3, 2>(rest_tile + s, rest_x, ldx, strip, height, kn); break;
      case 4: micro_kernel<W, kAdd, 4, 2>(rest_tile + s, rest_x, ldx, strip, height, kn); break;
      case 5: micro_kernel<W, kAdd, 5, 2>(rest_tile + s, rest_x, ldx, strip, height, kn); break;
      default: break;
    }
  }
}
#undef DIXIE_UNROLL
#else
template <class W, bool kAdd>
void panel_rows(float* tile, const float* x, int ldx, const typename W::T* panel, int R, int height, int kn) {
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kPanelCols; ++c) {
      float acc = 0.0f;
      for (int k = 0; k < kn; ++k)
        acc = std::fma(x[static_cast<size_t>(r) * ldx + k], W::one(panel + static_cast<size_t>(c / kStrip) * height * kStrip + k * kStrip + c % kStrip), acc);
      float& t = tile[static_cast<size_t>(r) * kPanelCols + c];
      t = kAdd ? t + acc : acc;
    }
}
#endif

// Waits (spinning, then yielding the core) until counter reaches target. PAUSE only now and then: under a
// hypervisor a run of PAUSEs gets the vCPU descheduled (pause-loop exiting).
void wait_for(const std::atomic<int>& counter, int target) {
  for (int spins = 0; counter.load(std::memory_order_acquire) < target; ++spins) {
    if (spins < (1 << 16)) {
#if defined(__x86_64__) || defined(__i386__)
      if (spins % 64 == 63) __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

// Few rows, bound by reading the weights: every (part, panel) product is independent, so the threads stream
// the panels without a barrier between parts, each task reading G parts side by side (several long runs keep
// memory busy), and write P_p; the tasks after them wait for all of those and add up
// out = epilogue(((bias + P_0) + P_1) + ...) for a panel each.
template <class W>
void stream_matmul(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* partials, ThreadPool& pool) {
  const int parts = num_parts(C), panels = num_panels(OC), height = part_rows(C);
  const size_t block = panel_block(C);
  int group = 1;
  for (int g : {4, 3, 2})
    if (parts % g == 0) {
      group = g;
      break;
    }
  // Panel ranges per group: enough tasks for two per thread.
  int chunks = 1;
  while ((parts / group) * chunks < 2 * pool.size() && chunks * 2 <= panels) chunks *= 2;
  const int per_chunk = (panels + chunks - 1) / chunks, stream_tasks = parts / group * chunks;
  const size_t part_stride = static_cast<size_t>(panels) * R * kPanelCols;  // partials: [parts][panels][R][kPanelCols]
  std::atomic<int> streams_done{0};
  pool.run(stream_tasks + panels, [&](int64_t task, int) {
    if (task < stream_tasks) {
      const int p0 = static_cast<int>(task) / chunks * group, q0 = static_cast<int>(task) % chunks * per_chunk;
      for (int q = q0; q < std::min(panels, q0 + per_chunk); ++q)
        for (int p = p0; p < p0 + group; ++p)
          panel_rows<W, false>(partials + p * part_stride + static_cast<size_t>(q) * R * kPanelCols, inp + p * height, C,
                               w + (static_cast<size_t>(p) * panels + q) * block, R, height, std::min(height, C - p * height));
      streams_done.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    wait_for(streams_done, stream_tasks);
    const int q = static_cast<int>(task - stream_tasks), j0 = q * kPanelCols, n = std::min(kPanelCols, OC - j0);
    float y[kPanelCols];
    for (int r = 0; r < R; ++r) {
      if (bias) std::copy(bias + j0, bias + j0 + n, y);
      else std::fill(y, y + n, 0.0f);
      for (int p = 0; p < parts; ++p) {
        const float* part = partials + p * part_stride + (static_cast<size_t>(q) * R + r) * kPanelCols;
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

// More rows, bound by the FMAs: each panel's tile starts at the bias and takes the parts in order, a parallel
// region per part; the copy of inp by parts puts the rows that the micro-kernels load a part's height apart, not C
// apart (4C = 12 KB would put six rows in one L1 set).
template <class W>
void tiled_matmul(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
                  Epilogue epilogue, float* scratch, ThreadPool& pool) {
  const int parts = num_parts(C), panels = num_panels(OC), height = part_rows(C);
  const size_t block = panel_block(C);
  float* xpack = scratch;                                          // [parts][R][height]
  float* tiles = xpack + static_cast<size_t>(parts) * R * height;  // [panels][R][kPanelCols]
  const auto rows_of = [&](int p) { return std::min(height, C - p * height); };
  pool.run(parts + panels, [&](int64_t task, int) {
    if (task < parts) {
      const int k0 = static_cast<int>(task) * height, kn = rows_of(static_cast<int>(task));
      for (int r = 0; r < R; ++r)
        std::copy(inp + static_cast<size_t>(r) * C + k0, inp + static_cast<size_t>(r) * C + k0 + kn,
                  xpack + (static_cast<size_t>(task) * R + r) * height);
      return;
    }
    const int j0 = static_cast<int>(task - parts) * kPanelCols, cols = std::min(kPanelCols, OC - j0);
    for (int r = 0; r < R; ++r) {
      float* t = tiles + (static_cast<size_t>(task - parts) * R + r) * kPanelCols;
      if (bias) std::copy(bias + j0, bias + j0 + cols, t);
      else std::fill(t, t + cols, 0.0f);
      std::fill(t + cols, t + kPanelCols, 0.0f);
    }
  });
  for (int p = 0; p < parts; ++p) {
    pool.run(panels, [&](int64_t task, int) {
      const int q = static_cast<int>(task);
      float* tile = tiles + static_cast<size_t>(q) * R * kPanelCols;
      panel_rows<W, true>(tile, xpack + static_cast<size_t>(p) * R * height, height,
                          w + (static_cast<size_t>(p) * panels + q) * block, R, height, rows_of(p));
      if (p + 1 == parts) {
        const int j0 = q * kPanelCols, cols = std::min(kPanelCols, OC - j0);
        for (int r = 0; r < R; ++r) finish(out + static_cast<size_t>(r) * OC + j0, tile + static_cast<size_t>(r) * kPanelCols, cols, epilogue);
      }
    });
  }
}

template <class W>
void matmul_t(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
              Epilogue epilogue, float* scratch, ThreadPool& pool) {
  if (R <= kStreamRows) stream_matmul<W>(out, inp, w, bias, R, C, OC, epilogue, scratch, pool);
  else tiled_matmul<W>(out, inp, w, bias, R, C, OC, epilogue, scratch, pool);
}

// ---- output head ----------------------------------------------------------------------------------------------

constexpr int kHeadTask = 128;  // vocabulary rows per task

// out[r * ldo + i * out_step] = dot(inp[r], w[i * w_step, C)) for RB rows of inp (C apart) and NB rows of w: per
// output one 8-lane fma chain over C, a horizontal sum, then the tail, whatever the block shape.
template <class W, int RB, int NB>
void dot_block(float* out, int ldo, int out_step, const float* inp, const typename W::T* w, size_t w_step, int C) {
  float sums[RB][NB];
  int c = 0;
#ifdef DIXIE_AVX2
  __m256 acc[RB][NB];
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) acc[r][i] = _mm256_setzero_ps();
  for (; c + 8 <= C; c += 8) {
    __m256 v[NB];
    for (int i = 0; i < NB; ++i) v[i] = W::eight(w + i * w_step + c);
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
        sums[r][i] = std::fma(inp[static_cast<size_t>(r) * C + c], W::one(w + i * w_step + c), sums[r][i]);
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) out[static_cast<size_t>(r) * ldo + i * out_step] = sums[r][i];
}

// out[R, n] (rows ldo apart) = inp[R, C] @ w[n, C]^T. The n rows of w are read as NB streams of n / NB
// consecutive rows each, side by side (eight for one row of inp, four shared by pairs of rows for more): many
// streams keep memory busy, and each runs through many rows, long even where a row is short.
template <class W>
void dot_rows(float* out, int ldo, const float* inp, const typename W::T* w, int n, int R, int C) {
  const int NB = R == 1 ? 8 : 4;
  const int m = n / NB;  // rows per stream
  const size_t step = static_cast<size_t>(m) * C;
  for (int i = 0; i < m; ++i) {
    const typename W::T* wi = w + static_cast<size_t>(i) * C;
    if (R == 1) {
      dot_block<W, 1, 8>(out + i, ldo, m, inp, wi, step, C);
      continue;
    }
    int r = 0;
    for (; r + 2 <= R; r += 2) dot_block<W, 2, 4>(out + static_cast<size_t>(r) * ldo + i, ldo, m, inp + static_cast<size_t>(r) * C, wi, step, C);
    if (r < R) dot_block<W, 1, 4>(out + static_cast<size_t>(r) * ldo + i, ldo, m, inp + static_cast<size_t>(r) * C, wi, step, C);
  }
  for (int j = NB * m; j < n; ++j)
    for (int r = 0; r < R; ++r)
      dot_block<W, 1, 1>(out + static_cast<size_t>(r) * ldo + j, ldo, 1, inp + static_cast<size_t>(r) * C, w + static_cast<size_t>(j) * C, 0, C);
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

size_t decode_matmul_scratch(int max_rows, int C, int OC) {
  const size_t parts = num_parts(C), panels = num_panels(OC);
  const size_t stream = parts * panels * std::min(max_rows, kStreamRows) * kPanelCols;
  const size_t tiled = parts * max_rows * part_rows(C) + panels * max_rows * kPanelCols;
  return std::max(stream, tiled);
}

size_t panel_elements(int C, int OC) { return static_cast<size_t>(num_parts(C)) * num_panels(OC) * panel_block(C); }

// dst = w[C, OC] (Conv1D layout) in panel layout, [part][strip][height][kStrip], zero past C and OC. One task
// per (part, strip), which writes its block as one contiguous run.
void pack_panels(float* dst, const float* w, int C, int OC, ThreadPool& pool) {
  const int strips = num_panels(OC) * (kPanelCols / kStrip), height = part_rows(C);
  pool.run(static_cast<int64_t>(num_parts(C)) * strips, [&](int64_t task, int) {
    const int p = static_cast<int>(task / strips), s = static_cast<int>(task % strips);
    const int k0 = p * height, kn = std::min(height, C - k0), j0 = s * kStrip, n = std::max(0, std::min(kStrip, OC - j0));
    float* block = dst + static_cast<size_t>(task) * height * kStrip;
    std::fill(block, block + static_cast<size_t>(height) * kStrip, 0.0f);
    for (int k = 0; k < kn; ++k) std::copy_n(w + static_cast<size_t>(k0 + k) * OC + j0, n, block + static_cast<size_t>(k) * kStrip);
  });
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
