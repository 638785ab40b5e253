#include "served_adapters.h"

#include <algorithm>

#include "vec_math.h"

namespace dixie {

int ServedAdapters::add(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors) {
  const int id = table_.add(rank, scaling, modules, n_factors, [&](auto& adapter) {
    // 4 KB pages: an adapter is added while others decode, and a fresh 2 MB page can cost milliseconds to find.
    adapter.factors = AlignedArray<float>(n_factors, Pages::kSmall);
    std::copy(factors, factors + n_factors, adapter.factors.data());
  });
  plan_scratch();
  return id;
}

void ServedAdapters::reserve(int n_slots, int max_rows) {
  table_.reserve(n_slots);
  max_rows_ = max_rows;
  plan_scratch();
}

// A model that serves no adapter keeps no scratch for them.
void ServedAdapters::plan_scratch() {
  const size_t n = static_cast<size_t>(max_rows_) * kMaxServedRank;
  if (!table_.empty() && u_.size() != n) u_ = AlignedArray<float>(n);
}

void ServedAdapters::apply(int i, int layer, float* y, const float* x, int R, const int* row_slot, ThreadPool& pool) {
  if (!table_.any_bound()) return;
  const auto [in, out] = spec_.matrix_shape(kLayerMatrices[i]);
  pool.parallel_for(R, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const auto* a = table_.slot_adapter(row_slot[r]);
      const int64_t at = a ? a->offsets[layer * 4 + i] : -1;
      if (at < 0) continue;
      const float* A = a->factors.data() + at;
      add_low_rank(y + r * out, x + r * in, A, A + static_cast<size_t>(a->rank) * in, a->rank, a->scaling, in, out, u_.data() + r * kMaxServedRank);
    }
  });
}

void add_low_rank(float* y, const float* x, const float* A, const float* B, int rank, float scaling, int in, int out, float* u) {
  for (int k = 0; k < rank; ++k) u[k] = scaling * dot(A + static_cast<size_t>(k) * in, x, in);
  for (int o = 0; o < out; ++o) y[o] += dot(B + static_cast<size_t>(o) * rank, u, rank);
}

size_t ServedAdapters::bytes() const {
  size_t n = u_.bytes();
  for (const auto& [id, a] : table_.adapters()) n += a->factors.bytes();
  return n;
}

}  // namespace dixie
