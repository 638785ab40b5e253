#include "gemm.cuh"

#include <cstdlib>
#include <cstring>

#include "gelu.cuh"

namespace dixie::cuda {

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt's split-K and stream-K scratch (32 MiB, as for Hopper)

template <typename T>
cudaDataType_t data_type();
template <>
cudaDataType_t data_type<float>() { return CUDA_R_32F; }
template <>
cudaDataType_t data_type<bf16>() { return CUDA_R_16BF; }

// The largest power of two (up to 256) that divides the address and the row stride in bytes: what every row
// of the matrix is aligned to.
int alignment(const void* p, int64_t ld_elems, size_t elem) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  const uint64_t stride = static_cast<uint64_t>(ld_elems) * elem;
  int a = 256;
  while (a > 1 && ((addr % a) != 0 || (stride % a) != 0)) a /= 2;
  return a;
}

// ---- our float32 kernel: 64x64 tiles, 16x16 threads with 4x4 outputs each ----

constexpr int kSTile = 64, kSK = 16;

// C[M, N] = alpha op(A) op(B) (+ bias) (+ C). TA: A is stored [K, M]; TB: B is stored [N, K].
template <bool TA, bool TB>
__global__ void __launch_bounds__(256) sgemm_kernel(int M, int N, int K, const float* __restrict__ A, int lda,
                                                    const float* __restrict__ B, int ldb, float* C, int ldc,
                                                    const float* __restrict__ bias, bool accumulate, float alpha) {
  __shared__ float As[kSK][kSTile + 4];  // As[k][m]
  __shared__ float Bs[kSK][kSTile + 4];  // Bs[k][n]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.y * kSTile, n0 = blockIdx.x * kSTile;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kSK) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = tid + i * 256;
      // consecutive threads read consecutive addresses in either storage order
      const int am = TA ? e % kSTile : e / kSK, ak = TA ? e / kSTile : e % kSK;
      const int gm = m0 + am, gk = k0 + ak;
      As[ak][am] = (gm < M && gk < K) ? (TA ? A[static_cast<int64_t>(gk) * lda + gm] : A[static_cast<int64_t>(gm) * lda + gk]) : 0.0f;
      const int bn = TB ? e / kSK : e % kSTile, bk = TB ? e % kSK : e / kSTile;
      const int gn = n0 + bn, gk2 = k0 + bk;
      Bs[bk][bn] = (gn < N && gk2 < K) ? (TB ? B[static_cast<int64_t>(gn) * ldb + gk2] : B[static_cast<int64_t>(gk2) * ldb + gn]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kSK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[k][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty * 4 + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tx * 4 + j;
      if (n >= N) continue;
      float v = alpha * acc[i][j];
      if (bias) v += bias[n];
      float* c = C + static_cast<int64_t>(m) * ldc + n;
      if (accumulate) v += *c;
      *c = v;
    }
  }
}

// ---- our bf16 tensor-core kernel: 128x128x32 tiles, 8 warps of 64x32, mma.sync.m16n8k16 ----
//
// Fragment layouts of mma.m16n8k16 (PTX ISA), with g = lane / 4 and t = lane % 4:
//   A (16x16, row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8, col):  b0 = (k = 2t..2t+1, n = g), b1 = (k = 2t+8..2t+9, n = g)
//   C (16x8 f32):   c0, c1 = (g, 2t), (g, 2t+1); c2, c3 = (g+8, 2t), (g+8, 2t+1)
// Both operands are staged in shared memory with k contiguous (As[m][k], Bs[n][k]), so every fragment
// register is one 32-bit load. Rows are padded to 40 elements: the 32 lanes of a fragment load then hit 32
// different banks.

constexpr int kBM = 128, kBN = 128, kBK = 32, kLd = kBK + 8;

__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// tile[r][k] = X_op[r0 + r][k0 + k] for r < 128, k < 32 (zero outside rows < R, k < Kd). Transposed: X is stored
// [Kd, R] (element (r, k) at X[k * ld + r]); otherwise [R, Kd] (at X[r * ld + k]). vec: X and ld allow 16-byte
// loads (8 elements).
template <bool Transposed>
__device__ __forceinline__ void load_tile(bf16* tile, const bf16* __restrict__ X, int ld, int r0, int k0, int R,
                                          int Kd, bool vec) {
  const int tid = threadIdx.x;
  const bf16 zero = __float2bfloat16_rn(0.0f);
  if (!Transposed) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int c = tid + i * 256;  // 512 chunks of 8: 128 rows x 4 chunks
      const int r = c / 4, kc = (c % 4) * 8;
      const int gr = r0 + r, gk = k0 + kc;
      bf16* dst = tile + r * kLd + kc;
      if (vec && gr < R && gk + 8 <= Kd) {
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(X + static_cast<int64_t>(gr) * ld + gk);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) dst[j] = (gr < R && gk + j < Kd) ? X[static_cast<int64_t>(gr) * ld + gk + j] : zero;
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int c = tid + i * 256;  // 512 chunks of 8: 32 k x 16 chunks of rows
      const int k = c / 16, rc = (c % 16) * 8;
      const int gk = k0 + k, gr = r0 + rc;
      if (vec && gk < Kd && gr + 8 <= R) {
        const uint4 v = *reinterpret_cast<const uint4*>(X + static_cast<int64_t>(gk) * ld + gr);
        const bf16* e = reinterpret_cast<const bf16*>(&v);
#pragma unroll
        for (int j = 0; j < 8; ++j) tile[(rc + j) * kLd + k] = e[j];
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j)
          tile[(rc + j) * kLd + k] = (gk < Kd && gr + j < R) ? X[static_cast<int64_t>(gk) * ld + gr + j] : zero;
      }
    }
  }
}

template <bool TA, bool TB, typename Out>
__global__ void __launch_bounds__(256) gemm_bf16_kernel(int M, int N, int K, const bf16* __restrict__ A, int lda,
                                                        const bf16* __restrict__ B, int ldb, Out* C, int ldc,
                                                        const bf16* __restrict__ bias, bool accumulate, float alpha,
                                                        bool vec_a, bool vec_b) {
  __shared__ __align__(16) bf16 As[kBM * kLd];
  __shared__ __align__(16) bf16 Bs[kBN * kLd];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t = lane % 4;
  const int wm = warp / 4, wn = warp % 4;  // this warp's 64x32 piece of the 128x128 tile
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  for (int k0 = 0; k0 < K; k0 += kBK) {
    load_tile<TA>(As, A, lda, m0, k0, M, K, vec_a);   // As[m][k] = op(A)[m0 + m][k0 + k]
    load_tile<!TB>(Bs, B, ldb, n0, k0, N, K, vec_b);  // Bs[n][k] = op(B)[k0 + k][n0 + n]
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 16) {
      uint32_t a[4][4], b[4][2];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        const bf16* p = As + (wm * 64 + mt * 16 + g) * kLd + ks + 2 * t;
        a[mt][0] = ld32(p);
        a[mt][1] = ld32(p + 8 * kLd);
        a[mt][2] = ld32(p + 8);
        a[mt][3] = ld32(p + 8 * kLd + 8);
      }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const bf16* p = Bs + (wn * 32 + nt * 8 + g) * kLd + ks + 2 * t;
        b[nt][0] = ld32(p);
        b[nt][1] = ld32(p + 8);
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) mma_bf16(acc[mt][nt], a[mt], b[nt]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int m = m0 + wm * 64 + mt * 16 + g + 8 * half;
      if (m >= M) continue;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int n = n0 + wn * 32 + nt * 8 + 2 * t + j;
          if (n >= N) continue;
          float v = alpha * acc[mt][nt][2 * half + j];
          if (bias) v += __bfloat162float(bias[n]);
          Out* c = C + static_cast<int64_t>(m) * ldc + n;
          if (accumulate) v += to_f32(*c);
          *c = from_f32<Out>(v);
        }
      }
    }
  }
}

bool vec16(const bf16* p, int ld) { return (reinterpret_cast<uintptr_t>(p) % 16) == 0 && ld % 8 == 0; }

}  // namespace

// ---- cuBLASLt plans: descriptors and the chosen algorithm, made once per shape ----

struct Gemm::Plan {
  const lt::Api* api = nullptr;
  lt::MatmulDesc desc = nullptr;
  lt::MatrixLayout a = nullptr, b = nullptr, c = nullptr;
  lt::MatmulAlgo algo{};
  bool usable = false;  // cuBLASLt offered an algorithm for this shape
  ~Plan() {
    if (c) api->matrix_layout_destroy(c);
    if (b) api->matrix_layout_destroy(b);
    if (a) api->matrix_layout_destroy(a);
    if (desc) api->matmul_desc_destroy(desc);
  }
};

Gemm::Gemm(cudaStream_t stream) : stream_(stream) {
  const char* env = std::getenv("DIXIE_CUBLAS");
  if (env && std::strcmp(env, "0") == 0) {
    why_not_ = "DIXIE_CUBLAS=0";
    return;
  }
  const lt::Api* api = lt::load(&why_not_);
  if (!api) return;
  workspace_.allocate(kWorkspaceBytes, "cuBLASLt workspace");
  if (api->create(&handle_) != lt::kSuccess) {
    why_not_ = "cublasLtCreate failed";
    workspace_ = DeviceArray<unsigned char>();
    return;
  }
  api_ = api;
}

Gemm::~Gemm() {
  plans_.clear();
  if (api_) api_->destroy(handle_);
}

std::string Gemm::describe() const {
  if (api_) return "cuBLASLt " + std::to_string(api_->get_version());
  return "own GEMM kernels (" + why_not_ + ")";
}

Gemm::Plan* Gemm::plan_for(const Key& key, bool trans_a, bool trans_b, int M, int N, int K, int lda, int ldb, int ldc,
                           cudaDataType_t in_type, cudaDataType_t out_type, uint32_t epilogue, const void* bias,
                           const void* aux, const int align[4]) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();
  auto plan = std::make_unique<Plan>();
  plan->api = api_;
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's A is our B and its B our A,
  // with m = N, n = M. Layouts describe the matrices as stored.
  const int op_a = trans_b ? lt::kOpT : lt::kOpN;
  const int op_b = trans_a ? lt::kOpT : lt::kOpN;
  bool ok = api_->matmul_desc_create(&plan->desc, lt::kCompute32F, CUDA_R_32F) == lt::kSuccess &&
            api_->matmul_desc_set_attribute(plan->desc, lt::kDescTransA, &op_a, sizeof(op_a)) == lt::kSuccess &&
            api_->matmul_desc_set_attribute(plan->desc, lt::kDescTransB, &op_b, sizeof(op_b)) == lt::kSuccess &&
            api_->matmul_desc_set_attribute(plan->desc, lt::kDescEpilogue, &epilogue, sizeof(epilogue)) == lt::kSuccess &&
            api_->matrix_layout_create(&plan->a, in_type, trans_b ? K : N, trans_b ? N : K, ldb) == lt::kSuccess &&
            api_->matrix_layout_create(&plan->b, in_type, trans_a ? M : K, trans_a ? K : M, lda) == lt::kSuccess &&
            api_->matrix_layout_create(&plan->c, out_type, N, M, ldc) == lt::kSuccess;
  // The heuristic reads the bias and aux pointers' alignment from the descriptor (the key holds them).
  if (ok && bias) ok = api_->matmul_desc_set_attribute(plan->desc, lt::kDescBiasPointer, &bias, sizeof(bias)) == lt::kSuccess;
  if (ok && aux) {
    const int64_t aux_ld = ldc;  // aux is laid out as C
    ok = api_->matmul_desc_set_attribute(plan->desc, lt::kDescEpilogueAuxPointer, &aux, sizeof(aux)) == lt::kSuccess &&
         api_->matmul_desc_set_attribute(plan->desc, lt::kDescEpilogueAuxLd, &aux_ld, sizeof(aux_ld)) == lt::kSuccess;
  }
  if (ok) {
    lt::MatmulPreference pref = nullptr;
    ok = api_->preference_create(&pref) == lt::kSuccess;
    const uint64_t ws = workspace_.bytes();
    const uint32_t aa = align[1], ab = align[0], ac = align[2];  // cuBLASLt's A is our B
    if (ok) {
      ok = api_->preference_set_attribute(pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof(ws)) == lt::kSuccess &&
           api_->preference_set_attribute(pref, lt::kPrefMinAlignmentA, &aa, sizeof(aa)) == lt::kSuccess &&
           api_->preference_set_attribute(pref, lt::kPrefMinAlignmentB, &ab, sizeof(ab)) == lt::kSuccess &&
           api_->preference_set_attribute(pref, lt::kPrefMinAlignmentC, &ac, sizeof(ac)) == lt::kSuccess &&
           api_->preference_set_attribute(pref, lt::kPrefMinAlignmentD, &ac, sizeof(ac)) == lt::kSuccess;
      lt::HeuristicResult result{};
      int found = 0;
      if (ok && api_->algo_get_heuristic(handle_, plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1, &result,
                                         &found) == lt::kSuccess &&
          found > 0 && result.state == lt::kSuccess && result.workspace_size <= ws) {
        plan->algo = result.algo;
        plan->usable = true;
      }
      api_->preference_destroy(pref);
    }
  }
  Plan* p = plan.get();
  plans_.emplace(key, std::move(plan));
  return p;
}

template <typename In, typename Out>
bool Gemm::lt_matmul(bool trans_a, bool trans_b, int M, int N, int K, const In* A, int lda, const In* B, int ldb, Out* C,
                     int ldc, uint32_t epilogue, const void* bias, size_t bias_size, Out* aux, bool accumulate,
                     float alpha) {
  if (!api_) return false;
  const int align[4] = {alignment(A, lda, sizeof(In)), alignment(B, ldb, sizeof(In)), alignment(C, ldc, sizeof(Out)),
                        bias ? alignment(bias, 0, bias_size) : 0};
  const cudaDataType_t in_type = data_type<In>(), out_type = data_type<Out>();
  const Key key{trans_a, trans_b, M, N, K, lda, ldb, ldc, static_cast<int>(in_type), static_cast<int>(out_type),
                bias != nullptr, align[0], align[1], align[2], align[3], static_cast<int>(epilogue),
                aux ? alignment(aux, ldc, sizeof(Out)) : 0};
  Plan* plan = plan_for(key, trans_a, trans_b, M, N, K, lda, ldb, ldc, in_type, out_type, epilogue, bias, aux, align);
  if (!plan->usable) return false;
  if (bias && api_->matmul_desc_set_attribute(plan->desc, lt::kDescBiasPointer, &bias, sizeof(bias)) != lt::kSuccess)
    throw std::runtime_error("cuBLASLt: setting the bias pointer failed");
  if (aux && api_->matmul_desc_set_attribute(plan->desc, lt::kDescEpilogueAuxPointer, &aux, sizeof(aux)) != lt::kSuccess)
    throw std::runtime_error("cuBLASLt: setting the epilogue's aux pointer failed");
  const float beta = accumulate ? 1.0f : 0.0f;
  const lt::Status s = api_->matmul(handle_, plan->desc, &alpha, B, plan->a, A, plan->b, &beta, C, plan->c, C, plan->c,
                                    &plan->algo, workspace_.data(), workspace_.bytes(), stream_);
  if (s != lt::kSuccess)
    throw std::runtime_error("cuBLASLt matmul failed with status " + std::to_string(s) + " (M=" + std::to_string(M) +
                             " N=" + std::to_string(N) + " K=" + std::to_string(K) + ", epilogue " +
                             std::to_string(epilogue) + ")");
  return true;
}

template <typename In, typename Out>
void Gemm::matmul(bool trans_a, bool trans_b, int M, int N, int K, const In* A, int lda, const In* B, int ldb, Out* C,
                  int ldc, const In* bias, bool accumulate, Activation act, Out* aux, float alpha) {
  if (M <= 0 || N <= 0) return;
  if (act != Activation::kNone && (ldc != N || accumulate || aux == nullptr))
    throw std::logic_error("matmul: an activation needs contiguous rows, an aux matrix and no accumulate");
  const uint32_t epilogue = act == Activation::kGelu       ? (bias ? lt::kEpilogueGeluAuxBias : lt::kEpilogueGeluAux)
                            : act == Activation::kGeluGrad ? lt::kEpilogueDGelu
                            : bias                         ? lt::kEpilogueBias
                                                           : lt::kEpilogueDefault;
  if (lt_matmul(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, epilogue, bias, sizeof(In), aux, accumulate, alpha))
    return;
  if (act == Activation::kNone) {
    own_kernel(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, bias, accumulate, alpha);
    return;
  }
  // The activation as a pass of its own, after the plain product (which may still run on cuBLASLt).
  const int64_t n = static_cast<int64_t>(M) * N;
  if (act == Activation::kGelu) {
    matmul(trans_a, trans_b, M, N, K, A, lda, B, ldb, aux, ldc, bias, false, Activation::kNone, static_cast<Out*>(nullptr), alpha);
    gelu_forward(C, aux, n, stream_);
  } else {
    matmul(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, bias, false, Activation::kNone, static_cast<Out*>(nullptr), alpha);
    gelu_backward(C, aux, C, n, stream_);
  }
}

template <typename In>
bool Gemm::matmul_column_sums(bool trans_a, int M, int N, int K, const In* A, int lda, const In* B, int ldb, float* C,
                              int ldc, float* column_sums) {
  return M > 0 && N > 0 &&
         lt_matmul(trans_a, false, M, N, K, A, lda, B, ldb, C, ldc, lt::kEpilogueBGradA, column_sums, sizeof(float),
                   static_cast<float*>(nullptr), true, 1.0f);
}

void Gemm::own_kernel(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B,
                      int ldb, float* C, int ldc, const float* bias, bool accumulate, float alpha) {
  const dim3 grid(static_cast<unsigned>(ceil_div(N, kSTile)), static_cast<unsigned>(ceil_div(M, kSTile)));
  if (!trans_a && !trans_b) sgemm_kernel<false, false><<<grid, 256, 0, stream_>>>(M, N, K, A, lda, B, ldb, C, ldc, bias, accumulate, alpha);
  else if (!trans_a && trans_b) sgemm_kernel<false, true><<<grid, 256, 0, stream_>>>(M, N, K, A, lda, B, ldb, C, ldc, bias, accumulate, alpha);
  else if (trans_a && !trans_b) sgemm_kernel<true, false><<<grid, 256, 0, stream_>>>(M, N, K, A, lda, B, ldb, C, ldc, bias, accumulate, alpha);
  else sgemm_kernel<true, true><<<grid, 256, 0, stream_>>>(M, N, K, A, lda, B, ldb, C, ldc, bias, accumulate, alpha);
  DIXIE_CUDA_LAUNCHED();
}

template <typename Out>
void Gemm::own_kernel(bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb,
                      Out* C, int ldc, const bf16* bias, bool accumulate, float alpha) {
  const dim3 grid(static_cast<unsigned>(ceil_div(N, kBN)), static_cast<unsigned>(ceil_div(M, kBM)));
  const bool va = vec16(A, lda), vb = vec16(B, ldb);
  if (!trans_a && !trans_b) gemm_bf16_kernel<false, false, Out><<<grid, 256, 0, stream_>>>(M, N, K, A, lda, B, ldb, C, ldc, bias, accumulate, alpha, va, vb);
  else if (!trans_a && trans_b) gemm_bf16_kernel<false, true, Out><<<grid, 256, 0, stream_>>>(M, N, K, A, lda, B, ldb, C, ldc, bias, accumulate, alpha, va, vb);
  else if (trans_a && !trans_b) gemm_bf16_kernel<true, false, Out><<<grid, 256, 0, stream_>>>(M, N, K, A, lda, B, ldb, C, ldc, bias, accumulate, alpha, va, vb);
  else gemm_bf16_kernel<true, true, Out><<<grid, 256, 0, stream_>>>(M, N, K, A, lda, B, ldb, C, ldc, bias, accumulate, alpha, va, vb);
  DIXIE_CUDA_LAUNCHED();
}

template void Gemm::matmul<float, float>(bool, bool, int, int, int, const float*, int, const float*, int, float*, int,
                                         const float*, bool, Activation, float*, float);
template void Gemm::matmul<bf16, bf16>(bool, bool, int, int, int, const bf16*, int, const bf16*, int, bf16*, int,
                                       const bf16*, bool, Activation, bf16*, float);
template void Gemm::matmul<bf16, float>(bool, bool, int, int, int, const bf16*, int, const bf16*, int, float*, int,
                                        const bf16*, bool, Activation, float*, float);
template bool Gemm::matmul_column_sums<float>(bool, int, int, int, const float*, int, const float*, int, float*, int,
                                              float*);
template bool Gemm::matmul_column_sums<bf16>(bool, int, int, int, const bf16*, int, const bf16*, int, float*, int,
                                             float*);

}  // namespace dixie::cuda
