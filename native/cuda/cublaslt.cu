#include "cublaslt.h"

#include <cstdlib>

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
  return load_once<Api>(
      [](Api& api, std::string* failure) {
        std::string tried;
        const auto all = [&](void* lib, std::string* missing) { return resolve_all(lib, api, missing); };
        const char* env = std::getenv("DIXIE_CUBLASLT");
        if (open_first({env, "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}, all, &tried)) return true;
        *failure = "cuBLASLt not found (" + tried + ")";
        return false;
      },
      why);
}

}  // namespace dixie::cuda::lt
