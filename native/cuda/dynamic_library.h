// Libraries the CUDA backend loads at run time (dlopen) rather than links, so that the addon builds and loads where
// they are missing: cuBLASLt, NCCL.
#pragma once
#include <dlfcn.h>

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

}  // namespace dixie::cuda
