// The model's parameters on the device as the kernels read them: float32 masters (in ModelSpec's flat layout) and,
// in mixed precision, a bf16 copy in the same layout for the matrix products. A Q8_0 model keeps its layer matrices
// as int8 instead (q8), and the masters and their copy hold only the other parameters: the flat layout with the
// layer-matrix groups cut out. Its token embedding stays float here, where the CPU keeps it as Q8_0 rows (which
// llama.cpp's Q8_0 files hold too): a GPU has the memory to spare, and its head is a GEMM over float rows, so a
// q8_0 model's logits differ between the two backends by that rounding too.
#pragma once
#include "common.cuh"
#include "core/model_spec.h"

namespace dixie::cuda {

struct DeviceWeights {
  const ModelSpec* spec = nullptr;
  float* f32 = nullptr;
  bf16* lp = nullptr;  // null in float32
  // Q8_0: each layer matrix w[C, OC] as q [OC, ldq] int8 with f16 scales (bits) [OC, ldq / 32] (q8.cuh), per kind
  // layer after layer from q8_offset[kind] (in int8s; its scales from q8_offset[kind] / 32).
  int8_t* q8 = nullptr;
  uint16_t* q8_scales = nullptr;
  size_t q8_offset[NUM_PARAM_KINDS] = {};

  // The rows of a Q8_0 matrix of inputs C, as stored: C rounded up to a whole block.
  static int q8_ld(int C) { return (C + 31) / 32 * 32; }
  // Where a flat offset outside the layer matrices is in f32/lp: less the matrix groups before it, when they are cut.
  size_t stored_offset(size_t flat) const {
    if (!q8) return flat;
    size_t cut = 0;
    for (ParamKind m : kLayerMatrices)
      if (spec->group_offset(m) + spec->group_numel(m) <= flat) cut += spec->group_numel(m);
    return flat - cut;
  }
  // Offset of a tensor in f32/lp: layer l of a per-layer kind, or the model-wide tensor (layer -1).
  size_t offset(ParamKind kind, int layer) const {
    const size_t flat = layer < 0 ? spec->group_offset(kind)
                                  : spec->group_offset(kind) + static_cast<size_t>(layer) * (spec->group_numel(kind) / spec->config().n_layer);
    return stored_offset(flat);
  }
  const float* param(ParamKind kind, int layer) const { return f32 + offset(kind, layer); }
  // What the products read: the float32 master, or its bf16 copy.
  template <typename X>
  const X* weight(ParamKind kind, int layer) const { return stored<X>(offset(kind, layer)); }
  // The same of a LoRA adapter's factor of layer matrix kLayerMatrices[matrix] in `layer`: A [r, in] (b false) or
  // B [out, r] (b true). An adapter trains over float32 weights only, so no matrix group is cut before it.
  template <typename X>
  const X* lora_factor(int matrix, int layer, bool b) const { return stored<X>(spec->lora_offset(matrix, layer, b)); }
  // A Q8_0 layer matrix of layer l: its int8s and scales.
  int8_t* q8_matrix(ParamKind kind, int layer) const { return q8 + q8_offset[kind] + q8_numel(kind) * layer; }
  uint16_t* q8_matrix_scales(ParamKind kind, int layer) const { return q8_scales + (q8_offset[kind] + q8_numel(kind) * layer) / 32; }
  size_t q8_numel(ParamKind kind) const {
    const auto [rows, cols] = spec->matrix_shape(kind);
    return static_cast<size_t>(cols) * q8_ld(rows);
  }

 private:
  template <typename X>
  const X* stored(size_t at) const {
    if constexpr (std::is_same<X, bf16>::value) return lp + at;
    else return f32 + at;
  }
};

}  // namespace dixie::cuda
