// LoRA adapters decoded unmerged on the GPU, a different one per slot if need be (core/adapter_table.h; the CPU's
// are native/cpu/served_adapters.h). After each layer matrix's product, the rows whose slots are bound to an
// adapter that changes the matrix get y[r] += scaling * B (A x[r]) in two gathered passes, as Punica's BGMV does:
// one computing u[j] = scaling * A x for every such row j, each from its own adapter's A, one adding B u[j].
// Rows bound to no adapter are in neither pass, and a call with no bound row launches nothing.
#pragma once
#include <utility>
#include <vector>

#include "common.cuh"
#include "core/adapter_table.h"
#include "core/model_spec.h"

namespace dixie::cuda {

// A row of a call that an adapter changes.
struct AdaptedRow {
  const float* const* modules;  // the adapter's A of each layer matrix on the device, [n_layer * 4] (null: unchanged)
  int32_t row;                  // within its chunk
  int32_t rank;
  float scaling;
};

class ServedAdapters {
 public:
  ServedAdapters(const ModelSpec& spec, cudaStream_t stream) : table_(spec), spec_(spec), stream_(stream) {}

  // See Backend::kv_add_adapter: the factors are copied to device memory of their own, float32 whatever the
  // activations, as the CPU keeps them: r x (in + out) values a matrix are few beside the base's.
  int add(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors);
  // Unbinds the slots bound to adapter `id` and returns them (their caches hold its work).
  std::vector<int> remove(int id);
  // Binds a slot to adapter `id` (-1: none); returns whether its binding changed.
  bool bind(int slot, int id) { return table_.bind(slot, id); }
  // A cache of n_slots whose calls run in chunks of up to chunk_rows rows, max_total rows in all.
  void reserve(int n_slots, int chunk_rows, int64_t max_total);
  // Lists a call's rows (their slots row_slot [total]) that an adapter changes, chunk by chunk, for apply; queued on
  // the stream.
  void prepare(const int32_t* row_slot, int64_t total);
  // y [rows, out] += each listed row's adapter of kLayerMatrices[i] in `layer` applied to x [rows, in], for the
  // call's chunk `chunk`.
  template <typename X>
  void apply(int i, int layer, X* y, const X* x, int chunk);
  // What apply() launches for a prepared call of one chunk: its listed rows and their largest rank ({0, 0}: none).
  // Calls alike in this launch the same kernels over the rows listed on the device.
  std::pair<int64_t, int> one_chunk_launch() const {
    return chunk_begin_.empty() ? std::pair<int64_t, int>{0, 0} : std::pair<int64_t, int>{chunk_begin_.back(), max_rank_};
  }
  size_t bytes() const;

 private:
  struct Factors {
    DeviceArray<float> values;         // per module changed: A [rank, in], then B^T [rank, out]
    DeviceArray<const float*> modules;  // AdaptedRow::modules
  };

  AdapterTable<Factors> table_;
  const ModelSpec& spec_;
  cudaStream_t stream_;
  int chunk_rows_ = 0;
  int64_t max_total_ = 0;
  std::vector<int64_t> chunk_begin_;  // per chunk of the last call, where its rows start in rows_ (one entry more)
  int max_rank_ = 0;                  // the largest rank among the last call's rows
  PinnedArray<AdaptedRow> rows_host_;
  DeviceArray<AdaptedRow> rows_;      // [max_total]
  DeviceArray<float> u_;              // [chunk_rows, kMaxServedRank]: each listed row's scaling * A x

  void plan_scratch();
};

}  // namespace dixie::cuda
