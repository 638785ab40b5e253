// The memory read bandwidth that decoding at batch 1 is bound by: T threads (default 2) sum their shares of a
// 512 MB buffer (larger than any cache), each share read as eight long runs side by side, the access pattern
// the decoder's products aim for. Prints the median and the best of 9 passes in GB/s, as bench/decode.bench.ts
// reads them: `read bandwidth, T threads: median X GB/s, best Y GB/s`.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "cpu/aligned_array.h"

namespace {

constexpr int kRuns = 8;

// Plain loops that the compiler vectorizes for whatever vector unit it targets.
float sum_runs(const float* p, size_t n) {
  float acc[kRuns][16] = {};
  const size_t per = n / kRuns / 16 * 16;
  for (size_t i = 0; i < per; i += 16)
    for (int s = 0; s < kRuns; ++s)
      for (int j = 0; j < 16; ++j) acc[s][j] += p[s * per + i + j];
  float total = 0.0f;
  for (const auto& run : acc)
    for (float x : run) total += x;
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::max(1, std::atoi(argv[1])) : 2;
  const size_t n = (size_t{512} << 20) / sizeof(float);
  dixie::AlignedArray<float> buffer(n);
  std::fill(buffer.data(), buffer.data() + n, 1.0f);  // touch every page before timing
  std::vector<double> rates;
  std::vector<float> sums(threads);
  for (int pass = 0; pass < 9; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    const size_t share = n / threads / 64 * 64;
    for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { sums[t] = sum_runs(buffer.data() + t * share, share); });
    for (std::thread& th : pool) th.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(static_cast<double>(share) * threads * sizeof(float) / seconds / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  std::printf("read bandwidth, %d threads: median %.1f GB/s, best %.1f GB/s (checksum %.0f)\n", threads, rates[4], rates[8],
              static_cast<double>(sums[0]));
  return 0;
}
