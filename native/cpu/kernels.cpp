#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "gemm.h"
#include "vec_math.h"

namespace dixie {

namespace {

// Parallel grains: enough work per chunk that a handoff costs little next to it.
constexpr int64_t kElementGrain = 1 << 14;
// Column blocks for reductions over rows (bias and LayerNorm parameter gradients, embeddings): each task owns
// a block of columns, so no two tasks write the same gradient.
constexpr int kColumnBlock = 64;

int64_t row_grain(int64_t row_len) { return std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, row_len)); }

constexpr int kMaxTreeLevels = 33;         // a tree over fewer than 2^32 sequences
// Rows of a weight gradient a chunk of its tree takes: as many as sgemm packs its op(B) for (kMC), so that chunking
// repacks nothing more than one product over the whole batch would.
constexpr int64_t kTreeRows = 256;

// The fixed binary tree over sequences (kernels.h), but for its last addition. partial(s, level, onto) writes
// sequence s's sum into buffer `level`, or with `onto` (only when kOnto: the partial adds its sum to a buffer as a
// separate addition would) adds it to the buffer, which holds sequence s - 1's alone: that pair's node of the tree.
// combine(to, from) adds buffer `from` into buffer `to`. Returns how many buffers are left (1 or 2); their sum,
// buffer 0 + buffer 1, is the total, so that the caller can fuse that last addition with adding the total where it goes.
template <bool kOnto, class Partial, class Combine>
int sum_over_sequences(int S, const Partial& partial, const Combine& combine) {
  int64_t sizes[kMaxTreeLevels];
  int depth = 0;
  for (int s = 0; s < S; ++s) {
    if (kOnto && depth > 0 && sizes[depth - 1] == 1) {
      partial(s, depth - 1, true);
      sizes[depth - 1] = 2;
    } else {
      partial(s, depth, false);
      sizes[depth++] = 1;
    }
    while (depth >= 2 && sizes[depth - 1] == sizes[depth - 2] && !(s == S - 1 && depth == 2)) {
      combine(depth - 2, depth - 1);
      sizes[depth - 2] *= 2;
      --depth;
    }
  }
  for (; depth > 2; --depth) combine(depth - 2, depth - 1);
  return depth;
}

// dst[k][c] += the tree sum over S sequences of `rows` rows each of add_row's terms, for c in [0, width) and k < K:
// add_row(r, c0, c1, acc) adds row r's terms for columns [c0, c1) to acc[k * kColumnBlock + c - c0].
template <int K, class AddRow>
void add_column_tree_sums(float* const* dst, int S, int64_t rows, int64_t width, ThreadPool& pool, const AddRow& add_row) {
  const int64_t blocks = (width + kColumnBlock - 1) / kColumnBlock;
  pool.run(blocks, [&](int64_t blk, int) {
    const int64_t c0 = blk * kColumnBlock;
    const int64_t c1 = std::min(width, c0 + kColumnBlock);
    float acc[kMaxTreeLevels][K * kColumnBlock];
    const int left = sum_over_sequences<false>(
        S,
        [&](int s, int level, bool) {
          std::fill(acc[level], acc[level] + K * kColumnBlock, 0.0f);
          for (int64_t r = s * rows; r < (s + 1) * rows; ++r) add_row(r, c0, c1, acc[level]);
        },
        [&](int to, int from) {
          for (int i = 0; i < K * kColumnBlock; ++i) acc[to][i] += acc[from][i];
        });
    for (int k = 0; k < K; ++k) {
      const float* x = acc[0] + k * kColumnBlock;
      const float* y = acc[1] + k * kColumnBlock;
      for (int64_t c = c0; c < c1; ++c) dst[k][c] += left == 2 ? x[c - c0] + y[c - c0] : x[c - c0];
    }
  });
}

// dst[c] += sum over rows of src[r, c], for c in [0, C); src [B, T, C]
void add_column_sums(float* dst, const float* src, int B, int64_t T, int64_t C, ThreadPool& pool) {
  float* const out[1] = {dst};
  add_column_tree_sums<1>(out, B, T, C, pool, [&](int64_t r, int64_t c0, int64_t c1, float* acc) {
    const float* row = src + r * C;
    for (int64_t c = c0; c < c1; ++c) acc[c - c0] += row[c];
  });
}

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCube = 0.044715f;

// The partial sums a tree over `sequences` holds at once.
int tree_levels(int64_t sequences) {
  int levels = 1;  // pushing sequence s leaves popcount(s) + 1 partial sums
  for (int64_t s = sequences - 1; s > 0; s >>= 1) ++levels;
  return levels;
}

}  // namespace

int64_t tree_scratch_floats(int64_t max_batch, int64_t widest) {
  return max_batch > 1 ? tree_levels(max_batch) * kTreeRows * widest : 0;
}

TreeScratch tree_scratch(float* data, int64_t max_batch, int64_t widest) {
  return max_batch > 1 ? TreeScratch{data, tree_levels(max_batch), kTreeRows * widest} : TreeScratch{};
}

void add_sequence_products(float* dst, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t Nc,
                           int S, int64_t T, float alpha, const TreeScratch& scratch, ThreadPool& pool,
                           const SequenceAddend& add_sequence) {
  if (S == 1) {  // a tree of one: the product adds into dst as the sequence's partial sum would (from zero, the same)
    sgemm(true, false, M, Nc, T, alpha, A, lda, B, ldb, 1.0f, dst, Nc, pool);
    if (add_sequence) add_sequence(0, 0, M, dst);
    return;
  }
  if (tree_levels(S) > scratch.levels || Nc > scratch.level_floats)
    throw std::logic_error("add_sequence_products: more sequences, or a wider gradient, than the tree scratch plans for");
  const auto level = [&](int l) { return scratch.data + l * scratch.level_floats; };
  // Rows of dst a chunk, so the tree's partial sums are of one chunk each.
  const int64_t rows = std::max<int64_t>(1, std::min(M, scratch.level_floats / Nc));
  for (int64_t i0 = 0; i0 < M; i0 += rows) {
    const int64_t n = std::min(rows, M - i0);
    const auto product = [&](int s, int l, bool onto) {
      sgemm(true, false, n, Nc, T, alpha, A + s * T * lda + i0, lda, B + s * T * ldb, ldb, onto ? 1.0f : 0.0f, level(l), Nc, pool);
      if (add_sequence) add_sequence(s, i0, n, level(l));
    };
    const auto combine = [&](int to, int from) { residual_forward(level(to), level(to), level(from), n * Nc, pool); };
    // A pair's second product adds onto the first where sgemm adds finished sums; not with an addend, which would
    // then join the pair's sum instead of its own sequence's.
    const int left = !add_sequence && sgemm_one_pass(n, T) ? sum_over_sequences<true>(S, product, combine)
                                                           : sum_over_sequences<false>(S, product, combine);
    float* d = dst + i0 * Nc;
    const float* x = level(0);
    const float* y = level(1);
    pool.parallel_for(n * Nc, kElementGrain, [&](int64_t b, int64_t e) {
      if (left == 2) {
        for (int64_t i = b; i < e; ++i) d[i] += x[i] + y[i];
      } else {
        for (int64_t i = b; i < e; ++i) d[i] += x[i];
      }
    });
  }
}

// ----------------------------------------------------------------------------------------------------------------
// encoder

void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T, int C,
                     ThreadPool& pool) {
  pool.parallel_for(static_cast<int64_t>(B) * T, row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* te = wte + static_cast<int64_t>(inp[r]) * C;
      const float* pe = wpe + (r % T) * C;
      float* o = out + r * C;
      for (int c = 0; c < C; ++c) o[c] = te[c] + pe[c];
    }
  });
}

void encoder_backward(float* dwpe, const float* dout, int B, int T, int C, ThreadPool& pool) {
  add_column_sums(dwpe, dout, B, 1, static_cast<int64_t>(T) * C, pool);  // each sequence one row of T * C values
}

void add_token_rows(float* part, int64_t v0, int64_t rows, const float* dout, const int32_t* inp, int T, int C) {
  for (int t = 0; t < T; ++t) {
    const int64_t v = inp[t] - v0;
    if (v < 0 || v >= rows) continue;
    float* dst = part + v * C;
    const float* src = dout + static_cast<int64_t>(t) * C;
    for (int c = 0; c < C; ++c) dst[c] += src[c];
  }
}

// ----------------------------------------------------------------------------------------------------------------
// layernorm

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int C, ThreadPool& pool) {
  pool.parallel_for(N, row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = inp + r * C;
      float* o = out + r * C;
      float sum = 0.0f;
      int c = 0;
#ifdef DIXIE_AVX2
      __m256 acc = _mm256_setzero_ps();
      for (; c + 8 <= C; c += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + c));
      sum = hsum(acc);
#endif
      for (; c < C; ++c) sum += x[c];
      const float m = sum / C;
      float var = 0.0f;
      c = 0;
#ifdef DIXIE_AVX2
      const __m256 vm = _mm256_set1_ps(m);
      acc = _mm256_setzero_ps();
      for (; c + 8 <= C; c += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + c), vm);
        acc = _mm256_fmadd_ps(d, d, acc);
      }
      var = hsum(acc);
#endif
      for (; c < C; ++c) var += (x[c] - m) * (x[c] - m);
      const float s = 1.0f / std::sqrt(var / C + 1e-5f);
      c = 0;
#ifdef DIXIE_AVX2
      const __m256 vs = _mm256_set1_ps(s);
      for (; c + 8 <= C; c += 8) {
        const __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vs);
        _mm256_storeu_ps(o + c, _mm256_fmadd_ps(n, _mm256_loadu_ps(weight + c), _mm256_loadu_ps(bias + c)));
      }
#endif
      for (; c < C; ++c) o[c] = (x[c] - m) * s * weight[c] + bias[c];
      if (mean) mean[r] = m;
      if (rstd) rstd[r] = s;
    }
  });
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int B, int64_t T, int C, ThreadPool& pool) {
  const int64_t N = B * T;
  pool.parallel_for(N, row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = inp + r * C;
      const float* g = dout + r * C;
      float* d = dinp + r * C;
      const float m = mean[r], s = rstd[r];
      // dnorm = weight * dout; dinp += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd
      float sum_dnorm = 0.0f, sum_dnorm_norm = 0.0f;
      int c = 0;
#ifdef DIXIE_AVX2
      const __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(s);
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (; c + 8 <= C; c += 8) {
        const __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vs);
        const __m256 dn = _mm256_mul_ps(_mm256_loadu_ps(weight + c), _mm256_loadu_ps(g + c));
        a0 = _mm256_add_ps(a0, dn);
        a1 = _mm256_fmadd_ps(dn, n, a1);
      }
      sum_dnorm = hsum(a0);
      sum_dnorm_norm = hsum(a1);
#endif
      for (; c < C; ++c) {
        const float n = (x[c] - m) * s;
        const float dn = weight[c] * g[c];
        sum_dnorm += dn;
        sum_dnorm_norm += dn * n;
      }
      const float mean_dnorm = sum_dnorm / C, mean_dnorm_norm = sum_dnorm_norm / C;
      c = 0;
#ifdef DIXIE_AVX2
      const __m256 vmd = _mm256_set1_ps(mean_dnorm), vmdn = _mm256_set1_ps(mean_dnorm_norm);
      for (; c + 8 <= C; c += 8) {
        const __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vs);
        const __m256 dn = _mm256_mul_ps(_mm256_loadu_ps(weight + c), _mm256_loadu_ps(g + c));
        const __m256 t = _mm256_sub_ps(_mm256_sub_ps(dn, vmd), _mm256_mul_ps(n, vmdn));
        _mm256_storeu_ps(d + c, _mm256_fmadd_ps(t, vs, _mm256_loadu_ps(d + c)));
      }
#endif
      for (; c < C; ++c) {
        const float n = (x[c] - m) * s;
        const float dn = weight[c] * g[c];
        d[c] += (dn - mean_dnorm - n * mean_dnorm_norm) * s;
      }
    }
  });
  if (!dweight) return;  // a frozen LayerNorm
  float* const out[2] = {dweight, dbias};
  add_column_tree_sums<2>(out, B, T, C, pool, [&](int64_t r, int64_t c0, int64_t c1, float* acc) {
    const float* x = inp + r * C;
    const float* g = dout + r * C;
    const float m = mean[r], s = rstd[r];
    for (int64_t c = c0; c < c1; ++c) {
      acc[c - c0] += (x[c] - m) * s * g[c];
      acc[kColumnBlock + c - c0] += g[c];
    }
  });
}

// ----------------------------------------------------------------------------------------------------------------
// matmul

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int C, int OC,
                    ThreadPool& pool) {
  float beta = 0.0f;
  if (bias) {
    pool.parallel_for(N, row_grain(OC), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) std::memcpy(out + r * OC, bias, sizeof(float) * OC);
    });
    beta = 1.0f;
  }
  sgemm(false, false, N, OC, C, 1.0f, inp, C, weight, OC, beta, out, OC, pool);
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp, const float* weight,
                     int B, int64_t T, int C, int OC, const TreeScratch& scratch, ThreadPool& pool) {
  if (dinp) sgemm(false, true, B * T, C, OC, 1.0f, dout, OC, weight, OC, 0.0f, dinp, C, pool);
  if (dweight) add_sequence_products(dweight, inp, C, dout, OC, C, OC, B, T, 1.0f, scratch, pool);
  if (dbias) add_column_sums(dbias, dout, B, T, OC, pool);
}

// ----------------------------------------------------------------------------------------------------------------
// attention
//
// Forward: one task per (batch, head, block of queries); backward: one per (batch, head), which owns the head's
// dq, dk and dv. Keys are visited in tiles with an online softmax, so no [T, T] matrix exists at any point.
// With AVX2 a key tile is transposed to [hs, kKeyTile] so that the scores of one query against the whole tile
// are vector FMAs (no horizontal sums), and the sums over a tile (P @ V, dS @ K, dS^T @ Q, P^T @ dout) keep
// their output row in registers. Without AVX2 the same algorithm runs row by row.

namespace {
constexpr int kKeyTile = 32;
constexpr int kQueryBlock = 16;

#ifdef DIXIE_AVX2
// Per-thread scratch, grown on first use only (its size depends on the head size and T, not on the batch).
float* thread_scratch(size_t n) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// tile[d * kKeyTile + j] = rows[j * stride + d] for j < n, 0 for the rest of the tile
void transpose_tile(float* tile, const float* rows, int64_t stride, int n, int hs) {
  for (int d = 0; d < hs; ++d) {
    float* dst = tile + static_cast<int64_t>(d) * kKeyTile;
    for (int j = 0; j < n; ++j) dst[j] = rows[j * stride + d];
    for (int j = n; j < kKeyTile; ++j) dst[j] = 0.0f;
  }
}

// s[j] = scale * (x . row_j) for the kKeyTile rows of a transposed tile
inline void tile_dots(float* s, const float* x, const float* tile, int hs, float scale) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  for (int d = 0; d < hs; ++d) {
    const __m256 b = _mm256_set1_ps(x[d]);
    const float* t = tile + static_cast<int64_t>(d) * kKeyTile;
    a0 = _mm256_fmadd_ps(b, _mm256_loadu_ps(t), a0);
    a1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(t + 8), a1);
    a2 = _mm256_fmadd_ps(b, _mm256_loadu_ps(t + 16), a2);
    a3 = _mm256_fmadd_ps(b, _mm256_loadu_ps(t + 24), a3);
  }
  const __m256 sc = _mm256_set1_ps(scale);
  _mm256_storeu_ps(s, _mm256_mul_ps(a0, sc));
  _mm256_storeu_ps(s + 8, _mm256_mul_ps(a1, sc));
  _mm256_storeu_ps(s + 16, _mm256_mul_ps(a2, sc));
  _mm256_storeu_ps(s + 24, _mm256_mul_ps(a3, sc));
}

// o[0, hs) += sum_{j < n} c[j] * rows[j * stride + (0, hs)]
void tile_accumulate(float* o, const float* c, const float* rows, int64_t stride, int n, int hs) {
  int d0 = 0;
  for (; d0 + 64 <= hs; d0 += 64) {
    __m256 acc[8];
    for (int v = 0; v < 8; ++v) acc[v] = _mm256_loadu_ps(o + d0 + 8 * v);
    for (int j = 0; j < n; ++j) {
      const __m256 b = _mm256_set1_ps(c[j]);
      const float* r = rows + j * stride + d0;
      for (int v = 0; v < 8; ++v) acc[v] = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 8 * v), acc[v]);
    }
    for (int v = 0; v < 8; ++v) _mm256_storeu_ps(o + d0 + 8 * v, acc[v]);
  }
  for (; d0 + 8 <= hs; d0 += 8) {
    __m256 acc = _mm256_loadu_ps(o + d0);
    for (int j = 0; j < n; ++j) acc = _mm256_fmadd_ps(_mm256_set1_ps(c[j]), _mm256_loadu_ps(rows + j * stride + d0), acc);
    _mm256_storeu_ps(o + d0, acc);
  }
  for (; d0 < hs; ++d0) {
    float acc = o[d0];
    for (int j = 0; j < n; ++j) acc += c[j] * rows[j * stride + d0];
    o[d0] = acc;
  }
}

// p[j] = exp(s[j] - shift) for j < n, 0 for the rest of the tile; returns the sum
inline float tile_exp(float* p, const float* s, float shift, int n) {
  const __m256 m = _mm256_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  for (int v = 0; v < kKeyTile; v += 8) {
    const __m256i lane = _mm256_add_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane));
    const __m256 e = _mm256_and_ps(live, exp256(_mm256_sub_ps(_mm256_loadu_ps(s + v), m)));
    _mm256_storeu_ps(p + v, e);
    sum = _mm256_add_ps(sum, e);
  }
  return hsum(sum);
}
#endif
}  // namespace

void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH, ThreadPool& pool) {
  const int hs = C / NH;
  const int64_t C3 = 3 * static_cast<int64_t>(C);
  const float scale_qk = 1.0f / std::sqrt(static_cast<float>(hs));
  const int q_blocks = (T + kQueryBlock - 1) / kQueryBlock;
  pool.run(static_cast<int64_t>(B) * NH * q_blocks, [&](int64_t task, int) {
    // Later query blocks see more keys: hand them out first so that the short ones fill in at the end.
    const int qb = q_blocks - 1 - static_cast<int>(task % q_blocks);
    const int h = static_cast<int>((task / q_blocks) % NH);
    const int b = static_cast<int>(task / (static_cast<int64_t>(q_blocks) * NH));
    const float* base = qkv + static_cast<int64_t>(b) * T * C3;
    const int t0 = qb * kQueryBlock, t1 = std::min(T, t0 + kQueryBlock);
    float run_max[kQueryBlock], run_sum[kQueryBlock];
    for (int t = t0; t < t1; ++t) {
      std::fill_n(out + (static_cast<int64_t>(b) * T + t) * C + h * hs, hs, 0.0f);
      run_max[t - t0] = -INFINITY;
      run_sum[t - t0] = 0.0f;
    }
#ifdef DIXIE_AVX2
    float* kt = thread_scratch(static_cast<size_t>(hs) * kKeyTile);
    alignas(32) float s[kKeyTile], p[kKeyTile];
    for (int j0 = 0; j0 < t1; j0 += kKeyTile) {
      const int nk = std::min(kKeyTile, t1 - j0);
      transpose_tile(kt, base + j0 * C3 + C + h * hs, C3, nk, hs);
      for (int t = std::max(t0, j0); t < t1; ++t) {
        const int live = std::min(nk, t - j0 + 1);
        float* o = out + (static_cast<int64_t>(b) * T + t) * C + h * hs;
        tile_dots(s, base + t * C3 + h * hs, kt, hs, scale_qk);
        float tile_max = -INFINITY;
        for (int j = 0; j < live; ++j) tile_max = std::max(tile_max, s[j]);
        float& m = run_max[t - t0];
        if (tile_max > m) {
          const float rescale = std::exp(m - tile_max);  // 0 on the first tile
          run_sum[t - t0] *= rescale;
          scale(o, rescale, hs);
          m = tile_max;
        }
        run_sum[t - t0] += tile_exp(p, s, m, live);
        tile_accumulate(o, p, base + j0 * C3 + 2 * C + h * hs, C3, live, hs);
      }
    }
#else
    for (int t = t0; t < t1; ++t) {
      const float* q = base + t * C3 + h * hs;
      float* o = out + (static_cast<int64_t>(b) * T + t) * C + h * hs;
      float& m = run_max[t - t0];
      for (int j = 0; j <= t; ++j) {
        const float s = dot(q, base + j * C3 + C + h * hs, hs) * scale_qk;
        if (s > m) {
          const float rescale = std::exp(m - s);
          run_sum[t - t0] *= rescale;
          scale(o, rescale, hs);
          m = s;
        }
        const float p = std::exp(s - m);
        run_sum[t - t0] += p;
        axpy(o, p, base + j * C3 + 2 * C + h * hs, hs);
      }
    }
#endif
    for (int t = t0; t < t1; ++t) {
      scale(out + (static_cast<int64_t>(b) * T + t) * C + h * hs, 1.0f / run_sum[t - t0], hs);
      lse[(static_cast<int64_t>(b) * NH + h) * T + t] = run_max[t - t0] + std::log(run_sum[t - t0]);
    }
  });
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse, int B,
                        int T, int C, int NH, ThreadPool& pool) {
  const int hs = C / NH;
  const int64_t C3 = 3 * static_cast<int64_t>(C);
  const float scale_qk = 1.0f / std::sqrt(static_cast<float>(hs));
  pool.run(static_cast<int64_t>(B) * NH, [&](int64_t task, int) {
    const int h = static_cast<int>(task % NH);
    const int b = static_cast<int>(task / NH);
    const float* base = qkv + static_cast<int64_t>(b) * T * C3;
    float* dbase = dqkv + static_cast<int64_t>(b) * T * C3;
    const float* g_base = dout + static_cast<int64_t>(b) * T * C + h * hs;
    const float* row_lse = lse + (static_cast<int64_t>(b) * NH + h) * T;
    for (int t = 0; t < T; ++t) {
      for (int part = 0; part < 3; ++part) std::fill_n(dbase + t * C3 + part * C + h * hs, hs, 0.0f);
    }
    // softmax backward: ds_j = p_j (dp_j - sum_k p_k dp_k), and sum_k p_k dp_k = dout . out
#ifdef DIXIE_AVX2
    float* scratch = thread_scratch(2 * static_cast<size_t>(hs) * kKeyTile + T);
    float* kt = scratch;
    float* vt = kt + static_cast<int64_t>(hs) * kKeyTile;
    float* g_dot_out = vt + static_cast<int64_t>(hs) * kKeyTile;
    for (int t = 0; t < T; ++t) g_dot_out[t] = dot(g_base + static_cast<int64_t>(t) * C, out + (static_cast<int64_t>(b) * T + t) * C + h * hs, hs);
    alignas(32) float s[kKeyTile], dp[kKeyTile];
    alignas(32) float p_block[kQueryBlock][kKeyTile], ds_block[kQueryBlock][kKeyTile];
    float column[kQueryBlock];
    for (int j0 = 0; j0 < T; j0 += kKeyTile) {
      const int nk = std::min(kKeyTile, T - j0);
      const float* k_rows = base + j0 * C3 + C + h * hs;
      const float* v_rows = base + j0 * C3 + 2 * C + h * hs;
      transpose_tile(kt, k_rows, C3, nk, hs);
      transpose_tile(vt, v_rows, C3, nk, hs);
      for (int t0 = j0; t0 < T; t0 += kQueryBlock) {
        const int nq = std::min(kQueryBlock, T - t0);
        for (int i = 0; i < nq; ++i) {
          const int t = t0 + i;
          const int live = std::min(nk, t - j0 + 1);
          const float* g = g_base + static_cast<int64_t>(t) * C;
          tile_dots(s, base + t * C3 + h * hs, kt, hs, scale_qk);
          tile_exp(p_block[i], s, row_lse[t], live);
          tile_dots(dp, g, vt, hs, 1.0f);
          for (int j = 0; j < kKeyTile; ++j) ds_block[i][j] = p_block[i][j] * (dp[j] - g_dot_out[t]) * scale_qk;
          tile_accumulate(dbase + t * C3 + h * hs, ds_block[i], k_rows, C3, live, hs);  // dq_t
        }
        // dk_j += sum_i ds_ij q_i and dv_j += sum_i p_ij dout_i, over this block of queries
        for (int j = 0; j < nk; ++j) {
          for (int i = 0; i < nq; ++i) column[i] = ds_block[i][j];
          tile_accumulate(dbase + (j0 + j) * C3 + C + h * hs, column, base + t0 * C3 + h * hs, C3, nq, hs);
          for (int i = 0; i < nq; ++i) column[i] = p_block[i][j];
          tile_accumulate(dbase + (j0 + j) * C3 + 2 * C + h * hs, column, g_base + static_cast<int64_t>(t0) * C, C, nq, hs);
        }
      }
    }
#else
    for (int t = 0; t < T; ++t) {
      const float* q = base + t * C3 + h * hs;
      float* dq = dbase + t * C3 + h * hs;
      const float* g = g_base + static_cast<int64_t>(t) * C;
      const float g_dot_out = dot(g, out + (static_cast<int64_t>(b) * T + t) * C + h * hs, hs);
      for (int j = 0; j <= t; ++j) {
        const float* k = base + j * C3 + C + h * hs;
        const float* v = base + j * C3 + 2 * C + h * hs;
        const float p = std::exp(dot(q, k, hs) * scale_qk - row_lse[t]);
        const float ds = p * (dot(g, v, hs) - g_dot_out) * scale_qk;
        axpy(dq, ds, k, hs);
        axpy(dbase + j * C3 + C + h * hs, ds, q, hs);
        axpy(dbase + j * C3 + 2 * C + h * hs, p, g, hs);
      }
    }
#endif
  });
}

// ----------------------------------------------------------------------------------------------------------------
// gelu

void gelu_forward(float* out, const float* inp, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, kElementGrain, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
#ifdef DIXIE_AVX2
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 k0 = _mm256_set1_ps(kGeluScale), k1 = _mm256_set1_ps(kGeluCube);
    for (; i + 8 <= end; i += 8) {
      const __m256 x = _mm256_loadu_ps(inp + i);
      const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
      const __m256 th = tanh256(_mm256_mul_ps(k0, _mm256_fmadd_ps(k1, x3, x)));
      _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, th)));
    }
#endif
    for (; i < end; ++i) {
      const float x = inp[i];
      out[i] = 0.5f * x * (1.0f + std::tanh(kGeluScale * (x + kGeluCube * x * x * x)));
    }
  });
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, kElementGrain, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
#ifdef DIXIE_AVX2
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 k0 = _mm256_set1_ps(kGeluScale), k1 = _mm256_set1_ps(kGeluCube);
    const __m256 k3 = _mm256_set1_ps(3.0f * kGeluCube);
    for (; i + 8 <= end; i += 8) {
      const __m256 x = _mm256_loadu_ps(inp + i);
      const __m256 x2 = _mm256_mul_ps(x, x);
      const __m256 th = tanh256(_mm256_mul_ps(k0, _mm256_fmadd_ps(k1, _mm256_mul_ps(x2, x), x)));
      const __m256 sech2 = _mm256_fnmadd_ps(th, th, one);
      // 0.5 (1 + tanh) + 0.5 x sech^2 * k0 (1 + 3 k1 x^2)
      const __m256 local = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(half, x), sech2),
                                           _mm256_mul_ps(k0, _mm256_fmadd_ps(k3, x2, one)),
                                           _mm256_mul_ps(half, _mm256_add_ps(one, th)));
      _mm256_storeu_ps(dinp + i, _mm256_mul_ps(local, _mm256_loadu_ps(dout + i)));
    }
#endif
    for (; i < end; ++i) {
      const float x = inp[i];
      const float th = std::tanh(kGeluScale * (x + kGeluCube * x * x * x));
      const float sech2 = 1.0f - th * th;
      const float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * kGeluCube * x * x);
      dinp[i] = local * dout[i];
    }
  });
}

// ----------------------------------------------------------------------------------------------------------------
// residual

void residual_forward(float* out, const float* a, const float* b, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, kElementGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = a[i] + b[i];
  });
}

void dropout(float* out, const float* inp, int64_t N, int C, const DropoutMask& mask, bool accumulate, ThreadPool& pool) {
  pool.parallel_for(N, row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      for (int c = 0; c < C; ++c) {
        const int64_t i = n * C + c;
        const float v = mask.keeps(n, c, C) ? inp[i] * mask.scale : 0.0f;
        out[i] = accumulate ? out[i] + v : v;
      }
    }
  });
}

// ----------------------------------------------------------------------------------------------------------------
// cross-entropy

float crossentropy_forward(float* probs, float* losses, const float* logits, const int32_t* targets, int64_t N, int V,
                           ThreadPool& pool) {
  pool.parallel_for(N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = logits + r * V;
      float* p = probs + r * V;
      const float target_logit = x[targets[r]];  // read before an in-place softmax overwrites it
      losses[r] = softmax(p, x, V) - target_logit;
    }
  });
  double total = 0.0;  // serial, so the mean does not depend on the thread count
  for (int64_t r = 0; r < N; ++r) total += losses[r];
  return static_cast<float>(total / static_cast<double>(N));
}

void crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, int64_t N, int V, float dloss,
                           ThreadPool& pool) {
  pool.parallel_for(N, row_grain(V), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* d = dlogits + r * V;
      const float* p = probs + r * V;
      if (d != p) std::memcpy(d, p, sizeof(float) * V);
      scale(d, dloss, V);
      d[targets[r]] -= dloss;
    }
  });
}

}  // namespace dixie
