#include "cuda_backend.cuh"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "attention.cuh"
#include "copies.cuh"
#include "core/checks.h"
#include "core/dtype.h"
#include "cpu/optimizer.h"
#include "crossentropy.cuh"
#include "encoder.cuh"
#include "gelu.cuh"
#include "layernorm.cuh"
#include "lora.cuh"

namespace dixie {

namespace cuda {

namespace {

constexpr size_t kArenaAlign = 256;        // bytes: every activation starts where cuBLASLt's fastest kernels want it
constexpr int kLogitCopyRows = 64;         // bf16 logits are converted to float32 this many rows at a time
constexpr size_t kWriteChunk = 1u << 20;   // floats per staged upload of parameters

// The element type of the activations, chosen once per call from the backend's precision.
template <typename F>
auto with_precision(bool bf16_mode, F&& f) {
  return bf16_mode ? f(bf16{}) : f(float{});
}

// The current device, after checking that there is one the backend can use. A data-parallel rank takes the
// device of its rank among those on its machine.
int usable_device(const GPT2Config& c, const BackendOptions& o) {
  std::string why;
  if (!attention_supported(c.n_embd, c.n_head, &why)) throw std::invalid_argument("the CUDA backend: " + why);
  const int count = cuda_device_count(&why);
  if (count == 0) throw std::runtime_error("device 'cuda': no CUDA device is available (" + why + ")");
  if (o.data_parallel) DIXIE_CUDA_CHECK(cudaSetDevice(o.data_parallel->local_rank() % count));
  int device = 0;
  DIXIE_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp props;
  DIXIE_CUDA_CHECK(cudaGetDeviceProperties(&props, device));
  if (props.major < 8)
    throw std::runtime_error(std::string("the CUDA backend needs compute capability 8.0 or newer (bf16 tensor cores); ") +
                             props.name + " has " + std::to_string(props.major) + "." + std::to_string(props.minor));
  return device;
}

}  // namespace

CudaBackend::CudaBackend(const GPT2Config& config, const BackendOptions& options)
    : spec_(config, options.lora), options_(options), device_(usable_device(spec_.config(), options)) {
  const GPT2Config& c = spec_.config();
  const bool narrow = options_.weight_dtype != DType::F32;
  training_ = options_.trainable && (!narrow || spec_.lora().rank > 0);
  if (narrow && spec_.lora().rank > 0 && !training_)
    throw std::invalid_argument("option 'lora' trains an adapter, and a model created with trainable: false trains nothing");
  check_lora_dropout(options_);
  if (options_.max_batch < 1) throw std::invalid_argument("option 'maxBatch' must be a positive integer");
  if (options_.max_seq == 0) options_.max_seq = c.n_ctx;
  if (options_.max_seq < 0 || options_.max_seq > c.n_ctx)
    throw std::invalid_argument("option 'maxSeq' (" + std::to_string(options_.max_seq) + ") must be in [1, nCtx = " +
                                std::to_string(c.n_ctx) + "]");
  DIXIE_CUDA_CHECK(cudaGetDeviceProperties(&props_, device_));
  gemm_ = std::make_unique<Gemm>(stream_.get());
  decode_graphs_ = switch_on("DIXIE_CUDA_GRAPHS");
  fused_optimizer_ = switch_on("DIXIE_FUSED_ADAMW");
  bias_grad_epilogue_ = switch_on("DIXIE_BIAS_GRAD_EPILOGUE");
  attention_tiles_ = switch_on("DIXIE_HOPPER_ATTENTION") && wgmma_attention_available() ? AttentionTiles::kWgmma
                                                                                         : AttentionTiles::kMma;

  // For inference, 16-bit and 8-bit weights mean bf16 activations and products over float32 masters (8-bit: of the
  // parameters but the layer matrices, which stay int8; see DeviceWeights). An adapter that trains over such a base
  // computes in float32 or mixed precision as asked, and the base's layer matrices stay as stored (16 or 8 bits).
  bf16_ = options_.mixed_bf16 || (narrow && !training_);
  max_rows_ = static_cast<int64_t>(options_.max_batch) * options_.max_seq;
  // The head's products run over vocab_padded_ columns: with every dimension a multiple of 64 cuBLASLt picks its
  // aligned tensor-core kernels, 5-10x faster than the align-1 ones that 50257 columns get. The pad rows of the
  // weight it reads are the first rows of wpe, which follows wte in the flat layout; their logits are never used
  // (the loss and the copies stop at V) and their gradients are zero.
  vocab_padded_ = static_cast<int>(ceil_div(c.vocab_size, 64) * 64);
  if (spec_.group_offset(WPE) != spec_.group_offset(WTE) + static_cast<size_t>(c.vocab_size) * c.n_embd ||
      c.n_ctx < vocab_padded_ - c.vocab_size)
    throw std::logic_error("the CUDA backend's padded head needs wpe right after wte and nCtx >= " +
                           std::to_string(vocab_padded_ - c.vocab_size) + " (the vocabulary's padding)");

  // With an adapter only its factors train: gradients and moments cover [first, P). The layer matrices of an 8-bit
  // model, and of a 16-bit base that an adapter trains over, are stored apart: cut from the float32 parameters
  // (and their bf16 copy), which then hold stored_P of them, the adapter's from stored_first.
  const size_t P = spec_.num_params(), first = spec_.trainable_begin();
  size_t cut = 0;
  weights_.spec = &spec_;
  if (options_.weight_dtype == DType::Q8_0) {
    size_t q8 = 0;
    for (ParamKind kind : kLayerMatrices) {
      cut += spec_.group_numel(kind);
      weights_.q8_offset[kind] = q8;
      q8 += c.n_layer * weights_.q8_numel(kind);
    }
    q8_.allocate(q8, "8-bit weights");
    q8_scales_.allocate(q8 / 32, "8-bit weights' scales");
    DIXIE_CUDA_CHECK(cudaMemsetAsync(q8_.data(), 0, q8_.bytes(), stream_.get()));  // the pad rows of partial blocks
    DIXIE_CUDA_CHECK(cudaMemsetAsync(q8_scales_.data(), 0, q8_scales_.bytes(), stream_.get()));
  } else if (narrow && training_) {
    for (ParamKind kind : kLayerMatrices) cut += spec_.group_numel(kind);
    m16_.allocate(cut, "16-bit weights");
    DIXIE_CUDA_CHECK(cudaMemsetAsync(m16_.data(), 0, m16_.bytes(), stream_.get()));
  }
  const size_t stored_P = P - cut, stored_first = first > 0 ? first - cut : 0;
  if (options_.zero_stage != 0 && (options_.zero_stage != 1 || !options_.data_parallel || !training_))
    throw std::invalid_argument("option 'zero' must be 0, or 1 for a model that trains data-parallel");
  if (training_ && options_.data_parallel)
    dp_ = std::make_unique<DataParallel>(*options_.data_parallel, options_.zero_stage, first, P, stream_.get());
  if (sharded()) squares_total_.allocate(1, "gradient norm total");
  // Under ZeRO-1 the parameters and gradients run to DataParallel's padded length, the pad zero.
  params_.allocate(stored_first + (dp_ ? dp_->padded_length() : stored_P - stored_first), "parameters");
  DIXIE_CUDA_CHECK(cudaMemsetAsync(params_.data(), 0, params_.bytes(), stream_.get()));
  if (bf16_) {
    params_lp_.allocate(stored_P, "bf16 weights");
    DIXIE_CUDA_CHECK(cudaMemsetAsync(params_lp_.data(), 0, params_lp_.bytes(), stream_.get()));
  }
  weights_.f32 = params_.data();
  weights_.lp = bf16_ ? params_lp_.data() : nullptr;
  weights_.q8 = q8_.data();
  weights_.q8_scales = q8_scales_.data();
  weights_.m16 = m16_.data();
  weights_.m16_bf16 = options_.weight_dtype == DType::BF16;
  if (training_) {
    grads_.allocate(dp_ ? dp_->padded_length() : P - first, "gradients");
    m_.allocate(shard_end() - shard_begin(), "AdamW first moments");
    v_.allocate(shard_end() - shard_begin(), "AdamW second moments");
    DIXIE_CUDA_CHECK(cudaMemsetAsync(grads_.data(), 0, grads_.bytes(), stream_.get()));
    DIXIE_CUDA_CHECK(cudaMemsetAsync(m_.data(), 0, m_.bytes(), stream_.get()));
    DIXIE_CUDA_CHECK(cudaMemsetAsync(v_.data(), 0, v_.bytes(), stream_.get()));
  }
  trainable_flags_.assign(spec_.tensors().size(), 1);
  decay_flags_.resize(spec_.tensors().size());
  for (size_t i = 0; i < decay_flags_.size(); ++i) decay_flags_[i] = spec_.tensors()[i].is_matrix ? 1 : 0;
  if (training_) upload_spans();

  // The activation plan: (slot, bytes) pairs, each padded to kArenaAlign; pointers are set once the arena exists.
  const int64_t N = max_rows_, C = c.n_embd, NH = c.n_head, L = c.n_layer;
  const size_t x = bf16_ ? sizeof(bf16) : sizeof(float);
  std::vector<std::pair<void**, size_t>> plan;
  auto take = [&](void*& p, int64_t n, size_t elem) { plan.emplace_back(&p, static_cast<size_t>(n) * elem); };
  auto take_f32 = [&](float*& p, int64_t n) { take(reinterpret_cast<void*&>(p), n, sizeof(float)); };
  const bool per_layer = training_ && !options_.recompute;
  layer_acts_.resize(per_layer ? L : 1);
  for (LayerActs& a : layer_acts_) {
    take(a.ln1, N * C, x);
    take(a.qkv, N * 3 * C, x);
    take(a.atty, N * C, x);
    take(a.res2, N * C, x);
    take(a.ln2, N * C, x);
    take(a.fch, N * 4 * C, x);
    take_f32(a.ln1_mean, N);
    take_f32(a.ln1_rstd, N);
    take_f32(a.ln2_mean, N);
    take_f32(a.ln2_rstd, N);
    take_f32(a.lse, N * NH);
  }
  residuals_.resize(training_ ? L + 1 : 2);
  for (void*& r : residuals_) take(r, N * C, x);
  take(proj_, N * C, x);
  take(gelu_, N * 4 * C, x);
  take(lnf_, N * C, x);
  take(logits_, N * vocab_padded_, x);
  take_f32(lnf_mean_, N);
  take_f32(lnf_rstd_, N);
  take_f32(losses_, N);
  take_f32(scalars_, 4);
  // An adapter's u [N, r] per targeted matrix, per layer whenever training: recomputing stops short of the last
  // product of a block, whose u must stay.
  if (spec_.lora().rank > 0) take(lora_u_, (training_ ? L : 1) * 4 * N * spec_.lora().rank, x);
  if (bf16_) take_f32(logits_f32_, static_cast<int64_t>(kLogitCopyRows) * c.vocab_size);
  if (training_) {
    take(dres_, N * C, x);
    take(dwide_, N * 4 * C, x);
    take(dnarrow_, N * C, x);
    take_f32(att_delta_, N * NH);
    if (spec_.lora().rank > 0) take(lora_du_, N * spec_.lora().rank, x);
    if (options_.lora_dropout > 0.0f) take(lora_dropped_, N * lora_widest_input(spec_), x);
    if (bf16_ ? weights_.expands<bf16>() : weights_.expands<float>())
      take(expanded_, static_cast<int64_t>(weights_.expanded_numel()), x);
    take_f32(reduce_scratch_, static_cast<int64_t>(std::max(layernorm_scratch_floats(static_cast<int>(C)),
                                                            bias_scratch_floats(static_cast<int>(4 * C)))));
  }
  size_t total = 0;
  for (auto& [slot, bytes] : plan) total += (bytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
  arena_.allocate(total, "activations");
  size_t offset = 0;
  for (auto& [slot, bytes] : plan) {
    *slot = arena_.data() + offset;
    offset += (bytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
  }
  ids_.allocate(5 * static_cast<size_t>(N) + 1, "token ids");
  ids_host_.allocate(5 * static_cast<size_t>(N) + 1);
  scalars_host_.allocate(4);
  if (training_) {
    bucket_of_token_.assign(c.vocab_size, -1);
    bucket_count_.assign(N, 0);
  }
  sync();
}

CudaBackend::~CudaBackend() {
  // The members free device memory: the stream's work must be done with it first.
  cudaSetDevice(device_);
  cudaStreamSynchronize(stream_.get());
}

MemoryReport CudaBackend::memory() const {
  MemoryReport r;
  r.params = params_.bytes() + params_lp_.bytes() + q8_.bytes() + q8_scales_.bytes() + m16_.bytes();
  r.grads = grads_.bytes();
  r.optimizer = m_.bytes() + v_.bytes() + spans_.bytes() + span_partials_.bytes();
  r.activations = arena_.bytes() + ids_.bytes() + (sampler_ ? sampler_->memory_bytes() : 0);
  r.kv_cache = decoder_ ? decoder_->memory_bytes() : 0;
  return r;
}

std::string CudaBackend::device_name() const {
  const double gib = static_cast<double>(props_.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
  char mem[32];
  std::snprintf(mem, sizeof(mem), "%.1f GiB", gib);
  const std::string stored = weights_.q8 ? "q8_0 weights, " : weights_.m16 ? (weights_.m16_bf16 ? "bf16 weights, " : "f16 weights, ") : "";
  const char* compute = !bf16_ ? "float32" : weights_.q8 && !training_ ? "bf16 activations" : "bf16 mixed precision";
  return "cuda:" + std::to_string(device_) + " (" + props_.name + ", sm_" + std::to_string(props_.major) +
         std::to_string(props_.minor) + ", " + std::to_string(props_.multiProcessorCount) + " SMs, " + mem + "; " +
         stored + compute + (bf16_ && attention_tiles_ == AttentionTiles::kWgmma ? ", wgmma attention" : "") + "; " +
         gemm_->describe() + (dp_ ? "; gradients summed by " + dp_->describe() : "") + ")";
}

void CudaBackend::sync() const { DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream_.get())); }

void CudaBackend::require_training(const char* what) const {
  if (!training_)
    throw std::logic_error(std::string(what) + " is not available: the model was created with trainable: false" +
                           (options_.weight_dtype != DType::F32 ? " (16-bit and 8-bit weights are inference-only, or a LoRA adapter's frozen base)" : ""));
}

float* CudaBackend::grad(ParamKind kind, int layer) {
  const size_t offset = weights_.flat_offset(kind, layer);
  return offset < spec_.trainable_begin() ? nullptr : grads_.data() + (offset - spec_.trainable_begin());
}

float* CudaBackend::lora_grad(ParamKind matrix, int l, bool b) {
  return grads_.data() + (spec_.lora_offset(layer_matrix_index(matrix), l, b) - spec_.trainable_begin());
}

template <typename X>
X* CudaBackend::lora_u(ParamKind matrix, int l) const {
  const int64_t u = max_rows_ * spec_.lora().rank;
  return static_cast<X*>(lora_u_) + ((training_ ? l : 0) * 4 + layer_matrix_index(matrix)) * u;
}

// ---------------------------------------------------------------------------------------------------------------
// parameters and optimizer state

void CudaBackend::write_params(size_t offset, const void* src, size_t count, DType dtype) {
  check_param_range(spec_, offset, count, "writeParams");
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  if (upload_.size() == 0) upload_.allocate(kWriteChunk);
  if (weights_.q8 && training_) {
    const size_t embedded = spec_.count_in_group(WTE, offset, count);
    if (embedded > 0) check_q8_embedding_write(spec_, offset - spec_.group_offset(WTE), embedded);
  }
  spec_.for_each_piece(offset, count, [&](const FlatPiece& piece) {
    const size_t from = piece.first - offset;
    if (piece.kind == NUM_PARAM_KINDS) upload(piece.first, src, from, piece.n, dtype);
    else if (weights_.q8) upload_q8(piece, src, from, dtype);
    else if (weights_.m16) upload16(piece, src, from, dtype);
    else upload(piece.first, src, from, piece.n, dtype);
  });
}

// The parameters [flat, flat + n) = src[from, from + n) as float32 (and its bf16 copy), as stored
// (round_to_stored), through the staging buffer.
void CudaBackend::upload(size_t flat, const void* src, size_t from, size_t n, DType dtype) {
  const size_t at = weights_.stored_offset(flat);
  // Whole rows of the token embedding per chunk, so that a chunk of a q8_0 base's holds whole blocks.
  const size_t chunk = kWriteChunk / spec_.config().n_embd * spec_.config().n_embd;
  for (size_t done = 0; done < n; done += chunk) {
    const size_t m = std::min(chunk, n - done);
    float* s = upload_.data();
    for (size_t i = 0; i < m; ++i) s[i] = element_to_f32(src, from + done + i, dtype);
    round_to_stored(s, flat + done, m);
    DIXIE_CUDA_CHECK(cudaMemcpyAsync(params_.data() + at + done, s, m * sizeof(float), cudaMemcpyHostToDevice, stream_.get()));
    if (bf16_) cast_to_bf16(params_lp_.data() + at + done, params_.data() + at + done, m, stream_.get());
    sync();  // the staging buffer is refilled next
  }
}

// A narrow base under an adapter that trains holds its parameters as the CPU stores them, values[0, n) those of
// [flat, flat + n): rounded to the base's 16 bits, or in a q8_0 base, to f16 but the token embedding, quantized by
// blocks of kQ8Block along its rows (a write starts a block, and a chunk of upload ends one). The factors are
// float32.
void CudaBackend::round_to_stored(float* values, size_t flat, size_t n) const {
  const DType store = options_.weight_dtype;
  if (store == DType::F32 || !training_) return;
  const size_t end = std::min(flat + n, spec_.trainable_begin()), C = spec_.config().n_embd;
  size_t e = flat;
  if (store == DType::Q8_0) {
    const size_t embedding_end = std::min(end, spec_.group_offset(WTE) + spec_.group_numel(WTE));
    int8_t q[kQ8Block];
    while (e < embedding_end) {
      const int m = static_cast<int>(std::min({static_cast<size_t>(kQ8Block), C - (e - spec_.group_offset(WTE)) % C, embedding_end - e}));
      float* v = values + (e - flat);
      const float d = f16_to_f32(quantize_q8_block(v, 1, m, q));
      for (int i = 0; i < m; ++i) v[i] = d * static_cast<float>(q[i]);
      e += m;
    }
  }
  for (; e < end; ++e) {
    float& v = values[e - flat];
    v = store == DType::BF16 ? bf16_to_f32(f32_to_bf16(v)) : f16_to_f32(f32_to_f16(v));
  }
}

// A piece of a 16-bit layer matrix, src[from, from + piece.n), converted to the stored type on the host.
void CudaBackend::upload16(const FlatPiece& piece, const void* src, size_t from, DType dtype) {
  const DType store = options_.weight_dtype;
  uint16_t* stage = reinterpret_cast<uint16_t*>(upload_.data());
  uint16_t* dst = weights_.m16_matrix(piece.kind, piece.layer) + piece.element;
  for (size_t done = 0; done < piece.n; done += kWriteChunk) {
    const size_t m = std::min(kWriteChunk, piece.n - done);
    for (size_t i = 0; i < m; ++i) {
      const size_t k = from + done + i;
      if (dtype == store) stage[i] = static_cast<const uint16_t*>(src)[k];  // exact copy
      else stage[i] = store == DType::BF16 ? f32_to_bf16(element_to_f32(src, k, dtype)) : f32_to_f16(element_to_f32(src, k, dtype));
    }
    DIXIE_CUDA_CHECK(cudaMemcpyAsync(dst + done, stage, m * sizeof(uint16_t), cudaMemcpyHostToDevice, stream_.get()));
    sync();  // the staging buffer is refilled next
  }
}

// A piece of a Q8_0 layer matrix, src[from, from + piece.n): quantized on the host by groups of 32 rows (as the
// CPU does, core/dtype.h), each group staged as [OC][32] int8s and OC scales and copied into its columns of q [OC,
// ldq] and d [OC, ldq / 32].
void CudaBackend::upload_q8(const FlatPiece& piece, const void* src, size_t from, DType dtype) {
  check_q8_write(spec_, piece);
  const auto [rows, cols] = spec_.matrix_shape(piece.kind);
  const int ldq = DeviceWeights::q8_ld(rows), k0 = static_cast<int>(piece.element / cols), n_rows = static_cast<int>(piece.n / cols);
  int8_t* q = weights_.q8_matrix(piece.kind, piece.layer);
  uint16_t* d = weights_.q8_matrix_scales(piece.kind, piece.layer);
  int8_t* stage_q = reinterpret_cast<int8_t*>(upload_.data());
  uint16_t* stage_d = reinterpret_cast<uint16_t*>(stage_q + static_cast<size_t>(cols) * kQ8Block);
  std::vector<float> group(static_cast<size_t>(kQ8Block) * cols);
  for (int g = 0; g < n_rows; g += kQ8Block) {
    const int k = k0 + g, n = std::min(kQ8Block, n_rows - g);
    for (size_t i = 0; i < static_cast<size_t>(n) * cols; ++i) group[i] = element_to_f32(src, from + static_cast<size_t>(g) * cols + i, dtype);
    for (int j = 0; j < cols; ++j) stage_d[j] = quantize_q8_block(group.data() + j, cols, n, stage_q + static_cast<size_t>(j) * kQ8Block);
    DIXIE_CUDA_CHECK(cudaMemcpy2DAsync(q + k, ldq, stage_q, kQ8Block, n, cols, cudaMemcpyHostToDevice, stream_.get()));
    DIXIE_CUDA_CHECK(cudaMemcpy2DAsync(d + k / kQ8Block, ldq / kQ8Block * sizeof(uint16_t), stage_d, sizeof(uint16_t),
                                       sizeof(uint16_t), cols, cudaMemcpyHostToDevice, stream_.get()));
    sync();  // the staging buffer is refilled next
  }
}

void CudaBackend::read_params(size_t offset, float* dst, size_t count) const {
  check_param_range(spec_, offset, count, "readParams");
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  spec_.for_each_piece(offset, count, [&](const FlatPiece& piece) {
    float* out = dst + (piece.first - offset);
    if (piece.kind == NUM_PARAM_KINDS || (!weights_.q8 && !weights_.m16)) {
      DIXIE_CUDA_CHECK(cudaMemcpyAsync(out, params_.data() + weights_.stored_offset(piece.first), piece.n * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream_.get()));
      sync();
      return;
    }
    if (weights_.m16) {
      std::vector<uint16_t> bits(piece.n);
      DIXIE_CUDA_CHECK(cudaMemcpyAsync(bits.data(), weights_.m16_matrix(piece.kind, piece.layer) + piece.element,
                                       piece.n * sizeof(uint16_t), cudaMemcpyDeviceToHost, stream_.get()));
      sync();
      for (size_t i = 0; i < piece.n; ++i) out[i] = weights_.m16_bf16 ? bf16_to_f32(bits[i]) : f16_to_f32(bits[i]);
      return;
    }
    // A Q8_0 matrix: the layer's whole matrix comes down, and the piece's elements are expanded from it.
    const auto [rows, cols] = spec_.matrix_shape(piece.kind);
    const int ldq = DeviceWeights::q8_ld(rows);
    std::vector<int8_t> q(weights_.q8_numel(piece.kind));
    std::vector<uint16_t> d(q.size() / kQ8Block);
    DIXIE_CUDA_CHECK(cudaMemcpyAsync(q.data(), weights_.q8_matrix(piece.kind, piece.layer), q.size(), cudaMemcpyDeviceToHost, stream_.get()));
    DIXIE_CUDA_CHECK(cudaMemcpyAsync(d.data(), weights_.q8_matrix_scales(piece.kind, piece.layer), d.size() * sizeof(uint16_t),
                                     cudaMemcpyDeviceToHost, stream_.get()));
    sync();
    for (size_t i = 0; i < piece.n; ++i) {
      const size_t e = piece.element + i, k = e / cols, j = e % cols;
      out[i] = f16_to_f32(d[(j * ldq + k) / kQ8Block]) * static_cast<float>(q[j * ldq + k]);
    }
  });
}

void CudaBackend::read_grads(size_t offset, float* dst, size_t count) const {
  require_training("readGrads");
  check_trainable_range(spec_, offset, count, "readGrads");
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(dst, grads_.data() + (offset - spec_.trainable_begin()), count * sizeof(float),
                                   cudaMemcpyDeviceToHost, stream_.get()));
  sync();
}

// Under ZeRO-1 a rank keeps what falls in its shard of a write, and a read gathers every rank's part.
void CudaBackend::write_optimizer_state(OptimizerSlot slot, size_t offset, const float* src, size_t count) {
  require_training("writeOptimizerState");
  check_trainable_range(spec_, offset, count, "writeOptimizerState");
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  const size_t first = std::clamp(offset, shard_begin(), shard_end()), last = std::clamp(offset + count, shard_begin(), shard_end());
  float* dst = (slot == OptimizerSlot::M ? m_ : v_).data() + (first - shard_begin());
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(dst, src + (first - offset), (last - first) * sizeof(float), cudaMemcpyHostToDevice, stream_.get()));
  sync();
}

void CudaBackend::read_optimizer_state(OptimizerSlot slot, size_t offset, float* dst, size_t count) const {
  require_training("readOptimizerState");
  check_trainable_range(spec_, offset, count, "readOptimizerState");
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  const size_t first = std::clamp(offset, shard_begin(), shard_end()), last = std::clamp(offset + count, shard_begin(), shard_end());
  const float* src = (slot == OptimizerSlot::M ? m_ : v_).data() + (first - shard_begin());
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(dst + (first - offset), src, (last - first) * sizeof(float), cudaMemcpyDeviceToHost, stream_.get()));
  sync();
  if (sharded()) dp_->group().allgather(dst, dp_->shards().within(offset, count));
}

void CudaBackend::set_optimizer_step_count(int64_t t) {
  if (t < 0) throw std::invalid_argument("optimizer step count must be >= 0");
  step_count_ = t;
}

void CudaBackend::set_param_flags(const uint8_t* trainable, const uint8_t* decay) {
  trainable_flags_.assign(trainable, trainable + spec_.tensors().size());
  decay_flags_.assign(decay, decay + spec_.tensors().size());
  if (training_) upload_spans();
}

// The CPU's spans (native/cpu/optimizer.h), so that the two backends cut the buffer the same way.
void CudaBackend::upload_spans() {
  const std::vector<ParamSpan> spans = plan_param_spans(spec_, trainable_flags_.data(), decay_flags_.data(), shard_begin(), shard_end());
  std::vector<DeviceSpan> device(spans.size());
  for (size_t i = 0; i < spans.size(); ++i)
    device[i] = DeviceSpan{spans[i].offset, static_cast<uint32_t>(spans[i].numel),
                           static_cast<uint8_t>(spans[i].trainable), static_cast<uint8_t>(spans[i].decay)};
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  if (spans_.size() != device.size()) {
    sync();  // the old table may still be read by a queued update
    spans_.allocate(device.size(), "optimizer spans");
    span_partials_.allocate(device.size(), "gradient norm partials");
  }
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(spans_.data(), device.data(), device.size() * sizeof(DeviceSpan),
                                   cudaMemcpyHostToDevice, stream_.get()));
  sync();  // device is a local vector
  n_spans_ = static_cast<int>(device.size());
}

// ---------------------------------------------------------------------------------------------------------------
// training

template <typename X>
void CudaBackend::matmul_forward(X* out, const X* inp, ParamKind w, ParamKind b, int l, int N, int C, int OC) {
  // out[N, OC] = inp[N, C] @ w[C, OC] + b[OC], plus the adapter's change
  const auto m = weights_.matrix<X>(w, l, static_cast<X*>(expanded_), stream_.get());
  gemm_->matmul<X, X>(false, m.transposed, N, OC, C, inp, C, m.w, m.ld, out, OC, weight<X>(b, l), false);
  if (adapts(spec_, w)) {
    const DropoutMask mask = lora_dropout_mask(options_, forward_, layer_matrix_index(w), l, N);
    lora_forward(*gemm_, weights_, w, l, out, inp, lora_u<X>(w, l), N, mask, static_cast<X*>(lora_dropped_), stream_.get());
  }
}

template <typename X>
void CudaBackend::matmul_backward(X* dinp, ParamKind w, ParamKind b, int l, const X* dout, const X* inp, int N, int C,
                                  int OC, X* gelu_input) {
  // dinp[N, C] = dout[N, OC] @ w[C, OC]^T, plus the adapter's part, times gelu'(gelu_input) when inp was its GELU;
  // dw[C, OC] += inp[N, C]^T @ dout; db[OC] += column sums of dout (a frozen base has neither)
  const bool adapted = adapts(spec_, w);
  // The adapter's part joins dinp before the GELU's derivative, which then runs as a pass of its own.
  const bool fused_gelu = gelu_input && !adapted;
  const auto m = weights_.matrix<X>(w, l, static_cast<X*>(expanded_), stream_.get());
  gemm_->matmul<X, X>(false, !m.transposed, N, C, OC, dout, OC, m.w, m.ld, dinp, C, nullptr, false,
                      fused_gelu ? Gemm::Activation::kGeluGrad : Gemm::Activation::kNone, fused_gelu ? gelu_input : nullptr);
  if (adapted) {
    const DropoutMask mask = lora_dropout_mask(options_, forward_, layer_matrix_index(w), l, N);
    lora_backward(*gemm_, weights_, w, l, dinp, lora_grad(w, l, false), lora_grad(w, l, true), dout, inp, lora_u<X>(w, l),
                  static_cast<X*>(lora_du_), N, mask, static_cast<X*>(lora_dropped_), stream_.get());
    if (gelu_input) gelu_backward(dinp, gelu_input, dinp, static_cast<int64_t>(N) * C, stream_.get());
  }
  float *dw = grad(w, l), *db = grad(b, l);
  // With DIXIE_BIAS_GRAD_EPILOGUE=1, cuBLASLt sums the bias gradient as it reads dout for the weight's.
  const bool summed = dw && db && bias_grad_epilogue_ &&
                      gemm_->matmul_column_sums(true, C, OC, N, inp, C, dout, OC, dw, OC, reduce_scratch_);
  if (summed) {
    add_column_sums(db, reduce_scratch_, OC, stream_.get());
  } else {
    if (dw) gemm_->matmul<X, float>(true, false, C, OC, N, inp, C, dout, OC, dw, OC, nullptr, true);
    if (db) bias_backward(db, dout, N, OC, reduce_scratch_, stream_.get());
  }
}

// From a.ln1 (already computed from the block input `in`) to gelu_: everything the block's backward reads.
template <typename X>
void CudaBackend::block_body(int l, LayerActs& a, const X* in, int B, int T) {
  const GPT2Config& c = spec_.config();
  const int N = B * T, C = c.n_embd;
  X* proj = static_cast<X*>(proj_);
  matmul_forward(static_cast<X*>(a.qkv), static_cast<const X*>(a.ln1), QKV_W, QKV_B, l, N, C, 3 * C);
  attention_forward(static_cast<X*>(a.atty), a.lse, static_cast<const X*>(a.qkv), B, T, C, c.n_head, attention_tiles_,
                    stream_.get());
  matmul_forward(proj, static_cast<const X*>(a.atty), ATTPROJ_W, ATTPROJ_B, l, N, C, C);
  residual_layernorm_forward(static_cast<X*>(a.res2), static_cast<X*>(a.ln2), a.ln2_mean, a.ln2_rstd, in, proj,
                             param(LN2_W, l), param(LN2_B, l), N, C, stream_.get());
  // fch = ln2 @ fc_w + fc_b (kept for the backward), gelu_ = GELU(fch): one product with its epilogue, unless the
  // adapter adds to fch before the GELU
  if (adapts(spec_, FC_W)) {
    matmul_forward(static_cast<X*>(a.fch), static_cast<const X*>(a.ln2), FC_W, FC_B, l, N, C, 4 * C);
    gelu_forward(static_cast<X*>(gelu_), static_cast<const X*>(a.fch), static_cast<int64_t>(N) * 4 * C, stream_.get());
    return;
  }
  const auto fc = weights_.matrix<X>(FC_W, l, static_cast<X*>(expanded_), stream_.get());
  gemm_->matmul<X, X>(false, fc.transposed, N, 4 * C, C, static_cast<const X*>(a.ln2), C, fc.w, fc.ld,
                      static_cast<X*>(gelu_), 4 * C, weight<X>(FC_B, l), false, Gemm::Activation::kGelu,
                      static_cast<X*>(a.fch));
}

template <typename X>
void CudaBackend::copy_logits_out(float* dst, const X* logits, int rows) {
  const int V = spec_.config().vocab_size;
  if constexpr (std::is_same<X, float>::value) {
    DIXIE_CUDA_CHECK(cudaMemcpy2DAsync(dst, V * sizeof(float), logits, static_cast<size_t>(vocab_padded_) * sizeof(float),
                                       V * sizeof(float), rows, cudaMemcpyDeviceToHost, stream_.get()));
  } else {
    for (int r0 = 0; r0 < rows; r0 += kLogitCopyRows) {
      const int n = std::min(kLogitCopyRows, rows - r0);
      rows_to_f32(logits_f32_, logits + static_cast<int64_t>(r0) * vocab_padded_, n, V, vocab_padded_, stream_.get());
      DIXIE_CUDA_CHECK(cudaMemcpyAsync(dst + static_cast<int64_t>(r0) * V, logits_f32_, sizeof(float) * n * V,
                                       cudaMemcpyDeviceToHost, stream_.get()));
    }
  }
}

float CudaBackend::forward(const int32_t* inputs, const int32_t* targets, int B, int T, float* logits_out,
                           const ForwardOptions& options) {
  if (weights_.q8 && !training_)
    throw std::logic_error("forward is not available: the model stores 8-bit (q8_0) weights, which only decode (use the "
                           "kv* decoding calls, or load with weightDtype 'f32')");
  const GPT2Config& c = spec_.config();
  const int64_t N = check_forward_batch(c, inputs, targets, B, T, max_rows_);
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  backward_ready_ = false;
  forward_ = training_ ? options : ForwardOptions{};  // a model that does not train has no buffer to drop into

  // Ids to the device: inputs, targets, and (for a backward) the rows grouped by token for dwte.
  int32_t* h = ids_host_.data();
  std::memcpy(h, inputs, N * sizeof(int32_t));
  size_t upload = N;
  n_buckets_ = 0;
  if (targets) {
    std::memcpy(h + N, targets, N * sizeof(int32_t));
    upload = 2 * N;
    if (training_) {
      int32_t *tokens = h + 2 * N, *start = h + 3 * N, *rows = h + 4 * N + 1;
      for (int64_t r = 0; r < N; ++r) {
        int32_t& b = bucket_of_token_[inputs[r]];
        if (b < 0) {
          b = n_buckets_++;
          tokens[b] = inputs[r];
          bucket_count_[b] = 0;
        }
        ++bucket_count_[b];
      }
      start[0] = 0;
      for (int b = 0; b < n_buckets_; ++b) start[b + 1] = start[b] + bucket_count_[b];
      for (int b = 0; b < n_buckets_; ++b) bucket_count_[b] = start[b];  // now the next free place of each bucket
      for (int64_t r = 0; r < N; ++r) rows[bucket_count_[bucket_of_token_[inputs[r]]]++] = static_cast<int32_t>(r);
      for (int b = 0; b < n_buckets_; ++b) bucket_of_token_[tokens[b]] = -1;
      upload = 5 * N + 1;
    }
  }
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(ids_.data(), h, upload * sizeof(int32_t), cudaMemcpyHostToDevice, stream_.get()));

  const float loss = with_precision(bf16_, [&](auto tag) {
    return forward_impl<decltype(tag)>(B, T, targets != nullptr, logits_out);
  });
  last_B_ = B;
  last_T_ = T;
  backward_ready_ = training_ && targets != nullptr;
  return loss;
}

template <typename X>
float CudaBackend::forward_impl(int B, int T, bool has_targets, float* logits_out) {
  const GPT2Config& c = spec_.config();
  const int N = B * T, C = c.n_embd, V = c.vocab_size, L = c.n_layer;
  const int32_t* inputs = ids_.data();
  const int32_t* targets = ids_.data() + N;
  X* lnf = static_cast<X*>(lnf_);
  X* logits = static_cast<X*>(logits_);

  encoder_forward(residual<X>(0), inputs, nullptr, param(WTE, -1), param(WPE, -1), N, T, C, stream_.get());
  layernorm_forward(static_cast<X*>(acts(0).ln1), acts(0).ln1_mean, acts(0).ln1_rstd, residual<X>(0), param(LN1_W, 0),
                    param(LN1_B, 0), N, C, stream_.get());
  for (int l = 0; l < L; ++l) {
    LayerActs& a = acts(l);
    block_body<X>(l, a, residual<X>(l), B, T);
    matmul_forward(static_cast<X*>(proj_), static_cast<const X*>(gelu_), FCPROJ_W, FCPROJ_B, l, N, 4 * C, C);
    // The block's residual connection, fused with the LayerNorm that reads it next: ln_1 of the next block, or ln_f.
    if (l + 1 < L) {
      LayerActs& next = acts(l + 1);
      residual_layernorm_forward(residual<X>(l + 1), static_cast<X*>(next.ln1), next.ln1_mean, next.ln1_rstd,
                                 static_cast<const X*>(a.res2), static_cast<const X*>(proj_), param(LN1_W, l + 1),
                                 param(LN1_B, l + 1), N, C, stream_.get());
    } else {
      residual_layernorm_forward(residual<X>(L), lnf, lnf_mean_, lnf_rstd_, static_cast<const X*>(a.res2),
                                 static_cast<const X*>(proj_), param(LNF_W, -1), param(LNF_B, -1), N, C, stream_.get());
    }
  }
  // The head is tied to wte [V, C]: logits[N, Vp] = lnf @ wte[0:Vp]^T (see vocab_padded_).
  gemm_->matmul<X, X>(false, true, N, vocab_padded_, C, lnf, C, weight<X>(WTE, -1), C, logits, vocab_padded_, nullptr, false);
  if (logits_out) copy_logits_out(logits_out, logits, N);
  if (!has_targets) {
    sync();
    return std::numeric_limits<float>::quiet_NaN();
  }
  // A training forward leaves the logits' gradient in their place for the backward, which starts from it.
  crossentropy_forward(losses_, logits, vocab_padded_, targets, 1.0f / static_cast<float>(N), training_, N, V,
                       stream_.get());
  mean_of(scalars_, losses_, N, stream_.get());
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(scalars_host_.data(), scalars_, sizeof(float), cudaMemcpyDeviceToHost, stream_.get()));
  sync();
  return scalars_host_.data()[0];
}

void CudaBackend::zero_grad() {
  require_training("zeroGrad");
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  DIXIE_CUDA_CHECK(cudaMemsetAsync(grads_.data(), 0, grads_.bytes(), stream_.get()));
  backwards_since_step_ = 0;
  layers_reduced_ = false;
}

void CudaBackend::backward() {
  require_training("backward");
  if (!backward_ready_) throw std::logic_error("backward needs a forward with targets before it (one backward per forward)");
  // The step's last micro-batch sums each block's gradients over the ranks as soon as the block is done.
  if (overlapped()) {
    if (backwards_since_step_ == options_.micro_batches)
      throw std::logic_error("backward: already " + std::to_string(options_.micro_batches) +
                             " since the last step (dataParallel.microBatches), whose gradients are being summed over the ranks");
    layers_reduced_ = ++backwards_since_step_ == options_.micro_batches;
  }
  backward_ready_ = false;
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  with_precision(bf16_, [&](auto tag) {
    backward_impl<decltype(tag)>();
    return 0;
  });
}

template <typename X>
void CudaBackend::backward_impl() {
  const GPT2Config& c = spec_.config();
  const int B = last_B_, T = last_T_, C = c.n_embd, L = c.n_layer, NH = c.n_head;
  const int N = B * T;
  const TokenBuckets buckets{ids_.data() + 2 * N, ids_.data() + 3 * N, ids_.data() + 4 * N + 1, n_buckets_};
  X* logits = static_cast<X*>(logits_);
  X* dres = static_cast<X*>(dres_);
  X* dwide = static_cast<X*>(dwide_);
  X* dnarrow = static_cast<X*>(dnarrow_);
  X* gelu = static_cast<X*>(gelu_);

  // The forward left dlogits in the logits' place (zero in the pad columns); the tied head's two products. The pad
  // rows of the weight gradient are exact zeros added to the first rows of wpe's gradient: a no-op that keeps the
  // product on the aligned kernels.
  gemm_->matmul<X, X>(false, false, N, C, vocab_padded_, logits, vocab_padded_, weight<X>(WTE, -1), C, dnarrow, C,
                      nullptr, false);
  if (float* dwte = grad(WTE, -1))
    gemm_->matmul<X, float>(true, false, vocab_padded_, C, N, logits, vocab_padded_, static_cast<const X*>(lnf_), C,
                            dwte, C, nullptr, true);
  DIXIE_CUDA_CHECK(cudaMemsetAsync(dres, 0, static_cast<size_t>(N) * C * sizeof(X), stream_.get()));
  layernorm_backward(dres, grad(LNF_W, -1), grad(LNF_B, -1), dnarrow, residual<X>(L), param(LNF_W, -1), lnf_mean_,
                     lnf_rstd_, N, C, reduce_scratch_, stream_.get());

  // dres carries the residual stream's gradient down through the blocks; the LayerNorm backwards add their input
  // gradient into it, which is exactly the residual connection's sum.
  for (int l = L - 1; l >= 0; --l) {
    LayerActs& a = acts(l);
    // The last block's activations and GELU output are still in place from the forward pass.
    if (l != L - 1) {
      if (options_.recompute) {
        layernorm_forward(static_cast<X*>(a.ln1), a.ln1_mean, a.ln1_rstd, residual<X>(l), param(LN1_W, l),
                          param(LN1_B, l), N, C, stream_.get());
        block_body<X>(l, a, residual<X>(l), B, T);
      }
      // GELU(fch) from the elementwise kernel in both modes (the product's epilogue may round differently), so
      // that recomputing changes no gradient.
      gelu_forward(gelu, static_cast<const X*>(a.fch), static_cast<int64_t>(N) * 4 * C, stream_.get());
    }
    matmul_backward(dwide, FCPROJ_W, FCPROJ_B, l, dres, gelu, N, 4 * C, C, static_cast<X*>(a.fch));
    matmul_backward(dnarrow, FC_W, FC_B, l, dwide, static_cast<const X*>(a.ln2), N, C, 4 * C);
    layernorm_backward(dres, grad(LN2_W, l), grad(LN2_B, l), dnarrow, static_cast<const X*>(a.res2), param(LN2_W, l),
                       a.ln2_mean, a.ln2_rstd, N, C, reduce_scratch_, stream_.get());
    matmul_backward(dnarrow, ATTPROJ_W, ATTPROJ_B, l, dres, static_cast<const X*>(a.atty), N, C, C);
    attention_backward(dwide, att_delta_, dnarrow, static_cast<const X*>(a.qkv), static_cast<const X*>(a.atty), a.lse,
                       B, T, C, NH, attention_tiles_, stream_.get());  // dwide holds dqkv [N, 3C]
    matmul_backward(dnarrow, QKV_W, QKV_B, l, dwide, static_cast<const X*>(a.ln1), N, C, 3 * C);
    layernorm_backward(dres, grad(LN1_W, l), grad(LN1_B, l), dnarrow, residual<X>(l), param(LN1_W, l), a.ln1_mean,
                       a.ln1_rstd, N, C, reduce_scratch_, stream_.get());
    if (layers_reduced_) reduce_layer(l);
  }
  if (float* dwte = grad(WTE, -1)) encoder_backward(dwte, grad(WPE, -1), dres, buckets, B, T, C, stream_.get());
}

void CudaBackend::reduce_layer(int l) {
  for (int kind = LN1_W; kind <= FCPROJ_B; ++kind) {
    const size_t n = spec_.group_numel(static_cast<ParamKind>(kind)) / spec_.config().n_layer;
    dp_->reduce(grads_.data(), spec_.group_offset(static_cast<ParamKind>(kind)) + l * n, n);
  }
}

float CudaBackend::step(const StepOptions& options) {
  require_training("step");
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  if (options.kind == OptimizerKind::AdamW) ++step_count_;  // t of the bias correction
  const int64_t t = std::max<int64_t>(1, step_count_);
  const size_t first = spec_.trainable_begin(), trained = spec_.num_params() - first;
  StepOptions o = options;
  if (dp_) {
    // The ranks' gradients are summed; the mean is their sum over the ranks, folded into the gradient's scale.
    o.grad_scale /= static_cast<float>(dp_->group().size());
    if (sharded()) {
      dp_->reduce_scatter(grads_.data());
    } else if (layers_reduced_) {  // the blocks are on their way: the embeddings and the last LayerNorm remain
      dp_->reduce(grads_.data(), 0, spec_.group_offset(LN1_W));
      dp_->reduce(grads_.data(), spec_.group_offset(LNF_W), spec_.num_params() - spec_.group_offset(LNF_W));
    } else {
      dp_->reduce(grads_.data(), 0, trained);
    }
    dp_->join();
    backwards_since_step_ = 0;
    layers_reduced_ = false;
  }
  UpdateArgs a;
  a.adamw = o.kind == OptimizerKind::AdamW;
  a.lr = o.lr;
  a.beta1 = o.beta1;
  a.beta2 = o.beta2;
  a.eps = o.eps;
  a.weight_decay = o.weight_decay;
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta1), static_cast<double>(t)));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta2), static_cast<double>(t)));
  a.inv_bc1 = 1.0f / bc1;
  a.inv_bc2 = 1.0f / bc2;
  a.params_offset = first - weights_.stored_offset(first);
  a.grads_offset = first;
  a.state_offset = shard_begin();
  bf16* params_lp = bf16_ ? params_lp_.data() : nullptr;
  // On one device the norm and the update can be one launch; across ranks the norm waits for their sum.
  const bool fused = !dp_ && fused_optimizer_ &&
                     optimizer_step_fused(params_.data(), params_lp, grads_.data(), m_.data(), v_.data(), spans_.data(),
                                          n_spans_, span_partials_.data(), scalars_ + 1, o.grad_scale, o.grad_clip, a,
                                          stream_.get());
  if (!fused) {
    grad_square_sums(span_partials_.data(), grads_.data(), first, spans_.data(), n_spans_, stream_.get());
    if (sharded()) {  // each rank summed its shard's squares: the norm is of their total
      sum_doubles(squares_total_.data(), span_partials_.data(), n_spans_, stream_.get());
      dp_->sum(squares_total_.data());
      grad_norm(scalars_ + 1, squares_total_.data(), 1, o.grad_scale, o.grad_clip, stream_.get());
    } else {
      grad_norm(scalars_ + 1, span_partials_.data(), n_spans_, o.grad_scale, o.grad_clip, stream_.get());
    }
    optimizer_update(params_.data(), params_lp, grads_.data(), m_.data(), v_.data(), spans_.data(), n_spans_,
                     scalars_ + 1, a, stream_.get());
  }
  if (sharded()) {
    // The update zeroed this rank's shard of the gradients; the rest held other shards' partial sums.
    const size_t own = shard_begin() - first, own_end = shard_end() - first;
    DIXIE_CUDA_CHECK(cudaMemsetAsync(grads_.data(), 0, own * sizeof(float), stream_.get()));
    DIXIE_CUDA_CHECK(cudaMemsetAsync(grads_.data() + own_end, 0, (grads_.size() - own_end) * sizeof(float), stream_.get()));
    const size_t at = weights_.stored_offset(first);
    dp_->gather(params_.data() + at);
    if (bf16_) cast_to_bf16(params_lp_.data() + at, params_.data() + at, trained, stream_.get());
  }
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(scalars_host_.data() + 1, scalars_ + 1, sizeof(float), cudaMemcpyDeviceToHost, stream_.get()));
  sync();
  return scalars_host_.data()[1];
}

// ---------------------------------------------------------------------------------------------------------------
// decoding

// Made by kv_reserve, or by kv_add_adapter before it (adapters outlive a cache's planning).
CudaDecoder& CudaBackend::decoder() {
  if (!decoder_)
    decoder_ = std::make_unique<CudaDecoder>(spec_, weights_, *gemm_, stream_.get(), bf16_, vocab_padded_, decode_graphs_);
  return *decoder_;
}

int CudaBackend::kv_reserve(int n_slots) {
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  return decoder().reserve(n_slots);
}

void CudaBackend::kv_forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* out,
                             KvOutput output) {
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  reserved_decoder(decoder_, "kvForward").forward(n, slots, n_new, tokens, out, output);
}

void CudaBackend::kv_truncate(int slot, int length) {
  reserved_decoder(decoder_, "kvTruncate").truncate(slot, length);
}

int CudaBackend::kv_length(int slot) const {
  return reserved_decoder(decoder_, "kvLength").length(slot);
}

void CudaBackend::kv_step(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, int n_sample,
                          const int32_t* sample_rows, const SamplingParams* params, uint64_t* rng_state, int32_t* out_tokens,
                          float* logits_out) {
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  CudaDecoder& decoder = reserved_decoder(decoder_, "kvStep");
  if (!sampler_) sampler_ = std::make_unique<CudaSampler>(stream_.get());
  decoder.step(n, slots, n_new, tokens, n_sample, sample_rows, params, rng_state, out_tokens, logits_out, *sampler_);
}

int CudaBackend::kv_add_adapter(int rank, float scaling, const uint8_t* modules, const float* factors, size_t n_factors) {
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  return decoder().add_adapter(rank, scaling, modules, factors, n_factors);
}

void CudaBackend::kv_remove_adapter(int id) {
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  decoder().remove_adapter(id);
}

void CudaBackend::kv_set_adapter(int slot, int id) { reserved_decoder(decoder_, "kvSetAdapter").set_adapter(slot, id); }

void CudaBackend::sample(int n, const float* logits, const SamplingParams* params, uint64_t* rng_state,
                         const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens) {
  DIXIE_CUDA_CHECK(cudaSetDevice(device_));
  if (!sampler_) sampler_ = std::make_unique<CudaSampler>(stream_.get());
  sampler_->sample(n, spec_.config().vocab_size, logits, params, rng_state, history, history_len, out_tokens);
}

}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(const GPT2Config& config, const BackendOptions& options) {
  return std::make_unique<cuda::CudaBackend>(config, options);
}

}  // namespace dixie
