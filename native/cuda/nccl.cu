#include "nccl.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace dixie::cuda::nccl {

namespace {

template <typename F>
bool resolve(void* lib, const char* name, F*& fn, std::string* why) {
  fn = reinterpret_cast<F*>(dlsym(lib, name));
  if (!fn) *why = std::string("symbol ") + name + " missing";
  return fn != nullptr;
}

bool resolve_all(void* lib, Api& api, std::string* why) {
  return resolve(lib, "ncclGetVersion", api.get_version, why) && resolve(lib, "ncclGetUniqueId", api.get_unique_id, why) &&
         resolve(lib, "ncclCommInitRank", api.comm_init_rank, why) &&
         resolve(lib, "ncclCommDestroy", api.comm_destroy, why) && resolve(lib, "ncclAllReduce", api.all_reduce, why) &&
         resolve(lib, "ncclReduceScatter", api.reduce_scatter, why) &&
         resolve(lib, "ncclAllGather", api.all_gather, why) && resolve(lib, "ncclGroupStart", api.group_start, why) &&
         resolve(lib, "ncclGroupEnd", api.group_end, why) &&
         resolve(lib, "ncclGetErrorString", api.get_error_string, why);
}

}  // namespace

const Api* load(std::string* why) {
  static std::once_flag once;
  static Api api;
  static bool ok = false;
  static std::string failure;
  std::call_once(once, [] {
    const char* env = std::getenv("DIXIE_NCCL");
    if (env && std::strcmp(env, "0") == 0) {
      failure = "DIXIE_NCCL=0";
      return;
    }
    const char* name = env && *env ? env : "libnccl.so.2";
    void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      failure = dlerror();
      return;
    }
    std::string missing;
    if (resolve_all(lib, api, &missing)) {
      ok = true;
      return;
    }
    failure = std::string(name) + ": " + missing;
    dlclose(lib);
  });
  if (!ok && why) *why = failure;
  return ok ? &api : nullptr;
}

}  // namespace dixie::cuda::nccl
