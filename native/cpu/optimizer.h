// The optimizer update over the flat parameter buffer: AdamW (bias-corrected moments, decoupled weight decay)
// or SGD, after scaling the accumulated gradient and clipping it by its global norm. Frozen tensors are left
// as they are; every gradient, frozen or not, is zeroed for the next accumulation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/model_spec.h"
#include "thread_pool.h"

namespace dixie {

// A piece of one tensor (tensors are cut into pieces so that threads balance and sums stay deterministic).
struct ParamSpan {
  size_t offset = 0, numel = 0;
  bool trainable = true, decay = false;
};

// trainable/decay: one flag per ModelSpec tensor.
std::vector<ParamSpan> plan_param_spans(const ModelSpec& spec, const uint8_t* trainable, const uint8_t* decay);

// One update with step count t (>= 1). m and v may be null for SGD. partials: one double per span (scratch).
// Returns the global norm of the scaled gradient over the trainable tensors, before clipping.
float optimizer_step(float* params, float* grads, float* m, float* v, const std::vector<ParamSpan>& spans,
                     double* partials, const StepOptions& options, int64_t t, ThreadPool& pool);

}  // namespace dixie
