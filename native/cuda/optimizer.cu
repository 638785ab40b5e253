#include "optimizer.cuh"

#include <cooperative_groups.h>

#include <algorithm>

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;

// ---- optimizer: one block per span, as three launches or as one cooperative launch; both run the same
// functions in the same order, so their results are equal bit for bit ----

// The sum of the squared gradients of span s, 0 where it does not train; every thread gets it.
__device__ double span_square_sum(const float* grads, uint64_t grads_offset, const DeviceSpan& s, double* scratch) {
  float acc = 0.0f;
  if (s.trainable) {
    const float* g = grads + (s.offset - grads_offset);
    for (uint32_t i = threadIdx.x; i < s.numel; i += blockDim.x) acc = fmaf(g[i], g[i], acc);
  }
  return block_sum_f64(static_cast<double>(acc), scratch);
}

// The global norm of the gradients times grad_scale, and the multiplier the update applies to them (grad_scale,
// times the clip factor when the norm exceeds grad_clip > 0), from the spans' sums; every thread gets them.
__device__ float2 norm_and_multiplier(const double* partials, int n_spans, float grad_scale, float grad_clip,
                                      double* scratch) {
  double s = 0.0;
  for (int i = threadIdx.x; i < n_spans; i += blockDim.x) s += partials[i];
  s = block_sum_f64(s, scratch);
  const float norm = static_cast<float>(sqrt(s * static_cast<double>(grad_scale) * grad_scale));
  float mult = grad_scale;
  if (grad_clip > 0.0f && norm > grad_clip) mult *= grad_clip / (norm + 1e-6f);
  return make_float2(norm, mult);
}

__device__ void update_span(float* params, bf16* params_lp, float* grads, float* m, float* v, const DeviceSpan& s,
                            float mult, const UpdateArgs& a) {
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

__global__ void __launch_bounds__(kBlock) grad_square_sums_kernel(double* partials, const float* grads,
                                                                  uint64_t grads_offset, const DeviceSpan* spans) {
  __shared__ double scratch[32];
  const double total = span_square_sum(grads, grads_offset, spans[blockIdx.x], scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kBlock) grad_norm_kernel(float* norm_mult, const double* partials, int n_spans,
                                                           float grad_scale, float grad_clip) {
  __shared__ double scratch[32];
  const float2 r = norm_and_multiplier(partials, n_spans, grad_scale, grad_clip, scratch);
  if (threadIdx.x == 0) {
    norm_mult[0] = r.x;
    norm_mult[1] = r.y;
  }
}

__global__ void __launch_bounds__(kBlock) optimizer_update_kernel(float* params, bf16* params_lp, float* grads, float* m,
                                                                  float* v, const DeviceSpan* spans,
                                                                  const float* norm_mult, UpdateArgs a) {
  update_span(params, params_lp, grads, m, v, spans[blockIdx.x], norm_mult[1], a);
}

// The three kernels above as one: the blocks (all resident at once) take spans in turn for the squares, wait for
// each other at the grid's barrier, each reduce the same partials in the same order, and take spans in turn for
// the update. Its scratch is dynamic shared memory: 32 doubles.
__global__ void __launch_bounds__(kBlock) optimizer_step_kernel(float* params, bf16* params_lp, float* grads, float* m,
                                                                float* v, const DeviceSpan* spans, int n_spans,
                                                                double* partials, float* norm_mult, float grad_scale,
                                                                float grad_clip, UpdateArgs a) {
  extern __shared__ double smem_f64[];
  for (int s = blockIdx.x; s < n_spans; s += gridDim.x) {
    const double total = span_square_sum(grads, a.grads_offset, spans[s], smem_f64);
    if (threadIdx.x == 0) partials[s] = total;
  }
  cooperative_groups::this_grid().sync();
  const float2 r = norm_and_multiplier(partials, n_spans, grad_scale, grad_clip, smem_f64);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    norm_mult[0] = r.x;
    norm_mult[1] = r.y;
  }
  for (int s = blockIdx.x; s < n_spans; s += gridDim.x) update_span(params, params_lp, grads, m, v, spans[s], r.y, a);
}

}  // namespace

void grad_square_sums(double* partials, const float* grads, uint64_t grads_offset, const DeviceSpan* spans, int n_spans,
                      cudaStream_t stream) {
  grad_square_sums_kernel<<<n_spans, kBlock, 0, stream>>>(partials, grads, grads_offset, spans);
  DIXIE_CUDA_LAUNCHED();
}

void grad_norm(float* norm_mult, const double* partials, int n_spans, float grad_scale, float grad_clip,
               cudaStream_t stream) {
  grad_norm_kernel<<<1, kBlock, 0, stream>>>(norm_mult, partials, n_spans, grad_scale, grad_clip);
  DIXIE_CUDA_LAUNCHED();
}

void optimizer_update(float* params, bf16* params_lp, float* grads, float* m, float* v, const DeviceSpan* spans,
                      int n_spans, const float* norm_mult, const UpdateArgs& args, cudaStream_t stream) {
  optimizer_update_kernel<<<n_spans, kBlock, 0, stream>>>(params, params_lp, grads, m, v, spans, norm_mult, args);
  DIXIE_CUDA_LAUNCHED();
}

bool optimizer_step_fused(float* params, bf16* params_lp, float* grads, float* m, float* v, const DeviceSpan* spans,
                          int n_spans, double* partials, float* norm_mult, float grad_scale, float grad_clip,
                          const UpdateArgs& args, cudaStream_t stream) {
  int device = 0, cooperative = 0, sms = 0, per_sm = 0;
  const size_t smem = 32 * sizeof(double);
  DIXIE_CUDA_CHECK(cudaGetDevice(&device));
  DIXIE_CUDA_CHECK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device));
  DIXIE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  DIXIE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, optimizer_step_kernel, kBlock, smem));
  if (!cooperative || per_sm < 1) return false;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(std::min(n_spans, per_sm * sms)));
  config.blockDim = dim3(kBlock);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeCooperative;
  attribute.val.cooperative = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  const cudaError_t launched = cudaLaunchKernelEx(&config, optimizer_step_kernel, params, params_lp, grads, m, v, spans,
                                                  n_spans, partials, norm_mult, grad_scale, grad_clip, args);
  DIXIE_CUDA_CHECK(launched);
  return true;
}

}  // namespace dixie::cuda
