// The model's parameters on the device as the kernels read them: float32 masters (in ModelSpec's flat layout) and,
// in mixed precision, a bf16 copy in the same layout for the matrix products. A Q8_0 model keeps its layer matrices
// as int8 instead (q8), and the masters and their copy hold only the other parameters: the flat layout with the
// layer-matrix groups cut out. Its token embedding stays float here, where the CPU keeps it as Q8_0 rows (which
// llama.cpp's Q8_0 files hold too): a GPU has the memory to spare, and its head is a GEMM over float rows, so a
// q8_0 model's logits differ between the two backends by that rounding too.
//
// A LoRA adapter that trains over a frozen 16-bit base keeps the base's layer matrices as stored (m16) and cuts them
// out of f32/lp likewise; the other parameters there hold the values the base stores (CudaBackend::write_params).
// The products read a layer matrix through matrix(): in place where it is stored in the activation type, otherwise
// expanded into scratch of expanded_numel() elements, a matrix at a time.
#pragma once
#include <algorithm>

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
  // 16 bits: each layer matrix w[C, OC] as f16 or bf16 (m16_bf16) bits, kind after kind in kLayerMatrices' order,
  // layer after layer.
  uint16_t* m16 = nullptr;
  bool m16_bf16 = false;

  // A layer matrix as a product reads it: w[C, OC] (ld OC), or transposed, w^T [OC, ld] (q8_0's layout).
  template <typename X>
  struct Matrix {
    const X* w;
    bool transposed;
    int ld;
  };

  // The rows of a Q8_0 matrix of inputs C, as stored: C rounded up to a whole block.
  static int q8_ld(int C) { return (C + 31) / 32 * 32; }
  // Where a flat offset outside the layer matrices is in f32/lp: less the matrix groups before it, when they are cut.
  size_t stored_offset(size_t flat) const {
    if (!q8 && !m16) return flat;
    size_t cut = 0;
    for (ParamKind m : kLayerMatrices)
      if (spec->group_offset(m) + spec->group_numel(m) <= flat) cut += spec->group_numel(m);
    return flat - cut;
  }
  // Offset of a tensor in f32/lp: layer l of a per-layer kind, or the model-wide tensor (layer -1).
  size_t offset(ParamKind kind, int layer) const { return stored_offset(flat_offset(kind, layer)); }
  size_t flat_offset(ParamKind kind, int layer) const {
    return layer < 0 ? spec->group_offset(kind)
                     : spec->group_offset(kind) + static_cast<size_t>(layer) * (spec->group_numel(kind) / spec->config().n_layer);
  }
  const float* param(ParamKind kind, int layer) const { return f32 + offset(kind, layer); }
  // What the products read: the float32 master, or its bf16 copy.
  template <typename X>
  const X* weight(ParamKind kind, int layer) const { return stored<X>(offset(kind, layer)); }
  // The same of a LoRA adapter's factor of layer matrix kLayerMatrices[matrix] in `layer`: A [r, in] (b false) or
  // B [out, r] (b true).
  template <typename X>
  const X* lora_factor(int matrix, int layer, bool b) const { return stored<X>(stored_offset(spec->lora_offset(matrix, layer, b))); }
  // A Q8_0 layer matrix of layer l: its int8s and scales.
  int8_t* q8_matrix(ParamKind kind, int layer) const { return q8 + q8_offset[kind] + q8_numel(kind) * layer; }
  uint16_t* q8_matrix_scales(ParamKind kind, int layer) const { return q8_scales + (q8_offset[kind] + q8_numel(kind) * layer) / 32; }
  size_t q8_numel(ParamKind kind) const {
    const auto [rows, cols] = spec->matrix_shape(kind);
    return static_cast<size_t>(cols) * q8_ld(rows);
  }
  uint16_t* m16_matrix(ParamKind kind, int layer) const {
    size_t at = 0;
    for (ParamKind m : kLayerMatrices) {
      if (m == kind) break;
      at += spec->group_numel(m);
    }
    return m16 + at + spec->group_numel(kind) / spec->config().n_layer * layer;
  }
  // Whether matrix() expands into scratch for activations of type X, and the most elements it then writes.
  template <typename X>
  bool expands() const { return q8 || (m16 && !(m16_bf16 && std::is_same<X, bf16>::value)); }
  size_t expanded_numel() const {
    size_t largest = 0;
    for (ParamKind kind : kLayerMatrices) largest = std::max(largest, q8_numel(kind));
    return largest;
  }
  // Layer matrix `kind` of `layer` for a product over activations X; scratch (expanded_numel() elements) is used
  // when expands<X>(), the expansion queued on the stream.
  template <typename X>
  Matrix<X> matrix(ParamKind kind, int layer, X* scratch, cudaStream_t stream) const;

 private:
  template <typename X>
  const X* stored(size_t at) const {
    if constexpr (std::is_same<X, bf16>::value) return lp + at;
    else return f32 + at;
  }
};

}  // namespace dixie::cuda
