// Sampling one token per row of logits [n, V]. Each row, in this order:
//
//  0. A grammar's constraint (allowed): only the tokens it allows are candidates, in every step below; the others
//     are as if their logit were -inf.
//  1. Repetition penalty (--penalize p, p in (0, 1]; 0 turns it off, 1 changes nothing).
//     For every DISTINCT token t in the row's history: logit[t] > 0 becomes logit[t] * p and logit[t] < 0
//     becomes logit[t] / p. Both move the logit down by the same factor of its magnitude, so a used token
//     always becomes less likely. (Multiplying every used logit by p would pull a negative
//     logit towards zero and make unlikely used tokens MORE likely: docs/compatibility.md.) Tokens used several times are
//     penalised once.
//  2. Logit biases (OpenAI's logit_bias): each bias is added to its token's logit, after the penalty, so that a
//     bias of -100 bans a token and +100 all but forces it whatever the penalty made of it.
//  3. Temperature T: T = 0 is greedy decoding (argmax of the penalised, biased logits, the lowest id on ties;
//     top-k/top-p are moot and the RNG is not advanced). Otherwise probabilities are softmax(logit / T).
//  4. Top-k (k > 0): keep the k most likely tokens (ties broken by lower id).
//  5. Min-p (m > 0): of those, keep the tokens at least m times as likely as the most likely one:
//     (logit - max) / T >= ln m, compared in float32 as the CUDA sampler compares them.
//  6. Top-p (p < 1): of what top-k and min-p kept, keep the smallest set of most likely tokens whose probability
//     reaches p of the kept mass (always at least one token).
//  7. Draw one token from the renormalised kept distribution with the row's RNG: xoroshiro128++ over the
//     row's two 64-bit state words, advanced in place, one draw per sampled token. The draw walks the kept
//     tokens most likely first (by id when none of top-k, min-p and top-p ranked them), as the CUDA sampler does.
//     Each row only touches its own state and its own scratch, so the tokens are the same whatever the thread
//     count.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/checks.h"
#include "core/rng.h"
#include "decoder.h"
#include "vec_math.h"

namespace dixie {

namespace {

// Per-thread scratch, grown once to the vocabulary size and reused for every row after.
struct RowScratch {
  std::vector<float> logits, probs;
  std::vector<int32_t> order;
  std::vector<uint8_t> seen;
};
thread_local RowScratch scratch;

// The tokens a grammar's mask allows, by id, into `out`; returns their count. A word at a time: inside a string nearly
// every word is all ones, 32 ids in a row, and any other word gives only its set bits.
int allowed_tokens(const SamplingParams& sp, int V, int32_t* out) {
  int n = 0;
  for (int w = 0; w < sp.allowed_words; ++w) {
    const int base = w << 5;
    uint32_t bits = sp.allowed[w];
    if (bits == ~0u && base + 32 <= V) {
      for (int j = 0; j < 32; ++j) out[n++] = base + j;
      continue;
    }
    for (; bits != 0; bits &= bits - 1) {
      const int token = base + __builtin_ctz(bits);
      if (token < V) out[n++] = token;
    }
  }
  return n;
}

int32_t sample_row(int V, const float* row_logits, const SamplingParams& sp, uint64_t* rng, const int32_t* history,
                   int history_len) {
  RowScratch& s = scratch;
  if (static_cast<int>(s.logits.size()) < V) {
    s.logits.resize(V);
    s.probs.resize(V);
    s.order.resize(V);
    s.seen.assign(V, 0);
  }
  float* l = s.logits.data();
  std::memcpy(l, row_logits, sizeof(float) * V);

  if (sp.penalize > 0.0f && sp.penalize < 1.0f) {
    for (int i = 0; i < history_len; ++i) {
      const int32_t t = history[i];
      if (s.seen[t]) continue;
      s.seen[t] = 1;
      // Saturated: a penalty near 0 must lower a negative logit, not make it -inf, which leaves no finite logit to
      // measure the others by when every candidate is a used token (a grammar's, say).
      l[t] = l[t] > 0.0f ? l[t] * sp.penalize : std::max(l[t] / sp.penalize, -FLT_MAX);
    }
    for (int i = 0; i < history_len; ++i) s.seen[history[i]] = 0;
  }
  for (int i = 0; i < sp.n_bias; ++i) l[sp.bias_tokens[i]] += sp.bias_values[i];

  // Candidates in s.order[0, n): all tokens by id, or the top k most likely first. A heap of the k best so far
  // (partial_sort) looks at most tokens once against its least likely member, where a selection over all V
  // moves every index several times. Under a grammar the candidates are only the tokens it allows, so that none
  // of the rest keeps the sliver of probability the vectorized exp gives -inf.
  int32_t* order = s.order.data();
  const bool greedy = sp.temperature == 0.0f || std::isinf(1.0f / sp.temperature);
  if (sp.allowed == nullptr && greedy) return static_cast<int32_t>(std::max_element(l, l + V) - l);
  int n = 0;
  if (sp.allowed != nullptr) {
    n = allowed_tokens(sp, V, order);
  } else {
    for (; n < V; ++n) order[n] = n;
  }
  // A temperature so small that its inverse overflows float32 is greedy too (its limit), not 0 * inf = NaN. The
  // candidates come by id, so a tie goes to the lowest.
  if (greedy) return *std::max_element(order, order + n, [l](int32_t a, int32_t b) { return l[a] < l[b]; });
  const auto more_likely = [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };
  const bool every_token = n == V;
  bool ranked = false;  // order[0, n) is most likely first; else it is every candidate by id
  if (sp.top_k > 0 && sp.top_k < V) {
    const int k = std::min(sp.top_k, n);
    std::partial_sort(order, order + k, order + n, more_likely);
    n = k;
    ranked = true;
  }

  float max = -INFINITY;
  for (int i = 0; i < n; ++i) max = std::max(max, l[order[i]]);
  const float inv_t = 1.0f / sp.temperature;
  if (sp.min_p > 0.0f) {
    const float floor = std::log(sp.min_p);
    int kept = 0;
    for (int i = 0; i < n; ++i)
      if ((l[order[i]] - max) * inv_t >= floor) order[kept++] = order[i];
    if (!ranked) std::sort(order, order + kept, more_likely);
    // None passes only where the logits are not finite (a model's weights overflowed): the first candidate stays.
    n = std::max(kept, 1);
    ranked = true;
  }

  // Probabilities of the candidates, in candidate order (probs[i] belongs to order[i]).
  float* p = s.probs.data();
  double total = 0.0;
  if (!ranked && every_token) {
    total = exp_sum(p, l, V, max, inv_t);  // order is the identity here
  } else {
    for (int i = 0; i < n; ++i) {
      p[i] = std::exp((l[order[i]] - max) * inv_t);
      total += p[i];
    }
  }

  if (sp.top_p < 1.0f) {
    // Sort a growing prefix of the most likely candidates until it holds p of the mass: the nucleus is
    // usually a few dozen tokens, so this costs a selection over n rather than a full sort. Top-k left its
    // candidates sorted already.
    const double target = static_cast<double>(sp.top_p) * total;
    int m = ranked ? n : std::min(n, 64);
    int kept = n;
    for (;;) {
      if (!ranked) {
        if (m < n) std::nth_element(order, order + m, order + n, more_likely);
        std::sort(order, order + m, more_likely);
      }
      double cum = 0.0;
      int i = 0;
      for (; i < m; ++i) {
        cum += std::exp((l[order[i]] - max) * inv_t);
        if (cum >= target) break;
      }
      if (i < m) {
        kept = i + 1;
        break;
      }
      if (m == n) break;
      m = std::min(n, m * 8);
    }
    n = kept;
    total = 0.0;
    for (int i = 0; i < n; ++i) {
      p[i] = std::exp((l[order[i]] - max) * inv_t);
      total += p[i];
    }
  }

  const double u = rng::uniform(rng) * total;
  double cum = 0.0;
  for (int i = 0; i < n; ++i) {
    cum += p[i];
    if (u < cum) return order[i];
  }
  return order[n - 1];  // u fell in the rounding gap at the very top
}

}  // namespace

void sample_tokens(int n, int V, const float* logits, const SamplingParams* params, uint64_t* rng_state,
                   const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens, ThreadPool& pool) {
  if (n <= 0) return;
  if (V <= 0) throw std::invalid_argument("sample: empty vocabulary");
  for (int i = 0; i < n; ++i) check_sampling_row(i, V, params[i], history ? history[i] : nullptr, history_len ? history_len[i] : 0);
  draw_tokens(n, V, logits, params, rng_state, history, history_len, out_tokens, pool);
}

void draw_tokens(int n, int V, const float* logits, const SamplingParams* params, uint64_t* rng_state,
                 const int32_t* const* history, const int32_t* history_len, int32_t* out_tokens, ThreadPool& pool) {
  pool.run(n, [&](int64_t i, int) {
    out_tokens[i] = sample_row(V, logits + static_cast<size_t>(i) * V, params[i], rng_state + 2 * i,
                               history ? history[i] : nullptr, history_len ? history_len[i] : 0);
  });
}

}  // namespace dixie
