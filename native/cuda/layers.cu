#include "layers.cuh"

#include <cuda_fp16.h>

#include <stdexcept>

namespace dixie::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / 32;  // row kernels: one warp per row
constexpr int kRowChunks = 64;              // column reductions: partial sums over this many chunks of rows
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCube = 0.044715f;

unsigned row_blocks(int N) { return static_cast<unsigned>(ceil_div(N, kRowsPerBlock)); }

// ---- encoder ----

template <typename X>
__global__ void encoder_forward_kernel(X* out, const int32_t* tokens, const int32_t* pos, const float* wte,
                                       const float* wpe, int N, int T, int C) {
  const int64_t total = static_cast<int64_t>(N) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(i / C), c = static_cast<int>(i % C);
    const int p = pos ? pos[r] : r % T;
    out[i] = from_f32<X>(wte[static_cast<int64_t>(tokens[r]) * C + c] + wpe[static_cast<int64_t>(p) * C + c]);
  }
}

// grid (buckets, ceil(C / kBlock)): one token's rows summed in row order, per column
template <typename X>
__global__ void encoder_backward_wte_kernel(float* dwte, const X* dout, TokenBuckets buckets, int C) {
  const int b = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sum = 0.0f;
  for (int i = buckets.start[b]; i < buckets.start[b + 1]; ++i)
    sum += to_f32(dout[static_cast<int64_t>(buckets.rows[i]) * C + c]);
  dwte[static_cast<int64_t>(buckets.tokens[b]) * C + c] += sum;
}

template <typename X>
__global__ void encoder_backward_wpe_kernel(float* dwpe, const X* dout, int B, int T, int C) {
  const int64_t total = static_cast<int64_t>(T) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int b = 0; b < B; ++b) sum += to_f32(dout[static_cast<int64_t>(b) * T * C + i]);
    dwpe[i] += sum;
  }
}

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

// dinp += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd, dnorm = weight * dout. One warp per row, K
// elements per access; the second pass finds the row in L1.
template <typename X, int K>
__global__ void layernorm_backward_input_kernel(X* __restrict__ dinp, const X* __restrict__ dout,
                                                const X* __restrict__ inp, const float* __restrict__ weight,
                                                const float* mean, const float* rstd, int N, int C) {
  using P = Pack<X, K>;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t o = static_cast<int64_t>(row) * C;
  const P* g = reinterpret_cast<const P*>(dout + o);
  const P* x = reinterpret_cast<const P*>(inp + o);
  P* d = reinterpret_cast<P*>(dinp + o);
  const float m = mean[row], s = rstd[row];
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
  for (int p = lane; p < C / P::kN; p += 32) {
    const P gp = g[p], xp = x[p];
    P dp = d[p];
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      const float norm = (to_f32(xp.v[k]) - m) * s, dnorm = weight[p * P::kN + k] * to_f32(gp.v[k]);
      dp.v[k] = from_f32<X>(to_f32(dp.v[k]) + (dnorm - mean_dnorm - norm * mean_dnorm_norm) * s);
    }
    d[p] = dp;
  }
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
__global__ void column_finish_kernel(float* dweight, float* dbias, const float* partial, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int stride = LayerNorm ? 2 * C : C;
  float a = 0.0f, b = 0.0f;
  for (int k = 0; k < kRowChunks; ++k) {
    if (LayerNorm) a += partial[static_cast<int64_t>(k) * stride + c];
    b += partial[static_cast<int64_t>(k) * stride + (LayerNorm ? C : 0) + c];
  }
  if (LayerNorm) dweight[c] += a;
  dbias[c] += b;
}

// ---- gelu: elementwise, in 16-byte packs when the arrays allow (they do in the planned memory) ----

__device__ __forceinline__ float gelu(float x) {
  return 0.5f * x * (1.0f + tanhf(kGeluScale * (x + kGeluCube * x * x * x)));
}

__device__ __forceinline__ float gelu_grad(float x) {
  const float th = tanhf(kGeluScale * (x + kGeluCube * x * x * x));
  const float sech2 = 1.0f - th * th;
  return 0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * kGeluCube * x * x);
}

// K elements per item (a pack, or 1): item i covers elements [i K, (i + 1) K).
template <typename X, int K>
__global__ void gelu_forward_kernel(X* out, const X* inp, int64_t items) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (K == 1) {
      out[i] = from_f32<X>(gelu(to_f32(inp[i])));
    } else {
      Pack<X> p = reinterpret_cast<const Pack<X>*>(inp)[i];
#pragma unroll
      for (int k = 0; k < K; ++k) p.v[k] = from_f32<X>(gelu(to_f32(p.v[k])));
      reinterpret_cast<Pack<X>*>(out)[i] = p;
    }
  }
}

template <typename X, int K>
__global__ void gelu_backward_kernel(X* dinp, const X* inp, const X* dout, int64_t items) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (K == 1) {
      dinp[i] = from_f32<X>(gelu_grad(to_f32(inp[i])) * to_f32(dout[i]));
    } else {
      const Pack<X> x = reinterpret_cast<const Pack<X>*>(inp)[i];
      Pack<X> g = reinterpret_cast<const Pack<X>*>(dout)[i];
#pragma unroll
      for (int k = 0; k < K; ++k) g.v[k] = from_f32<X>(gelu_grad(to_f32(x.v[k])) * to_f32(g.v[k]));
      reinterpret_cast<Pack<X>*>(dinp)[i] = g;
    }
  }
}


// ---- cross-entropy: one block per row ----

constexpr int kRowBlock = 512;

// The rows are ld >= V apart, ld a multiple of the pack: the kernels read whole packs and skip (forward) or zero
// (backward) the pad columns past V.
template <typename X>
__global__ void __launch_bounds__(kRowBlock) crossentropy_forward_kernel(float* losses, float* lse, const X* logits,
                                                                         int ld, const int32_t* targets, int V) {
  using P = Pack<X>;
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  const X* x = logits + static_cast<int64_t>(row) * ld;
  // One pass over the row: each thread keeps a running maximum and the sum of exponentials below it.
  float m = -INFINITY, s = 0.0f;
  for (int p = threadIdx.x; p < ld / P::kN; p += blockDim.x) {
    const P v = reinterpret_cast<const P*>(x)[p];
    float f[P::kN], pack_max = -INFINITY;
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      f[k] = p * P::kN + k < V ? to_f32(v.v[k]) : -INFINITY;
      pack_max = fmaxf(pack_max, f[k]);
    }
    if (pack_max > m) {
      s *= expf(m - pack_max);  // expf(-inf) = 0 on the first pack
      m = pack_max;
    }
    if (m == -INFINITY) continue;  // a pack entirely past V
#pragma unroll
    for (int k = 0; k < P::kN; ++k) s += expf(f[k] - m);
  }
  const float row_max = block_max(m, scratch);
  const float row_sum = block_sum(m == -INFINITY ? 0.0f : s * expf(m - row_max), scratch);
  if (threadIdx.x == 0) {
    const float l = row_max + logf(row_sum);
    lse[row] = l;
    losses[row] = l - to_f32(x[targets[row]]);
  }
}

template <typename X>
__global__ void __launch_bounds__(kRowBlock) crossentropy_backward_kernel(X* logits, int ld, const float* lse,
                                                                          const int32_t* targets, float dloss, int V) {
  using P = Pack<X>;
  const int row = blockIdx.x;
  P* x = reinterpret_cast<P*>(logits + static_cast<int64_t>(row) * ld);
  const float l = lse[row];
  const int target = targets[row];
  for (int p = threadIdx.x; p < ld / P::kN; p += blockDim.x) {
    P v = x[p];
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      const int i = p * P::kN + k;
      v.v[k] = from_f32<X>(i < V ? (expf(to_f32(v.v[k]) - l) - (i == target ? 1.0f : 0.0f)) * dloss : 0.0f);
    }
    x[p] = v;
  }
}

__global__ void mean_kernel(float* out, const float* values, int n) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += values[i];
  s = block_sum_f64(s, scratch);
  if (threadIdx.x == 0) *out = static_cast<float>(s / n);
}

// ---- conversions and decoding helpers ----

__global__ void cast_to_bf16_kernel(bf16* dst, const float* src, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

template <typename X>
__global__ void rows_to_f32_kernel(float* dst, const X* src, int rows, int cols, int ld) {
  const int64_t total = static_cast<int64_t>(rows) * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    dst[i] = to_f32(src[r * ld + c]);
  }
}

template <typename X>
__global__ void kv_scatter_kernel(X* k_cache, X* v_cache, const X* qkv, const int32_t* row_slot,
                                  const int32_t* row_pos, int R, int C, int n_ctx) {
  const int64_t total = static_cast<int64_t>(R) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(i / C), c = static_cast<int>(i % C);
    const int64_t at = (static_cast<int64_t>(row_slot[r]) * n_ctx + row_pos[r]) * C + c;
    const X* row = qkv + static_cast<int64_t>(r) * 3 * C;
    k_cache[at] = row[C + c];
    v_cache[at] = row[2 * C + c];
  }
}

template <typename X>
__global__ void gather_rows_kernel(X* dst, const X* src, const int32_t* src_rows, const int32_t* dst_rows, int n,
                                   int C) {
  const int64_t total = static_cast<int64_t>(n) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int k = static_cast<int>(i / C), c = static_cast<int>(i % C);
    dst[static_cast<int64_t>(dst_rows[k]) * C + c] = src[static_cast<int64_t>(src_rows[k]) * C + c];
  }
}

// ---- 8-bit weights ----

constexpr int kQ8Warps = 8;  // outputs per block of q8_matvec

__device__ __forceinline__ float f16_bits_to_f32(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }

// A warp per output j: each lane takes 8 weights at a time (a quarter of a block), the warp 256 consecutive ones,
// and the 8 inputs of each row beside them (one 16-byte or 32-byte pack when kPacked: C a multiple of 8 and inp
// aligned).
template <typename X, bool kPacked>
__global__ void q8_matvec_kernel(X* out, const X* inp, const int8_t* q, const uint16_t* d, const X* bias, int R, int C,
                                 int ldq, int OC) {
  const int lane = threadIdx.x % 32, j = blockIdx.x * kQ8Warps + threadIdx.x / 32;
  if (j >= OC) return;
  const int8_t* qj = q + static_cast<int64_t>(j) * ldq;
  const uint16_t* dj = d + static_cast<int64_t>(j) * (ldq / 32);
  float acc[kQ8MatvecRows] = {};
  for (int k = lane * 8; k < C; k += 32 * 8) {
    const int2 packed = *reinterpret_cast<const int2*>(qj + k);
    const int8_t* w = reinterpret_cast<const int8_t*>(&packed);
    const float scale = f16_bits_to_f32(dj[k / 32]);
#pragma unroll
    for (int r = 0; r < kQ8MatvecRows; ++r) {
      if (r >= R) break;
      const X* x = inp + static_cast<int64_t>(r) * C + k;
      float sum = 0.0f;
      if constexpr (kPacked) {
        const Pack<X, 8> v = *reinterpret_cast<const Pack<X, 8>*>(x);
#pragma unroll
        for (int i = 0; i < 8; ++i) sum = fmaf(static_cast<float>(w[i]), to_f32(v.v[i]), sum);
      } else {
        for (int i = 0; i < 8 && k + i < C; ++i) sum = fmaf(static_cast<float>(w[i]), to_f32(x[i]), sum);
      }
      acc[r] = fmaf(scale, sum, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < kQ8MatvecRows; ++r) {
    if (r >= R) break;
    const float total = warp_sum(acc[r]);
    if (lane == 0) out[static_cast<int64_t>(r) * OC + j] = from_f32<X>(total + (bias ? to_f32(bias[j]) : 0.0f));
  }
}

template <typename X>
__global__ void q8_dequantize_kernel(X* w, const int8_t* q, const uint16_t* d, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    w[i] = from_f32<X>(static_cast<float>(q[i]) * f16_bits_to_f32(d[i / 32]));  // ldq is a multiple of 32
}

// ---- optimizer: one block per span ----

__global__ void grad_square_sums_kernel(double* partials, const float* grads, const DeviceSpan* spans) {
  __shared__ double scratch[32];
  const DeviceSpan s = spans[blockIdx.x];
  float acc = 0.0f;
  if (s.trainable) {
    const float* g = grads + s.offset;
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
      const float g = grads[i] * mult;
      float p = params[i];
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
      params[i] = p;
      if (params_lp) params_lp[i] = __float2bfloat16_rn(p);
    }
    grads[i] = 0.0f;
  }
}

}  // namespace

template <typename X>
void encoder_forward(X* out, const int32_t* tokens, const int32_t* pos, const float* wte, const float* wpe, int N,
                     int T, int C, cudaStream_t stream) {
  encoder_forward_kernel<<<grid_for(static_cast<int64_t>(N) * C, kBlock), kBlock, 0, stream>>>(out, tokens, pos, wte,
                                                                                               wpe, N, T, C);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void encoder_backward(float* dwte, float* dwpe, const X* dout, const TokenBuckets& buckets, int B, int T, int C,
                      cudaStream_t stream) {
  if (buckets.count > 0) {
    const dim3 grid(static_cast<unsigned>(buckets.count), static_cast<unsigned>(ceil_div(C, kBlock)));
    encoder_backward_wte_kernel<<<grid, kBlock, 0, stream>>>(dwte, dout, buckets, C);
    DIXIE_CUDA_LAUNCHED();
  }
  encoder_backward_wpe_kernel<<<grid_for(static_cast<int64_t>(T) * C, kBlock), kBlock, 0, stream>>>(dwpe, dout, B, T, C);
  DIXIE_CUDA_LAUNCHED();
}

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

size_t layernorm_scratch_floats(int C) { return static_cast<size_t>(kRowChunks) * 2 * C; }
size_t bias_scratch_floats(int OC) { return static_cast<size_t>(kRowChunks) * OC; }

template <typename X>
void layernorm_backward(X* dinp, float* dweight, float* dbias, const X* dout, const X* inp, const float* weight,
                        const float* mean, const float* rstd, int N, int C, float* scratch, cudaStream_t stream) {
  constexpr int K = Pack<X>::kN;
  if (packable<X>(C, {dinp, dout, inp}))
    layernorm_backward_input_kernel<X, K><<<row_blocks(N), kBlock, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, N, C);
  else
    layernorm_backward_input_kernel<X, 1><<<row_blocks(N), kBlock, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, N, C);
  DIXIE_CUDA_LAUNCHED();
  column_partials<X, true>(scratch, dout, inp, mean, rstd, N, C, stream);
  column_finish_kernel<true><<<static_cast<unsigned>(ceil_div(C, kBlock)), kBlock, 0, stream>>>(dweight, dbias, scratch, C);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void bias_backward(float* dbias, const X* dout, int N, int OC, float* scratch, cudaStream_t stream) {
  column_partials<X, false>(scratch, dout, nullptr, nullptr, nullptr, N, OC, stream);
  column_finish_kernel<false><<<static_cast<unsigned>(ceil_div(OC, kBlock)), kBlock, 0, stream>>>(nullptr, dbias, scratch, OC);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void gelu_forward(X* out, const X* inp, int64_t n, cudaStream_t stream) {
  constexpr int K = Pack<X>::kN;
  if (packable<X>(n, {out, inp})) gelu_forward_kernel<X, K><<<grid_for(n / K, kBlock), kBlock, 0, stream>>>(out, inp, n / K);
  else gelu_forward_kernel<X, 1><<<grid_for(n, kBlock), kBlock, 0, stream>>>(out, inp, n);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void gelu_backward(X* dinp, const X* inp, const X* dout, int64_t n, cudaStream_t stream) {
  constexpr int K = Pack<X>::kN;
  if (packable<X>(n, {dinp, inp, dout}))
    gelu_backward_kernel<X, K><<<grid_for(n / K, kBlock), kBlock, 0, stream>>>(dinp, inp, dout, n / K);
  else gelu_backward_kernel<X, 1><<<grid_for(n, kBlock), kBlock, 0, stream>>>(dinp, inp, dout, n);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void crossentropy_forward(float* losses, float* lse, const X* logits, int ld, const int32_t* targets, int N, int V,
                          cudaStream_t stream) {
  if (!packable<X>(ld, {logits})) throw std::logic_error("crossentropy: logits rows must be 16-byte packs");
  crossentropy_forward_kernel<<<N, kRowBlock, 0, stream>>>(losses, lse, logits, ld, targets, V);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void crossentropy_backward(X* logits, int ld, const float* lse, const int32_t* targets, float dloss, int N, int V,
                           cudaStream_t stream) {
  if (!packable<X>(ld, {logits})) throw std::logic_error("crossentropy: logits rows must be 16-byte packs");
  crossentropy_backward_kernel<<<N, kRowBlock, 0, stream>>>(logits, ld, lse, targets, dloss, V);
  DIXIE_CUDA_LAUNCHED();
}

void mean_of(float* out, const float* values, int n, cudaStream_t stream) {
  mean_kernel<<<1, 1024, 0, stream>>>(out, values, n);
  DIXIE_CUDA_LAUNCHED();
}

void cast_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_to_bf16_kernel<<<grid_for(static_cast<int64_t>(n), kBlock), kBlock, 0, stream>>>(dst, src, n);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void rows_to_f32(float* dst, const X* src, int rows, int cols, int ld, cudaStream_t stream) {
  rows_to_f32_kernel<<<grid_for(static_cast<int64_t>(rows) * cols, kBlock), kBlock, 0, stream>>>(dst, src, rows, cols, ld);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void kv_scatter(X* k_cache, X* v_cache, const X* qkv, const int32_t* row_slot, const int32_t* row_pos, int R, int C,
                int n_ctx, cudaStream_t stream) {
  kv_scatter_kernel<<<grid_for(static_cast<int64_t>(R) * C, kBlock), kBlock, 0, stream>>>(k_cache, v_cache, qkv, row_slot,
                                                                                          row_pos, R, C, n_ctx);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void gather_rows(X* dst, const X* src, const int32_t* src_rows, const int32_t* dst_rows, int n, int C,
                 cudaStream_t stream) {
  if (n == 0) return;
  gather_rows_kernel<<<grid_for(static_cast<int64_t>(n) * C, kBlock), kBlock, 0, stream>>>(dst, src, src_rows, dst_rows, n, C);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void q8_matvec(X* out, const X* inp, const int8_t* q, const uint16_t* d, const X* bias, int R, int C, int ldq, int OC,
               cudaStream_t stream) {
  if (R < 1 || R > kQ8MatvecRows) throw std::logic_error("q8_matvec: " + std::to_string(R) + " rows");
  const unsigned grid = static_cast<unsigned>(ceil_div(OC, kQ8Warps));
  if (C % 8 == 0 && reinterpret_cast<uintptr_t>(inp) % (8 * sizeof(X)) == 0)
    q8_matvec_kernel<X, true><<<grid, 32 * kQ8Warps, 0, stream>>>(out, inp, q, d, bias, R, C, ldq, OC);
  else
    q8_matvec_kernel<X, false><<<grid, 32 * kQ8Warps, 0, stream>>>(out, inp, q, d, bias, R, C, ldq, OC);
  DIXIE_CUDA_LAUNCHED();
}

template <typename X>
void q8_dequantize(X* w, const int8_t* q, const uint16_t* d, int OC, int ldq, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(OC) * ldq;
  q8_dequantize_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(w, q, d, n);
  DIXIE_CUDA_LAUNCHED();
}

void grad_square_sums(double* partials, const float* grads, const DeviceSpan* spans, int n_spans, cudaStream_t stream) {
  grad_square_sums_kernel<<<n_spans, kBlock, 0, stream>>>(partials, grads, spans);
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

#define DIXIE_LAYERS_FOR(X)                                                                                         \
  template void encoder_forward<X>(X*, const int32_t*, const int32_t*, const float*, const float*, int, int, int,      \
                                   cudaStream_t);                                                                    \
  template void encoder_backward<X>(float*, float*, const X*, const TokenBuckets&, int, int, int, cudaStream_t);       \
  template void layernorm_forward<X>(X*, float*, float*, const X*, const float*, const float*, int, int, cudaStream_t); \
  template void residual_layernorm_forward<X>(X*, X*, float*, float*, const X*, const X*, const float*, const float*,  \
                                              int, int, cudaStream_t);                                               \
  template void layernorm_backward<X>(X*, float*, float*, const X*, const X*, const float*, const float*,              \
                                      const float*, int, int, float*, cudaStream_t);                                 \
  template void bias_backward<X>(float*, const X*, int, int, float*, cudaStream_t);                                    \
  template void gelu_forward<X>(X*, const X*, int64_t, cudaStream_t);                                                  \
  template void gelu_backward<X>(X*, const X*, const X*, int64_t, cudaStream_t);                                       \
  template void crossentropy_forward<X>(float*, float*, const X*, int, const int32_t*, int, int, cudaStream_t);        \
  template void crossentropy_backward<X>(X*, int, const float*, const int32_t*, float, int, int, cudaStream_t);        \
  template void rows_to_f32<X>(float*, const X*, int, int, int, cudaStream_t);                                         \
  template void kv_scatter<X>(X*, X*, const X*, const int32_t*, const int32_t*, int, int, int, cudaStream_t);           \
  template void gather_rows<X>(X*, const X*, const int32_t*, const int32_t*, int, int, cudaStream_t);              \
  template void q8_matvec<X>(X*, const X*, const int8_t*, const uint16_t*, const X*, int, int, int, int, cudaStream_t); \
  template void q8_dequantize<X>(X*, const int8_t*, const uint16_t*, int, int, cudaStream_t);

DIXIE_LAYERS_FOR(float)
DIXIE_LAYERS_FOR(bf16)

}  // namespace dixie::cuda
