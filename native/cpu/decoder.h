// KV-cached incremental decoding on the CPU: a prompt in one pass (prefill), then a token at a time,
// for several independent sequences ("slots") at once. Shares the layer kernels of training.
#pragma once
#include <cstddef>
#include <cstdint>
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
  void reset(int slot);
  int length(int slot) const;
  // The weights were written: the panels and float32 vectors made from them are remade at the next forward.
  void weights_changed();
  // With 16-bit weights the panels are where the layer matrices live: the backend writes and reads their elements
  // here and never touches those ranges of its flat buffer, whose pages are then never committed. The address of
  // parameter `index` (ModelSpec's flat layout) when it is an element of a layer matrix; null otherwise, and always
  // null with float32 weights, whose panels are a copy remade from the flat buffer.
  uint16_t* matrix_element(size_t index);
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
