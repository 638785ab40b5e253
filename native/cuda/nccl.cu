#include "nccl.h"

#include <cstdlib>
#include <cstring>

#include "dynamic_library.h"

namespace dixie::cuda::nccl {

namespace {

bool resolve_all(void* lib, Api& api, std::string* why) {
  return resolve_symbol(lib, "ncclGetVersion", api.get_version, why) && resolve_symbol(lib, "ncclGetUniqueId", api.get_unique_id, why) &&
         resolve_symbol(lib, "ncclCommInitRank", api.comm_init_rank, why) &&
         resolve_symbol(lib, "ncclCommDestroy", api.comm_destroy, why) && resolve_symbol(lib, "ncclAllReduce", api.all_reduce, why) &&
         resolve_symbol(lib, "ncclReduceScatter", api.reduce_scatter, why) &&
         resolve_symbol(lib, "ncclAllGather", api.all_gather, why) && resolve_symbol(lib, "ncclGroupStart", api.group_start, why) &&
         resolve_symbol(lib, "ncclGroupEnd", api.group_end, why) &&
         resolve_symbol(lib, "ncclGetErrorString", api.get_error_string, why);
}

}  // namespace

const Api* load(std::string* why) {
  return load_once<Api>(
      [](Api& api, std::string* failure) {
        const char* env = std::getenv("DIXIE_NCCL");
        if (env && std::strcmp(env, "0") == 0) {
          *failure = "DIXIE_NCCL=0";
          return false;
        }
        const char* name = env && *env ? env : "libnccl.so.2";
        return open_first({name}, [&](void* lib, std::string* missing) { return resolve_all(lib, api, missing); }, failure) != nullptr;
      },
      why);
}

}  // namespace dixie::cuda::nccl
