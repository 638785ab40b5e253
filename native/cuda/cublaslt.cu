#include "cublaslt.h"

#include <cstdlib>
#include <mutex>

#include "dynamic_library.h"

namespace dixie::cuda::lt {

namespace {

bool resolve_all(void* lib, Api& api, std::string* why) {
  return resolve_symbol(lib, "cublasLtCreate", api.create, why) && resolve_symbol(lib, "cublasLtDestroy", api.destroy, why) &&
         resolve_symbol(lib, "cublasLtGetVersion", api.get_version, why) &&
         resolve_symbol(lib, "cublasLtMatmulDescCreate", api.matmul_desc_create, why) &&
         resolve_symbol(lib, "cublasLtMatmulDescDestroy", api.matmul_desc_destroy, why) &&
         resolve_symbol(lib, "cublasLtMatmulDescSetAttribute", api.matmul_desc_set_attribute, why) &&
         resolve_symbol(lib, "cublasLtMatrixLayoutCreate", api.matrix_layout_create, why) &&
         resolve_symbol(lib, "cublasLtMatrixLayoutDestroy", api.matrix_layout_destroy, why) &&
         resolve_symbol(lib, "cublasLtMatmulPreferenceCreate", api.preference_create, why) &&
         resolve_symbol(lib, "cublasLtMatmulPreferenceDestroy", api.preference_destroy, why) &&
         resolve_symbol(lib, "cublasLtMatmulPreferenceSetAttribute", api.preference_set_attribute, why) &&
         resolve_symbol(lib, "cublasLtMatmulAlgoGetHeuristic", api.algo_get_heuristic, why) &&
         resolve_symbol(lib, "cublasLtMatmul", api.matmul, why);
}

}  // namespace

const Api* load(std::string* why) {
  static std::once_flag once;
  static Api api;
  static bool ok = false;
  static std::string failure;
  std::call_once(once, [] {
    std::string tried;
    const char* env = std::getenv("DIXIE_CUBLASLT");
    const auto all = [](void* lib, std::string* missing) { return resolve_all(lib, api, missing); };
    ok = open_first({env, "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}, all, &tried) != nullptr;
    if (!ok) failure = "cuBLASLt not found (" + tried + ")";
  });
  if (!ok && why) *why = failure;
  return ok ? &api : nullptr;
}

}  // namespace dixie::cuda::lt
