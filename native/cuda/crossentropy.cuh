// GPT-2's loss on the GPU: the softmax cross-entropy of the logits against the targets, its gradient, and the
// mean of the rows' losses. As in the CPU backend (native/cpu/kernels.h), the logits' gradient OVERWRITES them (in
// place); every reduction runs in a fixed order, so the results are the same on every run. X is the activation
// type: float (the float32 reference) or bf16 (mixed precision); losses are float32. Shapes: N rows (B*T), V
// vocabulary.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace dixie::cuda {

// Softmax cross-entropy of logits [N, V] (row stride ld, a whole number of 16-byte packs) against targets [N]:
// each row's loss [N]; with gradient, the logits then become dlogits = (softmax(logits) - onehot(targets)) * dloss,
// in the same pass (columns [V, ld) become 0), as training's backward needs them.
template <typename X>
void crossentropy_forward(float* losses, X* logits, int ld, const int32_t* targets, float dloss, bool gradient, int N,
                          int V, cudaStream_t stream);
// out[0] = mean of values[n], summed in double in a fixed order
void mean_of(float* out, const float* values, int n, cudaStream_t stream);

}  // namespace dixie::cuda
