// The argument checks that every backend makes before its work, with one wording of the errors.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "backend.h"

namespace dixie {

// forward(inputs, targets, B, T): the shape against nCtx and the planned rows, and every token id against the
// vocabulary (targets may be null). Returns N = B * T.
int64_t check_forward_batch(const GPT2Config& config, const int32_t* inputs, const int32_t* targets, int B, int T,
                            int64_t max_rows);

// One row of sample(): its settings, and its history tokens against the vocabulary V.
void check_sampling_row(int row, int V, const SamplingParams& params, const int32_t* history, int history_len);

// kv_truncate(slot, length): the slot among n_slots, and a length from 0 to what the slot holds.
void check_kv_truncate(int slot, int length, int n_slots, int held);

// A backend's KV-cache decoder, for one of the kv* calls (named in `call`), which need kvReserve first.
template <typename Decoder>
Decoder& reserved_decoder(const std::unique_ptr<Decoder>& decoder, const char* call) {
  if (!decoder) throw std::logic_error(std::string(call) + ": the KV cache is not reserved (call kvReserve first)");
  return *decoder;
}

}  // namespace dixie
