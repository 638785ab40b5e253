// cuBLASLt, loaded at run time (dlopen) rather than linked: the addon then builds where the CUDA toolkit has
// no cuBLAS and loads where there is no driver at all. Only what the backend calls is declared here, with the
// enum values of cuBLASLt's public header (cublasLt.h / cublas_api.h, stable across CUDA 11-13): the opaque
// handles are pointers, the attributes plain integers.
#pragma once
#include <cuda_runtime_api.h>
#include <library_types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace dixie::cuda {

namespace lt {

using Status = int;  // cublasStatus_t
constexpr Status kSuccess = 0;

using Handle = struct cublasLtContext*;
using MatmulDesc = struct cublasLtMatmulDescOpaque*;
using MatrixLayout = struct cublasLtMatrixLayoutOpaque*;
using MatmulPreference = struct cublasLtMatmulPreferenceOpaque*;

struct MatmulAlgo {
  uint64_t data[8];
};

struct HeuristicResult {  // cublasLtMatmulHeuristicResult_t
  MatmulAlgo algo;
  size_t workspace_size;
  Status state;
  float waves_count;
  int reserved[4];
};

// cublasComputeType_t
constexpr int kCompute32F = 68;  // CUBLAS_COMPUTE_32F: float32 arithmetic (no TF32), bf16 inputs widened
// cublasOperation_t
constexpr int kOpN = 0;
constexpr int kOpT = 1;
// cublasLtMatmulDescAttributes_t
constexpr int kDescTransA = 3;
constexpr int kDescTransB = 4;
constexpr int kDescEpilogue = 7;
constexpr int kDescBiasPointer = 8;
constexpr int kDescEpilogueAuxPointer = 11;
constexpr int kDescEpilogueAuxLd = 12;
// cublasLtEpilogue_t (GELU is the tanh approximation, as GPT-2's)
constexpr uint32_t kEpilogueDefault = 1;
constexpr uint32_t kEpilogueBias = 4;
constexpr uint32_t kEpilogueGeluAux = 160;      // D = gelu(AB), aux = AB
constexpr uint32_t kEpilogueGeluAuxBias = 164;  // D = gelu(AB + bias), aux = AB + bias
constexpr uint32_t kEpilogueDGelu = 192;        // D = AB * gelu'(aux)
constexpr uint32_t kEpilogueBGradA = 256;       // D = AB, bias = A's sums over k (the bias gradient)
// cublasLtMatmulPreferenceAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1;
constexpr int kPrefMinAlignmentA = 5;
constexpr int kPrefMinAlignmentB = 6;
constexpr int kPrefMinAlignmentC = 7;
constexpr int kPrefMinAlignmentD = 8;

// The entry points, resolved by name from the library.
struct Api {
  Status (*create)(Handle*);
  Status (*destroy)(Handle);
  size_t (*get_version)();
  Status (*matmul_desc_create)(MatmulDesc*, int compute_type, cudaDataType_t scale_type);
  Status (*matmul_desc_destroy)(MatmulDesc);
  Status (*matmul_desc_set_attribute)(MatmulDesc, int attr, const void* buf, size_t size);
  Status (*matrix_layout_create)(MatrixLayout*, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld);
  Status (*matrix_layout_destroy)(MatrixLayout);
  Status (*preference_create)(MatmulPreference*);
  Status (*preference_destroy)(MatmulPreference);
  Status (*preference_set_attribute)(MatmulPreference, int attr, const void* buf, size_t size);
  Status (*algo_get_heuristic)(Handle, MatmulDesc, MatrixLayout a, MatrixLayout b, MatrixLayout c, MatrixLayout d,
                               MatmulPreference, int requested, HeuristicResult* results, int* returned);
  Status (*matmul)(Handle, MatmulDesc, const void* alpha, const void* a, MatrixLayout a_desc, const void* b,
                   MatrixLayout b_desc, const void* beta, const void* c, MatrixLayout c_desc, void* d,
                   MatrixLayout d_desc, const MatmulAlgo* algo, void* workspace, size_t workspace_size,
                   cudaStream_t stream);
};

// The loaded library, or null with the reason in *why. Tries $DIXIE_CUBLASLT (a path) first, then the
// sonames of CUDA 13 and 12. The library stays loaded for the life of the process.
const Api* load(std::string* why);

}  // namespace lt

}  // namespace dixie::cuda
