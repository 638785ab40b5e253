// Libraries the CUDA backend loads at run time (dlopen) rather than links, so that the addon builds and loads where
// they are missing: cuBLASLt, NCCL.
#pragma once
#include <dlfcn.h>

#include <mutex>
#include <string>
#include <vector>

namespace dixie::cuda {

// fn = the library's `name`; false, with the name in *why, when it has none.
template <typename F>
bool resolve_symbol(void* lib, const char* name, F*& fn, std::string* why) {
  fn = reinterpret_cast<F*>(dlsym(lib, name));
  if (!fn) *why = std::string("symbol ") + name + " missing";
  return fn != nullptr;
}

// The first of `names` (empty ones skipped) that opens and for which resolve_all(lib, &missing) finds every symbol,
// kept open; null when none does, with what each attempt met in *tried ("; " between them).
template <typename ResolveAll>
void* open_first(const std::vector<const char*>& names, ResolveAll resolve_all, std::string* tried) {
  for (const char* name : names) {
    if (!name || !*name) continue;
    void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    std::string failure;
    if (lib && resolve_all(lib, &failure)) return lib;
    failure = lib ? std::string(name) + ": " + failure : std::string(dlerror());
    if (lib) dlclose(lib);
    *tried += (tried->empty() ? "" : "; ") + failure;
  }
  return nullptr;
}

// The API that open(api, &failure) fills, opened at the first call only; null, with the failure in *why, where it
// could not open. (Each call site's open is its own type, so each library has its own once.)
template <class Api, class Open>
const Api* load_once(Open open, std::string* why) {
  static std::once_flag once;
  static Api api;
  static bool ok = false;
  static std::string failure;
  std::call_once(once, [&] { ok = open(api, &failure); });
  if (!ok && why) *why = failure;
  return ok ? &api : nullptr;
}

}  // namespace dixie::cuda
