// Causal self-attention on the GPU, fused and flash-style: no [T, T] matrix is ever stored. Forward keeps an
// online softmax per query row and saves each row's log-sum-exp; backward recomputes the probabilities from it.
// Two implementations with one contract: bf16 tensor-core tiles (float32 softmax and accumulation) for mixed
// precision with head size 64 (every GPT-2), and float32 warp-per-row kernels for the float32 reference and any
// other head size up to 128. The tensor-core kernels multiply with mma.sync, or on Hopper with wgmma fed by TMA.
// Shapes: qkv [B, T, 3C] (q | k | v, head h at columns h*hs), out [B, T, C], lse [B, NH, T], hs = C / NH.
#pragma once
#include <string>

#include "common.cuh"

namespace dixie::cuda {

// Whether this backend can run attention for the shape; *why says why not.
bool attention_supported(int C, int NH, std::string* why);

// The tensor-core kernels: mma.sync (Ampere on), or Hopper's warpgroup wgmma with TMA loads by a producer warp.
enum class AttentionTiles { kMma, kWgmma };

// Whether the current device can run kWgmma: a build with sm_90a code (DIXIE_CUDA_SM90A) on compute capability 9.0.
bool wgmma_attention_available();

// out [B, T, C] and lse [B, NH, T] from qkv [B, T, 3C]; scale 1/sqrt(hs)
template <typename X>
void attention_forward(X* out, float* lse, const X* qkv, int B, int T, int C, int NH, AttentionTiles tiles,
                       cudaStream_t stream);

// dqkv [B, T, 3C] (overwritten) from dout [B, T, C] and the forward's qkv, out and lse. delta [B, NH, T]:
// scratch for rowsum(dout * out).
template <typename X>
void attention_backward(X* dqkv, float* delta, const X* dout, const X* qkv, const X* out, const float* lse, int B,
                        int T, int C, int NH, AttentionTiles tiles, cudaStream_t stream);

// Decoding: out [R, C] for R query rows (qkv [R, 3C]), row r attending to the cached keys/values
// 0..row_pos[r] of slot row_slot[r] in one layer's cache [slots, n_ctx, C].
template <typename X>
void attention_decode(X* out, const X* qkv, const X* k_cache, const X* v_cache, const int32_t* row_slot,
                      const int32_t* row_pos, int R, int C, int NH, int n_ctx, cudaStream_t stream);

}  // namespace dixie::cuda
