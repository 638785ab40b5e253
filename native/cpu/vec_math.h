// Vector helpers for the CPU kernels: AVX2/FMA where the compiler targets them, plain loops otherwise.
// exp is a Cephes-style polynomial good to ~2 ulp, so vector and scalar paths agree far inside the test
// tolerances (1e-5 absolute on logits).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DIXIE_AVX2 1
#endif
#if defined(DIXIE_AVX2) && defined(__F16C__)
#define DIXIE_F16C 1
#endif

namespace dixie {

// Loaders: one element, or (with AVX2) eight elements, of a storage type as float32 (exact for all three).
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

// dst[0, n) = src[0, n) rounded to f16 (to nearest even, as f32_to_f16).
inline void store_f16(uint16_t* dst, const float* src, size_t n) {
  size_t i = 0;
#ifdef DIXIE_F16C
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

#ifdef DIXIE_AVX2
inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 shuf = _mm_movehdup_ps(lo);
  lo = _mm_add_ps(lo, shuf);
  shuf = _mm_movehl_ps(shuf, lo);
  lo = _mm_add_ss(lo, shuf);
  return _mm_cvtss_f32(lo);
}

inline float hmax(__m256 v) {
  __m128 lo = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// e^x for x in float range; below -87.3 returns ~1e-38 rather than 0 (harmless in softmax sums).
inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365478515625f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // n is in [-126, 128): build 2^n in two halves so that n = 128 does not overflow the exponent field.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const __m256 s2 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// tanh(u) = 1 - 2 / (e^{2u} + 1): exact limits at +-inf, absolute error ~1e-7 near 0.
inline __m256 tanh256(__m256 u) {
  const __m256 e = exp256(_mm256_add_ps(u, u));
  return _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
}
#endif

// GELU, tanh approximation (GPT-2's gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#ifdef DIXIE_AVX2
inline __m256 gelu256(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), tanh256(u)));
}
#endif

// The same function one value at a time, bit-identical to a lane of gelu256 where that exists, so a result
// does not depend on whether its element fell in a vector or in a tail.
inline float gelu1(float x) {
#ifdef DIXIE_AVX2
  return _mm256_cvtss_f32(gelu256(_mm256_set1_ps(x)));
#else
  return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
#endif
}

// sum_i a[i] * b[i], b of the storage type that loader W reads.
template <class W = LoadF32>
inline float dot(const float* a, const typename W::T* b, int n) {
  int i = 0;
  float sum = 0.0f;
#ifdef DIXIE_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), W::eight(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), W::eight(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), W::eight(b + i), acc0);
  sum = hsum(_mm256_add_ps(acc0, acc1));
#endif
  for (; i < n; ++i) sum += a[i] * W::one(b + i);
  return sum;
}

// y[i] += alpha * x[i]
inline void axpy(float* y, float alpha, const float* x, int n) {
  int i = 0;
#ifdef DIXIE_AVX2
  const __m256 a = _mm256_set1_ps(alpha);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// x[i] *= alpha
inline void scale(float* x, float alpha, int n) {
  int i = 0;
#ifdef DIXIE_AVX2
  const __m256 a = _mm256_set1_ps(alpha);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(a, _mm256_loadu_ps(x + i)));
#endif
  for (; i < n; ++i) x[i] *= alpha;
}

// The largest of x[0, n); -inf when n is 0.
inline float max_of(const float* x, int n) {
  int i = 0;
  float mx = -INFINITY;
#ifdef DIXIE_AVX2
  if (n >= 8) {
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    mx = hmax(vmax);
  }
#endif
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  return mx;
}

// p[i] = e^((x[i] - shift) * mul) for i < n (p may be x); returns their sum. The sum is kept in double: over a
// vocabulary of 50,257 a float sum would lose the smallest terms, and top-p and sampling compare against it.
inline double exp_sum(float* p, const float* x, int n, float shift, float mul) {
  int i = 0;
  double sum = 0.0;
#ifdef DIXIE_AVX2
  const __m256 vshift = _mm256_set1_ps(shift), vmul = _mm256_set1_ps(mul);
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp256(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vshift), vmul));
    _mm256_storeu_ps(p + i, e);
    sum += hsum(e);
  }
#endif
  for (; i < n; ++i) {
    p[i] = std::exp((x[i] - shift) * mul);
    sum += p[i];
  }
  return sum;
}

// p = softmax(x) over n values (p may be x); returns log(sum of e^x[i]), the log-partition a loss needs.
inline float softmax(float* p, const float* x, int n) {
  const float mx = max_of(x, n);
  const double sum = exp_sum(p, x, n, mx, 1.0f);
  scale(p, static_cast<float>(1.0 / sum), n);
  return mx + static_cast<float>(std::log(sum));
}

}  // namespace dixie
