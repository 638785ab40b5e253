#include "model_spec.h"

#include <algorithm>
#include <stdexcept>

namespace dixie {

namespace {

// Groups start on a 64-byte boundary so that SIMD loads of a group's first element are aligned.
constexpr size_t kGroupAlignFloats = 16;

size_t align_up(size_t n) { return (n + kGroupAlignFloats - 1) / kGroupAlignFloats * kGroupAlignFloats; }

void require_positive(int value, const char* field) {
  if (value <= 0) throw std::invalid_argument(std::string("config field '") + field + "' must be a positive integer");
}

}  // namespace

ModelSpec::ModelSpec(const GPT2Config& c, const LoraShape& lora) : config_(c), lora_(lora) {
  require_positive(c.n_layer, "n_layer");
  require_positive(c.n_head, "n_head");
  require_positive(c.n_embd, "n_embd");
  require_positive(c.n_ctx, "n_ctx");
  require_positive(c.vocab_size, "vocab_size");
  if (c.n_embd % c.n_head != 0)
    throw std::invalid_argument("config field 'n_embd' (" + std::to_string(c.n_embd) +
                                ") must be divisible by 'n_head' (" + std::to_string(c.n_head) + ")");

  const int64_t C = c.n_embd, V = c.vocab_size, T = c.n_ctx;
  struct Group { ParamKind kind; const char* name; std::vector<int64_t> per_layer_shape; bool per_layer; };
  if (lora.rank < 0 || (lora.rank > 0 && (lora.targets == 0 || lora.targets > 15)))
    throw std::invalid_argument("option 'lora': rank must be >= 0 and targets a non-empty subset of the four layer matrices");
  const Group groups[] = {
      {WTE, "wte.weight", {V, C}, false},
      {WPE, "wpe.weight", {T, C}, false},
      {LN1_W, "ln_1.weight", {C}, true},
      {LN1_B, "ln_1.bias", {C}, true},
      {QKV_W, "attn.c_attn.weight", {C, 3 * C}, true},
      {QKV_B, "attn.c_attn.bias", {3 * C}, true},
      {ATTPROJ_W, "attn.c_proj.weight", {C, C}, true},
      {ATTPROJ_B, "attn.c_proj.bias", {C}, true},
      {LN2_W, "ln_2.weight", {C}, true},
      {LN2_B, "ln_2.bias", {C}, true},
      {FC_W, "mlp.c_fc.weight", {C, 4 * C}, true},
      {FC_B, "mlp.c_fc.bias", {4 * C}, true},
      {FCPROJ_W, "mlp.c_proj.weight", {4 * C, C}, true},
      {FCPROJ_B, "mlp.c_proj.bias", {C}, true},
      {LNF_W, "ln_f.weight", {C}, false},
      {LNF_B, "ln_f.bias", {C}, false},
  };

  size_t offset = 0;
  for (const Group& g : groups) {
    size_t per_layer_numel = 1;
    for (int64_t d : g.per_layer_shape) per_layer_numel *= static_cast<size_t>(d);
    const int copies = g.per_layer ? c.n_layer : 1;
    group_offset_[g.kind] = offset;
    group_numel_[g.kind] = per_layer_numel * copies;
    for (int l = 0; l < copies; ++l) {
      ParamTensor t;
      t.name = g.per_layer ? "h." + std::to_string(l) + "." + g.name : g.name;
      t.shape = g.per_layer_shape;
      t.offset = offset + per_layer_numel * l;
      t.numel = per_layer_numel;
      t.kind = g.kind;
      t.layer = g.per_layer ? l : -1;
      t.is_matrix = g.per_layer_shape.size() == 2;
      tensors_.push_back(std::move(t));
    }
    offset = align_up(offset + group_numel_[g.kind]);
  }
  add_lora_groups(offset);  // empty without an adapter: then they mark where the base ends
  num_params_ = offset;
}

// The adapter's groups (see LORA_A): named as PEFT names the factors, after the module ("h.0.attn.c_attn.lora_A.weight").
void ModelSpec::add_lora_groups(size_t& offset) {
  const int L = config_.n_layer, r = lora_.rank;
  for (int b = 0; b < 2; ++b) {
    const ParamKind kind = b ? LORA_B : LORA_A;
    size_t per_layer = 0;
    for (int i = 0; i < 4; ++i) {
      if (!lora_.targets_matrix(i)) continue;
      lora_layer_offset_[b][i] = per_layer;
      const auto [in, out] = matrix_shape(kLayerMatrices[i]);
      per_layer += static_cast<size_t>(r) * (b ? out : in);
    }
    group_offset_[kind] = offset;
    group_numel_[kind] = per_layer * L;
    for (int l = 0; l < L; ++l) {
      for (int i = 0; i < 4; ++i) {
        if (!lora_.targets_matrix(i)) continue;
        const ParamTensor& base = tensor(kLayerMatrices[i], l);
        const auto [in, out] = matrix_shape(kLayerMatrices[i]);
        ParamTensor t;
        t.name = base.name.substr(0, base.name.size() - std::string(".weight").size()) + (b ? ".lora_B.weight" : ".lora_A.weight");
        t.shape = b ? std::vector<int64_t>{out, r} : std::vector<int64_t>{r, in};
        t.offset = lora_offset(i, l, b);
        t.numel = static_cast<size_t>(r) * (b ? out : in);
        t.kind = kind;
        t.layer = l;
        t.is_matrix = true;
        tensors_.push_back(std::move(t));
      }
    }
    offset = align_up(offset + group_numel_[kind]);
  }
}

size_t ModelSpec::lora_offset(int matrix, int layer, bool b) const {
  const ParamKind kind = b ? LORA_B : LORA_A;
  return group_offset_[kind] + group_numel_[kind] / config_.n_layer * layer + lora_layer_offset_[b][matrix];
}

std::pair<int, int> ModelSpec::matrix_shape(ParamKind kind) const {
  const int C = config_.n_embd;
  switch (kind) {
    case QKV_W: return {C, 3 * C};
    case FC_W: return {C, 4 * C};
    case FCPROJ_W: return {4 * C, C};
    case ATTPROJ_W: return {C, C};
    default: throw std::logic_error("matrix_shape: not a layer matrix");
  }
}

const ParamTensor& ModelSpec::tensor(ParamKind kind, int layer) const {
  for (const ParamTensor& t : tensors_)
    if (t.kind == kind && t.layer == layer) return t;
  throw std::logic_error("tensor: no such kind and layer");
}

size_t ModelSpec::count_in_group(ParamKind kind, size_t first, size_t n) const {
  const size_t begin = group_offset_[kind], end = begin + group_numel_[kind];
  return first < begin || first >= end ? 0 : std::min(n, end - first);
}

void ModelSpec::for_each_piece(size_t offset, size_t count, const std::function<void(const FlatPiece&)>& fn) const {
  const size_t end = offset + count;
  for (size_t i = offset; i < end;) {
    FlatPiece piece;
    piece.first = i;
    size_t stop = end;  // where this piece ends: the end of its layer's matrix, or where the next matrix begins
    for (ParamKind kind : kLayerMatrices) {
      const size_t begin = group_offset_[kind], per = group_numel_[kind] / config_.n_layer;
      if (i < begin) {
        stop = std::min(stop, begin);
      } else if (i < begin + group_numel_[kind]) {
        piece.kind = kind;
        piece.layer = static_cast<int>((i - begin) / per);
        piece.element = (i - begin) % per;
        stop = std::min(end, i + per - piece.element);
        break;
      }
    }
    piece.n = stop - i;
    fn(piece);
    i = stop;
  }
}

}  // namespace dixie
