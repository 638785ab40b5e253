// The GPT-2 model's hyper-parameters and the layout of its parameters in one flat float buffer.
// Gradients and optimizer moments share this layout, so one offset addresses a tensor in all of them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace dixie {

struct GPT2Config {
  int n_layer = 0;
  int n_head = 0;
  int n_embd = 0;
  int n_ctx = 0;       // max sequence length (n_positions)
  int vocab_size = 0;
};

// The kinds of parameter tensor, in the order their groups sit in the flat buffer. Per-layer kinds
// hold all layers back to back, so layer l of a kind starts at group_offset + l * per_layer_numel.
enum ParamKind {
  WTE,        // [V, C]
  WPE,        // [maxT, C]
  LN1_W,      // [L, C]
  LN1_B,      // [L, C]
  QKV_W,      // [L, C, 3C]  (Hugging Face Conv1D layout: y = x @ W + b)
  QKV_B,      // [L, 3C]
  ATTPROJ_W,  // [L, C, C]
  ATTPROJ_B,  // [L, C]
  LN2_W,      // [L, C]
  LN2_B,      // [L, C]
  FC_W,       // [L, C, 4C]
  FC_B,       // [L, 4C]
  FCPROJ_W,   // [L, 4C, C]
  FCPROJ_B,   // [L, C]
  LNF_W,      // [C]
  LNF_B,      // [C]
  // A LoRA adapter's factors (LoraShape), after every base parameter: for each layer, for each targeted matrix in
  // kLayerMatrices' order, A [r, in] (LORA_A), then likewise every B [out, r] (LORA_B): PEFT's lora_A and lora_B.
  LORA_A,
  LORA_B,
  NUM_PARAM_KINDS
};

// The four weight matrices of a block, which the CPU decoder reads in panel layout.
constexpr ParamKind kLayerMatrices[] = {QKV_W, ATTPROJ_W, FC_W, FCPROJ_W};
// Which of them `kind` is (-1 for another kind): the index that LoraShape and ModelSpec::lora_offset take.
constexpr int layer_matrix_index(ParamKind kind) {
  for (int i = 0; i < 4; ++i)
    if (kLayerMatrices[i] == kind) return i;
  return -1;
}

// A LoRA adapter over a model's layer matrices: rank r, and which matrices it changes (bit i: kLayerMatrices[i]).
// W [in, out] computes as W + scaling * (B A)^T: x W + scaling * (x A^T) B^T, so that only A and B train.
struct LoraShape {
  int rank = 0;          // 0: no adapter
  uint8_t targets = 0;
  float scaling = 1.0f;  // lora_alpha / r
  bool targets_matrix(int i) const { return rank > 0 && (targets >> i & 1) != 0; }
};

// One named tensor as Hugging Face names it ("h.3.attn.c_attn.weight"), with its place in the buffer.
struct ParamTensor {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0;  // in floats, from the start of the flat buffer
  size_t numel = 0;
  ParamKind kind = WTE;
  int layer = -1;     // -1 for tensors that are not per layer
  bool is_matrix = false;  // 2-D weights: the ones AdamW decays by default
};

// A stretch of the flat buffer, [first, first + n): within one layer's matrix of a kind in kLayerMatrices (`element`
// the index of its first element in that matrix), or kind NUM_PARAM_KINDS for parameters that are not layer matrices.
struct FlatPiece {
  size_t first = 0, n = 0;
  ParamKind kind = NUM_PARAM_KINDS;
  int layer = -1;
  size_t element = 0;
};

class ModelSpec {
 public:
  // Throws std::invalid_argument naming the bad field.
  explicit ModelSpec(const GPT2Config& config, const LoraShape& lora = {});

  const GPT2Config& config() const { return config_; }
  const LoraShape& lora() const { return lora_; }
  size_t num_params() const { return num_params_; }
  // The first parameter training updates: the adapter's first factor (the base before it is frozen), or 0.
  size_t trainable_begin() const { return lora_.rank > 0 ? group_offset_[LORA_A] : 0; }
  // Where the adapter's A (b false) or B (b true) of layer matrix kLayerMatrices[matrix] in `layer` begins.
  size_t lora_offset(int matrix, int layer, bool b) const;
  const std::vector<ParamTensor>& tensors() const { return tensors_; }
  size_t group_offset(ParamKind kind) const { return group_offset_[kind]; }
  size_t group_numel(ParamKind kind) const { return group_numel_[kind]; }
  // A layer matrix's [rows, cols] (Conv1D layout: inputs by outputs), for a kind in kLayerMatrices.
  std::pair<int, int> matrix_shape(ParamKind kind) const;
  // The tensor of a kind and layer (-1 for the model-wide ones).
  const ParamTensor& tensor(ParamKind kind, int layer) const;
  // How many of the elements [first, first + n) lie in the group of `kind`, counted from first: 0 when first is not in it.
  size_t count_in_group(ParamKind kind, size_t first, size_t n) const;
  // Calls fn over [offset, offset + count) in pieces (FlatPiece), in order: the backends store layer matrices apart
  // from the other parameters when their weights are 16 or 8 bits.
  void for_each_piece(size_t offset, size_t count, const std::function<void(const FlatPiece&)>& fn) const;

 private:
  GPT2Config config_;
  LoraShape lora_;
  size_t num_params_ = 0;
  size_t lora_layer_offset_[2][4] = {};

  void add_lora_groups(size_t& offset);  // A and B of each kLayerMatrices entry within a layer's part of its group
  size_t group_offset_[NUM_PARAM_KINDS] = {};
  size_t group_numel_[NUM_PARAM_KINDS] = {};
  std::vector<ParamTensor> tensors_;
};

}  // namespace dixie
