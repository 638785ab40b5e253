#include "checks.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "dtype.h"

namespace dixie {

void check_lora_dropout(const BackendOptions& o) {
  if (!(o.lora_dropout >= 0.0f && o.lora_dropout < 1.0f))
    throw std::invalid_argument("option 'lora.dropout' must be in [0, 1), got " + std::to_string(o.lora_dropout));
  if (o.lora_dropout > 0.0f && o.lora.rank == 0)
    throw std::invalid_argument("option 'lora.dropout' drops an adapter's inputs: it needs the adapter (option 'lora')");
}

int64_t check_forward_batch(const GPT2Config& c, const int32_t* inputs, const int32_t* targets, int B, int T,
                            int64_t max_rows) {
  if (B < 1 || T < 1) throw std::invalid_argument("forward: B and T must be positive");
  if (T > c.n_ctx)
    throw std::invalid_argument("forward: T = " + std::to_string(T) + " exceeds the context length nCtx = " +
                                std::to_string(c.n_ctx));
  const int64_t N = static_cast<int64_t>(B) * T;
  if (N > max_rows)
    throw std::invalid_argument("forward: B*T = " + std::to_string(N) + " exceeds the planned maxBatch*maxSeq = " +
                                std::to_string(max_rows));
  for (int64_t i = 0; i < N; ++i) {
    for (const auto& [ids, name] : {std::pair{inputs, "inputs"}, std::pair{targets, "targets"}}) {
      if (ids && (ids[i] < 0 || ids[i] >= c.vocab_size))
        throw std::out_of_range(std::string("forward: ") + name + "[" + std::to_string(i / T) + ", " +
                                std::to_string(i % T) + "] = " + std::to_string(ids[i]) +
                                " is not a token id (vocabulary size " + std::to_string(c.vocab_size) + ")");
    }
  }
  return N;
}

namespace {

// kv_forward's checks, for `call` (kv_forward or kv_step).
int64_t check_feed(const char* call, const GPT2Config& c, int n, const int32_t* slots, const int32_t* n_new,
                   const int32_t* tokens, int n_slots, const int* lengths, uint8_t* used) {
  const std::string at = std::string(call) + ": ";
  if (n_slots == 0) throw std::logic_error(at + "call kv_reserve first");
  if (n <= 0 || n > n_slots)
    throw std::invalid_argument(at + std::to_string(n) + " slots given, the cache has " + std::to_string(n_slots));
  int64_t total = 0;
  std::fill(used, used + n_slots, 0);
  for (int i = 0; i < n; ++i) {
    const int slot = slots[i];
    if (slot < 0 || slot >= n_slots)
      throw std::invalid_argument(at + "slot " + std::to_string(slot) + " (entry " + std::to_string(i) +
                                  ") is outside [0, " + std::to_string(n_slots) + ")");
    if (used[slot]) throw std::invalid_argument(at + "slot " + std::to_string(slot) + " appears twice");
    used[slot] = 1;
    if (n_new[i] < 1)
      throw std::invalid_argument(at + "slot " + std::to_string(slot) + " has " + std::to_string(n_new[i]) + " new tokens (need >= 1)");
    if (static_cast<int64_t>(lengths[slot]) + n_new[i] > c.n_ctx)
      throw std::out_of_range(at + "slot " + std::to_string(slot) + " would hold " +
                              std::to_string(static_cast<int64_t>(lengths[slot]) + n_new[i]) + " tokens, more than n_ctx " + std::to_string(c.n_ctx));
    total += n_new[i];
  }
  for (int64_t i = 0; i < total; ++i)
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      throw std::invalid_argument(at + "token " + std::to_string(tokens[i]) + " at " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  return total;
}

}  // namespace

int64_t check_kv_forward(const GPT2Config& c, int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens,
                         int n_slots, const int* lengths, uint8_t* used, KvOutput output, int64_t output_rows) {
  const int64_t total = check_feed("kv_forward", c, n, slots, n_new, tokens, n_slots, lengths, used);
  if (output != KvOutput::LastLogits && total > output_rows)
    throw std::invalid_argument("kv_forward: the output of every new token fits the " + std::to_string(output_rows) +
                                " rows kv_reserve planned, " + std::to_string(total) + " tokens given");
  return total;
}

int64_t check_kv_step(const GPT2Config& c, int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens,
                      int n_slots, const int* lengths, uint8_t* used, int n_sample, const int32_t* sample_rows,
                      const SamplingParams* params) {
  const int64_t total = check_feed("kv_step", c, n, slots, n_new, tokens, n_slots, lengths, used);
  if (n_sample < 0 || n_sample > n)
    throw std::invalid_argument("kv_step: " + std::to_string(n_sample) + " rows to sample of " + std::to_string(n) + " entries");
  for (int i = 0; i < n_sample; ++i) {
    const std::string row = "kv_step: sampled row " + std::to_string(i);
    const int lowest = i == 0 ? 0 : sample_rows[i - 1] + 1;
    if (sample_rows[i] < lowest || sample_rows[i] >= n)
      throw std::invalid_argument(row + " is entry " + std::to_string(sample_rows[i]) + ": the entries sampled must be " +
                                  "ascending in [0, " + std::to_string(n) + ")");
    if (const auto refused = refuse_sampling(params[i], c.vocab_size))
      throw std::invalid_argument(row + ": " + refused->field + " must be " + refused->rule);
  }
  return total;
}

void check_kv_slot(const char* call, int slot, int n_slots) {
  if (slot < 0 || slot >= n_slots)
    throw std::invalid_argument(std::string(call) + ": slot " + std::to_string(slot) + " is outside [0, " + std::to_string(n_slots) + ")");
}

void check_kv_truncate(int slot, int length, int held) {
  if (length < 0 || length > held)
    throw std::invalid_argument("kv_truncate: length " + std::to_string(length) + " is outside [0, " + std::to_string(held) +
                                "] (the tokens slot " + std::to_string(slot) + " holds)");
}

void check_q8_write(const ModelSpec& spec, const FlatPiece& piece) {
  const auto [rows, cols] = spec.matrix_shape(piece.kind);
  const size_t group = static_cast<size_t>(kQ8Block) * cols, end = piece.element + piece.n;
  if (piece.element % group == 0 && (end % group == 0 || end == static_cast<size_t>(rows) * cols)) return;
  throw std::invalid_argument("writeParams: " + spec.tensor(piece.kind, piece.layer).name + " [" + std::to_string(rows) +
                              ", " + std::to_string(cols) + "]: a q8_0 model quantizes its layer matrices by blocks of " +
                              std::to_string(kQ8Block) + " rows, so it is written in whole groups of " +
                              std::to_string(kQ8Block) + " rows (this write covers elements " + std::to_string(piece.element) +
                              " to " + std::to_string(end) + ")");
}

void check_param_range(const ModelSpec& spec, size_t offset, size_t count, const char* what) {
  if (offset > spec.num_params() || count > spec.num_params() - offset)
    throw std::out_of_range(std::string(what) + ": range [" + std::to_string(offset) + ", " +
                            std::to_string(offset + count) + ") is outside the parameter buffer of " +
                            std::to_string(spec.num_params()) + " floats");
}

void check_trainable_range(const ModelSpec& spec, size_t offset, size_t count, const char* what) {
  check_param_range(spec, offset, count, what);
  if (offset < spec.trainable_begin())
    throw std::out_of_range(std::string(what) + ": range [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
                            ") holds parameters of the frozen base (only the LoRA adapter trains): gradients and "
                            "optimizer state start at offset " + std::to_string(spec.trainable_begin()));
}

void check_q8_embedding_write(const ModelSpec& spec, size_t element, size_t n) {
  const int C = spec.config().n_embd;
  const size_t end = element + n;
  if (element % C % kQ8Block == 0 && end % C % kQ8Block == 0) return;
  throw std::invalid_argument("writeParams: " + spec.tensor(WTE, -1).name + " [" + std::to_string(spec.config().vocab_size) + ", " +
                              std::to_string(C) + "]: a q8_0 model quantizes its token embedding by blocks of " +
                              std::to_string(kQ8Block) + " values of a row, so it is written in whole blocks (this write covers elements " +
                              std::to_string(element) + " to " + std::to_string(end) + ")");
}

std::optional<SamplingRefusal> refuse_sampling(const SamplingParams& sp, int V) {
  // A temperature so small that its inverse overflows is accepted: the sampler takes it as greedy, its limit.
  if (!(sp.temperature >= 0.0f) || std::isinf(sp.temperature)) return SamplingRefusal{"temperature", "a number >= 0 that fits a float32"};
  if (sp.top_k < 0 || sp.top_k > V)
    return SamplingRefusal{"topK", "an integer from 0 (off) to the vocabulary size, " + std::to_string(V)};
  if (!(sp.top_p > 0.0f && sp.top_p <= 1.0f))
    return SamplingRefusal{"topP", "in (0, 1], and not below 1.4e-45 (the smallest float32)"};
  if (!(sp.min_p >= 0.0f && sp.min_p < 1.0f)) return SamplingRefusal{"minP", "in [0, 1) (0: off)"};
  if (!(sp.penalize >= 0.0f && sp.penalize <= 1.0f)) return SamplingRefusal{"penalize", "in [0, 1] (0: off)"};
  if (sp.n_bias < 0 || (sp.n_bias > 0 && (sp.bias_tokens == nullptr || sp.bias_values == nullptr)))
    return SamplingRefusal{"logitBias", "token ids with their biases, as many of each"};
  for (int i = 0; i < sp.n_bias; ++i) {
    if (sp.bias_tokens[i] < 0 || sp.bias_tokens[i] >= V || !std::isfinite(sp.bias_values[i]))
      return SamplingRefusal{"logitBias", "token ids from 0 to " + std::to_string(V - 1) + ", each with a finite bias"};
  }
  if (sp.allowed != nullptr) {
    const int words = (V + 31) / 32;
    // The rule is written only for a refusal: this runs for every row at every step.
    const auto refused = [&] {
      return SamplingRefusal{"allowed", "a bitset of the vocabulary's " + std::to_string(V) + " tokens in " +
                                            std::to_string(words) + " words, with at least one token"};
    };
    if (sp.allowed_words != words) return refused();
    // A word at a time; the last word's bits past the vocabulary do not count.
    const uint32_t last = V % 32 == 0 ? ~0u : (1u << (V % 32)) - 1u;
    bool any = (sp.allowed[words - 1] & last) != 0;
    for (int w = 0; w + 1 < words && !any; ++w) any = sp.allowed[w] != 0;
    if (!any) return refused();
  }
  return std::nullopt;
}

void check_sampling_row(int row, int V, const SamplingParams& sp, const int32_t* history, int history_len) {
  const std::string where = "sample: row " + std::to_string(row) + ": ";
  if (const auto refused = refuse_sampling(sp, V)) throw std::invalid_argument(where + refused->field + " must be " + refused->rule);
  if (history_len < 0 || (history_len > 0 && history == nullptr)) throw std::invalid_argument(where + "bad history");
  for (int i = 0; i < history_len; ++i)
    if (history[i] < 0 || history[i] >= V)
      throw std::invalid_argument(where + "history token " + std::to_string(history[i]) + " at " + std::to_string(i) +
                              " is outside the vocabulary [0, " + std::to_string(V) + ")");
}

}  // namespace dixie
