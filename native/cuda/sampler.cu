#include "sampler.cuh"

#include <cfloat>

#include "core/checks.h"
#include "core/rng.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace dixie::cuda {

namespace {

constexpr int kThreads = 512;
// After top-k, at most this many candidates are copied to shared memory, so that top-p and the draw walk them
// instead of the whole vocabulary (each of their radix passes reads every logit).
constexpr int kMaxCompacted = 1024;
constexpr float kMassScale = 1099511627776.0f;  // 2^40: probabilities relative to the most likely token, as integers

struct RowParams {
  float temperature;
  int top_k;
  float top_p;
  float penalize;
  float log_min_p;  // ln min_p, -inf when off: computed on the host as the CPU sampler computes it
  int64_t history_begin;
  int history_len;
  int n_bias;
  int64_t bias_begin;
  int64_t allowed_begin;  // the row's grammar mask, at this word of the row arrays; -1: none
};

RowParams row_params(const SamplingParams& sp, int64_t history_begin, int history_len) {
  return RowParams{sp.temperature, sp.top_k, sp.top_p, sp.penalize, sp.min_p > 0.0f ? std::log(sp.min_p) : -INFINITY, history_begin, history_len, 0, 0, -1};
}

// One logit bias, as stage_row_arrays copies them to the device.
struct BiasEntry {
  int32_t token;
  float value;
};

// Staged layout of meta_: [n RowParams][2n RNG words][history tokens]
size_t rng_offset(int n) { return (static_cast<size_t>(n) * sizeof(RowParams) + 15) / 16 * 16; }
size_t history_offset(int n) { return rng_offset(n) + static_cast<size_t>(n) * 2 * sizeof(uint64_t); }
// Results come back through the staging buffer as [n tokens][2n RNG words].
size_t results_offset(int n) { return (static_cast<size_t>(n) * sizeof(int32_t) + 15) / 16 * 16; }

// ---- order and weights of the candidates ----

// The order in which the CPU walks the candidates, as ascending unique keys: by probability (larger logit
// first, lower id first among equal logits) once top-k, min-p or top-p has ranked them, else by id.
__device__ __forceinline__ uint64_t order_key(float x, int i, bool by_id) {
  if (by_id) return static_cast<uint32_t>(i);
  uint32_t u = __float_as_uint(x);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // unsigned order of the floats
  return (static_cast<uint64_t>(~u) << 32) | static_cast<uint32_t>(i);
}

__device__ __forceinline__ unsigned long long mass_of(float x, float max, float inv_t) {
  return __float2ull_rn(expf((x - max) * inv_t) * kMassScale);
}

struct WarpSumU64 {
  __device__ __forceinline__ unsigned long long operator()(unsigned long long v) const {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
  }
};

// The candidates a selection walks: the row's logits (token id = index), or the ones top-k kept, compacted.
struct VocabRow {
  const float* logits;
  int n;
  __device__ float logit(int j) const { return logits[j]; }
  __device__ int id(int j) const { return j; }
};
struct Compacted {
  const float* logits;
  const int* ids;
  int n;
  __device__ float logit(int j) const { return logits[j]; }
  __device__ int id(int j) const { return ids[j]; }
};

struct SelectShared {
  unsigned long long mass[256];
  unsigned int count[256];
  unsigned long long prefix, before, bin_total, found;
  unsigned int bin_count;
};

// Among the candidates (key <= limit), the one at which the running total in key order (of counts, or of
// masses) first reaches target, 1 <= target <= the candidates' total. Returns its key and sets *cum to the
// running total including it. A radix select over the 64-bit keys, 8 bits a pass from the top; it stops early
// once the chosen bin holds a single candidate.
template <typename Candidates>
__device__ uint64_t block_select(const Candidates& cand, float max, float inv_t, bool by_id, uint64_t limit, bool by_mass,
                                 unsigned long long target, unsigned long long* cum, SelectShared& sh) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  uint64_t prefix = 0;
  unsigned long long before = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += blockDim.x) {
      sh.mass[i] = 0;
      sh.count[i] = 0;
    }
    __syncthreads();
    const uint64_t high = shift == 56 ? 0 : (~0ull << (shift + 8));
    for (int j = tid; j < cand.n; j += blockDim.x) {
      const float x = cand.logit(j);
      const uint64_t key = order_key(x, cand.id(j), by_id);
      if (key > limit || (key & high) != prefix) continue;
      const int digit = static_cast<int>((key >> shift) & 255);
      atomicAdd(&sh.count[digit], 1u);
      if (by_mass) atomicAdd(&sh.mass[digit], mass_of(x, max, inv_t));
    }
    __syncthreads();
    if (warp == 0) {  // lane j owns digits 8j .. 8j + 7; a scan over the lanes finds the bin reaching target
      unsigned long long own = 0;
#pragma unroll
      for (int d = 0; d < 8; ++d) own += by_mass ? sh.mass[8 * lane + d] : sh.count[8 * lane + d];
      unsigned long long incl = own;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const unsigned long long v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      const unsigned ballot = __ballot_sync(0xffffffffu, before + incl >= target);
      const int first = ballot ? __ffs(ballot) - 1 : 31;  // empty only if target exceeded the total (a bug)
      if (lane == first) {
        unsigned long long run = before + incl - own;
        int digit = 8 * lane + 7;
        for (int d = 0; d < 8; ++d) {
          const unsigned long long w = by_mass ? sh.mass[8 * lane + d] : sh.count[8 * lane + d];
          if (run + w >= target) {
            digit = 8 * lane + d;
            break;
          }
          run += w;
        }
        sh.prefix = prefix | (static_cast<uint64_t>(digit) << shift);
        sh.before = run;
        sh.bin_total = by_mass ? sh.mass[digit] : sh.count[digit];
        sh.bin_count = sh.count[digit];
      }
    }
    __syncthreads();
    prefix = sh.prefix;
    before = sh.before;
    if (sh.bin_count == 1 && shift > 0) {  // one candidate left in the bin: fetch its full key
      const uint64_t mask = ~0ull << shift;
      for (int j = tid; j < cand.n; j += blockDim.x) {
        const uint64_t key = order_key(cand.logit(j), cand.id(j), by_id);
        if (key <= limit && (key & mask) == prefix) sh.found = key;
      }
      __syncthreads();
      prefix = sh.found;
      break;
    }
  }
  *cum = before + sh.bin_total;
  return prefix;
}

// The largest logit, the lowest id among equals (the CPU's std::max_element).
__device__ int block_argmax(const float* l, int V, float* vals, int* ids) {
  float best = -INFINITY;
  int id = 0x7fffffff;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    if (l[i] > best || (l[i] == best && i < id)) {
      best = l[i];
      id = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, id, o);
    if (ob > best || (ob == best && oi < id)) {
      best = ob;
      id = oi;
    }
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (lane == 0) {
    vals[warp] = best;
    ids[warp] = id;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < warps; ++w)
      if (vals[w] > vals[0] || (vals[w] == vals[0] && ids[w] < ids[0])) {
        vals[0] = vals[w];
        ids[0] = ids[w];
      }
  }
  __syncthreads();
  return ids[0];
}

// Steps 6 and 7 of sample_kernel over the candidates (key <= limit): top-p's cut, then the draw, the candidate
// where the running mass in key order first exceeds u * total. Masses are integers, so their sums do not depend
// on the order the candidates are in.
template <typename Candidates>
__device__ int32_t draw(const Candidates& cand, const RowParams& p, uint64_t* rng_row, float max, float inv_t,
                        bool by_id, uint64_t limit, SelectShared& sh, unsigned long long* uscratch,
                        unsigned long long& draw_target) {
  unsigned long long part = 0;
  for (int j = threadIdx.x; j < cand.n; j += blockDim.x) {
    const float x = cand.logit(j);
    if (order_key(x, cand.id(j), by_id) <= limit) part += mass_of(x, max, inv_t);
  }
  unsigned long long total = block_reduce(part, uscratch, 0ull, WarpSumU64());

  // 6. Top-p: the smallest prefix of the candidates holding top_p of their mass.
  if (p.top_p < 1.0f) {
    unsigned long long target = static_cast<unsigned long long>(ceil(static_cast<double>(p.top_p) * static_cast<double>(total)));
    target = target < 1 ? 1 : (target > total ? total : target);
    limit = block_select(cand, max, inv_t, false, limit, true, target, &total, sh);
  }

  // 7. The draw.
  if (threadIdx.x == 0) {
    unsigned long long x = static_cast<unsigned long long>(rng::uniform(rng_row) * static_cast<double>(total));
    if (x >= total) x = total - 1;
    draw_target = x + 1;
  }
  __syncthreads();
  unsigned long long cum = 0;
  return static_cast<int32_t>(block_select(cand, max, inv_t, by_id, limit, true, draw_target, &cum, sh) & 0xffffffffu);
}

// logits [rows, ld], the first V of each row the vocabulary's
__global__ void __launch_bounds__(kThreads) sample_kernel(int32_t* out, float* logits, int ld, const RowParams* params,
                                                         uint64_t* rng, const int32_t* history, uint32_t* seen,
                                                         const BiasEntry* bias, const uint32_t* allowed, int V) {
  __shared__ SelectShared sh;
  __shared__ float fscratch[32];
  __shared__ int iscratch[32];
  __shared__ unsigned long long uscratch[32];
  __shared__ unsigned long long draw_target;
  __shared__ float kept_logits[kMaxCompacted];
  __shared__ int kept_ids[kMaxCompacted];
  __shared__ unsigned compacted;
  const int row = blockIdx.x;
  const RowParams p = params[row];
  float* l = logits + static_cast<int64_t>(row) * ld;

  // 0. A grammar's constraint: the tokens it does not allow are out, their logits -inf (a mass of 0).
  if (p.allowed_begin >= 0) {
    const uint32_t* words = allowed + p.allowed_begin;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
      if (!((words[i >> 5] >> (i & 31)) & 1u)) l[i] = -INFINITY;
    __syncthreads();
  }

  // 1. The repetition penalty, once per distinct token of the history.
  if (p.penalize > 0.0f && p.penalize < 1.0f) {
    uint32_t* flags = seen + static_cast<int64_t>(row) * V;
    const int32_t* h = history + p.history_begin;
    for (int i = threadIdx.x; i < p.history_len; i += blockDim.x) {
      const int tok = h[i];
      if (atomicExch(&flags[tok], 1u) == 0u) l[tok] = l[tok] > 0.0f ? l[tok] * p.penalize : fmaxf(l[tok] / p.penalize, -FLT_MAX);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < p.history_len; i += blockDim.x) flags[h[i]] = 0u;
    __syncthreads();
  }

  // 2. The logit biases, after the penalty (atomically: a token may come twice).
  if (p.n_bias > 0) {
    for (int i = threadIdx.x; i < p.n_bias; i += blockDim.x) atomicAdd(&l[bias[p.bias_begin + i].token], bias[p.bias_begin + i].value);
    __syncthreads();
  }

  // 3. Greedy rows take the argmax and leave the RNG alone; so do rows whose temperature is so small that its
  //    inverse overflows (greedy is its limit, where 0 * inf would give NaN).
  if (p.temperature == 0.0f || 1.0f / p.temperature == INFINITY) {
    const int id = block_argmax(l, V, fscratch, iscratch);
    if (threadIdx.x == 0) out[row] = id;
    return;
  }

  float local_max = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) local_max = fmaxf(local_max, l[i]);
  const float max = block_max(local_max, fscratch);
  const float inv_t = 1.0f / p.temperature;

  // 4. Top-k: the candidates are the keys up to the k-th. The k of them (keys are unique) go to shared memory
  //    when they fit, and top-p and the draw then walk only them.
  const bool top_k = p.top_k > 0 && p.top_k < V;
  const bool min_p = p.log_min_p > -INFINITY;
  const bool by_id = !top_k && !min_p && p.top_p >= 1.0f;
  const VocabRow vocab{l, V};
  uint64_t limit = ~0ull;
  int32_t token;
  if (top_k) {
    unsigned long long count = 0;
    limit = block_select(vocab, max, inv_t, false, limit, false, p.top_k, &count, sh);
  }
  // 5. Min-p: the tokens as likely as min_p of the most likely are those whose logits pass the smallest logit that
  //    does (the test is monotonic in the logit), whatever their ids: a limit on the keys too.
  if (min_p) {
    float local_min = INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
      if ((l[i] - max) * inv_t >= p.log_min_p) local_min = fminf(local_min, l[i]);
    const float lowest = -block_max(-local_min, fscratch);
    const uint64_t kept = order_key(lowest, -1, false);
    limit = kept < limit ? kept : limit;
  }
  if (top_k && p.top_k <= kMaxCompacted) {
    if (threadIdx.x == 0) compacted = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < V; i += blockDim.x)
      if (order_key(l[i], i, false) <= limit) {
        const unsigned j = atomicAdd(&compacted, 1u);
        kept_logits[j] = l[i];
        kept_ids[j] = i;
      }
    __syncthreads();
    token = draw(Compacted{kept_logits, kept_ids, static_cast<int>(compacted)}, p, rng + 2 * row, max, inv_t, by_id,
                 limit, sh, uscratch, draw_target);
  } else {
    token = draw(vocab, p, rng + 2 * row, max, inv_t, by_id, limit, sh, uscratch, draw_target);
  }
  if (threadIdx.x == 0) out[row] = token;
}

}  // namespace

CudaSampler::CudaSampler(cudaStream_t stream) : stream_(stream) {
  DIXIE_CUDA_CHECK(cudaEventCreate(&start_));
  DIXIE_CUDA_CHECK(cudaEventCreate(&stop_));
}

CudaSampler::~CudaSampler() {
  if (start_) cudaEventDestroy(start_);
  if (stop_) cudaEventDestroy(stop_);
}

size_t CudaSampler::memory_bytes() const {
  return logits_.bytes() + seen_.bytes() + meta_.bytes() + tokens_.bytes() + row_arrays_.bytes();
}

// Grows the buffers to n rows and the history length; once a server's batch and context are reached, sampling
// allocates nothing more.
void CudaSampler::reserve(int n, int V, size_t history) {
  if (n > rows_ || V != vocab_) {
    ++generation_;
    const int rows = n > rows_ ? n : rows_;
    seen_.allocate(static_cast<size_t>(rows) * V, "sampler penalty flags");
    DIXIE_CUDA_CHECK(cudaMemsetAsync(seen_.data(), 0, seen_.bytes(), stream_));
    tokens_.allocate(rows, "sampled tokens");
    rows_ = rows;
    vocab_ = V;
  }
  const size_t meta = history_offset(rows_) + history * sizeof(int32_t);
  if (meta > meta_.size()) {
    ++generation_;
    meta_.allocate(meta, "sampler settings");
  }
  const size_t results = results_offset(rows_) + static_cast<size_t>(rows_) * 2 * sizeof(uint64_t);
  const size_t stage = meta > results ? meta : results;
  if (stage > staging_.size()) {
    ++generation_;
    staging_.allocate(stage);
  }
}

void CudaSampler::sample(int n, int V, const float* logits, const SamplingParams* params, uint64_t* rng_state,
                         const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens) {
  if (n <= 0) return;
  if (V <= 0) throw std::invalid_argument("sample: empty vocabulary");
  size_t total_history = 0;
  for (int i = 0; i < n; ++i) {
    const int len = history_len ? history_len[i] : 0;
    check_sampling_row(i, V, params[i], history ? history[i] : nullptr, len);
    total_history += static_cast<size_t>(len);
  }
  reserve(n, V, total_history);
  if (static_cast<size_t>(n) * V > logits_.size()) logits_.allocate(static_cast<size_t>(rows_) * V, "sampler logits");

  unsigned char* stage = staging_.data();
  RowParams* rp = reinterpret_cast<RowParams*>(stage);
  uint64_t* rng = reinterpret_cast<uint64_t*>(stage + rng_offset(n));
  int32_t* hist = reinterpret_cast<int32_t*>(stage + history_offset(n));
  int64_t at = 0;
  for (int i = 0; i < n; ++i) {
    const int len = history_len ? history_len[i] : 0;
    rp[i] = row_params(params[i], at, len);
    if (len > 0) std::memcpy(hist + at, history[i], sizeof(int32_t) * len);
    at += len;
  }
  stage_row_arrays(n, params);
  std::memcpy(rng, rng_state, sizeof(uint64_t) * 2 * n);
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(logits_.data(), logits, sizeof(float) * static_cast<size_t>(n) * V,
                                   cudaMemcpyHostToDevice, stream_));
  queue(n, V, logits_.data(), V, reinterpret_cast<const int32_t*>(meta_.data() + history_offset(n)),
        history_offset(n) + static_cast<size_t>(at) * sizeof(int32_t), true);
  finish(n, V, rng_state, out_tokens);
}

void CudaSampler::stage_on_device(int n, int V, const SamplingParams* params, const uint64_t* rng_state,
                                  const int64_t* history_begin, const int32_t* history_len) {
  reserve(n, V, 0);
  timed_ = false;  // until a queue_on_device times its kernel
  unsigned char* stage = staging_.data();
  RowParams* rp = reinterpret_cast<RowParams*>(stage);
  for (int i = 0; i < n; ++i)
    rp[i] = row_params(params[i], history_begin[i], history_len[i]);
  std::memcpy(stage + rng_offset(n), rng_state, sizeof(uint64_t) * 2 * n);
  stage_row_arrays(n, params);
}

// The rows' logit biases and grammar masks go to the device by a copy of their own, queued now, so that the
// settings' copy keeps the fixed size a graph holds; the device buffer only grows (a new generation), to the most a
// call has had. Its layout: [every row's BiasEntry][every row's mask words].
void CudaSampler::stage_row_arrays(int n, const SamplingParams* params) {
  RowParams* rp = reinterpret_cast<RowParams*>(staging_.data());
  size_t biases = 0, words = 0;
  for (int i = 0; i < n; ++i) {
    biases += static_cast<size_t>(params[i].n_bias);
    if (params[i].allowed != nullptr) words += static_cast<size_t>(params[i].allowed_words);
  }
  if (biases + words == 0) return;
  const size_t bytes = biases * sizeof(BiasEntry) + words * sizeof(uint32_t);
  if (bytes > row_arrays_.size()) {
    // Doubled, not fitted: the additive penalties (lib/generate/sequence.ts) add a bias with each new token drawn,
    // and each growth makes the decode graphs capture again.
    const size_t grown = std::max(bytes, 2 * row_arrays_.size());
    ++generation_;
    row_arrays_.allocate(grown, "logit biases and grammar masks");
    row_arrays_staging_.allocate(grown);
  }
  BiasEntry* staged = reinterpret_cast<BiasEntry*>(row_arrays_staging_.data());
  uint32_t* staged_words = reinterpret_cast<uint32_t*>(staged + biases);
  const int64_t words_begin = static_cast<int64_t>(biases * sizeof(BiasEntry) / sizeof(uint32_t));
  int64_t at = 0, word_at = 0;
  for (int i = 0; i < n; ++i) {
    rp[i].n_bias = params[i].n_bias;
    rp[i].bias_begin = at;
    for (int j = 0; j < params[i].n_bias; ++j) staged[at + j] = BiasEntry{params[i].bias_tokens[j], params[i].bias_values[j]};
    at += params[i].n_bias;
    if (params[i].allowed != nullptr) {
      rp[i].allowed_begin = words_begin + word_at;
      std::memcpy(staged_words + word_at, params[i].allowed, sizeof(uint32_t) * params[i].allowed_words);
      word_at += params[i].allowed_words;
    }
  }
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(row_arrays_.data(), staged, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaSampler::queue_on_device(int n, int V, float* logits, int ld, const int32_t* history, bool timed) {
  queue(n, V, logits, ld, history, history_offset(n), timed);
}

void CudaSampler::queue(int n, int V, float* logits, int ld, const int32_t* history, size_t meta_bytes, bool timed) {
  unsigned char* stage = staging_.data();
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(meta_.data(), stage, meta_bytes, cudaMemcpyHostToDevice, stream_));
  unsigned char* meta = meta_.data();
  timed_ = timed;
  if (timed) DIXIE_CUDA_CHECK(cudaEventRecord(start_, stream_));
  sample_kernel<<<n, kThreads, 0, stream_>>>(tokens_.data(), logits, ld, reinterpret_cast<const RowParams*>(meta),
                                             reinterpret_cast<uint64_t*>(meta + rng_offset(n)), history, seen_.data(),
                                             reinterpret_cast<const BiasEntry*>(row_arrays_.data()),
                                             reinterpret_cast<const uint32_t*>(row_arrays_.data()), V);
  DIXIE_CUDA_LAUNCHED();
  if (timed) DIXIE_CUDA_CHECK(cudaEventRecord(stop_, stream_));
  // The staging buffer is free again once the copies above have run; the results come back through it.
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(stage, tokens_.data(), sizeof(int32_t) * n, cudaMemcpyDeviceToHost, stream_));
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(stage + results_offset(n), meta + rng_offset(n), sizeof(uint64_t) * 2 * n,
                                   cudaMemcpyDeviceToHost, stream_));
}

void CudaSampler::finish(int n, int V, uint64_t* rng_state, int32_t* out_tokens) {
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (timed_) DIXIE_CUDA_CHECK(cudaEventElapsedTime(&last_kernel_ms_, start_, stop_));
  const unsigned char* stage = staging_.data();
  const int32_t* tokens_back = reinterpret_cast<const int32_t*>(stage);
  for (int i = 0; i < n; ++i) {
    if (tokens_back[i] < 0 || tokens_back[i] >= V)
      throw std::logic_error("sample: the GPU sampler produced token " + std::to_string(tokens_back[i]) + " for row " +
                             std::to_string(i) + " (an internal error)");
  }
  std::memcpy(out_tokens, tokens_back, sizeof(int32_t) * n);
  std::memcpy(rng_state, stage + results_offset(n), sizeof(uint64_t) * 2 * n);
}

}  // namespace dixie::cuda
