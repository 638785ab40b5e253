// The argument checks that every backend makes before its work, with one wording of the errors.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "backend.h"

namespace dixie {

// BackendOptions::lora_dropout: in [0, 1), and above 0 only with an adapter to train.
void check_lora_dropout(const BackendOptions& options);

// forward(inputs, targets, B, T): the shape against nCtx and the planned rows, and every token id against the
// vocabulary (targets may be null). Returns N = B * T.
int64_t check_forward_batch(const GPT2Config& config, const int32_t* inputs, const int32_t* targets, int B, int T,
                            int64_t max_rows);

// A sampling setting refused: the field, named as the addon's callers name it (topK), and the rule it breaks.
struct SamplingRefusal {
  const char* field;
  std::string rule;
};

// The one table of sampling settings a sampler accepts for a vocabulary of V tokens, the values read as float32
// (top_k below 0 stands for a value that is no integer): both backends' sample() check each row against it, and
// TypeScript validates requests with it (the addon's checkSampling), so a request is refused exactly when the
// sampler would refuse it. Returns the first field refused, or nothing.
std::optional<SamplingRefusal> refuse_sampling(const SamplingParams& params, int V);

// One row of sample(): its settings (refuse_sampling), and its history tokens against the vocabulary V.
void check_sampling_row(int row, int V, const SamplingParams& params, const int32_t* history, int history_len);

// kv_forward(n, slots, n_new, tokens, output) against a cache of n_slots whose slots hold lengths[slot] tokens:
// each slot once, at least one new token each, within n_ctx, every token in the vocabulary; with an output for
// every token, at most output_rows tokens in all (the rows the backend plans for that output). `used` is scratch of
// n_slots bytes. Returns the tokens given in all.
int64_t check_kv_forward(const GPT2Config& config, int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens,
                         int n_slots, const int* lengths, uint8_t* used, KvOutput output, int64_t output_rows);

// kv_step(n, slots, n_new, tokens, n_sample, sample_rows, params): kv_forward's checks, then the sampled rows:
// n_sample in [0, n], sample_rows ascending in [0, n), each row's settings in refuse_sampling's table. (The rows'
// penalty histories are their slots' tokens, checked as they were fed.) Returns the tokens given in all.
int64_t check_kv_step(const GPT2Config& config, int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens,
                      int n_slots, const int* lengths, uint8_t* used, int n_sample, const int32_t* sample_rows,
                      const SamplingParams* params);

// kv_truncate(slot, length), its slot checked already: a length from 0 to the `held` tokens the slot holds.
void check_kv_truncate(int slot, int length, int held);

// A slot named to kv_length or kv_truncate, among n_slots.
void check_kv_slot(const char* call, int slot, int n_slots);

// A write of a Q8_0 model's layer matrix (a FlatPiece of `spec`): it must hold whole groups of kQ8Block rows, the
// blocks being quantized by columns of those rows (the last group of a matrix may be shorter).
void check_q8_write(const ModelSpec& spec, const FlatPiece& piece);
// A write of the elements [element, element + n) of a Q8_0 model's token embedding [V, C], which the CPU quantizes by
// blocks of kQ8Block values of a row: it must hold whole blocks (the last of a row may be shorter).
void check_q8_embedding_write(const ModelSpec& spec, size_t element, size_t n);

// A range [offset, offset + count) of the flat parameter buffer named to a call (`what`): inside the buffer; for
// gradients and optimizer state, also inside the range that trains (ModelSpec::trainable_begin on).
void check_param_range(const ModelSpec& spec, size_t offset, size_t count, const char* what);
void check_trainable_range(const ModelSpec& spec, size_t offset, size_t count, const char* what);

// A backend's KV-cache decoder, for one of the kv* calls (named in `call`), which need kvReserve first.
template <typename Decoder>
Decoder& reserved_decoder(const std::unique_ptr<Decoder>& decoder, const char* call) {
  if (!decoder) throw std::logic_error(std::string(call) + ": the KV cache is not reserved (call kvReserve first)");
  return *decoder;
}

}  // namespace dixie
