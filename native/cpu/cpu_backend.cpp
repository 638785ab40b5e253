#include "cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <vector>

#include "core/checks.h"
#include "core/dropout.h"
#include "core/dtype.h"
#include "gemm.h"
#include "kernels.h"

namespace dixie {

namespace {

size_t per_layer_numel(const ModelSpec& spec, ParamKind kind) {
  return spec.group_numel(kind) / static_cast<size_t>(spec.config().n_layer);
}

void zero_fill(float* p, size_t n, ThreadPool& pool) {
  pool.parallel_for(static_cast<int64_t>(n), 1 << 18, [&](int64_t b, int64_t e) { std::memset(p + b, 0, sizeof(float) * (e - b)); });
}

std::string cpu_feature_list() {
  std::string s;
#ifdef __AVX512F__
  s += " avx512f";
#endif
#ifdef __AVX512VNNI__
  s += " avx512vnni";
#endif
#ifdef __AVXVNNI__
  s += " avxvnni";
#endif
#ifdef __AVX2__
  s += " avx2";
#endif
#ifdef __FMA__
  s += " fma";
#endif
#ifdef __ARM_NEON
  s += " neon";
#endif
  return s.empty() ? " scalar" : s;
}

// The floats of the activation arena over N rows (each buffer padded to 16 floats), as the constructor lays it
// out (it checks that the two agree): what plan_decode_memory counts for a float32 model's forward().
size_t arena_floats(const GPT2Config& c, int64_t N, bool training, bool per_layer) {
  const int64_t C = c.n_embd, V = c.vocab_size, NH = c.n_head, L = c.n_layer;
  const auto pad = [](int64_t n) { return static_cast<size_t>((n + 15) / 16 * 16); };
  const size_t layer = 4 * pad(N * C) + 4 * pad(N) + pad(N * 3 * C) + pad(N * NH) + pad(N * 4 * C);
  size_t total = (per_layer ? L : 1) * layer + (training ? L + 1 : 2) * pad(N * C);
  total += pad(N * C) + pad(N * 4 * C) + pad(N * C) + 2 * pad(N) + pad(N * V) + pad(N);
  if (training) total += pad(N * C) + pad(N * 4 * C) + pad(N * C);
  return total;
}

}  // namespace

CpuBackend::CpuBackend(const GPT2Config& config, const BackendOptions& options)
    : spec_(config, options.lora), options_(options), pool_(options.threads, options.background ? ThreadPriority::background : ThreadPriority::normal) {
  const GPT2Config& c = spec_.config();
  if (options_.max_batch < 1) throw std::invalid_argument("option 'maxBatch' must be a positive integer");
  if (options_.max_seq == 0) options_.max_seq = c.n_ctx;
  if (options_.max_seq < 0 || options_.max_seq > c.n_ctx)
    throw std::invalid_argument("option 'maxSeq' (" + std::to_string(options_.max_seq) + ") must be in [1, nCtx = " +
                                std::to_string(c.n_ctx) + "]");
  max_rows_ = static_cast<int64_t>(options_.max_batch) * options_.max_seq;
  const bool narrow = options_.weight_dtype != DType::F32;
  training_ = options_.trainable && (!narrow || spec_.lora().rank > 0);
  if (narrow && spec_.lora().rank > 0 && !training_)
    throw std::invalid_argument("option 'lora' trains an adapter, and a model created with trainable: false trains nothing");
  check_lora_dropout(options_);

  // With an adapter only its factors train: gradients and moments cover [first, P).
  const size_t P = spec_.num_params(), first = spec_.trainable_begin();
  group_ = options_.data_parallel;
  if (options_.zero_stage != 0 && (options_.zero_stage != 1 || !group_ || !training_))
    throw std::invalid_argument("option 'zero' must be 0, or 1 for a model that trains data-parallel");
  shards_ = Shards{P - first, sharded() ? group_->size() : 1, first};
  shard_begin_ = shards_.begin(sharded() ? group_->rank() : 0);
  shard_end_ = shards_.end(sharded() ? group_->rank() : 0);
  // Beside a narrow base that trains, params_ holds the base's vectors one group after another, then the adapter's
  // factors as the flat layout lays them out, [first, P).
  size_t f32_size = narrow ? 0 : P;
  for (int k = 0; k < NUM_PARAM_KINDS; ++k) {
    const auto kind = static_cast<ParamKind>(k);
    f32_at_[k] = narrow ? kNotInF32 : spec_.group_offset(kind);
    if (narrow && training_ && kind < LORA_A && kind != WTE && layer_matrix_index(kind) < 0) {
      f32_at_[k] = f32_size;
      f32_size += spec_.group_numel(kind);
    }
  }
  if (narrow && training_) {
    for (ParamKind kind : {LORA_A, LORA_B}) f32_at_[kind] = f32_size + (spec_.group_offset(kind) - first);
    f32_size += P - first;
  }
  if (f32_size > 0) params_ = AlignedArray<float>(f32_size);
  if (narrow) {
    // A q8_0 model's flat buffer holds none of what decoding streams (its decoder holds the matrices and the token
    // embedding), only small groups that are read once or a row at a time: 4 KB pages commit just those, where a
    // 2 MB page would be committed around each of them.
    params16_ = AlignedArray<uint16_t>(spec_.group_offset(LORA_A), options_.weight_dtype == DType::Q8_0 ? Pages::kSmall : Pages::kHuge);
  }
  if (training_) {
    grads_ = AlignedArray<float>(P - first);
    m_ = AlignedArray<float>(shard_end_ - shard_begin_);
    v_ = AlignedArray<float>(shard_end_ - shard_begin_);
  }
  trainable_flags_.assign(spec_.tensors().size(), 1);
  decay_flags_.resize(spec_.tensors().size());
  for (size_t i = 0; i < decay_flags_.size(); ++i) decay_flags_[i] = spec_.tensors()[i].is_matrix ? 1 : 0;
  spans_ = plan_param_spans(spec_, trainable_flags_.data(), decay_flags_.data(), shard_begin_, shard_end_);
  span_partials_.assign(spans_.size(), 0.0);

  if (narrow) {
    // 16-bit and 8-bit layer matrices live in the decoder's panels from the first write on.
    decoder_ = std::make_unique<CpuDecoder>(spec_, weights(), options_.weight_dtype, pool_);
    if (!training_) return;
    // Training reads them, and the token embedding, expanded to float32 a matrix (or a chunk of rows) at a time.
    size_t largest = 0;
    for (ParamKind kind : kLayerMatrices) largest = std::max(largest, spec_.group_numel(kind) / c.n_layer);
    embedding_chunk_ = std::min<int64_t>(c.vocab_size, static_cast<int64_t>(largest / c.n_embd));
    expanded_ = AlignedArray<float>(largest);
  }

  // The activation plan. Each entry is padded to 64 bytes; pointers are set once the arena exists.
  const int64_t N = max_rows_, C = c.n_embd, V = c.vocab_size, NH = c.n_head, L = c.n_layer;
  std::vector<std::pair<float**, size_t>> plan;
  auto take = [&](float*& p, int64_t n) { plan.emplace_back(&p, static_cast<size_t>(n)); };
  const bool per_layer = training_ && !options_.recompute;
  layer_acts_.resize(per_layer ? L : 1);
  for (LayerActs& a : layer_acts_) {
    take(a.ln1, N * C); take(a.ln1_mean, N); take(a.ln1_rstd, N);
    take(a.qkv, N * 3 * C);
    take(a.atty, N * C);
    take(a.lse, N * NH);
    take(a.res2, N * C);
    take(a.ln2, N * C); take(a.ln2_mean, N); take(a.ln2_rstd, N);
    take(a.fch, N * 4 * C);
  }
  residuals_.resize(training_ ? L + 1 : 2);
  for (float*& r : residuals_) take(r, N * C);
  take(proj_, N * C);
  take(gelu_, N * 4 * C);
  take(lnf_, N * C); take(lnf_mean_, N); take(lnf_rstd_, N);
  take(logits_, N * V);
  take(losses_, N);
  dres_ = dwide_ = dnarrow_ = nullptr;
  if (training_) {
    take(dres_, N * C);
    take(dwide_, N * 4 * C);
    take(dnarrow_, N * C);
  }
  size_t total = 0;
  for (auto& [slot, n] : plan) total += (n + 15) / 16 * 16;
  if (total != arena_floats(c, N, training_, per_layer))
    throw std::logic_error("the CPU backend's activation plan and arena_floats disagree");
  arena_ = AlignedArray<float>(total);
  size_t offset = 0;
  for (auto& [slot, n] : plan) {
    *slot = arena_.data() + offset;
    offset += (n + 15) / 16 * 16;
  }
  if (spec_.lora().rank > 0) {
    const size_t u = (layer_acts_.size() * 4 + 1) * N * spec_.lora().rank;
    const bool dropping = training_ && options_.lora_dropout > 0.0f;
    lora_acts_ = AlignedArray<float>(u + (dropping ? N * lora_widest_input(spec_) : 0));
    if (dropping) lora_dropped_ = lora_acts_.data() + u;
  }
  inputs_ = AlignedArray<int32_t>(N);
  targets_ = AlignedArray<int32_t>(N);
  if (training_) {
    // The widest weight gradient is c_fc's (4C columns), or an adapter's A over c_proj's input (4C too).
    tree_scratch_ = AlignedArray<float>(tree_scratch_floats(options_.max_batch, 4 * C));
    tree_ = tree_scratch(tree_scratch_.data(), options_.max_batch, 4 * C);
  }
}

MemoryReport plan_decode_memory(const GPT2Config& config, DType dtype, int n_slots, int threads) {
  const ModelSpec spec(config);
  MemoryReport r;
  // float32 weights beside their panel copy; 16-bit and 8-bit ones keep the layer matrices (and 8-bit ones the token
  // embedding) only in the decoder, the rest in 16 bits (f16 for q8_0).
  r.params = (dtype == DType::F32 ? spec.num_params() * sizeof(float) : (spec.num_params() - params_in_decoder(spec, dtype)) * sizeof(uint16_t)) +
             planned_weight_bytes(spec, dtype);
  const DecoderPlan plan = plan_decoder(spec, dtype, n_slots, threads);
  r.kv_cache = plan.cache_bytes();
  r.activations = plan.bytes() - r.kv_cache;
  // A float32 model keeps forward()'s activations for one sequence of n_ctx beside the decoder's (inference only).
  if (dtype == DType::F32) r.activations += (arena_floats(config, config.n_ctx, false, false) + 2 * config.n_ctx) * sizeof(float);
  return r;
}

CpuBackend::~CpuBackend() = default;

MemoryReport CpuBackend::memory() const {
  MemoryReport r;
  r.params = params_.bytes();
  if (options_.weight_dtype != DType::F32)  // what the decoder stores is not in params16_
    r.params += (params16_.size() - params_in_decoder(spec_, options_.weight_dtype)) * sizeof(uint16_t) + decoder_->weight_bytes();
  r.grads = grads_.bytes();
  r.optimizer = m_.bytes() + v_.bytes() + span_partials_.size() * sizeof(double);
  r.activations = arena_.bytes() + lora_acts_.bytes() + expanded_.bytes() + tree_scratch_.bytes() + inputs_.bytes() + targets_.bytes();
  r.kv_cache = decoder_ ? decoder_->memory_bytes() : 0;
  return r;
}

std::string CpuBackend::device_name() const {
  static const char* const kNames[] = {"f32", "f16", "bf16", "q8_0"};
  const char* dtype = kNames[static_cast<int>(options_.weight_dtype)];
  return "cpu (" + std::to_string(pool_.size()) + " threads," + cpu_feature_list() + "; " + dtype + " weights)";
}

// forward() reads the vectors in float32, which a 16-bit or 8-bit model keeps only when an adapter trains over it.
void CpuBackend::require_f32(const char* what) const {
  if (options_.weight_dtype != DType::F32 && !training_)
    throw std::logic_error(std::string(what) + " is not available: the model stores " +
                           (options_.weight_dtype == DType::Q8_0 ? "8-bit (q8_0)" : "16-bit") +
                           " weights, which are inference-only (use the kv* decoding calls, load with weightDtype 'f32', or "
                           "train a LoRA adapter over them)");
}

void CpuBackend::require_training(const char* what) const {
  require_f32(what);
  if (!training_)
    throw std::logic_error(std::string(what) + " is not available: the model was created with trainable: false");
}

float* CpuBackend::param(ParamKind kind, int layer) {
  return params_.data() + f32_at_[kind] + (layer < 0 ? 0 : layer * per_layer_numel(spec_, kind));
}

size_t CpuBackend::f32_index(size_t flat) const {
  return options_.weight_dtype == DType::F32 ? flat : f32_at_[LORA_A] + (flat - spec_.group_offset(LORA_A));
}

float* CpuBackend::factor(int i, int l, bool b) { return params_.data() + f32_index(spec_.lora_offset(i, l, b)); }

const float* CpuBackend::matrix(ParamKind kind, int layer) {
  if (options_.weight_dtype == DType::F32) return param(kind, layer);
  decoder_->expand_matrix(kind, layer, expanded_.data());
  return expanded_.data();
}

template <typename Fn>
void CpuBackend::for_each_embedding_chunk(const Fn& fn) {
  const int64_t V = spec_.config().vocab_size;
  if (options_.weight_dtype == DType::F32) {
    fn(int64_t{0}, V, static_cast<const float*>(param(WTE, -1)));
    return;
  }
  for (int64_t v0 = 0; v0 < V; v0 += embedding_chunk_) {
    const int64_t n = std::min(embedding_chunk_, V - v0);
    decoder_->expand_embedding(static_cast<int>(v0), static_cast<int>(n), expanded_.data());
    fn(v0, n, static_cast<const float*>(expanded_.data()));
  }
}

float* CpuBackend::grad(ParamKind kind, int layer) {
  const size_t offset = spec_.group_offset(kind) + (layer < 0 ? 0 : layer * per_layer_numel(spec_, kind));
  return offset < spec_.trainable_begin() ? nullptr : grads_.data() + (offset - spec_.trainable_begin());
}

float* CpuBackend::lora_u(int i, int l) {
  const size_t u = static_cast<size_t>(max_rows_) * spec_.lora().rank;
  return lora_acts_.data() + ((layer_acts_.size() == 1 ? 0 : l) * 4 + i) * u;
}

float* CpuBackend::residual(int l) { return residuals_[training_ ? l : l % 2]; }

CpuBackend::LayerActs& CpuBackend::acts(int l) { return layer_acts_[layer_acts_.size() == 1 ? 0 : l]; }

WeightsView CpuBackend::weights() const {
  WeightsView w;
  // A Q8_0 model keeps the parameters that its decoder does not (the position embedding, LayerNorms, biases) as f16.
  w.dtype = options_.weight_dtype == DType::Q8_0 ? DType::F16 : options_.weight_dtype;
  if (w.dtype == DType::F32) w.f32 = params_.data(); else w.u16 = params16_.data();
  if (spec_.lora().rank > 0) w.adapter = params_.data() + f32_index(spec_.group_offset(LORA_A));
  return w;
}

// --------------------------------------------------------------------------------------------------------------
// parameters and optimizer state

void CpuBackend::write_params(size_t offset, const void* src, size_t count, DType dtype) {
  check_param_range(spec_, offset, count, "writeParams");
  if (decoder_) decoder_->weights_changed();
  const DType store = options_.weight_dtype;
  const auto to_f32 = [&](float* dst, size_t first, size_t n) {  // dst[0, n) = src[first - offset, ...) as float32
    pool_.parallel_for(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) dst[i] = element_to_f32(src, first - offset + i, dtype);
    });
  };
  if (store == DType::F32) {
    to_f32(params_.data() + offset, offset, count);
    return;
  }
  // A narrow base is stored in 16 or 8 bits, the factors of an adapter that trains over it in float32.
  const size_t factors = spec_.group_offset(LORA_A), base_end = std::min(offset + count, factors);
  if (offset + count > factors) {
    const size_t first = std::max(offset, factors);
    to_f32(params_.data() + f32_index(first), first, offset + count - first);
  }
  if (offset >= base_end) return;
  if (store == DType::Q8_0) {
    write_q8(offset, src, base_end - offset, dtype);
  } else {
    // src[i] as 16 bits of the stored type.
    const auto value16 = [&](size_t i) -> uint16_t {
      if (store == dtype) return static_cast<const uint16_t*>(src)[i];  // exact copy
      return store == DType::F16 ? f32_to_f16(element_to_f32(src, i, dtype)) : f32_to_bf16(element_to_f32(src, i, dtype));
    };
    pool_.parallel_for(static_cast<int64_t>(base_end - offset), 1 << 16, [&](int64_t b, int64_t e) {
      decoder_->for_each_run(offset + b, e - b, [&](size_t first, size_t n, const PanelRun* run) {
        uint16_t* out = run ? decoder_->panel16(*run) : params16_.data() + first;
        for (size_t k = 0; k < n; ++k) out[k] = value16(first - offset + k);
      });
    });
  }
  // Training reads the vectors as stored, in float32.
  for (int k = 0; k < LORA_A; ++k) {
    if (f32_at_[k] == kNotInF32) continue;
    const size_t group = spec_.group_offset(static_cast<ParamKind>(k)), numel = spec_.group_numel(static_cast<ParamKind>(k));
    const size_t lo = std::max(offset, group), hi = std::min(base_end, group + numel);
    if (lo < hi) read_stored(lo, params_.data() + f32_at_[k] + (lo - group), hi - lo);
  }
}

// A Q8_0 model's write: the layer-matrix rows are quantized into the decoder's panels, a group of kQ8Block rows
// per task, the token embedding into the decoder's Q8_0 rows, rows by task, and the other parameters stored as f16.
void CpuBackend::write_q8(size_t offset, const void* src, size_t count, DType dtype) {
  // fn(w) with w = from[first, first + n) as float32: in place, or converted into a buffer of its own.
  const auto as_f32 = [dtype](const void* from, size_t first, size_t n, const auto& fn) {
    if (dtype == DType::F32) {
      fn(static_cast<const float*>(from) + first);
      return;
    }
    std::vector<float> w(n);
    for (size_t i = 0; i < n; ++i) w[i] = element_to_f32(from, first + i, dtype);
    fn(w.data());
  };
  spec_.for_each_piece(offset, count, [&](const FlatPiece& piece) {
    const void* from = static_cast<const char*>(src) + (piece.first - offset) * (dtype == DType::F32 ? 4 : 2);
    if (piece.kind == NUM_PARAM_KINDS) {
      const size_t embedded = spec_.count_in_group(WTE, piece.first, piece.n);
      if (embedded > 0) {
        const size_t element = piece.first - spec_.group_offset(WTE), C = spec_.config().n_embd, row0 = element / C;
        check_q8_embedding_write(spec_, element, embedded);
        pool_.parallel_for(static_cast<int64_t>((element + embedded - 1) / C - row0 + 1), 64, [&](int64_t b, int64_t e) {
          for (size_t row = row0 + b; row < row0 + e; ++row) {
            const size_t begin = std::max(element, row * C), end = std::min(element + embedded, (row + 1) * C);
            as_f32(from, begin - element, end - begin, [&](const float* w) { decoder_->write_q8_embedding(begin, end - begin, w); });
          }
        });
      }
      pool_.parallel_for(static_cast<int64_t>(piece.n - embedded), 1 << 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) params16_.data()[piece.first + embedded + i] = f32_to_f16(element_to_f32(from, embedded + i, dtype));
      });
      return;
    }
    check_q8_write(spec_, piece);
    const int cols = spec_.matrix_shape(piece.kind).second, k0 = static_cast<int>(piece.element / cols);
    const int rows = static_cast<int>(piece.n / cols), groups = (rows + kQ8Block - 1) / kQ8Block;
    pool_.run(groups, [&](int64_t g, int) {
      const int k = static_cast<int>(g) * kQ8Block, n = std::min(kQ8Block, rows - k);
      as_f32(from, static_cast<size_t>(k) * cols, static_cast<size_t>(n) * cols,
             [&](const float* w) { decoder_->write_q8(piece.kind, piece.layer, k0 + k, n, w); });
    });
  });
}

void CpuBackend::read_params(size_t offset, float* dst, size_t count) const {
  check_param_range(spec_, offset, count, "readParams");
  if (options_.weight_dtype == DType::F32) {
    std::memcpy(dst, params_.data() + offset, count * sizeof(float));
    return;
  }
  const size_t factors = spec_.group_offset(LORA_A), base_end = std::min(offset + count, factors);
  if (offset + count > factors) {
    const size_t first = std::max(offset, factors);
    std::memcpy(dst + (first - offset), params_.data() + f32_index(first), (offset + count - first) * sizeof(float));
  }
  if (offset < base_end) {
    pool_.parallel_for(static_cast<int64_t>(base_end - offset), 1 << 16,
                       [&](int64_t b, int64_t e) { read_stored(offset + b, dst + b, e - b); });
  }
}

void CpuBackend::read_stored(size_t offset, float* dst, size_t count) const {
  const bool bf16 = options_.weight_dtype == DType::BF16;
  decoder_->for_each_run(offset, count, [&](size_t first, size_t n, const PanelRun* run) {
    float* out = dst + (first - offset);
    if (run && options_.weight_dtype == DType::Q8_0) {
      decoder_->read_q8(*run, n, out);
      return;
    }
    const uint16_t* in = run ? decoder_->panel16(*run) : params16_.data() + first;
    for (size_t k = 0; k < n; ++k) out[k] = bf16 ? bf16_to_f32(in[k]) : f16_to_f32(in[k]);
  });
}

void CpuBackend::read_grads(size_t offset, float* dst, size_t count) const {
  require_training("readGrads");
  check_trainable_range(spec_, offset, count, "readGrads");
  std::memcpy(dst, grads_.data() + (offset - spec_.trainable_begin()), count * sizeof(float));
}

// Under ZeRO-1 a rank keeps what falls in its shard of a write, and a read gathers every rank's part.
void CpuBackend::write_optimizer_state(OptimizerSlot slot, size_t offset, const float* src, size_t count) {
  require_training("writeOptimizerState");
  check_trainable_range(spec_, offset, count, "writeOptimizerState");
  const size_t first = std::clamp(offset, shard_begin_, shard_end_), last = std::clamp(offset + count, shard_begin_, shard_end_);
  std::memcpy((slot == OptimizerSlot::M ? m_ : v_).data() + (first - shard_begin_), src + (first - offset),
              (last - first) * sizeof(float));
}

void CpuBackend::read_optimizer_state(OptimizerSlot slot, size_t offset, float* dst, size_t count) const {
  require_training("readOptimizerState");
  check_trainable_range(spec_, offset, count, "readOptimizerState");
  const size_t first = std::clamp(offset, shard_begin_, shard_end_), last = std::clamp(offset + count, shard_begin_, shard_end_);
  std::memcpy(dst + (first - offset), (slot == OptimizerSlot::M ? m_ : v_).data() + (first - shard_begin_),
              (last - first) * sizeof(float));
  if (sharded()) group_->allgather(dst, shards_.within(offset, count));
}

void CpuBackend::set_optimizer_step_count(int64_t t) {
  if (t < 0) throw std::invalid_argument("optimizer step count must be >= 0");
  step_count_ = t;
}

void CpuBackend::set_param_flags(const uint8_t* trainable, const uint8_t* decay) {
  trainable_flags_.assign(trainable, trainable + spec_.tensors().size());
  decay_flags_.assign(decay, decay + spec_.tensors().size());
  spans_ = plan_param_spans(spec_, trainable_flags_.data(), decay_flags_.data(), shard_begin_, shard_end_);
}

// --------------------------------------------------------------------------------------------------------------
// training

void CpuBackend::block_forward(int l, LayerActs& a, const float* in, float* out, int B, int T) {
  const GPT2Config& c = spec_.config();
  const int64_t N = static_cast<int64_t>(B) * T;
  const int C = c.n_embd;
  // i: the matrix's index in kLayerMatrices
  const auto adapt = [&](int i, float* y, const float* x) {
    if (spec_.lora().targets_matrix(i)) lora_forward(i, l, y, x, lora_u(i, l), N);
  };
  layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, in, param(LN1_W, l), param(LN1_B, l), N, C, pool_);
  matmul_forward(a.qkv, a.ln1, matrix(QKV_W, l), param(QKV_B, l), N, C, 3 * C, pool_);
  adapt(0, a.qkv, a.ln1);
  attention_forward(a.atty, a.lse, a.qkv, B, T, C, c.n_head, pool_);
  matmul_forward(proj_, a.atty, matrix(ATTPROJ_W, l), param(ATTPROJ_B, l), N, C, C, pool_);
  adapt(1, proj_, a.atty);
  residual_forward(a.res2, in, proj_, N * C, pool_);
  layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, param(LN2_W, l), param(LN2_B, l), N, C, pool_);
  matmul_forward(a.fch, a.ln2, matrix(FC_W, l), param(FC_B, l), N, C, 4 * C, pool_);
  adapt(2, a.fch, a.ln2);
  gelu_forward(gelu_, a.fch, N * 4 * C, pool_);
  matmul_forward(proj_, gelu_, matrix(FCPROJ_W, l), param(FCPROJ_B, l), N, 4 * C, C, pool_);
  adapt(3, proj_, gelu_);
  residual_forward(out, a.res2, proj_, N * C, pool_);
}

void CpuBackend::lora_forward(int i, int l, float* out, const float* inp, float* u, int64_t N) {
  const auto [in, oc] = spec_.matrix_shape(kLayerMatrices[i]);
  const LoraShape& lora = spec_.lora();
  const float* A = factor(i, l, false);  // [r, in]
  const float* Bf = factor(i, l, true);  // [oc, r]
  const DropoutMask mask = lora_dropout_mask(options_, forward_, i, l, N);
  if (mask.drops()) {
    dropout(lora_dropped_, inp, N, in, mask, false, pool_);
    inp = lora_dropped_;
  }
  sgemm(false, true, N, lora.rank, in, 1.0f, inp, in, A, in, 0.0f, u, lora.rank, pool_);
  sgemm(false, true, N, oc, lora.rank, lora.scaling, u, lora.rank, Bf, lora.rank, 1.0f, out, oc, pool_);
}

// dB [oc, r] += scaling * dout^T u; du [N, r] = scaling * dout B; dA [r, in] += du^T drop(inp); dinp [N, in] += drop(du A).
void CpuBackend::lora_backward(int i, int l, float* dinp, const float* dout, const float* inp, const float* u, int B, int64_t T) {
  const int64_t N = B * T;
  const auto [in, oc] = spec_.matrix_shape(kLayerMatrices[i]);
  const LoraShape& lora = spec_.lora();
  const int r = lora.rank;
  const size_t a_offset = spec_.lora_offset(i, l, false), b_offset = spec_.lora_offset(i, l, true);
  float* dA = grads_.data() + (a_offset - spec_.trainable_begin());
  float* dB = grads_.data() + (b_offset - spec_.trainable_begin());
  float* du = lora_acts_.data() + layer_acts_.size() * 4 * static_cast<size_t>(max_rows_) * r;
  add_sequence_products(dB, dout, oc, u, r, oc, r, B, T, lora.scaling, tree_, pool_);
  sgemm(false, false, N, r, oc, lora.scaling, dout, oc, factor(i, l, true), r, 0.0f, du, r, pool_);
  const DropoutMask mask = lora_dropout_mask(options_, forward_, i, l, N);
  if (!mask.drops()) {
    add_sequence_products(dA, du, r, inp, in, r, in, B, T, 1.0f, tree_, pool_);
    sgemm(false, false, N, in, r, 1.0f, du, r, factor(i, l, false), in, 1.0f, dinp, in, pool_);
    return;
  }
  // The forward's dropped input, drawn again rather than kept: one buffer for every layer and matrix.
  dropout(lora_dropped_, inp, N, in, mask, false, pool_);
  add_sequence_products(dA, du, r, lora_dropped_, in, r, in, B, T, 1.0f, tree_, pool_);
  sgemm(false, false, N, in, r, 1.0f, du, r, factor(i, l, false), in, 0.0f, lora_dropped_, in, pool_);
  dropout(dinp, lora_dropped_, N, in, mask, true, pool_);
}

float CpuBackend::forward(const int32_t* inputs, const int32_t* targets, int B, int T, float* logits_out,
                          const ForwardOptions& options) {
  require_f32("forward");
  const GPT2Config& c = spec_.config();
  const int64_t N = check_forward_batch(c, inputs, targets, B, T, max_rows_);
  backward_ready_ = false;
  forward_ = training_ ? options : ForwardOptions{};  // a model that does not train has no buffer to drop into
  std::memcpy(inputs_.data(), inputs, N * sizeof(int32_t));
  if (targets) std::memcpy(targets_.data(), targets, N * sizeof(int32_t));

  const int C = c.n_embd, V = c.vocab_size, L = c.n_layer;
  if (options_.weight_dtype == DType::F32) {
    encoder_forward(residual(0), inputs_.data(), param(WTE, -1), param(WPE, -1), B, T, C, pool_);
  } else {  // a narrow base's token embedding, a row at a time
    const float* wpe = param(WPE, -1);
    pool_.parallel_for(N, 16, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        float* out = residual(0) + n * C;
        read_stored(spec_.group_offset(WTE) + static_cast<size_t>(inputs_.data()[n]) * C, out, C);
        for (int i = 0; i < C; ++i) out[i] += wpe[(n % T) * C + i];
      }
    });
  }
  for (int l = 0; l < L; ++l) block_forward(l, acts(l), residual(l), residual(l + 1), B, T);
  layernorm_forward(lnf_, lnf_mean_, lnf_rstd_, residual(L), param(LNF_W, -1), param(LNF_B, -1), N, C, pool_);
  // The head is tied to wte [V, C]: logits = lnf @ wte^T.
  for_each_embedding_chunk([&](int64_t v0, int64_t n, const float* wte) {
    sgemm(false, true, N, n, C, 1.0f, lnf_, C, wte, C, 0.0f, logits_ + v0, V, pool_);
  });
  if (logits_out) {
    pool_.parallel_for(N, 1, [&](int64_t b, int64_t e) {
      std::memcpy(logits_out + b * V, logits_ + b * V, (e - b) * V * sizeof(float));
    });
  }
  last_B_ = B;
  last_T_ = T;
  if (!targets) return std::numeric_limits<float>::quiet_NaN();
  // The softmax replaces the logits in place; backward turns it into dlogits in place.
  const float loss = crossentropy_forward(logits_, losses_, logits_, targets_.data(), N, V, pool_);
  backward_ready_ = training_;
  return loss;
}

void CpuBackend::zero_grad() {
  require_training("zeroGrad");
  zero_fill(grads_.data(), grads_.size(), pool_);
}

void CpuBackend::backward() {
  require_training("backward");
  if (!backward_ready_) throw std::logic_error("backward needs a forward with targets before it (one backward per forward)");
  backward_ready_ = false;
  const GPT2Config& c = spec_.config();
  const int B = last_B_, T = last_T_, C = c.n_embd, V = c.vocab_size, L = c.n_layer, NH = c.n_head;
  const int64_t N = static_cast<int64_t>(B) * T;
  if (B > options_.max_batch)  // the gradients' trees over sequences are planned for maxBatch of them
    throw std::invalid_argument("backward takes at most maxBatch (" + std::to_string(options_.max_batch) + ") sequences; the forward before it had " + std::to_string(B));

  crossentropy_backward(logits_, logits_, targets_.data(), N, V, 1.0f / static_cast<float>(N), pool_);
  for_each_embedding_chunk([&](int64_t v0, int64_t n, const float* wte) {
    sgemm(false, false, N, C, n, 1.0f, logits_ + v0, V, wte, C, v0 == 0 ? 0.0f : 1.0f, dnarrow_, C, pool_);
  });
  zero_fill(dres_, N * C, pool_);
  layernorm_backward(dres_, grad(LNF_W, -1), grad(LNF_B, -1), dnarrow_, residual(L), param(LNF_W, -1), lnf_mean_,
                     lnf_rstd_, B, T, C, pool_);

  // dres_ carries the gradient of the residual stream down through the blocks; the LayerNorm backwards add
  // their input gradient into it, which is exactly the residual connection's sum.
  for (int l = L - 1; l >= 0; --l) {
    LayerActs& a = acts(l);
    // The last block's activations and GELU output are still in place from the forward pass.
    if (l != L - 1) {
      if (options_.recompute) block_forward(l, a, residual(l), proj_, B, T);  // also leaves gelu_ of this block
      else gelu_forward(gelu_, a.fch, N * 4 * C, pool_);
    }
    const auto adapt = [&](int i, float* dx, const float* dy, const float* x) {
      if (spec_.lora().targets_matrix(i)) lora_backward(i, l, dx, dy, x, lora_u(i, l), B, T);
    };
    matmul_backward(dwide_, grad(FCPROJ_W, l), grad(FCPROJ_B, l), dres_, gelu_, matrix(FCPROJ_W, l), B, T, 4 * C, C, tree_, pool_);
    adapt(3, dwide_, dres_, gelu_);
    gelu_backward(dwide_, a.fch, dwide_, N * 4 * C, pool_);
    matmul_backward(dnarrow_, grad(FC_W, l), grad(FC_B, l), dwide_, a.ln2, matrix(FC_W, l), B, T, C, 4 * C, tree_, pool_);
    adapt(2, dnarrow_, dwide_, a.ln2);
    layernorm_backward(dres_, grad(LN2_W, l), grad(LN2_B, l), dnarrow_, a.res2, param(LN2_W, l), a.ln2_mean,
                       a.ln2_rstd, B, T, C, pool_);
    matmul_backward(dnarrow_, grad(ATTPROJ_W, l), grad(ATTPROJ_B, l), dres_, a.atty, matrix(ATTPROJ_W, l), B, T, C, C, tree_, pool_);
    adapt(1, dnarrow_, dres_, a.atty);
    attention_backward(dwide_, dnarrow_, a.qkv, a.atty, a.lse, B, T, C, NH, pool_);  // dwide_ holds dqkv [N, 3C]
    matmul_backward(dnarrow_, grad(QKV_W, l), grad(QKV_B, l), dwide_, a.ln1, matrix(QKV_W, l), B, T, C, 3 * C, tree_, pool_);
    adapt(0, dnarrow_, dwide_, a.ln1);
    layernorm_backward(dres_, grad(LN1_W, l), grad(LN1_B, l), dnarrow_, residual(l), param(LN1_W, l), a.ln1_mean,
                       a.ln1_rstd, B, T, C, pool_);
  }
  if (float* dwte = grad(WTE, -1)) {
    // The tied wte's gradient, a sequence at a time: the head's share (dlogits^T @ lnf) and the token embedding's
    // (dres_ is now the embeddings' gradient), so each sequence's part is whole before the tree over sequences adds it.
    add_sequence_products(dwte, logits_, V, lnf_, C, V, C, B, T, 1.0f, tree_, pool_, [&](int s, int64_t v0, int64_t rows, float* part) {
      const int64_t first = static_cast<int64_t>(s) * T;
      add_token_rows(part, v0, rows, dres_ + first * C, inputs_.data() + first, T, C);
    });
    encoder_backward(grad(WPE, -1), dres_, B, T, C, pool_);
  }
}

float CpuBackend::step(const StepOptions& options) {
  require_training("step");
  if (options.kind == OptimizerKind::AdamW) ++step_count_;  // t of the bias correction
  // An adapter's step changes its factors alone, which the decoder reads where they are.
  if (decoder_ && spec_.lora().rank == 0) decoder_->weights_changed();
  const int64_t t = std::max<int64_t>(1, step_count_);
  const size_t first = spec_.trainable_begin();
  float* trained = params_.data() + f32_index(first);
  if (!group_) return optimizer_step(trained, grads_.data(), first, m_.data(), v_.data(), first, spans_, span_partials_.data(), options, t, pool_);

  // The ranks' gradients are summed; the mean is their sum over the ranks, folded into the gradient's scale.
  StepOptions averaged = options;
  averaged.grad_scale /= static_cast<float>(group_->size());
  if (!sharded()) {
    group_->allreduce_sum(grads_.data(), grads_.size());
    return optimizer_step(trained, grads_.data(), first, m_.data(), v_.data(), first, spans_, span_partials_.data(), averaged, t, pool_);
  }
  group_->reduce_scatter_sum(grads_.data(), shards_.bounds());
  const float norm = optimizer_step(trained, grads_.data(), first, m_.data(), v_.data(), shard_begin_, spans_, span_partials_.data(),
                                    averaged, t, pool_, [this](double& total) { group_->allreduce_sum(&total, 1); });
  // The update zeroed this rank's shard of the gradients; the rest held other shards' partial sums.
  zero_fill(grads_.data(), shard_begin_ - first, pool_);
  zero_fill(grads_.data() + (shard_end_ - first), grads_.size() - (shard_end_ - first), pool_);
  group_->allgather(trained, shards_.bounds());
  return norm;
}

// --------------------------------------------------------------------------------------------------------------
// decoding: CpuDecoder, over the layer matrices in panel layout (a copy of float32 weights, remade after they change)

CpuDecoder& CpuBackend::decoder() {
  if (!decoder_) decoder_ = std::make_unique<CpuDecoder>(spec_, weights(), DType::F32, pool_);
  return *decoder_;
}

int CpuBackend::kv_reserve(int n_slots) { return decoder().reserve(n_slots); }

int CpuBackend::kv_add_adapter(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors) {
  return decoder().add_adapter(rank, scaling, modules, factors, n_factors);
}

void CpuBackend::kv_remove_adapter(int id) { decoder().remove_adapter(id); }

void CpuBackend::kv_set_adapter(int slot, int id) { reserved_decoder(decoder_, "kvSetAdapter").set_adapter(slot, id); }

void CpuBackend::kv_forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* out,
                            KvOutput output) {
  reserved_decoder(decoder_, "kvForward").forward(n, slots, n_new, tokens, out, output);
}

void CpuBackend::kv_truncate(int slot, int length) {
  reserved_decoder(decoder_, "kvTruncate").truncate(slot, length);
}

int CpuBackend::kv_length(int slot) const {
  return reserved_decoder(decoder_, "kvLength").length(slot);
}

void CpuBackend::kv_step(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int n_sample,
                         const int32_t* sample_rows, const SamplingParams* params, uint64_t* rng_state, int32_t* out_tokens,
                         float* logits_out) {
  reserved_decoder(decoder_, "kvStep").step(n, slots, n_new, tokens, n_sample, sample_rows, params, rng_state, out_tokens, logits_out);
}

void CpuBackend::sample(int n, const float* logits, const SamplingParams* params, uint64_t* rng_state,
                        const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens) {
  sample_tokens(n, spec_.config().vocab_size, logits, params, rng_state, history, history_len, out_tokens, pool_);
}

std::unique_ptr<Backend> make_cpu_backend(const GPT2Config& config, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(config, options);
}

}  // namespace dixie
