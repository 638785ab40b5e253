// KV-cached incremental decoding on the CPU: a prompt in one pass (prefill), then a token at a time,
// for several independent sequences ("slots") at once. Shares the layer kernels of training.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "core/backend.h"
#include "core/model_spec.h"
#include "thread_pool.h"

namespace dixie {

// The model's weights as the backend stores them: float32, or 16-bit (F16/BF16) for inference.
// Exactly one pointer is set; either way the layout is ModelSpec's.
struct WeightsView {
  DType dtype = DType::F32;
  const float* f32 = nullptr;
  const uint16_t* u16 = nullptr;
};

class CpuDecoder {
 public:
  CpuDecoder(const ModelSpec& spec, WeightsView weights, ThreadPool& pool);
  ~CpuDecoder();

  void reserve(int n_slots);  // plans the cache and scratch memory once
  // See Backend::kv_forward.
  void forward(int n, const int32_t* slots, const int32_t* n_new, const int32_t* tokens, float* logits_out);
  void truncate(int slot, int length);
  int length(int slot) const;
  // The weights were written: what is made from them (float32 weights' panel copy, 16-bit weights' float32
  // vectors) is remade at the next forward.
  void weights_changed();
  // With 16-bit weights the panels are where the layer matrices live: the backend writes and reads their elements
  // here and never touches those ranges of its flat buffer, whose pages are then never committed. Calls
  // fn(first, n, in_panels) over the parameters [offset, offset + count) of ModelSpec's flat layout, in runs
  // contiguous where they are stored: in_panels is where a run of layer-matrix elements sits in the panels, null
  // for a run of other parameters (which live in the flat buffer). 16-bit weights only: float32 weights keep every
  // parameter in the flat buffer, and their panels are a copy.
  void for_each_run16(size_t offset, size_t count, const std::function<void(size_t first, size_t n, uint16_t* in_panels)>& fn);
  // Bytes of the layer matrices in panel layout.
  size_t panel_bytes() const;
  // Bytes of the cache, scratch and derived copies (the panels when they are a copy).
  size_t memory_bytes() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Backend::sample on the CPU; rows run in parallel, each with its own RNG stream, so results do not depend
// on the thread count.
void sample_tokens(int n, int V, const float* logits, const SamplingParams* params, uint64_t* rng_state,
                   const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens, ThreadPool& pool);

}  // namespace dixie
