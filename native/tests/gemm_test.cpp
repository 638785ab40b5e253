// Checks dixie::sgemm against a double-accumulating reference: all four transpose forms, alpha/beta,
// row strides wider than the rows, odd and edge sizes (M or N = 1, K = 0), several row blocks and K slices,
// pools of 1 and 2 threads.
// Exits 0 when every case passes. Build: see the dixie_gemm_test target in CMakeLists.txt.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/thread_pool.h"

namespace {

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad;  // extra elements at the end of every stored row
};

// Each element's error bound scales with the magnitudes it is summed from, so cancellation cannot hide a bug.
bool run_case(const Case& c, dixie::ThreadPool& pool, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  std::vector<float> A(static_cast<size_t>(a_rows * lda + 1)), B(static_cast<size_t>(b_rows * ldb + 1));
  std::vector<float> C(static_cast<size_t>(c.M * ldc + 1));
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  for (float& x : C) x = dist(rng);
  // beta == 0 must not read C: poison it so a 0 * NaN would show.
  if (c.beta == 0.0f) {
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) C[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
  }
  const std::vector<float> C0 = C;

  dixie::sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc, pool);

  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      double sum = 0.0, mag = 0.0;
      for (int64_t p = 0; p < c.K; ++p) {
        const double a = c.ta ? A[p * lda + i] : A[i * lda + p];
        const double b = c.tb ? B[j * ldb + p] : B[p * ldb + j];
        sum += a * b;
        mag += std::fabs(a * b);
      }
      const double scaled_old = c.beta == 0.0f ? 0.0 : c.beta * static_cast<double>(C0[i * ldc + j]);
      const double want = c.alpha * sum + scaled_old;
      const double bound = 1e-5 * (std::fabs(c.alpha) * mag + std::fabs(scaled_old)) + 1e-30;
      const double got = C[i * ldc + j];
      if (!(std::fabs(got - want) <= bound)) {
        std::printf("FAIL ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%lld threads=%d: "
                    "C[%lld,%lld]=%.9g want %.9g\n",
                    c.ta, c.tb, (long long)c.M, (long long)c.N, (long long)c.K, c.alpha, c.beta, (long long)c.pad,
                    pool.size(), (long long)i, (long long)j, got, want);
        return false;
      }
    }
  }
  // Padding between rows and the guard element after the last row must be untouched.
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < ldc; ++j)
      if (!(C[i * ldc + j] == C0[i * ldc + j])) {
        std::printf("FAIL ta=%d tb=%d M=%lld N=%lld K=%lld: wrote row padding C[%lld,%lld]\n", c.ta, c.tb,
                    (long long)c.M, (long long)c.N, (long long)c.K, (long long)i, (long long)j);
        return false;
      }
  if (!(C.back() == C0.back())) {
    std::printf("FAIL ta=%d tb=%d M=%lld N=%lld K=%lld: wrote past the last row\n", c.ta, c.tb, (long long)c.M,
                (long long)c.N, (long long)c.K);
    return false;
  }
  return true;
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  int passed = 0, failed = 0;
  const int64_t sizes[][3] = {
      {1, 1, 1},      {1, 300, 48},   {7, 300, 48},  {1, 1, 700},    {2, 3, 4},       {5, 17, 9},
      {6, 16, 8},     {12, 32, 16},   {13, 33, 17},  {31, 1, 65},    {64, 64, 64},    {65, 63, 129},
      {100, 200, 3},  {1, 2304, 768}, {3, 768, 300}, {32, 97, 257},  {97, 31, 520},   {129, 47, 33},
      {200, 300, 7},  {255, 129, 300}, {8, 1000, 40}, {1000, 8, 40}, {6, 5000, 10},   {17, 16, 0},
      {0, 5, 5},      {5, 0, 5},      {300, 17, 1100}, {2200, 20, 30}, {3, 40, 2100}, {1, 50, 1030},
      {4, 291, 37},   {2, 700, 13},   {16, 50, 19},
  };

  const float alphas[] = {1.0f, -0.5f};
  const float betas[] = {0.0f, 1.0f, 0.75f};
  dixie::ThreadPool pools[2] = {dixie::ThreadPool(1), dixie::ThreadPool(2)};
  for (dixie::ThreadPool& pool : pools) {
    for (const auto& s : sizes) {
      for (int t = 0; t < 4; ++t) {
        for (float alpha : alphas) {
          for (float beta : betas) {
            for (int64_t pad : {int64_t{0}, int64_t{3}}) {
              const Case c{(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], alpha, beta, pad};
              (run_case(c, pool, rng) ? passed : failed) += 1;
            }
          }
        }
      }
    }
  }
  std::printf("gemm: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
