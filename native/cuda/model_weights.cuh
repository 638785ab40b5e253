// The model's parameters on the device as the kernels read them: float32 masters (in ModelSpec's flat layout)
// and, in mixed precision, a bf16 copy in the same layout for the matrix products.
#pragma once
#include "common.cuh"
#include "core/model_spec.h"

namespace dixie::cuda {

struct DeviceWeights {
  const ModelSpec* spec = nullptr;
  float* f32 = nullptr;
  bf16* lp = nullptr;  // null in float32

  // Offset of a tensor in the flat buffer: layer l of a per-layer kind, or the model-wide tensor (layer -1).
  size_t offset(ParamKind kind, int layer) const {
    if (layer < 0) return spec->group_offset(kind);
    return spec->group_offset(kind) + static_cast<size_t>(layer) * (spec->group_numel(kind) / spec->config().n_layer);
  }
  const float* param(ParamKind kind, int layer) const { return f32 + offset(kind, layer); }
  // What the products read: the float32 master, or its bf16 copy.
  template <typename X>
  const X* weight(ParamKind kind, int layer) const {
    if constexpr (std::is_same<X, bf16>::value) return lp + offset(kind, layer);
    else return f32 + offset(kind, layer);
  }
};

}  // namespace dixie::cuda
