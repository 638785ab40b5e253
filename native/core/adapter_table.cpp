#include "adapter_table.h"

namespace dixie {

std::vector<int64_t> served_adapter_offsets(const ModelSpec& spec, int rank, const uint8_t* modules, size_t n_factors) {
  if (rank < 1 || rank > kMaxServedRank)
    throw std::invalid_argument("kv_add_adapter: rank " + std::to_string(rank) + " is outside [1, " + std::to_string(kMaxServedRank) + "]");
  const int L = spec.config().n_layer;
  std::vector<int64_t> offsets(static_cast<size_t>(L) * 4, -1);
  size_t total = 0;
  for (int l = 0; l < L; ++l) {
    for (int i = 0; i < 4; ++i) {
      if (!modules[l * 4 + i]) continue;
      const auto [in, out] = spec.matrix_shape(kLayerMatrices[i]);
      offsets[l * 4 + i] = static_cast<int64_t>(total);
      total += static_cast<size_t>(rank) * (in + out);
    }
  }
  if (total == 0) throw std::invalid_argument("kv_add_adapter: the adapter changes no layer matrix");
  if (n_factors != total)
    throw std::invalid_argument("kv_add_adapter: factors has " + std::to_string(n_factors) + " values, the modules at rank " +
                                std::to_string(rank) + " need " + std::to_string(total));
  return offsets;
}

}  // namespace dixie
