#include "decode_matmul.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "vec_math.h"

#if defined(DIXIE_AVX2) && defined(__F16C__)
#define DIXIE_F16C 1
#endif

namespace dixie {

namespace {

// Loaders: one element, or (with AVX2) eight elements, of a weight type as float32.
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

// acc[R, n] (rows ldacc apart) += inp[R, C] @ w[C, n] (rows of w ldw apart), walking w four rows at a time so
// that each weight is loaded (and converted) once for all R rows.
template <class W>
void axpy_columns(float* acc, int ldacc, const float* inp, const typename W::T* w, int R, int C, int ldw, int n) {
  int k = 0;
  for (; k + 4 <= C; k += 4) {
    const typename W::T* w0 = w + static_cast<size_t>(k) * ldw;
    const typename W::T* w1 = w0 + ldw;
    const typename W::T* w2 = w1 + ldw;
    const typename W::T* w3 = w2 + ldw;
    int j = 0;
#ifdef DIXIE_AVX2
    if (R == 1) {
      const __m256 b0 = _mm256_set1_ps(inp[k]), b1 = _mm256_set1_ps(inp[k + 1]);
      const __m256 b2 = _mm256_set1_ps(inp[k + 2]), b3 = _mm256_set1_ps(inp[k + 3]);
      for (; j + 8 <= n; j += 8) {
        __m256 a = _mm256_loadu_ps(acc + j);
        a = _mm256_fmadd_ps(b0, W::eight(w0 + j), a);
        a = _mm256_fmadd_ps(b1, W::eight(w1 + j), a);
        a = _mm256_fmadd_ps(b2, W::eight(w2 + j), a);
        a = _mm256_fmadd_ps(b3, W::eight(w3 + j), a);
        _mm256_storeu_ps(acc + j, a);
      }
    } else {
      for (; j + 8 <= n; j += 8) {
        const __m256 v0 = W::eight(w0 + j), v1 = W::eight(w1 + j), v2 = W::eight(w2 + j), v3 = W::eight(w3 + j);
        for (int r = 0; r < R; ++r) {
          const float* x = inp + static_cast<size_t>(r) * C + k;
          float* o = acc + static_cast<size_t>(r) * ldacc + j;
          __m256 a = _mm256_loadu_ps(o);
          a = _mm256_fmadd_ps(_mm256_broadcast_ss(x), v0, a);
          a = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 1), v1, a);
          a = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 2), v2, a);
          a = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 3), v3, a);
          _mm256_storeu_ps(o, a);
        }
      }
    }
#endif
    for (; j < n; ++j) {
      const float v0 = W::one(w0 + j), v1 = W::one(w1 + j), v2 = W::one(w2 + j), v3 = W::one(w3 + j);
      for (int r = 0; r < R; ++r) {
        const float* x = inp + static_cast<size_t>(r) * C + k;
        acc[static_cast<size_t>(r) * ldacc + j] += x[0] * v0 + x[1] * v1 + x[2] * v2 + x[3] * v3;
      }
    }
  }
  for (; k < C; ++k) {
    const typename W::T* wk = w + static_cast<size_t>(k) * ldw;
    for (int j = 0; j < n; ++j) {
      const float v = W::one(wk + j);
      for (int r = 0; r < R; ++r) acc[static_cast<size_t>(r) * ldacc + j] += inp[static_cast<size_t>(r) * C + k] * v;
    }
  }
}

template <class W>
void stream_matmul_t(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
                     ThreadPool& pool) {
  // Each thread takes an equal contiguous share of the columns (memory-bound: equal bytes per thread), walked
  // in blocks narrow enough that R rows of partial sums stay in L1. The sums live in a packed per-thread
  // buffer, not in out: rows of out are OC floats apart, a multiple of 4 KiB for GPT-2's widths, so they
  // would all fall in one L1 set and evict each other.
  const int threads = pool.size();
  const int vecs = (OC + 7) / 8;
  const int per_thread = (vecs + threads - 1) / threads;
  const int block = std::max(8, (4096 / R) / 8 * 8);
  pool.run(threads, [&](int64_t t, int) {
    thread_local std::vector<float> sums;
    if (sums.size() < static_cast<size_t>(R) * block) sums.resize(static_cast<size_t>(R) * block);
    const int begin = std::min(OC, static_cast<int>(t) * per_thread * 8);
    const int end = std::min(OC, begin + per_thread * 8);
    for (int j0 = begin; j0 < end; j0 += block) {
      const int n = std::min(end - j0, block);
      for (int r = 0; r < R; ++r) {
        float* acc = sums.data() + static_cast<size_t>(r) * n;
        if (bias) std::copy(bias + j0, bias + j0 + n, acc);
        else std::fill(acc, acc + n, 0.0f);
      }
      axpy_columns<W>(sums.data(), n, inp, w + j0, R, C, OC, n);
      for (int r = 0; r < R; ++r) {
        const float* acc = sums.data() + static_cast<size_t>(r) * n;
        std::copy(acc, acc + n, out + static_cast<size_t>(r) * OC + j0);
      }
    }
  });
}

// out[r * ldo + i] = dot(inp[r], w[i]) for the n <= 4 rows w[i] of length C (rows are C apart).
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
          sa[i] += xa[c] * v[i];
          sb[i] += xb[c] * v[i];
        }
      }
      for (int i = 0; i < 4; ++i) {
        out[static_cast<size_t>(r) * ldo + i] = sa[i];
        out[static_cast<size_t>(r + 1) * ldo + i] = sb[i];
      }
    }
    if (r < R) {
      const float* xa = inp + static_cast<size_t>(r) * C;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
      for (int c = 0; c < C8; c += 8) {
        const __m256 x = _mm256_loadu_ps(xa + c);
        a0 = _mm256_fmadd_ps(x, W::eight(w0 + c), a0);
        a1 = _mm256_fmadd_ps(x, W::eight(w1 + c), a1);
        a2 = _mm256_fmadd_ps(x, W::eight(w2 + c), a2);
        a3 = _mm256_fmadd_ps(x, W::eight(w3 + c), a3);
      }
      float sa[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
      for (int c = C8; c < C; ++c) {
        sa[0] += xa[c] * W::one(w0 + c);
        sa[1] += xa[c] * W::one(w1 + c);
        sa[2] += xa[c] * W::one(w2 + c);
        sa[3] += xa[c] * W::one(w3 + c);
      }
      for (int i = 0; i < 4; ++i) out[static_cast<size_t>(r) * ldo + i] = sa[i];
      ++r;
    }
  }
#endif
  for (int i = 0; i < n; ++i) {
    const typename W::T* wi = w + static_cast<size_t>(i) * C;
    for (int rr = r; rr < R; ++rr) {
      const float* x = inp + static_cast<size_t>(rr) * C;
      float s = 0.0f;
      for (int c = 0; c < C; ++c) s += x[c] * W::one(wi + c);
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
void stream_matmul_nt_t(float* out, const float* inp, const typename W::T* w, int R, int C, int OC, float* panel,
                        ThreadPool& pool) {
  // 16-bit rows are converted once into the thread's panel when several row pairs would each convert them.
  constexpr bool is_16bit = !std::is_same<typename W::T, float>::value;
  const bool use_panel = is_16bit && R > 2;
  const int threads = pool.size();
  const int quads = (OC + 3) / 4;
  const int per_thread = (quads + threads - 1) / threads;
  pool.run(threads, [&](int64_t t, int thread) {
    const int begin = std::min(OC, static_cast<int>(t) * per_thread * 4);
    const int end = std::min(OC, begin + per_thread * 4);
    float* my_panel = panel + static_cast<size_t>(thread) * 4 * C;
    for (int j = begin; j < end; j += 4) {
      const int n = std::min(4, end - j);
      const typename W::T* wj = w + static_cast<size_t>(j) * C;
      if (use_panel) {
        convert_rows<W>(my_panel, wj, static_cast<size_t>(n) * C);
        dot_rows<LoadF32>(out + j, OC, inp, my_panel, n, R, C);
      } else {
        dot_rows<W>(out + j, OC, inp, wj, n, R, C);
      }
    }
  });
}

}  // namespace

void stream_matmul(float* out, const float* inp, WeightsView w, const float* bias, int R, int C, int OC,
                   ThreadPool& pool) {
  switch (w.dtype) {
    case DType::F32: stream_matmul_t<LoadF32>(out, inp, w.f32, bias, R, C, OC, pool); break;
    case DType::F16: stream_matmul_t<LoadF16>(out, inp, w.u16, bias, R, C, OC, pool); break;
    case DType::BF16: stream_matmul_t<LoadBF16>(out, inp, w.u16, bias, R, C, OC, pool); break;
  }
}

void stream_matmul_nt(float* out, const float* inp, WeightsView w, int R, int C, int OC, float* panel,
                      ThreadPool& pool) {
  switch (w.dtype) {
    case DType::F32: stream_matmul_nt_t<LoadF32>(out, inp, w.f32, R, C, OC, panel, pool); break;
    case DType::F16: stream_matmul_nt_t<LoadF16>(out, inp, w.u16, R, C, OC, panel, pool); break;
    case DType::BF16: stream_matmul_nt_t<LoadBF16>(out, inp, w.u16, R, C, OC, panel, pool); break;
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
