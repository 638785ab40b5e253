#include "checks.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

namespace dixie {

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

void check_kv_truncate(int slot, int length, int n_slots, int held) {
  if (slot < 0 || slot >= n_slots)
    throw std::invalid_argument("kv_truncate: slot " + std::to_string(slot) + " is outside [0, " + std::to_string(n_slots) + ")");
  if (length < 0 || length > held)
    throw std::invalid_argument("kv_truncate: length " + std::to_string(length) + " is outside [0, " + std::to_string(held) +
                                "] (the tokens slot " + std::to_string(slot) + " holds)");
}

void check_sampling_row(int row, int V, const SamplingParams& sp, const int32_t* history, int history_len) {
  const std::string where = "sample: row " + std::to_string(row) + ": ";
  if (!(sp.temperature >= 0.0f) || std::isinf(sp.temperature))
    throw std::invalid_argument(where + "temperature must be a finite number >= 0, got " + std::to_string(sp.temperature));
  if (sp.top_k < 0) throw std::invalid_argument(where + "top_k must be >= 0, got " + std::to_string(sp.top_k));
  if (!(sp.top_p > 0.0f && sp.top_p <= 1.0f))
    throw std::invalid_argument(where + "top_p must be in (0, 1], got " + std::to_string(sp.top_p));
  if (!(sp.penalize >= 0.0f && sp.penalize <= 1.0f))
    throw std::invalid_argument(where + "penalize must be in [0, 1] (0: off), got " + std::to_string(sp.penalize));
  if (history_len < 0 || (history_len > 0 && history == nullptr)) throw std::invalid_argument(where + "bad history");
  for (int i = 0; i < history_len; ++i)
    if (history[i] < 0 || history[i] >= V)
      throw std::invalid_argument(where + "history token " + std::to_string(history[i]) + " at " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
}

}  // namespace dixie
