// LoRA's dropout (BackendOptions::lora_dropout): which elements of an adapter's input a training forward drops.
// The mask is a counter-based hash of a key and of the element's place rather than a generator's stream, so that
// both backends, the forward and its backward, and a run resumed from a checkpoint draw it alike from the key alone,
// with nothing to keep, advance or save. The key is the run's seed, the training step and micro-batch
// (ForwardOptions), the layer and the matrix; the place is the element's global row (data-parallel ranks hold
// different rows of one batch) and its column.
#pragma once
#include <cstdint>

#include "backend.h"
#include "rng.h"  // DIXIE_HOST_DEVICE

namespace dixie {

// splitmix64's finalizer: a bijection of 64-bit words in which every output bit depends on every input bit.
DIXIE_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// One adapted matrix's mask in one training forward, over its input [N, cols].
struct DropoutMask {
  uint64_t key = 0;
  int64_t first_row = 0;   // the global row of the batch's row 0
  uint32_t threshold = 0;  // p * 2^32: an element whose draw (32 bits) is below it is dropped; 0: none is
  float scale = 1.0f;      // 1 / (1 - p), so that the adapter's input keeps its expectation

  DIXIE_HOST_DEVICE bool drops() const { return threshold != 0; }
  // Element (row, col): its draw is splitmix64's output at the element's place in the sequence the key starts.
  DIXIE_HOST_DEVICE bool keeps(int64_t row, int64_t col, int64_t cols) const {
    const uint64_t place = static_cast<uint64_t>(first_row + row) * static_cast<uint64_t>(cols) + static_cast<uint64_t>(col);
    return static_cast<uint32_t>(mix64(key + (place + 1) * 0x9e3779b97f4a7c15ull) >> 32) >= threshold;
  }
};

// The mask of layer matrix kLayerMatrices[matrix] of `layer` in a forward of N rows: none unless the forward trains
// and the options ask for dropout.
DropoutMask lora_dropout_mask(const BackendOptions& options, const ForwardOptions& forward, int matrix, int layer, int64_t N);

// The widest input of the matrices the adapter changes: the columns of a backend's buffer for a dropped input.
int lora_widest_input(const ModelSpec& spec);

}  // namespace dixie
