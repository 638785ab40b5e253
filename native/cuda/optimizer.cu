#include "optimizer.cuh"

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;

// ---- optimizer: one block per span ----

__global__ void grad_square_sums_kernel(double* partials, const float* grads, uint64_t grads_offset, const DeviceSpan* spans) {
  __shared__ double scratch[32];
  const DeviceSpan s = spans[blockIdx.x];
  float acc = 0.0f;
  if (s.trainable) {
    const float* g = grads + (s.offset - grads_offset);
    for (uint32_t i = threadIdx.x; i < s.numel; i += blockDim.x) acc = fmaf(g[i], g[i], acc);
  }
  const double total = block_sum_f64(static_cast<double>(acc), scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void grad_norm_kernel(float* norm_mult, const double* partials, int n_spans, float grad_scale,
                                 float grad_clip) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < n_spans; i += blockDim.x) s += partials[i];
  s = block_sum_f64(s, scratch);
  if (threadIdx.x == 0) {
    const float norm = static_cast<float>(sqrt(s * static_cast<double>(grad_scale) * grad_scale));
    float mult = grad_scale;
    if (grad_clip > 0.0f && norm > grad_clip) mult *= grad_clip / (norm + 1e-6f);
    norm_mult[0] = norm;
    norm_mult[1] = mult;
  }
}

__global__ void optimizer_update_kernel(float* params, bf16* params_lp, float* grads, float* m, float* v,
                                        const DeviceSpan* spans, const float* norm_mult, UpdateArgs a) {
  const DeviceSpan s = spans[blockIdx.x];
  const float mult = norm_mult[1];
  const float wd = s.decay ? a.weight_decay : 0.0f;
  for (uint32_t k = threadIdx.x; k < s.numel; k += blockDim.x) {
    const uint64_t i = s.offset + k;
    if (s.trainable) {
      const float g = grads[i - a.grads_offset] * mult;
      float p = params[i - a.params_offset];
      if (a.adamw) {
        const uint64_t j = i - a.state_offset;
        const float mi = a.beta1 * m[j] + (1.0f - a.beta1) * g;
        const float vi = a.beta2 * v[j] + (1.0f - a.beta2) * (g * g);
        m[j] = mi;
        v[j] = vi;
        p -= a.lr * ((mi * a.inv_bc1) / (sqrtf(vi * a.inv_bc2) + a.eps) + wd * p);
      } else {
        p -= a.lr * (g + wd * p);
      }
      params[i - a.params_offset] = p;
      if (params_lp) params_lp[i - a.params_offset] = __float2bfloat16_rn(p);
    }
    grads[i - a.grads_offset] = 0.0f;
  }
}

}  // namespace

void grad_square_sums(double* partials, const float* grads, uint64_t grads_offset, const DeviceSpan* spans, int n_spans,
                      cudaStream_t stream) {
  grad_square_sums_kernel<<<n_spans, kBlock, 0, stream>>>(partials, grads, grads_offset, spans);
  DIXIE_CUDA_LAUNCHED();
}

void grad_norm(float* norm_mult, const double* partials, int n_spans, float grad_scale, float grad_clip,
               cudaStream_t stream) {
  grad_norm_kernel<<<1, 1024, 0, stream>>>(norm_mult, partials, n_spans, grad_scale, grad_clip);
  DIXIE_CUDA_LAUNCHED();
}

void optimizer_update(float* params, bf16* params_lp, float* grads, float* m, float* v, const DeviceSpan* spans,
                      int n_spans, const float* norm_mult, const UpdateArgs& args, cudaStream_t stream) {
  optimizer_update_kernel<<<n_spans, kBlock, 0, stream>>>(params, params_lp, grads, m, v, spans, norm_mult, args);
  DIXIE_CUDA_LAUNCHED();
}

}  // namespace dixie::cuda
