#include "decode_matmul.h"

#include <algorithm>
#include <cmath>
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
// fma chain over k from 0. One k at a time: the part is read as one sequential stream, and with at most
// kStreamRows rows the sums stay in L1/L2 while the loads wait on memory anyway.
template <class W, int R>
void stream_part(float* acc, const float* inp, int ldx, const typename W::T* w, int kn, int OC) {
  std::fill(acc, acc + static_cast<size_t>(R) * OC, 0.0f);
  for (int k = 0; k < kn; ++k) {
    const typename W::T* wk = w + static_cast<size_t>(k) * OC;
    int j = 0;
#ifdef DIXIE_AVX2
    __m256 x[R];
    for (int r = 0; r < R; ++r) x[r] = _mm256_set1_ps(inp[static_cast<size_t>(r) * ldx + k]);
    for (; j + 8 <= OC; j += 8) {
      const __m256 v = W::eight(wk + j);
      for (int r = 0; r < R; ++r) {
        float* o = acc + static_cast<size_t>(r) * OC + j;
        _mm256_storeu_ps(o, _mm256_fmadd_ps(x[r], v, _mm256_loadu_ps(o)));
      }
    }
#endif
    for (; j < OC; ++j) {
      const float v = W::one(wk + j);
      for (int r = 0; r < R; ++r) {
        float& o = acc[static_cast<size_t>(r) * OC + j];
        o = std::fma(inp[static_cast<size_t>(r) * ldx + k], v, o);
      }
    }
  }
}

template <class W>
void stream_matmul(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* partials, ThreadPool& pool) {
  static_assert(kStreamRows <= 4, "stream_part is instantiated for 1..4 rows");
  const int parts = num_parts(C);
  pool.run(parts, [&](int64_t p, int) {
    const int k0 = static_cast<int>(p) * kPartRows;
    float* acc = partials + static_cast<size_t>(p) * R * OC;
    const typename W::T* wp = w + static_cast<size_t>(k0) * OC;
    const int kn = std::min(kPartRows, C - k0);
    switch (R) {
      case 1: stream_part<W, 1>(acc, inp + k0, C, wp, kn, OC); break;
      case 2: stream_part<W, 2>(acc, inp + k0, C, wp, kn, OC); break;
      case 3: stream_part<W, 3>(acc, inp + k0, C, wp, kn, OC); break;
      default: stream_part<W, 4>(acc, inp + k0, C, wp, kn, OC); break;
    }
  });
  // out = epilogue(((bias + P_0) + P_1) + ...), over blocks of columns (in parallel when there is enough).
  constexpr int kBlock = 256;
  const int blocks = (OC + kBlock - 1) / kBlock;
  const auto reduce = [&](int64_t b, int) {
    const int j0 = static_cast<int>(b) * kBlock, n = std::min(kBlock, OC - j0);
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
  };
  if (static_cast<int64_t>(R) * OC * parts < (1 << 15)) {
    for (int b = 0; b < blocks; ++b) reduce(b, 0);
  } else {
    pool.run(blocks, reduce);
  }
}

// ---- packed schedule (many rows) -----------------------------------------------------------------------------

// pack[kn, kPanelCols] = float32 of w[0:kn, 0:cols] (rows of w OC apart), zero beyond cols.
template <class W>
void pack_panel(float* pack, const typename W::T* w, int OC, int kn, int cols) {
  for (int k = 0; k < kn; ++k) {
    const typename W::T* wk = w + static_cast<size_t>(k) * OC;
    float* dst = pack + static_cast<size_t>(k) * kPanelCols;
    int j = 0;
#ifdef DIXIE_AVX2
    for (; j + 8 <= cols; j += 8) _mm256_storeu_ps(dst + j, W::eight(wk + j));
#endif
    for (; j < cols; ++j) dst[j] = W::one(wk + j);
    for (; j < kPanelCols; ++j) dst[j] = 0.0f;
  }
}

#ifdef DIXIE_AVX2
#define DIXIE_UNROLL _Pragma("GCC unroll 8")

// tile[MR, 8 NV] += x[MR, 0:kn] @ pack[0:kn, 8 NV], the product an fma chain over k from 0 in registers (rows of
// x ldx apart; tile and pack rows kPanelCols apart).
template <int MR, int NV>
void micro_kernel(float* tile, const float* x, int ldx, const float* pack, int kn) {
  __m256 acc[MR][NV];
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int k = 0; k < kn; ++k) {
    __m256 b[NV];
    DIXIE_UNROLL for (int v = 0; v < NV; ++v) b[v] = _mm256_loadu_ps(pack + static_cast<size_t>(k) * kPanelCols + 8 * v);
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

// Every (row block, column block) of the panel: blocks of 6 rows x 16 columns (12 accumulators), the last rows
// in the widest block that keeps enough independent chains.
template <int MR, int NV>
void micro_columns(float* tile, const float* x, int ldx, const float* pack, int kn) {
  for (int c = 0; c < kPanelCols; c += 8 * NV) micro_kernel<MR, NV>(tile + c, x, ldx, pack + c, kn);
}

void panel_rows(float* tile, const float* x, int ldx, const float* pack, int R, int kn) {
  int r = 0;
  for (; r + 6 <= R; r += 6) micro_columns<6, 2>(tile + static_cast<size_t>(r) * kPanelCols, x + static_cast<size_t>(r) * ldx, ldx, pack, kn);
  float* t = tile + static_cast<size_t>(r) * kPanelCols;
  const float* xr = x + static_cast<size_t>(r) * ldx;
  switch (R - r) {
    case 1: micro_columns<1, 4>(t, xr, ldx, pack, kn); break;
    case 2: micro_columns<2, 4>(t, xr, ldx, pack, kn); break;
    case 3: micro_columns<3, 2>(t, xr, ldx, pack, kn); break;
    case 4: micro_columns<4, 2>(t, xr, ldx, pack, kn); break;
    case 5: micro_columns<5, 2>(t, xr, ldx, pack, kn); break;
    default: break;
  }
}
#undef DIXIE_UNROLL
#else
void panel_rows(float* tile, const float* x, int ldx, const float* pack, int R, int kn) {
  for (int r = 0; r < R; ++r) {
    float acc[kPanelCols] = {};
    for (int k = 0; k < kn; ++k) {
      const float a = x[static_cast<size_t>(r) * ldx + k];
      for (int c = 0; c < kPanelCols; ++c) acc[c] = std::fma(a, pack[static_cast<size_t>(k) * kPanelCols + c], acc[c]);
    }
    for (int c = 0; c < kPanelCols; ++c) tile[static_cast<size_t>(r) * kPanelCols + c] += acc[c];
  }
}
#endif

template <class W>
void packed_matmul(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool) {
  const int panels = (OC + kPanelCols - 1) / kPanelCols;
  const size_t per_thread = static_cast<size_t>(R) * kPanelCols + static_cast<size_t>(kPartRows) * kPanelCols;
  pool.run(panels, [&](int64_t panel, int thread) {
    const int j0 = static_cast<int>(panel) * kPanelCols, cols = std::min(kPanelCols, OC - j0);
    float* tile = scratch + thread * per_thread;  // [R, kPanelCols]: bias + the parts so far
    float* pack = tile + static_cast<size_t>(R) * kPanelCols;
    for (int r = 0; r < R; ++r) {
      float* t = tile + static_cast<size_t>(r) * kPanelCols;
      if (bias) std::copy(bias + j0, bias + j0 + cols, t);
      else std::fill(t, t + cols, 0.0f);
      std::fill(t + cols, t + kPanelCols, 0.0f);
    }
    for (int k0 = 0; k0 < C; k0 += kPartRows) {
      const int kn = std::min(kPartRows, C - k0);
      pack_panel<W>(pack, w + static_cast<size_t>(k0) * OC + j0, OC, kn, cols);
      panel_rows(tile, inp + k0, C, pack, R, kn);
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

// out[r * ldo + i] = dot(inp[r], w[i]) for the n <= 4 rows w[i] of length C (rows are C apart): per output one
// 8-lane fma chain over C, a horizontal sum, then the tail, whichever rows are computed together.
template <class W>
void dot_rows(float* out, int ldo, const float* inp, const typename W::T* w, int n, int R, int C) {
  int r = 0;  // rows done by the vector path
#ifdef DIXIE_AVX2
  if (n == 4) {
    const typename W::T* w0 = w;
    const typename W::T* w1 = w0 + C;
    const typename W::T* w2 = w1 + C;
    const typename W::T* w3 = w2 + C;
    const int C8 = C / 8 * 8;
    for (; r + 2 <= R; r += 2) {
      const float* xa = inp + static_cast<size_t>(r) * C;
      const float* xb = xa + C;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
      __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
      for (int c = 0; c < C8; c += 8) {
        const __m256 v0 = W::eight(w0 + c), v1 = W::eight(w1 + c), v2 = W::eight(w2 + c), v3 = W::eight(w3 + c);
        const __m256 x = _mm256_loadu_ps(xa + c), y = _mm256_loadu_ps(xb + c);
        a0 = _mm256_fmadd_ps(x, v0, a0);
        a1 = _mm256_fmadd_ps(x, v1, a1);
        a2 = _mm256_fmadd_ps(x, v2, a2);
        a3 = _mm256_fmadd_ps(x, v3, a3);
        b0 = _mm256_fmadd_ps(y, v0, b0);
        b1 = _mm256_fmadd_ps(y, v1, b1);
        b2 = _mm256_fmadd_ps(y, v2, b2);
        b3 = _mm256_fmadd_ps(y, v3, b3);
      }
      float sa[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
      float sb[4] = {hsum(b0), hsum(b1), hsum(b2), hsum(b3)};
      for (int c = C8; c < C; ++c) {
        const float v[4] = {W::one(w0 + c), W::one(w1 + c), W::one(w2 + c), W::one(w3 + c)};
        for (int i = 0; i < 4; ++i) {
          sa[i] = std::fma(xa[c], v[i], sa[i]);
          sb[i] = std::fma(xb[c], v[i], sb[i]);
        }
      }
      for (int i = 0; i < 4; ++i) {
        out[static_cast<size_t>(r) * ldo + i] = sa[i];
        out[static_cast<size_t>(r + 1) * ldo + i] = sb[i];
      }
    }
  }
#endif
  for (int i = 0; i < n; ++i) {
    const typename W::T* wi = w + static_cast<size_t>(i) * C;
    for (int rr = r; rr < R; ++rr) {
      const float* x = inp + static_cast<size_t>(rr) * C;
      int c = 0;
      float s = 0.0f;
#ifdef DIXIE_AVX2
      __m256 a = _mm256_setzero_ps();
      for (; c + 8 <= C; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + c), W::eight(wi + c), a);
      s = hsum(a);
#endif
      for (; c < C; ++c) s = std::fma(x[c], W::one(wi + c), s);
      out[static_cast<size_t>(rr) * ldo + i] = s;
    }
  }
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
  // 16-bit rows are converted once into the thread's scratch when several row pairs would each convert them.
  constexpr bool is_16bit = !std::is_same<typename W::T, float>::value;
  const bool convert = is_16bit && R > 2;
  pool.run((V + kHeadTask - 1) / kHeadTask, [&](int64_t task, int thread) {
    const int begin = static_cast<int>(task) * kHeadTask, end = std::min(V, begin + kHeadTask);
    float* rows = scratch + static_cast<size_t>(thread) * 4 * C;
    for (int j = begin; j < end; j += 4) {
      const int n = std::min(4, end - j);
      const typename W::T* wj = w + static_cast<size_t>(j) * C;
      if (convert) {
        convert_rows<W>(rows, wj, static_cast<size_t>(n) * C);
        dot_rows<LoadF32>(out + j, V, inp, rows, n, R, C);
      } else {
        dot_rows<W>(out + j, V, inp, wj, n, R, C);
      }
    }
  });
}

}  // namespace

size_t decode_matmul_scratch(int max_rows, int C, int OC, int threads) {
  const size_t stream = static_cast<size_t>(num_parts(C)) * std::min(max_rows, kStreamRows) * OC;
  const size_t packed = static_cast<size_t>(threads) * (static_cast<size_t>(max_rows) + kPartRows) * kPanelCols;
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
