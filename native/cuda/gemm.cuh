// Matrix products on the GPU: cuBLASLt when it can be loaded (tensor cores, tuned per shape), otherwise our
// own kernels: bf16 tensor-core tiles (mma.sync m16n8k16, float32 accumulation) in mixed precision, plain
// float32 tiles for the float32 reference. DIXIE_CUBLAS=0 in the environment forces our kernels, so that
// both paths can be checked on one machine.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "common.cuh"
#include "cublaslt.h"

namespace dixie::cuda {

class Gemm {
 public:
  explicit Gemm(cudaStream_t stream);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // Which path runs the products, for the device description.
  std::string describe() const;

  // What happens to the product before it is stored (GELU is GPT-2's tanh approximation): kGelu keeps the
  // product (+ bias) in aux and stores its GELU in C; kGeluGrad multiplies the product by gelu'(aux), aux as
  // kGelu stored it. Both need contiguous rows (ldc == N) and no accumulate. cuBLASLt fuses them into the
  // product; elsewhere they run as a pass of their own.
  enum class Activation { kNone, kGelu, kGeluGrad };

  // Row-major C[M, N] = alpha * op(A)[M, K] @ op(B)[K, N] (+ bias[N]) (+ C when accumulate), op(X) = X^T when
  // the flag is set; lda/ldb/ldc are the row strides of the matrices as stored. In/Out: float/float (float32
  // arithmetic), bf16/bf16 or bf16/float (bf16 products, float32 accumulation).
  template <typename In, typename Out>
  void matmul(bool trans_a, bool trans_b, int M, int N, int K, const In* A, int lda, const In* B, int ldb, Out* C,
              int ldc, const In* bias, bool accumulate, Activation act = Activation::kNone, Out* aux = nullptr,
              float alpha = 1.0f);

  // Row-major C[M, N] += op(A)[M, K] @ B[K, N] (float32 C) and column_sums[N] = B's column sums over K, in one
  // cuBLASLt product (its BGRADA epilogue): a linear layer's weight gradient and its bias's from one read of the
  // output's gradient. False, with nothing done, where cuBLASLt is not used or has no kernel for it.
  template <typename In>
  bool matmul_column_sums(bool trans_a, int M, int N, int K, const In* A, int lda, const In* B, int ldb, float* C,
                          int ldc, float* column_sums);

 private:
  struct Plan;
  using Key = std::tuple<int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int>;

  // Our kernels: float32 tiles, or bf16 tensor-core tiles.
  void own_kernel(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                  float* C, int ldc, const float* bias, bool accumulate, float alpha);
  template <typename Out>
  void own_kernel(bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb,
                  Out* C, int ldc, const bf16* bias, bool accumulate, float alpha);
  // The product on cuBLASLt with this epilogue (lt::kEpilogue...; bias, of bias_size bytes an element, is its bias
  // input or the bias gradient's output), where cuBLASLt is used and has a kernel for it; false, with nothing done,
  // elsewhere.
  template <typename In, typename Out>
  bool lt_matmul(bool trans_a, bool trans_b, int M, int N, int K, const In* A, int lda, const In* B, int ldb, Out* C,
                 int ldc, uint32_t epilogue, const void* bias, size_t bias_size, Out* aux, bool accumulate, float alpha);
  Plan* plan_for(const Key& key, bool trans_a, bool trans_b, int M, int N, int K, int lda, int ldb, int ldc,
                 cudaDataType_t in_type, cudaDataType_t out_type, uint32_t epilogue, const void* bias, const void* aux,
                 const int align[4]);

  cudaStream_t stream_;
  const lt::Api* api_ = nullptr;
  lt::Handle handle_ = nullptr;
  std::string why_not_;  // why cuBLASLt is not used, when it is not
  DeviceArray<unsigned char> workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace dixie::cuda
