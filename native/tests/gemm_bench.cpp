// GFLOP/s of dixie::sgemm on GPT-2 124M's training shapes (B=4, T=64, so 256 rows; decoding has its own
// products, native/cpu/decode_matmul), at 1 and 2 threads, as a markdown table, plus the GEMM time of one
// training step. Each figure is the best of several timed calls (the cores are shared, so the best run is the
// one least disturbed).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/thread_pool.h"

namespace {

struct Shape {
  const char* what;
  bool ta, tb;
  int64_t M, N, K;
  float beta;
  int per_step;  // calls of this shape in one training step
};

double best_seconds(const Shape& s, dixie::ThreadPool& pool, std::vector<float>& a, std::vector<float>& b,
                    std::vector<float>& c) {
  const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
  auto call = [&] {
    dixie::sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.data(), lda, b.data(), ldb, s.beta, c.data(), s.N, pool);
  };
  call();  // warm up: page in buffers, grow pack buffers
  double best = 1e30, total = 0.0;
  for (int rep = 0; rep < 50 && (rep < 3 || total < 0.5); ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, dt);
    total += dt;
  }
  return best;
}

}  // namespace

int main() {
  constexpr int64_t V = 50257, C = 768, R = 256, L = 12;
  const Shape shapes[] = {
      {"fwd qkv", false, false, R, 3 * C, C, 0.0f, L},
      {"fwd attn proj", false, false, R, C, C, 0.0f, L},
      {"fwd fc", false, false, R, 4 * C, C, 0.0f, L},
      {"fwd fc proj", false, false, R, C, 4 * C, 0.0f, L},
      {"fwd lm head", false, true, R, V, C, 0.0f, 1},
      {"bwd dinp qkv", false, true, R, C, 3 * C, 0.0f, L},
      {"bwd dinp attn proj", false, true, R, C, C, 0.0f, L},
      {"bwd dinp fc", false, true, R, C, 4 * C, 0.0f, L},
      {"bwd dinp fc proj", false, true, R, 4 * C, C, 0.0f, L},
      {"bwd dW qkv", true, false, C, 3 * C, R, 1.0f, L},
      {"bwd dW attn proj", true, false, C, C, R, 1.0f, L},
      {"bwd dW fc", true, false, C, 4 * C, R, 1.0f, L},
      {"bwd dW fc proj", true, false, 4 * C, C, R, 1.0f, L},
      {"bwd dwte (head)", true, false, V, C, R, 1.0f, 1},
      {"bwd dx (head)", false, false, R, C, V, 0.0f, 1},
  };
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  dixie::ThreadPool pool1(1), pool2(2);
  double step_seconds[2] = {0.0, 0.0};
  std::printf("| shape | op | M x N x K | 1 thread GFLOP/s | 2 threads GFLOP/s |\n|---|---|---|---|---|\n");
  for (const Shape& s : shapes) {
    std::vector<float> a(static_cast<size_t>(s.M * s.K)), b(static_cast<size_t>(s.K * s.N));
    std::vector<float> c(static_cast<size_t>(s.M * s.N));
    for (float& x : a) x = dist(rng);
    for (float& x : b) x = dist(rng);
    for (float& x : c) x = dist(rng);
    const double flops = 2.0 * static_cast<double>(s.M) * s.N * s.K;
    const double t1 = best_seconds(s, pool1, a, b, c), t2 = best_seconds(s, pool2, a, b, c);
    step_seconds[0] += s.per_step * t1;
    step_seconds[1] += s.per_step * t2;
    std::printf("| %s | %s%s | %lld x %lld x %lld | %.1f | %.1f |\n", s.what, s.ta ? "T" : "N", s.tb ? "T" : "N",
                static_cast<long long>(s.M), static_cast<long long>(s.N), static_cast<long long>(s.K),
                flops / t1 * 1e-9, flops / t2 * 1e-9);
    std::fflush(stdout);
  }
  std::printf("\nGEMM time of one training step (B=4, T=64): %.0f ms at 1 thread, %.0f ms at 2 threads\n",
              step_seconds[0] * 1e3, step_seconds[1] * 1e3);
  return 0;
}
