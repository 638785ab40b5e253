#include "layernorm.cuh"

#include <algorithm>

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / 32;  // row kernels: one warp per row
constexpr int kRowChunks = 64;              // column reductions: partial sums over this many chunks of rows
// LayerNorm backward in one pass (layernorm_backward_kernel): chunks of rows, one per block, up to kFusedChunks to
// fill the GPU and at least kRowsPerWarp rows a warp; each lane holds the column sums of up to kLaneColumns columns
// (C <= 32 kLaneColumns).
constexpr int kFusedChunks = 256, kRowsPerWarp = 4, kLaneColumns = 32;

unsigned row_blocks(int N) { return static_cast<unsigned>(ceil_div(N, kRowsPerBlock)); }

// ---- layernorm: one warp per row, K elements (a 16-byte pack, or 1) per access ----

template <typename X, int K>
__device__ __forceinline__ void layernorm_row(X* out, float* mean, float* rstd, const X* x, const float* weight,
                                              const float* bias, int row, int C, int lane) {
  using P = Pack<X, K>;
  const P* xp = reinterpret_cast<const P*>(x);
  float sum = 0.0f;
  for (int p = lane; p < C / P::kN; p += 32) {
    const P v = xp[p];
#pragma unroll
    for (int k = 0; k < P::kN; ++k) sum += to_f32(v.v[k]);
  }
  const float m = warp_sum(sum) / C;
  float var = 0.0f;
  for (int p = lane; p < C / P::kN; p += 32) {
    const P v = xp[p];
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      const float d = to_f32(v.v[k]) - m;
      var += d * d;
    }
  }
  const float s = 1.0f / sqrtf(warp_sum(var) / C + 1e-5f);
  for (int p = lane; p < C / P::kN; p += 32) {
    const P v = xp[p];
    P o;
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      const int c = p * P::kN + k;
      o.v[k] = from_f32<X>((to_f32(v.v[k]) - m) * s * weight[c] + bias[c]);
    }
    reinterpret_cast<P*>(out)[p] = o;
  }
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = s;
  }
}

template <typename X, int K>
__global__ void layernorm_forward_kernel(X* out, float* mean, float* rstd, const X* inp, const float* weight,
                                         const float* bias, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t o = static_cast<int64_t>(row) * C;
  layernorm_row<X, K>(out + o, mean, rstd, inp + o, weight, bias, row, C, lane);
}

template <typename X, int K>
__global__ void residual_layernorm_forward_kernel(X* res, X* out, float* mean, float* rstd, const X* a, const X* b,
                                                  const float* weight, const float* bias, int N, int C) {
  using P = Pack<X, K>;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t o = static_cast<int64_t>(row) * C;
  // Each lane reads back only the packs it wrote itself, so no barrier is needed between the two steps.
  for (int p = lane; p < C / P::kN; p += 32) {
    const P va = reinterpret_cast<const P*>(a + o)[p], vb = reinterpret_cast<const P*>(b + o)[p];
    P r;
#pragma unroll
    for (int k = 0; k < P::kN; ++k) r.v[k] = from_f32<X>(to_f32(va.v[k]) + to_f32(vb.v[k]));
    reinterpret_cast<P*>(res + o)[p] = r;
  }
  layernorm_row<X, K>(out + o, mean, rstd, res + o, weight, bias, row, C, lane);
}

// dinp += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd, dnorm = weight * dout, for one row by one warp,
// K elements per access; the second pass finds the row in L1. With kIters > 0 (C <= 32 kIters K) each lane also
// adds its packs' dweight and dbias terms, norm * dout and dout, to a and b: lane l's pack l + 32 i in a[i], b[i].
template <typename X, int K, int kIters>
__device__ __forceinline__ void layernorm_backward_row(X* __restrict__ dinp, const X* __restrict__ dout,
                                                       const X* __restrict__ inp, const float* __restrict__ weight,
                                                       float m, float s, int C, int lane,
                                                       float (&a)[kIters > 0 ? kIters : 1][K],
                                                       float (&b)[kIters > 0 ? kIters : 1][K]) {
  using P = Pack<X, K>;
  const P* g = reinterpret_cast<const P*>(dout);
  const P* x = reinterpret_cast<const P*>(inp);
  P* d = reinterpret_cast<P*>(dinp);
  float sum_dnorm = 0.0f, sum_dnorm_norm = 0.0f;
  for (int p = lane; p < C / P::kN; p += 32) {
    const P gp = g[p], xp = x[p];
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      const float dnorm = weight[p * P::kN + k] * to_f32(gp.v[k]);
      sum_dnorm += dnorm;
      sum_dnorm_norm += dnorm * (to_f32(xp.v[k]) - m) * s;
    }
  }
  const float mean_dnorm = warp_sum(sum_dnorm) / C, mean_dnorm_norm = warp_sum(sum_dnorm_norm) / C;
#pragma unroll
  for (int i = 0; kIters == 0 || i < kIters; ++i) {
    const int p = lane + 32 * i;
    if (p >= C / P::kN) break;
    const P gp = g[p], xp = x[p];
    P dp = d[p];
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      const float norm = (to_f32(xp.v[k]) - m) * s, dnorm = weight[p * P::kN + k] * to_f32(gp.v[k]);
      dp.v[k] = from_f32<X>(to_f32(dp.v[k]) + (dnorm - mean_dnorm - norm * mean_dnorm_norm) * s);
      if constexpr (kIters > 0) {
        a[i][k] += norm * to_f32(gp.v[k]);
        b[i][k] += to_f32(gp.v[k]);
      }
    }
    d[p] = dp;
  }
}

template <typename X, int K>
__global__ void layernorm_backward_input_kernel(X* __restrict__ dinp, const X* __restrict__ dout,
                                                const X* __restrict__ inp, const float* __restrict__ weight,
                                                const float* mean, const float* rstd, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t o = static_cast<int64_t>(row) * C;
  float unused[1][K];
  layernorm_backward_row<X, K, 0>(dinp + o, dout + o, inp + o, weight, mean[row], rstd[row], C, lane, unused, unused);
}

// The whole backward in one pass over dout and inp, for C <= 32 kLaneColumns: block `chunk` takes that chunk of
// rows, warp w its rows w, w + 8, ..., adding each row's dinp and summing its lanes' columns in registers; then
// the warps add their sums in order into shared memory, and the block writes them to partial[chunk] ([2C]:
// dweight's terms, then dbias's) for column_finish_kernel<true>.
template <typename X, int K>
__global__ void __launch_bounds__(kBlock) layernorm_backward_kernel(X* __restrict__ dinp, float* partial,
                                                                    const X* __restrict__ dout,
                                                                    const X* __restrict__ inp,
                                                                    const float* __restrict__ weight,
                                                                    const float* mean, const float* rstd, int N, int C) {
  constexpr int kIters = kLaneColumns / K;
  __shared__ float sums[2 * 32 * kLaneColumns];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, chunk = blockIdx.x;
  const int rows_per_chunk = static_cast<int>(ceil_div(N, static_cast<int>(gridDim.x)));
  const int r0 = chunk * rows_per_chunk, r1 = min(N, r0 + rows_per_chunk);
  float a[kIters][K] = {}, b[kIters][K] = {};
  for (int row = r0 + warp; row < r1; row += kRowsPerBlock) {
    const int64_t o = static_cast<int64_t>(row) * C;
    layernorm_backward_row<X, K, kIters>(dinp + o, dout + o, inp + o, weight, mean[row], rstd[row], C, lane, a, b);
  }
  for (int w = 0; w < kRowsPerBlock; ++w) {
    if (warp == w) {
#pragma unroll
      for (int i = 0; i < kIters; ++i)
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const int c = (lane + 32 * i) * K + k;
          if (c >= C) continue;
          sums[c] = (w == 0 ? 0.0f : sums[c]) + a[i][k];
          sums[C + c] = (w == 0 ? 0.0f : sums[C + c]) + b[i][k];
        }
    }
    __syncthreads();
  }
  float* out = partial + static_cast<int64_t>(chunk) * 2 * C;
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) out[c] = sums[c];
}

// Column reductions in two stages. Stage 1, grid (ceil(C / 32 K), kRowChunks), block (32, 8): each block sums
// 32 K columns over one chunk of rows into partial[chunk], each thread K neighbouring columns (one access);
// stage 2 adds the chunks in order.
template <typename X, int K, bool LayerNorm>
__global__ void column_partials_kernel(float* partial, const X* dout, const X* inp, const float* mean,
                                       const float* rstd, int N, int C) {
  using P = Pack<X, K>;
  __shared__ float sum_a[8][32 * P::kN + 1], sum_b[8][32 * P::kN + 1];
  const int cx = threadIdx.x, ry = threadIdx.y;
  const int q = blockIdx.x * 32 + cx;  // this thread's pack of columns
  const int chunk = blockIdx.y;
  const int rows_per_chunk = static_cast<int>(ceil_div(N, kRowChunks));
  const int r0 = chunk * rows_per_chunk, r1 = min(N, r0 + rows_per_chunk);
  // LayerNorm: a = sum norm * dout (dweight), b = sum dout (dbias); bias: b only
  float a[P::kN] = {}, b[P::kN] = {};
  if (q < C / P::kN) {
    for (int r = r0 + ry; r < r1; r += 8) {
      const int64_t i = static_cast<int64_t>(r) * (C / P::kN) + q;
      const P g = reinterpret_cast<const P*>(dout)[i];
      if constexpr (LayerNorm) {
        const P x = reinterpret_cast<const P*>(inp)[i];
        const float m = mean[r], s = rstd[r];
#pragma unroll
        for (int k = 0; k < P::kN; ++k) a[k] += (to_f32(x.v[k]) - m) * s * to_f32(g.v[k]);
      }
#pragma unroll
      for (int k = 0; k < P::kN; ++k) b[k] += to_f32(g.v[k]);
    }
  }
#pragma unroll
  for (int k = 0; k < P::kN; ++k) {
    sum_a[ry][cx * P::kN + k] = a[k];
    sum_b[ry][cx * P::kN + k] = b[k];
  }
  __syncthreads();
  if (ry == 0 && q < C / P::kN) {
    float* out = partial + static_cast<int64_t>(chunk) * (LayerNorm ? 2 * C : C);
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      float ta = 0.0f, tb = 0.0f;
#pragma unroll
      for (int y = 0; y < 8; ++y) {
        ta += sum_a[y][cx * P::kN + k];
        tb += sum_b[y][cx * P::kN + k];
      }
      const int c = q * P::kN + k;
      if (LayerNorm) {
        out[c] = ta;
        out[C + c] = tb;
      } else {
        out[c] = tb;
      }
    }
  }
}

// Stage 1 of a column reduction of dout [N, C] (and inp, for a LayerNorm's weight) into scratch.
template <typename X, bool LayerNorm>
void column_partials(float* scratch, const X* dout, const X* inp, const float* mean, const float* rstd, int N, int C,
                     cudaStream_t stream) {
  constexpr int K = Pack<X>::kN;
  const dim3 block(32, 8);
  if (packable<X>(C, {dout, inp})) {
    const dim3 grid(static_cast<unsigned>(ceil_div(C, 32 * K)), kRowChunks);
    column_partials_kernel<X, K, LayerNorm><<<grid, block, 0, stream>>>(scratch, dout, inp, mean, rstd, N, C);
  } else {
    const dim3 grid(static_cast<unsigned>(ceil_div(C, 32)), kRowChunks);
    column_partials_kernel<X, 1, LayerNorm><<<grid, block, 0, stream>>>(scratch, dout, inp, mean, rstd, N, C);
  }
  DIXIE_CUDA_LAUNCHED();
}

template <bool LayerNorm>
__global__ void column_finish_kernel(float* dweight, float* dbias, const float* partial, int C, int chunks) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int stride = LayerNorm ? 2 * C : C;
  float a = 0.0f, b = 0.0f;
  for (int k = 0; k < chunks; ++k) {
    if (LayerNorm) a += partial[static_cast<int64_t>(k) * stride + c];
    b += partial[static_cast<int64_t>(k) * stride + (LayerNorm ? C : 0) + c];
  }
  if (LayerNorm) dweight[c] += a;
  dbias[c] += b;
}

}  // namespace

template <typename X>
void layernorm_forward(X* out, float* mean, float* rstd, const X* inp, const float* weight, const float* bias, int N,
                       int C, cudaStream_t stream) {
  constexpr int K = Pack<X>::kN;
  if (packable<X>(C, {out, inp}))
    layernorm_forward_kernel<X, K><<<row_blocks(N), kBlock, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C);
  else
    layernorm_forward_kernel<X, 1><<<row_blocks(N), kBlock, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void residual_layernorm_forward(X* res, X* out, float* mean, float* rstd, const X* a, const X* b, const float* weight,
                                const float* bias, int N, int C, cudaStream_t stream) {
  constexpr int K = Pack<X>::kN;
  if (packable<X>(C, {res, out, a, b}))
    residual_layernorm_forward_kernel<X, K><<<row_blocks(N), kBlock, 0, stream>>>(res, out, mean, rstd, a, b, weight, bias, N, C);
  else
    residual_layernorm_forward_kernel<X, 1><<<row_blocks(N), kBlock, 0, stream>>>(res, out, mean, rstd, a, b, weight, bias, N, C);
  DIXIE_CUDA_LAUNCHED();
}

size_t layernorm_scratch_floats(int C) { return static_cast<size_t>(std::max(kRowChunks, kFusedChunks)) * 2 * C; }
size_t bias_scratch_floats(int OC) { return static_cast<size_t>(kRowChunks) * OC; }

template <typename X>
void layernorm_backward(X* dinp, float* dweight, float* dbias, const X* dout, const X* inp, const float* weight,
                        const float* mean, const float* rstd, int N, int C, float* scratch, cudaStream_t stream) {
  constexpr int K = Pack<X>::kN;
  const bool packed = packable<X>(C, {dinp, dout, inp});
  const unsigned finish_blocks = static_cast<unsigned>(ceil_div(C, kBlock));
  if (dweight && packed && C <= 32 * kLaneColumns) {  // one pass, then the chunks' sums
    const int chunks = static_cast<int>(std::min<int64_t>(kFusedChunks, ceil_div(N, kRowsPerBlock * kRowsPerWarp)));
    layernorm_backward_kernel<X, K><<<chunks, kBlock, 0, stream>>>(dinp, scratch, dout, inp, weight, mean, rstd, N, C);
    DIXIE_CUDA_LAUNCHED();
    column_finish_kernel<true><<<finish_blocks, kBlock, 0, stream>>>(dweight, dbias, scratch, C, chunks);
    DIXIE_CUDA_LAUNCHED();
    return;
  }
  if (packed)
    layernorm_backward_input_kernel<X, K><<<row_blocks(N), kBlock, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, N, C);
  else
    layernorm_backward_input_kernel<X, 1><<<row_blocks(N), kBlock, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, N, C);
  DIXIE_CUDA_LAUNCHED();
  if (!dweight) return;  // a frozen LayerNorm
  column_partials<X, true>(scratch, dout, inp, mean, rstd, N, C, stream);
  column_finish_kernel<true><<<finish_blocks, kBlock, 0, stream>>>(dweight, dbias, scratch, C, kRowChunks);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void bias_backward(float* dbias, const X* dout, int N, int OC, float* scratch, cudaStream_t stream) {
  column_partials<X, false>(scratch, dout, nullptr, nullptr, nullptr, N, OC, stream);
  column_finish_kernel<false><<<static_cast<unsigned>(ceil_div(OC, kBlock)), kBlock, 0, stream>>>(nullptr, dbias, scratch, OC, kRowChunks);
  DIXIE_CUDA_LAUNCHED();
}

void add_column_sums(float* dbias, const float* sums, int OC, cudaStream_t stream) {
  column_finish_kernel<false><<<static_cast<unsigned>(ceil_div(OC, kBlock)), kBlock, 0, stream>>>(nullptr, dbias, sums, OC, 1);
  DIXIE_CUDA_LAUNCHED();
}

#define DIXIE_LAYERNORM_FOR(X)                                                                                      \
  template void layernorm_forward<X>(X*, float*, float*, const X*, const float*, const float*, int, int, cudaStream_t); \
  template void residual_layernorm_forward<X>(X*, X*, float*, float*, const X*, const X*, const float*, const float*,  \
                                              int, int, cudaStream_t);                                               \
  template void layernorm_backward<X>(X*, float*, float*, const X*, const X*, const float*, const float*,              \
                                      const float*, int, int, float*, cudaStream_t);                                 \
  template void bias_backward<X>(float*, const X*, int, int, float*, cudaStream_t);

DIXIE_LAYERNORM_FOR(float)
DIXIE_LAYERNORM_FOR(bf16)

}  // namespace dixie::cuda
