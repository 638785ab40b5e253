#include "served_adapters.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "vec_math.h"

namespace dixie {

int ServedAdapters::add(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors) {
  if (rank < 1 || rank > kMaxRank)
    throw std::invalid_argument("kv_add_adapter: rank " + std::to_string(rank) + " is outside [1, " + std::to_string(kMaxRank) + "]");
  auto adapter = std::make_unique<Adapter>();
  adapter->rank = rank;
  adapter->scaling = scaling;
  const int L = spec_.config().n_layer;
  adapter->offsets.assign(static_cast<size_t>(L) * 4, -1);
  size_t total = 0;
  for (int l = 0; l < L; ++l) {
    for (int i = 0; i < 4; ++i) {
      if (!modules[l * 4 + i]) continue;
      const auto [in, out] = spec_.matrix_shape(kLayerMatrices[i]);
      adapter->offsets[l * 4 + i] = static_cast<int64_t>(total);
      total += static_cast<size_t>(rank) * (in + out);
    }
  }
  if (total == 0) throw std::invalid_argument("kv_add_adapter: the adapter changes no layer matrix");
  if (n_factors != total)
    throw std::invalid_argument("kv_add_adapter: factors has " + std::to_string(n_factors) + " values, the modules at rank " +
                                std::to_string(rank) + " need " + std::to_string(total));
  // 4 KB pages: an adapter is added while others decode, and a fresh 2 MB page can cost milliseconds to find.
  adapter->factors = AlignedArray<float>(total, Pages::kSmall);
  std::copy(factors, factors + total, adapter->factors.data());
  const int id = next_id_++;
  adapters_.emplace(id, std::move(adapter));
  plan_scratch();
  return id;
}

std::vector<int> ServedAdapters::remove(int id) {
  const auto it = adapters_.find(id);
  if (it == adapters_.end()) throw std::out_of_range("kv_remove_adapter: no adapter " + std::to_string(id));
  std::vector<int> slots;
  for (size_t s = 0; s < slot_ids_.size(); ++s) {
    if (slot_ids_[s] != id) continue;
    bind(static_cast<int>(s), -1);
    slots.push_back(static_cast<int>(s));
  }
  adapters_.erase(it);
  return slots;
}

bool ServedAdapters::bind(int slot, int id) {
  if (id != -1 && adapters_.find(id) == adapters_.end()) throw std::out_of_range("kv_set_adapter: no adapter " + std::to_string(id));
  if (slot_ids_[slot] == id) return false;
  bound_ += (id != -1) - (slot_ids_[slot] != -1);
  slot_ids_[slot] = id;
  slot_adapters_[slot] = id == -1 ? nullptr : adapters_.at(id).get();
  return true;
}

void ServedAdapters::reserve(int n_slots, int max_rows) {
  slot_ids_.assign(n_slots, -1);
  slot_adapters_.assign(n_slots, nullptr);
  bound_ = 0;
  max_rows_ = max_rows;
  plan_scratch();
}

// A model that serves no adapter keeps no scratch for them.
void ServedAdapters::plan_scratch() {
  const size_t n = static_cast<size_t>(max_rows_) * kMaxRank;
  if (!adapters_.empty() && u_.size() != n) u_ = AlignedArray<float>(n);
}

void ServedAdapters::apply(int i, int layer, float* y, const float* x, int R, const int* row_slot, ThreadPool& pool) {
  if (bound_ == 0) return;
  const auto [in, out] = spec_.matrix_shape(kLayerMatrices[i]);
  pool.parallel_for(R, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const Adapter* a = slot_adapters_[row_slot[r]];
      const int64_t at = a ? a->offsets[layer * 4 + i] : -1;
      if (at < 0) continue;
      const float* A = a->factors.data() + at;
      add_low_rank(y + r * out, x + r * in, A, A + static_cast<size_t>(a->rank) * in, a->rank, a->scaling, in, out, u_.data() + r * kMaxRank);
    }
  });
}

void add_low_rank(float* y, const float* x, const float* A, const float* B, int rank, float scaling, int in, int out, float* u) {
  for (int k = 0; k < rank; ++k) u[k] = scaling * dot(A + static_cast<size_t>(k) * in, x, in);
  for (int o = 0; o < out; ++o) y[o] += dot(B + static_cast<size_t>(o) * rank, u, rank);
}

size_t ServedAdapters::bytes() const {
  size_t n = u_.bytes();
  for (const auto& [id, a] : adapters_) n += a->factors.bytes();
  return n;
}

}  // namespace dixie
