// The optimizer update over the flat parameter buffer: AdamW (bias-corrected moments, decoupled weight decay)
// or SGD, after scaling the accumulated gradient and clipping it by its global norm. Frozen tensors are left
// as they are; every gradient, frozen or not, is zeroed for the next accumulation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
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

// trainable/decay: one flag per ModelSpec tensor. Only the parameters in [begin, end) are covered (a ZeRO-1 shard).
std::vector<ParamSpan> plan_param_spans(const ModelSpec& spec, const uint8_t* trainable, const uint8_t* decay,
                                        size_t begin = 0, size_t end = std::numeric_limits<size_t>::max());

// One update with step count t (>= 1). params and grads hold the parameters and their gradients from `first` on (the
// first trainable one); m and v, null for SGD, their moments from state_offset on (that, or a ZeRO-1 shard's first
// parameter). partials: one double per span (scratch). reduce_sum_squares, when given, sums this rank's
// squared-gradient total with the other ranks' (ZeRO-1, where each rank sees its shard only), before the norm is
// taken. Returns the global norm of the scaled gradient over the trainable tensors, before clipping.
float optimizer_step(float* params, float* grads, size_t first, float* m, float* v, size_t state_offset,
                     const std::vector<ParamSpan>& spans, double* partials, const StepOptions& options, int64_t t,
                     ThreadPool& pool, const std::function<void(double&)>& reduce_sum_squares = {});

}  // namespace dixie
