// GPT-2's layers on the CPU: each a forward/backward pair of plain functions over flat float arrays.
// Shapes in the comments: B batch, T sequence, C channels, NH heads, V vocabulary, N = B*T rows.
// Gradient conventions: parameter gradients (dweight, dbias, dwte, dwpe) ACCUMULATE (+=), so micro-batches
// add up; activation gradients are OVERWRITTEN, except layernorm's dinp, which adds because a LayerNorm's
// input is the residual stream whose gradient already holds the pass-through of the residual connection.
// Every kernel is parallel over rows, heads or columns, never racing on an output.
//
// A parameter gradient is a sum over the batch's sequences, and every backward takes it as one fixed binary tree
// over the sequence index: each sequence's own sum over its T rows, then neighbours pairwise, then pairs of pairs
// (the leftovers of a count that is no power of two joined from the right). An aligned power-of-two run of
// sequences is therefore a subtree summed by itself: a rank of a data-parallel run holding such a run of the
// global batch computes exactly the subtree that one process over the whole batch does, and adding the ranks'
// sums pairwise completes the same tree, so the gradient is the same to the bit on any such split.
#pragma once
#include <cstdint>
#include <functional>

#include "core/dropout.h"
#include "thread_pool.h"

namespace dixie {

// Scratch for the weight-gradient products' tree over sequences: `levels` buffers of `level_floats` each.
struct TreeScratch {
  float* data = nullptr;
  int levels = 0;
  int64_t level_floats = 0;
};
// The floats of a TreeScratch for batches of up to max_batch sequences and gradients up to `widest` columns (Nc
// below), and the scratch laid over them.
int64_t tree_scratch_floats(int64_t max_batch, int64_t widest);
TreeScratch tree_scratch(float* data, int64_t max_batch, int64_t widest);

// dst[M, Nc] += alpha * sum over sequences s in [0, S) of A_s^T @ B_s, where A_s [T, M] and B_s [T, Nc]
// are rows [s T, (s + 1) T) of A (stride lda) and B (stride ldb): a weight's gradient. add_sequence(s, i0, rows, part),
// when given, adds more of sequence s to its partial sum of dst's rows [i0, i0 + rows), part [rows, Nc].
using SequenceAddend = std::function<void(int s, int64_t i0, int64_t rows, float* part)>;
void add_sequence_products(float* dst, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M,
                           int64_t Nc, int S, int64_t T, float alpha, const TreeScratch& scratch, ThreadPool& pool,
                           const SequenceAddend& add_sequence = nullptr);

// out[N, C] = wte[inp] + wpe[position]; inp [B, T]
void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T, int C, ThreadPool& pool);
// dwpe[T, C] += dout [B, T, C] summed over the batch. The token embedding's share (a scatter of dout by token) joins
// the head's gradient of the tied wte sequence by sequence: see add_token_rows.
void encoder_backward(float* dwpe, const float* dout, int B, int T, int C, ThreadPool& pool);
// part[rows, C] += the rows of dout [T, C] (one sequence) whose token in inp [T] lies in [v0, v0 + rows), in order
void add_token_rows(float* part, int64_t v0, int64_t rows, const float* dout, const int32_t* inp, int T, int C);

// out[N, C] = (inp - mean) * rstd * weight + bias (eps 1e-5); saves mean[N] and rstd[N] for backward (may be null)
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int C, ThreadPool& pool);
// dinp[N, C] +=, dweight[C] +=, dbias[C] += (dweight and dbias null together: a frozen LayerNorm); N = B * T
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int B, int64_t T, int C, ThreadPool& pool);

// out[N, OC] = inp[N, C] @ weight[C, OC] + bias[OC]  (bias may be null)
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int C, int OC,
                    ThreadPool& pool);
// dinp[N, C] = dout @ weight^T; dweight[C, OC] += inp^T @ dout; dbias[OC] += column sums of dout (each may be null);
// N = B * T
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp, const float* weight,
                     int B, int64_t T, int C, int OC, const TreeScratch& scratch, ThreadPool& pool);

// Causal self-attention, fused: qkv [B, T, 3C] -> out [B, T, C] with scale 1/sqrt(C/NH), never materialising the
// [T, T] scores (an online softmax over key blocks). lse [B, NH, T] keeps each row's log-sum-exp for backward.
void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH, ThreadPool& pool);
// dqkv[B, T, 3C] = gradient of the attention given dout [B, T, C] and the forward's qkv, out and lse.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse, int B,
                        int T, int C, int NH, ThreadPool& pool);

// tanh-approximation GELU, elementwise over n values
void gelu_forward(float* out, const float* inp, int64_t n, ThreadPool& pool);
// dinp[n] = gelu'(inp) * dout  (dinp may alias dout)
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n, ThreadPool& pool);

// out = a + b, elementwise (out may alias a or b)
void residual_forward(float* out, const float* a, const float* b, int64_t n, ThreadPool& pool);

// out[N, C] = inp * keep * mask.scale, or += when accumulating: LoRA's dropout, keep drawn by mask (core/dropout.h)
void dropout(float* out, const float* inp, int64_t N, int C, const DropoutMask& mask, bool accumulate, ThreadPool& pool);

// Softmax cross-entropy of logits [N, V] against targets [N]: writes probs [N, V] (probs may alias logits, the
// softmax then replaces the logits in place) and each row's loss to losses [N]; returns the mean loss.
float crossentropy_forward(float* probs, float* losses, const float* logits, const int32_t* targets, int64_t N, int V,
                           ThreadPool& pool);
// dlogits[N, V] = (probs - onehot(targets)) * dloss  (dlogits may alias probs)
void crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, int64_t N, int V, float dloss,
                           ThreadPool& pool);

}  // namespace dixie
