// LoRA adapters applied unmerged while decoding, a different one for each slot if need be: the way S-LoRA and
// Punica serve many fine-tunes of one base in one batch. Each row whose slot is bound to an adapter that changes a
// layer matrix gets y[r] += scaling * B (A x[r]) beside the base's product: r x (in + out) multiply-adds against the
// base's in x out (1.4% at rank 8 on 124M's c_attn), so ten chatbots on one base cost little more than one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "aligned_array.h"
#include "core/adapter_table.h"
#include "core/model_spec.h"
#include "thread_pool.h"

namespace dixie {

// y [out] += scaling * B (A x) for one row x [in]: A [rank, in], B [out, rank]; u [rank] is scratch. Row by row, so that
// a row's result does not depend on the rows decoded beside it.
void add_low_rank(float* y, const float* x, const float* A, const float* B, int rank, float scaling, int in, int out, float* u);

class ServedAdapters {
 public:
  explicit ServedAdapters(const ModelSpec& spec) : table_(spec), spec_(spec) {}

  // See Backend::kv_add_adapter. Throws std::invalid_argument naming what does not fit the model.
  int add(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors);
  // Unbinds the slots bound to adapter `id` and returns them (their caches hold its work).
  std::vector<int> remove(int id) { return table_.remove(id); }
  // Binds a slot to adapter `id` (-1: none); returns whether its binding changed.
  bool bind(int slot, int id) { return table_.bind(slot, id); }
  void reserve(int n_slots, int max_rows);
  // y [R, out] += for each row r, its slot's adapter of kLayerMatrices[i] in `layer` applied to x [R, in].
  void apply(int i, int layer, float* y, const float* x, int R, const int* row_slot, ThreadPool& pool);
  bool any_bound() const { return table_.any_bound(); }
  size_t bytes() const;

 private:
  AdapterTable<AlignedArray<float>> table_;  // the factors as kv_add_adapter takes them
  const ModelSpec& spec_;
  int max_rows_ = 0;
  AlignedArray<float> u_;                 // [max_rows, kMaxServedRank]: each row's A x

  void plan_scratch();
};

}  // namespace dixie
