// The optimizer on the GPU, over the flat float32 parameter buffer: the gradient's global norm (and clip
// factor), then AdamW or SGD. As in the CPU backend (native/cpu/optimizer.h), every sum runs in a fixed order, so
// the results are the same on every run, and every gradient, frozen or not, is zeroed for the next accumulation.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace dixie::cuda {

// A piece of one tensor (as on the CPU: tensors cut into pieces so that blocks balance and sums are fixed).
struct DeviceSpan {
  uint64_t offset;
  uint32_t numel;
  uint8_t trainable, decay;
};

struct UpdateArgs {
  bool adamw;
  float lr, beta1, beta2, eps, weight_decay;
  float inv_bc1, inv_bc2;  // 1 / (1 - beta^t), the bias corrections
  uint64_t params_offset;  // the parameter params[0] and params_lp[0] belong to (the parameters may be cut short)
  uint64_t grads_offset;   // the parameter grads[0] belongs to (the first that trains: an adapter's, or 0)
  uint64_t state_offset;   // the parameter m[0] and v[0] belong to (a ZeRO-1 shard's first, or grads_offset)
};

// partials[s] = sum of squared gradients of span s (0 for frozen spans); grads[0] is parameter grads_offset's
void grad_square_sums(double* partials, const float* grads, uint64_t grads_offset, const DeviceSpan* spans, int n_spans,
                      cudaStream_t stream);
// norm_mult[0] = global norm of grads * grad_scale; norm_mult[1] = the multiplier the update applies to the
// gradient (grad_scale, times the clip factor when the norm exceeds grad_clip > 0)
void grad_norm(float* norm_mult, const double* partials, int n_spans, float grad_scale, float grad_clip,
               cudaStream_t stream);
// AdamW or SGD on the trainable spans with the gradient times norm_mult[1]; params_lp (may be null) gets the
// bf16 copy of every updated parameter; every gradient is zeroed.
void optimizer_update(float* params, bf16* params_lp, float* grads, float* m, float* v, const DeviceSpan* spans,
                      int n_spans, const float* norm_mult, const UpdateArgs& args, cudaStream_t stream);
// The three above in one launch, where the gradients are all on this device: partials, norm_mult, the update and
// the zeroed gradients as they leave them, bit for bit. A cooperative launch, its blocks meeting at a grid-wide
// barrier between the squares and the update; false, with nothing queued, where the device has none.
bool optimizer_step_fused(float* params, bf16* params_lp, float* grads, float* m, float* v, const DeviceSpan* spans,
                          int n_spans, double* partials, float* norm_mult, float grad_scale, float grad_clip,
                          const UpdateArgs& args, cudaStream_t stream);

}  // namespace dixie::cuda
