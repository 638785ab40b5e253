// Single-precision matrix multiply, the one routine that carries nearly all of GPT-2's FLOPs.
// Row-major: C[M, N] = alpha * op(A)[M, K] @ op(B)[K, N] + beta * C, where op(X) is X or X^T.
// lda/ldb/ldc are row strides in elements of the matrices as stored (before op).
#pragma once
#include <cstdint>

#include "thread_pool.h"

namespace dixie {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool& pool);

// Whether sgemm sums the K products of each element of an M-row C in one pass, so that with beta 1 it adds the
// finished alpha * sum to C: to the bit what computing the product apart and adding it would give.
bool sgemm_one_pass(int64_t M, int64_t K);

}  // namespace dixie
