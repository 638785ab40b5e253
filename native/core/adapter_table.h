// The bookkeeping of LoRA adapters decoded unmerged (Backend::kv_add_adapter, kv_remove_adapter, kv_set_adapter),
// one for both backends so that they check, number and bind alike: an adapter checked against the model with its
// factors' layout, ids never reused, each slot's binding. A backend keeps the factors where it computes with them
// (Factors: host memory on the CPU, device memory on the GPU).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "model_spec.h"

namespace dixie {

// The largest rank an adapter decoded unmerged may have: each backend keeps a row's A x in scratch of this size.
constexpr int kMaxServedRank = 256;

// Where the factors of each layer matrix an adapter changes start in `factors` as kv_add_adapter takes them
// ([n_layer * 4], -1 for those it leaves alone), once rank, modules and n_factors are checked against the model;
// throws std::invalid_argument naming what does not fit.
std::vector<int64_t> served_adapter_offsets(const ModelSpec& spec, int rank, const uint8_t* modules, size_t n_factors);

template <typename Factors>
class AdapterTable {
 public:
  struct Adapter {
    int rank = 0;
    float scaling = 1.0f;
    std::vector<int64_t> offsets;  // served_adapter_offsets
    Factors factors;
  };

  explicit AdapterTable(const ModelSpec& spec) : spec_(spec) {}

  // See Backend::kv_add_adapter: the adapter checked, then store(adapter) fills adapter.factors.
  template <typename Store>
  int add(int rank, float scaling, const uint8_t* modules, size_t n_factors, Store&& store) {
    auto adapter = std::make_unique<Adapter>();
    adapter->rank = rank;
    adapter->scaling = scaling;
    adapter->offsets = served_adapter_offsets(spec_, rank, modules, n_factors);
    store(*adapter);
    const int id = next_id_++;
    adapters_.emplace(id, std::move(adapter));
    return id;
  }

  // Unbinds the slots bound to adapter `id` and returns them (their caches hold its work).
  std::vector<int> remove(int id) {
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

  // Binds a slot (checked already) to adapter `id` (-1: none); returns whether its binding changed.
  bool bind(int slot, int id) {
    if (id != -1 && adapters_.find(id) == adapters_.end()) throw std::out_of_range("kv_set_adapter: no adapter " + std::to_string(id));
    if (slot_ids_[slot] == id) return false;
    bound_ += (id != -1) - (slot_ids_[slot] != -1);
    slot_ids_[slot] = id;
    slot_adapters_[slot] = id == -1 ? nullptr : adapters_.at(id).get();
    return true;
  }

  // A fresh cache of n_slots: no slot bound; the adapters stay.
  void reserve(int n_slots) {
    slot_ids_.assign(n_slots, -1);
    slot_adapters_.assign(n_slots, nullptr);
    bound_ = 0;
  }

  const Adapter* slot_adapter(int slot) const { return slot_adapters_[slot]; }
  bool any_bound() const { return bound_ > 0; }
  bool empty() const { return adapters_.empty(); }
  const std::map<int, std::unique_ptr<Adapter>>& adapters() const { return adapters_; }

 private:
  const ModelSpec& spec_;
  std::map<int, std::unique_ptr<Adapter>> adapters_;
  int next_id_ = 0;
  std::vector<int> slot_ids_;  // [n_slots]: -1 for none
  std::vector<const Adapter*> slot_adapters_;
  int bound_ = 0;
};

}  // namespace dixie
