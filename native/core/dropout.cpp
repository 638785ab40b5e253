#include "dropout.h"

#include <algorithm>

#include "collective.h"

namespace dixie {

DropoutMask lora_dropout_mask(const BackendOptions& options, const ForwardOptions& forward, int matrix, int layer, int64_t N) {
  DropoutMask mask;
  if (!forward.training || options.lora_dropout == 0.0f) return mask;
  uint64_t key = mix64(options.lora_dropout_seed + 0x6a09e667f3bcc909ull);
  for (const uint64_t word : {static_cast<uint64_t>(forward.step), static_cast<uint64_t>(forward.micro_batch),
                              static_cast<uint64_t>(layer) * 4 + static_cast<uint64_t>(matrix)})
    key = mix64(key ^ word);
  mask.key = key;
  // Every rank's batch has N rows: rank r's are the global batch's rows [r N, (r + 1) N).
  mask.first_row = (options.data_parallel ? options.data_parallel->rank() : 0) * N;
  mask.threshold = static_cast<uint32_t>(static_cast<double>(options.lora_dropout) * 4294967296.0);
  mask.scale = 1.0f / (1.0f - options.lora_dropout);
  return mask;
}

int lora_widest_input(const ModelSpec& spec) {
  int widest = 0;
  for (int i = 0; i < 4; ++i)
    if (spec.lora().targets_matrix(i)) widest = std::max(widest, spec.matrix_shape(kLayerMatrices[i]).first);
  return widest;
}

}  // namespace dixie
