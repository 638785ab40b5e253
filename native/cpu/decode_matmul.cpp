#include "decode_matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <type_traits>

#include "core/dtype.h"
#include "vec_math.h"

#if defined(DIXIE_AVX2) && defined(__F16C__)
#define DIXIE_F16C 1
#endif

namespace dixie {

namespace {

// Loaders: one element, or (with AVX2) eight elements, of a weight type as float32 (exact for all three).
struct LoadF32 {
  using T = float;
  static float one(const float* p) { return *p; }
#ifdef DIXIE_AVX2
  static __m256 eight(const float* p) { return _mm256_loadu_ps(p); }
#endif
};

struct LoadF16 {
  using T = uint16_t;
  static float one(const uint16_t* p) { return f16_to_f32(*p); }
#ifdef DIXIE_AVX2
  static __m256 eight(const uint16_t* p) {
#ifdef DIXIE_F16C
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
    alignas(32) float f[8];
    for (int i = 0; i < 8; ++i) f[i] = f16_to_f32(p[i]);
    return _mm256_load_ps(f);
#endif
  }
#endif
};

struct LoadBF16 {
  using T = uint16_t;
  static float one(const uint16_t* p) { return bf16_to_f32(*p); }
#ifdef DIXIE_AVX2
  static __m256 eight(const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
#endif
};

int num_parts(int C) { return (C + kPartRows - 1) / kPartRows; }

// out[0, n) = epilogue(y[0, n)). Vector and scalar paths give the same bits (gelu1 is a lane of gelu256), so
// where the vectors start does not change a result.
void finish(float* out, const float* y, int n, Epilogue epilogue) {
  int i = 0;
#ifdef DIXIE_AVX2
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(y + i);
    switch (epilogue) {
      case Epilogue::kStore: _mm256_storeu_ps(out + i, v); break;
      case Epilogue::kGelu: _mm256_storeu_ps(out + i, gelu256(v)); break;
      case Epilogue::kResidual: _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), v)); break;
    }
  }
#endif
  for (; i < n; ++i) {
    switch (epilogue) {
      case Epilogue::kStore: out[i] = y[i]; break;
      case Epilogue::kGelu: out[i] = gelu1(y[i]); break;
      case Epilogue::kResidual: out[i] += y[i]; break;
    }
  }
}

// ---- streaming schedule (few rows) ---------------------------------------------------------------------------

// For each of G parts g (weights at w + g * w_stride, sums at acc + g * acc_stride, inputs at inp + g * kPartRows):
// acc_g[R, cols] = inp_g[R, 0:kn] @ w_g[0:kn, 0:cols], each element an fma chain over k from 0 (rows of inp ldx
// apart, of w and acc ld apart). The parts are read side by side, each as one stream through its rows (a lone
// part as eight streams of rows, a pair as four each): several long streams are what keeps memory busy. The
// sums of at most kStreamRows rows stay in L1/L2. kRows > 0 fixes R at compile time, so that a single row keeps
// its inputs in registers.
template <class W, int kRows, int G>
void stream_parts(float* acc, size_t acc_stride, const float* inp, int ldx, const typename W::T* w, size_t w_stride,
                  int R, int kn, int cols, int ld) {
  if (kRows > 0) R = kRows;
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < R; ++r) {
      float* row = acc + g * acc_stride + static_cast<size_t>(r) * ld;
      std::fill(row, row + cols, 0.0f);
    }
  constexpr int KB = G >= 3 ? 1 : 8 / G;
  int k = 0;
#ifdef DIXIE_AVX2
  for (; k + KB <= kn; k += KB) {
    __m256 x1[G][KB];  // the inputs of a single row
    if (kRows == 1)
      for (int g = 0; g < G; ++g)
        for (int i = 0; i < KB; ++i) x1[g][i] = _mm256_set1_ps(inp[g * kPartRows + k + i]);
    int j = 0;
    for (; j + 8 <= cols; j += 8) {
      for (int g = 0; g < G; ++g) {
        const typename W::T* wk = w + g * w_stride + static_cast<size_t>(k) * ld + j;
        __m256 v[KB];
        for (int i = 0; i < KB; ++i) v[i] = W::eight(wk + static_cast<size_t>(i) * ld);
        for (int r = 0; r < R; ++r) {
          const float* x = inp + static_cast<size_t>(r) * ldx + g * kPartRows + k;
          float* o = acc + g * acc_stride + static_cast<size_t>(r) * ld + j;
          __m256 a = _mm256_loadu_ps(o);
          for (int i = 0; i < KB; ++i) a = _mm256_fmadd_ps(kRows == 1 ? x1[g][i] : _mm256_broadcast_ss(x + i), v[i], a);
          _mm256_storeu_ps(o, a);
        }
      }
    }
    for (; j < cols; ++j)
      for (int g = 0; g < G; ++g)
        for (int r = 0; r < R; ++r) {
          float& o = acc[g * acc_stride + static_cast<size_t>(r) * ld + j];
          for (int i = 0; i < KB; ++i)
            o = std::fma(inp[static_cast<size_t>(r) * ldx + g * kPartRows + k + i],
                         W::one(w + g * w_stride + static_cast<size_t>(k + i) * ld + j), o);
        }
  }
#endif
  for (; k < kn; ++k)
    for (int g = 0; g < G; ++g)
      for (int j = 0; j < cols; ++j) {
        const float v = W::one(w + g * w_stride + static_cast<size_t>(k) * ld + j);
        for (int r = 0; r < R; ++r) {
          float& o = acc[g * acc_stride + static_cast<size_t>(r) * ld + j];
          o = std::fma(inp[static_cast<size_t>(r) * ldx + g * kPartRows + k], v, o);
        }
      }
}

// How a product's parts are streamed, so that each thread has several long runs to read and an equal share.
// Rows of 4 KB or more are long runs already: a task streams one part as eight runs of rows. A part's columns are
// split (in halves, down to 2 KB) only while there are under two tasks per thread, since a split shortens every
// run, and short runs read slower (on 2 threads: 2.3 KB runs at 12 GB/s, whole 4.6 KB rows at 16). Shorter rows:
// a task streams 4, 3 or 2 parts side by side (one run each), the first that leaves an equal number of tasks to
// every thread (6 or 8 parts side by side left too few tasks to balance: 11 GB/s against 15). Only the schedule
// depends on the thread count, never a sum. Parts side by side read one row of w at a time each, which suits a
// single row of inp only: more rows would load and store their sums once per row of w, not once per eight.
struct StreamPlan {
  int group, splits;
};
StreamPlan stream_plan(int full_parts, int OC, size_t elem_bytes, int threads, int R) {
  const size_t row = static_cast<size_t>(OC) * elem_bytes;
  if (row >= 4096 || R > 1) {
    int splits = 1;
    while (full_parts * splits < 2 * threads && row / (2 * splits) >= 2048) splits *= 2;
    return {1, splits};
  }
  for (int group : {4, 3, 2})
    if (full_parts % group == 0 && (full_parts / group) % threads == 0) return {group, 1};
  return {1, 1};
}

// Waits (spinning, then yielding the core) until counter reaches target. PAUSE only now and then: under a
// hypervisor a run of PAUSEs gets the vCPU descheduled (pause-loop exiting).
void wait_for(const std::atomic<int>& counter, int target) {
  for (int spins = 0; counter.load(std::memory_order_acquire) < target; ++spins) {
    if (spins < (1 << 16)) {
#if defined(__x86_64__) || defined(__i386__)
      if (spins % 64 == 63) __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

template <class W>
void stream_matmul(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* partials, ThreadPool& pool) {
  // The first tasks stream parts (a group of them, or a column range of one) into their partial sums; the tasks
  // after them wait for all of those and write out = epilogue(((bias + P_0) + P_1) + ...) for a block of columns
  // each. Tasks are handed out in order, so a thread waits only on streams already running, and the sums are
  // added by all threads within the same dispatch.
  constexpr int kBlock = 128;
  const int parts = num_parts(C), full = C / kPartRows;
  const StreamPlan plan = stream_plan(full, OC, sizeof(typename W::T), pool.size(), R);
  const int groups = full / plan.group;
  const int units = groups + (parts > full ? 1 : 0);  // the groups, then the short last part on its own
  const int split_cols = (OC / plan.splits + 7) / 8 * 8;
  const int stream_tasks = units * plan.splits;
  const int blocks = (OC + kBlock - 1) / kBlock;
  const size_t acc_stride = static_cast<size_t>(R) * OC, w_stride = static_cast<size_t>(kPartRows) * OC;
  std::atomic<int> parts_done{0};
  pool.run(stream_tasks + blocks, [&](int64_t task, int) {
    if (task < stream_tasks) {
      const int unit = static_cast<int>(task) / plan.splits, j0 = static_cast<int>(task) % plan.splits * split_cols;
      const int p0 = unit < groups ? unit * plan.group : full, k0 = p0 * kPartRows;
      const int g = unit < groups ? plan.group : 1, kn = std::min(kPartRows, C - k0);
      const int cols = std::max(0, std::min(split_cols, OC - j0));
      float* acc = partials + p0 * acc_stride + j0;
      const typename W::T* wp = w + static_cast<size_t>(k0) * OC + j0;
      const auto run = [&](auto rows, auto together) {
        stream_parts<W, decltype(rows)::value, decltype(together)::value>(acc, acc_stride, inp + k0, C, wp, w_stride,
                                                                          R, kn, cols, OC);
      };
      const auto run_group = [&](auto together) {
        if (R == 1) run(std::integral_constant<int, 1>{}, together);
        else run(std::integral_constant<int, 0>{}, together);
      };
      switch (g) {
        case 4: run_group(std::integral_constant<int, 4>{}); break;
        case 3: run_group(std::integral_constant<int, 3>{}); break;
        case 2: run_group(std::integral_constant<int, 2>{}); break;
        default: run_group(std::integral_constant<int, 1>{}); break;
      }
      parts_done.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    wait_for(parts_done, stream_tasks);
    const int j0 = static_cast<int>(task - stream_tasks) * kBlock, n = std::min(kBlock, OC - j0);
    float y[kBlock];
    for (int r = 0; r < R; ++r) {
      if (bias) std::copy(bias + j0, bias + j0 + n, y);
      else std::fill(y, y + n, 0.0f);
      for (int p = 0; p < parts; ++p) {
        const float* part = partials + (static_cast<size_t>(p) * R + r) * OC + j0;
        int i = 0;
#ifdef DIXIE_AVX2
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(part + i)));
#endif
        for (; i < n; ++i) y[i] += part[i];
      }
      finish(out + static_cast<size_t>(r) * OC + j0, y, n, epilogue);
    }
  });
}

// ---- packed schedule (many rows) -----------------------------------------------------------------------------

constexpr int kStrip = 16;  // columns of one strip of a packed panel: the width of the main micro-kernel

// The packed schedule keeps a part of w as float32 panels: for each panel of kPanelCols columns, kPanelCols /
// kStrip strips [kPartRows, kStrip], so a micro-kernel reads its columns as one contiguous run.
constexpr size_t kPanelFloats = static_cast<size_t>(kPartRows) * kPanelCols;

// Rows [k0, k1) of a part of w (w at the part's first row, rows OC apart) into its panels, zero beyond OC. A task
// reads whole rows, one contiguous run each.
template <class W>
void pack_rows(float* panels, const typename W::T* w, int OC, int k0, int k1) {
  for (int k = k0; k < k1; ++k) {
    const typename W::T* wk = w + static_cast<size_t>(k) * OC;
    for (int j0 = 0; j0 < OC; j0 += kStrip) {
      float* dst = panels + static_cast<size_t>(j0 / kPanelCols) * kPanelFloats +
                   static_cast<size_t>(j0 % kPanelCols) * kPartRows + static_cast<size_t>(k) * kStrip;
      const int n = std::min(kStrip, OC - j0);
      int j = 0;
#ifdef DIXIE_AVX2
      for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, W::eight(wk + j0 + j));
#endif
      for (; j < n; ++j) dst[j] = W::one(wk + j0 + j);
      for (; j < kStrip; ++j) dst[j] = 0.0f;
    }
    for (int j0 = (OC + kStrip - 1) / kStrip * kStrip; j0 % kPanelCols != 0; j0 += kStrip)  // strips past OC
      std::fill_n(panels + static_cast<size_t>(j0 / kPanelCols) * kPanelFloats + static_cast<size_t>(j0 % kPanelCols) * kPartRows +
                      static_cast<size_t>(k) * kStrip, kStrip, 0.0f);
  }
}

#ifdef DIXIE_AVX2
#define DIXIE_UNROLL _Pragma("GCC unroll 8")

// tile[MR, 8 NV] += x[MR, 0:kn] @ pack[0:kn, 8 NV] (NV / 2 strips from `pack`), the product an fma chain over k
// from 0 in registers; rows of x ldx apart, of tile kPanelCols apart.
template <int MR, int NV>
void micro_kernel(float* tile, const float* x, int ldx, const float* pack, int kn) {
  static_assert(NV % 2 == 0, "whole strips");
  __m256 acc[MR][NV];
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int k = 0; k < kn; ++k) {
    __m256 b[NV];
    DIXIE_UNROLL for (int v = 0; v < NV; ++v)
      b[v] = _mm256_loadu_ps(pack + static_cast<size_t>(v / 2) * kPartRows * kStrip + k * kStrip + (v % 2) * 8);
    DIXIE_UNROLL for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(x + static_cast<size_t>(r) * ldx + k);
      DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) {
      float* t = tile + static_cast<size_t>(r) * kPanelCols + 8 * v;
      _mm256_storeu_ps(t, _mm256_add_ps(_mm256_loadu_ps(t), acc[r][v]));
    }
}

// tile[R, kPanelCols] += x[R, 0:kn] @ pack, in blocks of 6 rows x one strip (12 accumulators) and the last rows in
// the widest block that keeps enough chains independent. Strips outermost: a strip (8 KB) stays in L1 while the
// rows pass over it.
void panel_rows(float* tile, const float* x, int ldx, const float* pack, int R, int kn) {
  const int full = R / 6 * 6;
  float* rest_tile = tile + static_cast<size_t>(full) * kPanelCols;
  const float* rest_x = x + static_cast<size_t>(full) * ldx;
  for (int s = 0; s < kPanelCols; s += kStrip) {
    const float* strip = pack + static_cast<size_t>(s) * kPartRows;
    for (int r = 0; r < full; r += 6)
      micro_kernel<6, 2>(tile + static_cast<size_t>(r) * kPanelCols + s, x + static_cast<size_t>(r) * ldx, ldx, strip, kn);
    const bool pair = s % (2 * kStrip) == 0;  // the first strip of two, for the two-strip kernels
    switch (R - full) {
      case 1: if (pair) micro_kernel<1, 4>(rest_tile + s, rest_x, ldx, strip, kn); break;
      case 2: if (pair) micro_kernel<2, 4>(rest_tile + s, rest_x, ldx, strip, kn); break;
      case 3: micro_kernel<3, 2>(rest_tile + s, rest_x, ldx, strip, kn); break;
      case 4: micro_kernel<4, 2>(rest_tile + s, rest_x, ldx, strip, kn); break;
      case 5: micro_kernel<5, 2>(rest_tile + s, rest_x, ldx, strip, kn); break;
      default: break;
    }
  }
}
#undef DIXIE_UNROLL
#else
void panel_rows(float* tile, const float* x, int ldx, const float* pack, int R, int kn) {
  for (int r = 0; r < R; ++r) {
    float acc[kPanelCols] = {};
    for (int k = 0; k < kn; ++k) {
      const float a = x[static_cast<size_t>(r) * ldx + k];
      for (int c = 0; c < kPanelCols; ++c)
        acc[c] = std::fma(a, pack[static_cast<size_t>(c / kStrip) * kPartRows * kStrip + k * kStrip + c % kStrip], acc[c]);
    }
    for (int c = 0; c < kPanelCols; ++c) tile[static_cast<size_t>(r) * kPanelCols + c] += acc[c];
  }
}
#endif

template <class W>
void packed_matmul(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool) {
  // Part by part: while the threads multiply part p (panels in one buffer), they pack part p + 1 into the other,
  // its tasks interleaved with the products so that memory and FMAs are busy together. Packing reads whole rows
  // of w, one contiguous run each, where a panel of w in place would be a column of short runs.
  const int parts = num_parts(C), panels = (OC + kPanelCols - 1) / kPanelCols;
  constexpr int kPackRows = 16;  // rows of w per packing task
  const int pack_tasks = (kPartRows + kPackRows - 1) / kPackRows;
  float* xpack = scratch;                                           // [parts][R][kPartRows]
  float* tiles = xpack + static_cast<size_t>(parts) * R * kPartRows;  // [panels][R][kPanelCols]: bias + the parts so far
  float* packs[2] = {tiles + static_cast<size_t>(panels) * R * kPanelCols, nullptr};  // [panels][kPanelFloats] each
  packs[1] = packs[0] + static_cast<size_t>(panels) * kPanelFloats;
  const auto part_rows = [&](int p) { return std::min(kPartRows, C - p * kPartRows); };
  const auto pack = [&](int p, int task) {
    const int k1 = std::min(part_rows(p), (task + 1) * kPackRows);
    if (task * kPackRows < k1) pack_rows<W>(packs[p % 2], w + static_cast<size_t>(p) * kPartRows * OC, OC, task * kPackRows, k1);
  };
  // First: inp into parts (rows of the micro-kernels' loads then sit kPartRows apart, not C apart: 4C = 12 KB
  // would put six rows in one L1 set), the tiles, and part 0.
  pool.run(parts + panels + pack_tasks, [&](int64_t task, int) {
    if (task < parts) {
      const int k0 = static_cast<int>(task) * kPartRows, kn = part_rows(static_cast<int>(task));
      for (int r = 0; r < R; ++r)
        std::copy(inp + static_cast<size_t>(r) * C + k0, inp + static_cast<size_t>(r) * C + k0 + kn,
                  xpack + (static_cast<size_t>(task) * R + r) * kPartRows);
    } else if (task < parts + panels) {
      const int j0 = static_cast<int>(task - parts) * kPanelCols, cols = std::min(kPanelCols, OC - j0);
      for (int r = 0; r < R; ++r) {
        float* t = tiles + (static_cast<size_t>(task - parts) * R + r) * kPanelCols;
        if (bias) std::copy(bias + j0, bias + j0 + cols, t);
        else std::fill(t, t + cols, 0.0f);
        std::fill(t + cols, t + kPanelCols, 0.0f);
      }
    } else {
      pack(0, static_cast<int>(task - parts - panels));
    }
  });
  for (int p = 0; p < parts; ++p) {
    const int next_tasks = p + 1 < parts ? pack_tasks : 0;
    pool.run(panels + next_tasks, [&](int64_t task, int) {
      // Products and packing alternate while both last, then whichever is left.
      const int t = static_cast<int>(task), both = std::min(panels, next_tasks);
      const bool packing = t < 2 * both ? t % 2 == 1 : panels == both;
      const int index = t < 2 * both ? t / 2 : t - both;
      if (packing) {
        pack(p + 1, index);
        return;
      }
      const int panel = index;
      float* tile = tiles + static_cast<size_t>(panel) * R * kPanelCols;
      panel_rows(tile, xpack + static_cast<size_t>(p) * R * kPartRows, kPartRows, packs[p % 2] + panel * kPanelFloats, R,
                 part_rows(p));
      if (p + 1 == parts) {
        const int j0 = panel * kPanelCols, cols = std::min(kPanelCols, OC - j0);
        for (int r = 0; r < R; ++r) finish(out + static_cast<size_t>(r) * OC + j0, tile + static_cast<size_t>(r) * kPanelCols, cols, epilogue);
      }
    });
  }
}

template <class W>
void matmul_t(float* out, const float* inp, const typename W::T* w, const float* bias, int R, int C, int OC,
              Epilogue epilogue, float* scratch, ThreadPool& pool) {
  if (R <= kStreamRows) stream_matmul<W>(out, inp, w, bias, R, C, OC, epilogue, scratch, pool);
  else packed_matmul<W>(out, inp, w, bias, R, C, OC, epilogue, scratch, pool);
}

// ---- output head ----------------------------------------------------------------------------------------------

constexpr int kHeadTask = 128;  // vocabulary rows per task

// out[r * ldo + i * out_step] = dot(inp[r], w[i * w_step, C)) for RB rows of inp (C apart) and NB rows of w: per
// output one 8-lane fma chain over C, a horizontal sum, then the tail, whatever the block shape.
template <class W, int RB, int NB>
void dot_block(float* out, int ldo, int out_step, const float* inp, const typename W::T* w, size_t w_step, int C) {
  float sums[RB][NB];
  int c = 0;
#ifdef DIXIE_AVX2
  __m256 acc[RB][NB];
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) acc[r][i] = _mm256_setzero_ps();
  for (; c + 8 <= C; c += 8) {
    __m256 v[NB];
    for (int i = 0; i < NB; ++i) v[i] = W::eight(w + i * w_step + c);
    for (int r = 0; r < RB; ++r) {
      const __m256 x = _mm256_loadu_ps(inp + static_cast<size_t>(r) * C + c);
      for (int i = 0; i < NB; ++i) acc[r][i] = _mm256_fmadd_ps(x, v[i], acc[r][i]);
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) sums[r][i] = hsum(acc[r][i]);
#else
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) sums[r][i] = 0.0f;
#endif
  for (; c < C; ++c)
    for (int r = 0; r < RB; ++r)
      for (int i = 0; i < NB; ++i)
        sums[r][i] = std::fma(inp[static_cast<size_t>(r) * C + c], W::one(w + i * w_step + c), sums[r][i]);
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NB; ++i) out[static_cast<size_t>(r) * ldo + i * out_step] = sums[r][i];
}

// out[R, n] (rows ldo apart) = inp[R, C] @ w[n, C]^T. The n rows of w are read as NB streams of n / NB
// consecutive rows each, side by side (eight for one row of inp, four shared by pairs of rows for more): many
// streams keep memory busy, and each runs through many rows, long even where a row is short.
template <class W>
void dot_rows(float* out, int ldo, const float* inp, const typename W::T* w, int n, int R, int C) {
  const int NB = R == 1 ? 8 : 4;
  const int m = n / NB;  // rows per stream
  const size_t step = static_cast<size_t>(m) * C;
  for (int i = 0; i < m; ++i) {
    const typename W::T* wi = w + static_cast<size_t>(i) * C;
    if (R == 1) {
      dot_block<W, 1, 8>(out + i, ldo, m, inp, wi, step, C);
      continue;
    }
    int r = 0;
    for (; r + 2 <= R; r += 2) dot_block<W, 2, 4>(out + static_cast<size_t>(r) * ldo + i, ldo, m, inp + static_cast<size_t>(r) * C, wi, step, C);
    if (r < R) dot_block<W, 1, 4>(out + static_cast<size_t>(r) * ldo + i, ldo, m, inp + static_cast<size_t>(r) * C, wi, step, C);
  }
  for (int j = NB * m; j < n; ++j)
    for (int r = 0; r < R; ++r)
      dot_block<W, 1, 1>(out + static_cast<size_t>(r) * ldo + j, ldo, 1, inp + static_cast<size_t>(r) * C, w + static_cast<size_t>(j) * C, 0, C);
}

template <class W>
void convert_rows(float* dst, const typename W::T* src, size_t n) {
  size_t i = 0;
#ifdef DIXIE_AVX2
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, W::eight(src + i));
#endif
  for (; i < n; ++i) dst[i] = W::one(src + i);
}

template <class W>
void head_matmul_t(float* out, const float* inp, const typename W::T* w, int R, int C, int V, float* scratch,
                   ThreadPool& pool) {
  // 16-bit rows are converted once, four at a time, into the thread's scratch when several row pairs would each
  // convert them.
  constexpr bool is_16bit = !std::is_same<typename W::T, float>::value;
  const bool convert = is_16bit && R > 2;
  pool.run((V + kHeadTask - 1) / kHeadTask, [&](int64_t task, int thread) {
    const int begin = static_cast<int>(task) * kHeadTask, n = std::min(V, begin + kHeadTask) - begin;
    const typename W::T* wt = w + static_cast<size_t>(begin) * C;
    if (!convert) {
      dot_rows<W>(out + begin, V, inp, wt, n, R, C);
      return;
    }
    float* rows = scratch + static_cast<size_t>(thread) * 4 * C;
    for (int j = 0; j < n; j += 4) {
      const int m = std::min(4, n - j);
      convert_rows<W>(rows, wt + static_cast<size_t>(j) * C, static_cast<size_t>(m) * C);
      dot_rows<LoadF32>(out + begin + j, V, inp, rows, m, R, C);
    }
  });
}

}  // namespace

size_t decode_matmul_scratch(int max_rows, int C, int OC, int threads) {
  (void)threads;
  const size_t panels = (OC + kPanelCols - 1) / kPanelCols;
  const size_t stream = static_cast<size_t>(num_parts(C)) * std::min(max_rows, kStreamRows) * OC;
  const size_t packed = static_cast<size_t>(num_parts(C)) * max_rows * kPartRows + panels * max_rows * kPanelCols +
                        2 * panels * kPanelFloats;
  return std::max(stream, packed);
}

void decode_matmul(float* out, const float* inp, WeightsView w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool) {
  switch (w.dtype) {
    case DType::F32: matmul_t<LoadF32>(out, inp, w.f32, bias, R, C, OC, epilogue, scratch, pool); break;
    case DType::F16: matmul_t<LoadF16>(out, inp, w.u16, bias, R, C, OC, epilogue, scratch, pool); break;
    case DType::BF16: matmul_t<LoadBF16>(out, inp, w.u16, bias, R, C, OC, epilogue, scratch, pool); break;
  }
}

size_t head_matmul_scratch(int C, int threads) { return static_cast<size_t>(threads) * 4 * C; }

void head_matmul(float* out, const float* inp, WeightsView wte, int R, int C, int V, float* scratch, ThreadPool& pool) {
  switch (wte.dtype) {
    case DType::F32: head_matmul_t<LoadF32>(out, inp, wte.f32, R, C, V, scratch, pool); break;
    case DType::F16: head_matmul_t<LoadF16>(out, inp, wte.u16, R, C, V, scratch, pool); break;
    case DType::BF16: head_matmul_t<LoadBF16>(out, inp, wte.u16, R, C, V, scratch, pool); break;
  }
}

void convert_to_f32(float* dst, WeightsView src, size_t n, ThreadPool& pool) {
  pool.parallel_for(static_cast<int64_t>(n), 1 << 16, [&](int64_t begin, int64_t end) {
    const size_t count = static_cast<size_t>(end - begin);
    switch (src.dtype) {
      case DType::F32: std::copy(src.f32 + begin, src.f32 + end, dst + begin); break;
      case DType::F16: convert_rows<LoadF16>(dst + begin, src.u16 + begin, count); break;
      case DType::BF16: convert_rows<LoadBF16>(dst + begin, src.u16 + begin, count); break;
    }
  });
}

}  // namespace dixie
