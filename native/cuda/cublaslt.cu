#include "cublaslt.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace dixie::cuda::lt {

namespace {

template <typename F>
bool resolve(void* lib, const char* name, F*& fn, std::string* why) {
  fn = reinterpret_cast<F*>(dlsym(lib, name));
  if (!fn) *why = std::string("symbol ") + name + " missing";
  return fn != nullptr;
}

bool resolve_all(void* lib, Api& api, std::string* why) {
  return resolve(lib, "cublasLtCreate", api.create, why) && resolve(lib, "cublasLtDestroy", api.destroy, why) &&
         resolve(lib, "cublasLtGetVersion", api.get_version, why) &&
         resolve(lib, "cublasLtMatmulDescCreate", api.matmul_desc_create, why) &&
         resolve(lib, "cublasLtMatmulDescDestroy", api.matmul_desc_destroy, why) &&
         resolve(lib, "cublasLtMatmulDescSetAttribute", api.matmul_desc_set_attribute, why) &&
         resolve(lib, "cublasLtMatrixLayoutCreate", api.matrix_layout_create, why) &&
         resolve(lib, "cublasLtMatrixLayoutDestroy", api.matrix_layout_destroy, why) &&
         resolve(lib, "cublasLtMatmulPreferenceCreate", api.preference_create, why) &&
         resolve(lib, "cublasLtMatmulPreferenceDestroy", api.preference_destroy, why) &&
         resolve(lib, "cublasLtMatmulPreferenceSetAttribute", api.preference_set_attribute, why) &&
         resolve(lib, "cublasLtMatmulAlgoGetHeuristic", api.algo_get_heuristic, why) &&
         resolve(lib, "cublasLtMatmul", api.matmul, why);
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
    const char* names[] = {env, "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};
    for (const char* name : names) {
      if (!name || !*name) continue;
      void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (!lib) {
        tried += std::string(tried.empty() ? "" : "; ") + dlerror();
        continue;
      }
      std::string missing;
      if (resolve_all(lib, api, &missing)) {
        ok = true;
        return;
      }
      tried += std::string(tried.empty() ? "" : "; ") + name + ": " + missing;
      dlclose(lib);
    }
    failure = "cuBLASLt not found (" + tried + ")";
  });
  if (!ok && why) *why = failure;
  return ok ? &api : nullptr;
}

}  // namespace dixie::cuda::lt
