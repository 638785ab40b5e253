#include "served_adapters.cuh"

#include <algorithm>
#include <utility>

namespace dixie::cuda {

namespace {

// Warps per block of the first pass: a block per (row, kShrinkWarps values of k), so that a decoding step's few rows
// still spread over the device.
constexpr int kShrinkWarps = 4;

// u[j, k] = scaling_j * A_j[k, :] . x[row_j, :] for k < rank_j, A_j row j's adapter's A [rank_j, in] of `module`:
// a warp per (j, k) (grid: rows x ceil(largest rank / kShrinkWarps)). u: [rows, kMaxServedRank], x: [chunk rows, in]
template <typename X>
__global__ void bgmv_shrink_kernel(float* u, const X* x, const AdaptedRow* rows, int module, int in) {
  const AdaptedRow a = rows[blockIdx.x];
  const float* A = a.modules[module];
  const int lane = threadIdx.x % 32, k = blockIdx.y * kShrinkWarps + threadIdx.x / 32;
  if (!A || k >= a.rank) return;
  const X* xr = x + static_cast<int64_t>(a.row) * in;
  const float* Ak = A + static_cast<int64_t>(k) * in;
  float s = 0.0f;
  for (int c = lane; c < in; c += 32) s += Ak[c] * to_f32(xr[c]);
  s = warp_sum(s);
  if (lane == 0) u[static_cast<int64_t>(blockIdx.x) * kMaxServedRank + k] = a.scaling * s;
}

// y[row_j, o] += sum_k u[j, k] B_j^T[k, o] for o < out, B_j^T [rank_j, out] following A_j: blocks of outputs of
// one row each (grid: rows x output blocks). y: [chunk rows, out]
template <typename X>
__global__ void bgmv_expand_kernel(X* y, const float* u, const AdaptedRow* rows, int module, int in, int out) {
  const AdaptedRow a = rows[blockIdx.x];
  const float* A = a.modules[module];
  const int o = blockIdx.y * blockDim.x + threadIdx.x;
  if (!A || o >= out) return;
  const float* Bt = A + static_cast<int64_t>(a.rank) * in;
  const float* uj = u + static_cast<int64_t>(blockIdx.x) * kMaxServedRank;
  float s = 0.0f;
  for (int k = 0; k < a.rank; ++k) s += uj[k] * Bt[static_cast<int64_t>(k) * out + o];
  X* yo = y + static_cast<int64_t>(a.row) * out + o;
  *yo = from_f32<X>(to_f32(*yo) + s);
}

}  // namespace

int ServedAdapters::add(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors) {
  const int n_modules = spec_.config().n_layer * 4;
  const int id = table_.add(rank, scaling, modules, n_factors, [&](auto& adapter) {
    // B goes over transposed, so that both passes read their factor a row at a time, the warp's loads coalesced.
    std::vector<float> values(n_factors);
    std::vector<const float*> at(n_modules, nullptr);
    adapter.factors.values.allocate(n_factors, "a LoRA adapter's factors");
    adapter.factors.modules.allocate(n_modules, "a LoRA adapter's module table");
    for (int m = 0; m < n_modules; ++m) {
      const int64_t o = adapter.offsets[m];
      if (o < 0) continue;
      const std::pair<int, int> shape = spec_.matrix_shape(kLayerMatrices[m % 4]);
      const int in = shape.first, out = shape.second;
      const float* A = factors + o;
      const float* B = A + static_cast<size_t>(rank) * in;
      std::copy(A, B, values.data() + o);
      float* Bt = values.data() + o + static_cast<size_t>(rank) * in;
      for (int r = 0; r < out; ++r)
        for (int k = 0; k < rank; ++k) Bt[static_cast<size_t>(k) * out + r] = B[static_cast<size_t>(r) * rank + k];
      at[m] = adapter.factors.values.data() + o;
    }
    DIXIE_CUDA_CHECK(cudaMemcpyAsync(adapter.factors.values.data(), values.data(), n_factors * sizeof(float),
                                     cudaMemcpyHostToDevice, stream_));
    DIXIE_CUDA_CHECK(cudaMemcpyAsync(adapter.factors.modules.data(), at.data(), n_modules * sizeof(const float*),
                                     cudaMemcpyHostToDevice, stream_));
    DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // before the staging vectors go
  });
  plan_scratch();
  return id;
}

std::vector<int> ServedAdapters::remove(int id) {
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // queued work may still read its factors
  return table_.remove(id);
}

void ServedAdapters::reserve(int n_slots, int chunk_rows, int64_t max_total) {
  table_.reserve(n_slots);
  chunk_rows_ = chunk_rows;
  max_total_ = max_total;
  chunk_begin_.clear();
  plan_scratch();
}

// A model that serves no adapter keeps no memory for them.
void ServedAdapters::plan_scratch() {
  if (table_.empty()) return;
  if (rows_.size() != static_cast<size_t>(max_total_)) {
    rows_host_.allocate(max_total_);
    rows_.allocate(max_total_, "adapted rows");
  }
  const size_t u = static_cast<size_t>(chunk_rows_) * kMaxServedRank;
  if (u_.size() != u) u_.allocate(u, "adapters' A x");
}

void ServedAdapters::prepare(const int32_t* row_slot, int64_t total) {
  chunk_begin_.clear();
  if (!table_.any_bound()) return;
  AdaptedRow* h = rows_host_.data();
  int64_t n = 0;
  max_rank_ = 0;
  for (int64_t r = 0; r < total; ++r) {
    if (r % chunk_rows_ == 0) chunk_begin_.push_back(n);
    const auto* a = table_.slot_adapter(row_slot[r]);
    if (!a) continue;
    h[n++] = AdaptedRow{a->factors.modules.data(), static_cast<int32_t>(r % chunk_rows_), a->rank, a->scaling};
    max_rank_ = std::max(max_rank_, a->rank);
  }
  chunk_begin_.push_back(n);
  if (n == 0) chunk_begin_.clear();
  else DIXIE_CUDA_CHECK(cudaMemcpyAsync(rows_.data(), h, n * sizeof(AdaptedRow), cudaMemcpyHostToDevice, stream_));
}

template <typename X>
void ServedAdapters::apply(int i, int layer, X* y, const X* x, int chunk) {
  if (chunk_begin_.empty()) return;
  const int64_t j0 = chunk_begin_[chunk], n = chunk_begin_[chunk + 1] - j0;
  if (n == 0) return;
  const std::pair<int, int> shape = spec_.matrix_shape(kLayerMatrices[i]);
  const int in = shape.first, out = shape.second, module = layer * 4 + i;
  const dim3 shrink_grid(static_cast<unsigned>(n), static_cast<unsigned>(ceil_div(max_rank_, kShrinkWarps)));
  bgmv_shrink_kernel<<<shrink_grid, kShrinkWarps * 32, 0, stream_>>>(u_.data(), x, rows_.data() + j0, module, in);
  DIXIE_CUDA_LAUNCHED();
  bgmv_expand_kernel<<<dim3(static_cast<unsigned>(n), static_cast<unsigned>(ceil_div(out, 256))), 256, 0, stream_>>>(
      y, u_.data(), rows_.data() + j0, module, in, out);
  DIXIE_CUDA_LAUNCHED();
}

size_t ServedAdapters::bytes() const {
  size_t n = rows_.bytes() + u_.bytes();
  for (const auto& [id, a] : table_.adapters()) n += a->factors.values.bytes() + a->factors.modules.bytes();
  return n;
}

template void ServedAdapters::apply<float>(int, int, float*, const float*, int);
template void ServedAdapters::apply<bf16>(int, int, bf16*, const bf16*, int);

}  // namespace dixie::cuda
