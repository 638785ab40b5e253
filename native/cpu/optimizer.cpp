#include "optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "vec_math.h"

namespace dixie {

namespace {
constexpr size_t kSpanNumel = 1 << 16;

double sum_squares(const float* g, size_t n, float mult) {
  double total = 0.0;
  size_t i = 0;
#ifdef DIXIE_AVX2
  // float partials over runs of 1024 keep the sum accurate enough while staying in registers
  for (; i + 1024 <= n; i += 1024) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (size_t k = i; k < i + 1024; k += 16) {
      const __m256 x0 = _mm256_loadu_ps(g + k), x1 = _mm256_loadu_ps(g + k + 8);
      a0 = _mm256_fmadd_ps(x0, x0, a0);
      a1 = _mm256_fmadd_ps(x1, x1, a1);
    }
    total += hsum(_mm256_add_ps(a0, a1));
  }
#endif
  for (; i < n; ++i) total += static_cast<double>(g[i]) * g[i];
  return total * static_cast<double>(mult) * mult;
}

// p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p), with m, v updated from g * mult; bc1, bc2 the bias corrections
void adamw_update(float* p, const float* g, float* m, float* v, size_t n, float mult, float lr, float b1, float b2,
                  float eps, float wd, float bc1, float bc2) {
  size_t k = 0;
#ifdef DIXIE_AVX2
  const __m256 vmult = _mm256_set1_ps(mult), vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2);
  const __m256 vc1 = _mm256_set1_ps(1.0f - b1), vc2 = _mm256_set1_ps(1.0f - b2);
  const __m256 vibc1 = _mm256_set1_ps(1.0f / bc1), vibc2 = _mm256_set1_ps(1.0f / bc2);
  const __m256 veps = _mm256_set1_ps(eps), vlr = _mm256_set1_ps(lr), vwd = _mm256_set1_ps(wd);
  for (; k + 8 <= n; k += 8) {
    const __m256 gk = _mm256_mul_ps(_mm256_loadu_ps(g + k), vmult);
    const __m256 mk = _mm256_fmadd_ps(vb1, _mm256_loadu_ps(m + k), _mm256_mul_ps(vc1, gk));
    const __m256 vk = _mm256_fmadd_ps(vb2, _mm256_loadu_ps(v + k), _mm256_mul_ps(vc2, _mm256_mul_ps(gk, gk)));
    _mm256_storeu_ps(m + k, mk);
    _mm256_storeu_ps(v + k, vk);
    const __m256 denom = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vk, vibc2)), veps);
    const __m256 pk = _mm256_loadu_ps(p + k);
    const __m256 upd = _mm256_fmadd_ps(vwd, pk, _mm256_div_ps(_mm256_mul_ps(mk, vibc1), denom));
    _mm256_storeu_ps(p + k, _mm256_fnmadd_ps(vlr, upd, pk));
  }
#endif
  for (; k < n; ++k) {
    const float gk = g[k] * mult;
    m[k] = b1 * m[k] + (1.0f - b1) * gk;
    v[k] = b2 * v[k] + (1.0f - b2) * gk * gk;
    p[k] -= lr * ((m[k] * (1.0f / bc1)) / (std::sqrt(v[k] * (1.0f / bc2)) + eps) + wd * p[k]);
  }
}

}  // namespace

std::vector<ParamSpan> plan_param_spans(const ModelSpec& spec, const uint8_t* trainable, const uint8_t* decay,
                                        size_t begin, size_t end) {
  std::vector<ParamSpan> spans;
  const auto& tensors = spec.tensors();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const size_t first = std::max(tensors[i].offset, begin);
    const size_t last = std::min(tensors[i].offset + tensors[i].numel, end);
    for (size_t start = first; start < last; start += kSpanNumel) {
      ParamSpan s;
      s.offset = start;
      s.numel = std::min(kSpanNumel, last - start);
      s.trainable = trainable ? trainable[i] != 0 : true;
      s.decay = decay ? decay[i] != 0 : tensors[i].is_matrix;
      spans.push_back(s);
    }
  }
  return spans;
}

float optimizer_step(float* params, float* grads, size_t first, float* m, float* v, size_t state_offset,
                     const std::vector<ParamSpan>& spans, double* partials, const StepOptions& o, int64_t t,
                     ThreadPool& pool, const std::function<void(double&)>& reduce_sum_squares) {
  const int64_t n_spans = static_cast<int64_t>(spans.size());
  auto global_norm = [&] {
    double total = 0.0;  // summed in span order: the same for any thread count
    for (int64_t i = 0; i < n_spans; ++i) total += partials[i];
    if (reduce_sum_squares) reduce_sum_squares(total);
    return static_cast<float>(std::sqrt(total));
  };

  // With clipping the norm must be known before the update; without, it is gathered during the update.
  float norm = 0.0f, mult = o.grad_scale;
  if (o.grad_clip > 0.0f) {
    pool.run(n_spans, [&](int64_t i, int) {
      const ParamSpan& s = spans[i];
      partials[i] = s.trainable ? sum_squares(grads + (s.offset - first), s.numel, o.grad_scale) : 0.0;
    });
    norm = global_norm();
    if (norm > o.grad_clip) mult *= o.grad_clip / (norm + 1e-6f);
  }

  const bool adamw = o.kind == OptimizerKind::AdamW;
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta1), static_cast<double>(t)));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta2), static_cast<double>(t)));
  pool.run(n_spans, [&](int64_t i, int) {
    const ParamSpan& s = spans[i];
    float* g = grads + (s.offset - first);
    if (s.trainable) {
      if (o.grad_clip <= 0.0f) partials[i] = sum_squares(g, s.numel, o.grad_scale);
      float* p = params + (s.offset - first);
      const float wd = s.decay ? o.weight_decay : 0.0f;
      if (adamw) {
        const size_t k = s.offset - state_offset;
        adamw_update(p, g, m + k, v + k, s.numel, mult, o.lr, o.beta1, o.beta2, o.eps, wd, bc1, bc2);
      } else {
        for (size_t k = 0; k < s.numel; ++k) p[k] -= o.lr * (g[k] * mult + wd * p[k]);
      }
    } else if (o.grad_clip <= 0.0f) {
      partials[i] = 0.0;
    }
    std::memset(g, 0, sizeof(float) * s.numel);
  });
  return o.grad_clip > 0.0f ? norm : global_norm();
}

}  // namespace dixie
