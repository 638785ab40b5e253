// core/backend.h token_logprobs: on the host, whichever backend computed the logits, off the event loop.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/backend.h"
#include "cpu/vec_math.h"

namespace dixie {

namespace {

bool allows(const uint32_t* allowed, int id) { return allowed == nullptr || ((allowed[id >> 5] >> (id & 31)) & 1u); }

// The `top` largest of x[0, V) among the allowed ids into best (sorted, ties by lower id), returning how many. A block
// of x whose largest does not beat the least kept is passed over whole: the ids a mask leaves out are -inf there.
int top_of(const float* x, int V, int top, const uint32_t* allowed, int32_t* best) {
  constexpr int kBlock = 64;
  int kept = 0;
  for (int i0 = 0; i0 < V; i0 += kBlock) {
    const int i1 = std::min(V, i0 + kBlock);
    if (kept == top && max_of(x + i0, i1 - i0) <= x[best[top - 1]]) continue;
    for (int i = i0; i < i1; ++i) {
      if (!allows(allowed, i)) continue;
      if (kept == top) {
        if (x[i] <= x[best[top - 1]]) continue;
        --kept;
      }
      int at = kept;
      while (at > 0 && x[best[at - 1]] < x[i]) {
        best[at] = best[at - 1];
        --at;
      }
      best[at] = i;
      ++kept;
    }
  }
  return kept;
}

}  // namespace

void token_logprobs(const float* logits, int rows, int V, const LogprobRows& out) {
  thread_local std::vector<float> masked, exps;
  exps.resize(V);
  if (out.allowed) masked.resize(V);
  for (int r = 0; r < rows; ++r) {
    const float* row = logits + static_cast<size_t>(r) * V;
    const float* x = row;
    if (out.allowed) {
      for (int i0 = 0; i0 < V; i0 += 32) {  // a mask word at a time: most allow all 32 ids
        const int i1 = std::min(V, i0 + 32);
        const uint32_t word = out.allowed[i0 >> 5];
        if (word == 0xffffffffu) std::copy(row + i0, row + i1, masked.data() + i0);
        else for (int i = i0; i < i1; ++i) masked[i] = ((word >> (i & 31)) & 1u) ? row[i] : -INFINITY;
      }
      x = masked.data();
    }
    int32_t* best = out.top_tokens + static_cast<size_t>(r) * out.top;
    const int kept = out.top > 0 ? top_of(x, V, out.top, out.allowed, best) : 0;
    const float mx = max_of(x, V);
    const double log_z = mx + std::log(exp_sum(exps.data(), x, V, mx, 1.0f));
    out.logprob[r] = row[out.targets[r]] - log_z;
    double* top_logprobs = out.top_logprobs + static_cast<size_t>(r) * out.top;
    for (int k = 0; k < out.top; ++k) {
      if (k >= kept) best[k] = -1;
      top_logprobs[k] = k < kept ? row[best[k]] - log_z : -INFINITY;
    }
  }
}

}  // namespace dixie
