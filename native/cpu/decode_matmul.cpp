#include "decode_matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "vec_math.h"

// The 4-way byte dot products of 8-bit weights: VNNI's vpdpbusd where the build targets it (AVX-512 VNNI with VL,
// or AVX-VNNI), AVX2's vpmaddubsw + vpmaddwd otherwise; exact int32 sums either way.
#if defined(DIXIE_AVX2) && ((defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__))
#define DIXIE_VNNI 1
#endif

namespace dixie {

namespace {

int num_panels(int OC) { return (OC + kPanelCols - 1) / kPanelCols; }
int num_parts(int C, int height) { return (C + height - 1) / height; }

// The f16 scale of a Q8_0 block at p (any alignment), as float32.
inline float q8_scale(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
#ifdef DIXIE_F16C
  return _cvtsh_ss(h);
#else
  return f16_to_f32(h);
#endif
}

// Int8s per input row quantized for Q8_0 rows of C: whole blocks.
int q8_row_ld(int C) { return (C + kQ8Block - 1) / kQ8Block * kQ8Block; }

constexpr int kStrip = 16;  // columns of one strip of a panel: the width of the main micro-kernel
constexpr int kQ8Quads = kQ8Block / 4;  // rows of an 8-bit block, four at a time
constexpr int kQ8ScalesAt = kQ8Block * kStrip;  // bytes into an 8-bit block where its scales are

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

// ---- float weights: products over panels ----------------------------------------------------------------------

#ifdef DIXIE_AVX2
#define DIXIE_UNROLL _Pragma("GCC unroll 8")

// tile[MR, 8 NV] (+)= x[MR, 0:kn] @ strips[0:kn, 8 NV] (NV / 2 strips from `strips`, `height` rows each), the
// product an fma chain over k from 0 in registers, then added to the tile (kAdd) or stored; rows of x ldx apart,
// of tile kPanelCols apart.
template <class W, bool kAdd, int MR, int NV>
void micro_kernel(float* tile, const float* x, int ldx, const typename W::T* strips, int height, int kn) {
  static_assert(NV % 2 == 0, "whole strips");
  __m256 acc[MR][NV];
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int k = 0; k < kn; ++k) {
    __m256 b[NV];
    DIXIE_UNROLL for (int v = 0; v < NV; ++v)
      b[v] = W::eight(strips + static_cast<size_t>(v / 2) * height * kStrip + k * kStrip + (v % 2) * 8);
    DIXIE_UNROLL for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(x + static_cast<size_t>(r) * ldx + k);
      DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) {
      float* t = tile + static_cast<size_t>(r) * kPanelCols + 8 * v;
      _mm256_storeu_ps(t, kAdd ? _mm256_add_ps(_mm256_loadu_ps(t), acc[r][v]) : acc[r][v]);
    }
}

// tile[R, kPanelCols] (+)= x[R, 0:kn] @ panel (strips of `height` rows), in blocks of 6 rows x one strip (12
// accumulators) and the last rows in the widest block that keeps enough chains independent. Strips outermost: a
// strip stays in cache (L2 for the tallest parts) while the rows pass over it.
template <class W, bool kAdd>
void float_panel_rows(float* tile, const float* x, int ldx, const typename W::T* panel, int R, int height, int kn) {
  const int full = R / 6 * 6;
  float* rest_tile = tile + static_cast<size_t>(full) * kPanelCols;
  const float* rest_x = x + static_cast<size_t>(full) * ldx;
  for (int s = 0; s < kPanelCols; s += kStrip) {
    const typename W::T* strip = panel + static_cast<size_t>(s) * height;
    for (int r = 0; r < full; r += 6)
      micro_kernel<W, kAdd, 6, 2>(tile + static_cast<size_t>(r) * kPanelCols + s, x + static_cast<size_t>(r) * ldx, ldx, strip, height, kn);
    const bool pair = s % (2 * kStrip) == 0;  // the first strip of two, for the two-strip kernels
    switch (R - full) {
      case 1: if (s == 0) micro_kernel<W, kAdd, 1, 8>(rest_tile, rest_x, ldx, strip, height, kn); break;  // the whole panel: four runs
      case 2: if (pair) micro_kernel<W, kAdd, 2, 4>(rest_tile + s, rest_x, ldx, strip, height, kn); break;
      case 3: micro_kernel<W, kAdd, 3, 2>(rest_tile + s, rest_x, ldx, strip, height, kn); break;
      case 4: micro_kernel<W, kAdd, 4, 2>(rest_tile + s, rest_x, ldx, strip, height, kn); break;
      case 5: micro_kernel<W, kAdd, 5, 2>(rest_tile + s, rest_x, ldx, strip, height, kn); break;
      default: break;
    }
  }
}
#else
template <class W, bool kAdd>
void float_panel_rows(float* tile, const float* x, int ldx, const typename W::T* panel, int R, int height, int kn) {
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kPanelCols; ++c) {
      float acc = 0.0f;
      for (int k = 0; k < kn; ++k)
        acc = std::fma(x[static_cast<size_t>(r) * ldx + k], W::one(panel + static_cast<size_t>(c / kStrip) * height * kStrip + k * kStrip + c % kStrip), acc);
      float& t = tile[static_cast<size_t>(r) * kPanelCols + c];
      t = kAdd ? t + acc : acc;
    }
}
#endif


// ---- 8-bit weights: quantized rows and integer products over panels -------------------------------------------

// q[0, kQ8Block) = x[0, n) (zeros past n) quantized to int8, round to nearest even of x * (1 / d) where d =
// max |x| / 127; returns d. The vector and scalar paths give the same bits.
float quantize_row_block(const float* x, int n, int8_t* q) {
  float amax = 0.0f;
#ifdef DIXIE_AVX2
  if (n == kQ8Block) {
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      m = _mm256_max_ps(m, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v[i]));
    }
    amax = hmax(m);
    const float d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i w[4];
    for (int i = 0; i < 4; ++i) w[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));
    // The two packs interleave the 128-bit lanes; the permutation puts the 4-byte groups back in order.
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(w[0], w[1]), _mm256_packs_epi32(w[2], w[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return d;
  }
#endif
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < kQ8Block; ++i) q[i] = i < n ? static_cast<int8_t>(std::nearbyint(x[i] * id)) : 0;
  return d;
}

// One part of the input rows for 8-bit weights: q [R][ld] int8 (ld = the part's height), d [R][ld / kQ8Block]
// the scales of their blocks.
struct Q8Rows {
  const int8_t* q;
  const float* d;
  int ld;
  Q8Rows from(int r) const { return {q + static_cast<size_t>(r) * ld, d + static_cast<size_t>(r) * (ld / kQ8Block), ld}; }
};

#ifdef DIXIE_AVX2
// acc + the four-byte dot products of u (unsigned) and s (signed), lane by lane.
inline __m256i dot4(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
  // Pairs of u8 x s8 products summed into int16 do not saturate: |x| and |w| are at most 127.
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// tile[MR, 8 NV] (+)= x[MR, part] @ strips over `blocks` blocks (NV / 2 strips of strip_bytes from `strips`): per
// block the int32 dot products of the quantized rows with the weights (|x| times w with x's sign, the operands of
// the unsigned-by-signed byte products), then per block an fma chain, from 0, of (sum) x (row scale x column scale);
// added to the tile (kAdd) or stored.
template <bool kAdd, int MR, int NV>
void q8_micro_kernel(float* tile, const Q8Rows& x, const uint8_t* strips, size_t strip_bytes, int blocks) {
  static_assert(NV % 2 == 0, "whole strips");
  const int lds = x.ld / kQ8Block;
  __m256 chain[MR][NV];
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) chain[r][v] = _mm256_setzero_ps();
  for (int b = 0; b < blocks; ++b) {
    const uint8_t* block = strips + static_cast<size_t>(b) * kQ8BlockBytes;
    __m256i acc[MR][NV];
    DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_si256();
    for (int q = 0; q < kQ8Quads; ++q) {
      __m256i w[NV];
      DIXIE_UNROLL for (int v = 0; v < NV; ++v)
        w[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(block + (v / 2) * strip_bytes + q * 64 + (v % 2) * 32));
      DIXIE_UNROLL for (int r = 0; r < MR; ++r) {
        int32_t quad;
        std::memcpy(&quad, x.q + static_cast<size_t>(r) * x.ld + b * kQ8Block + 4 * q, 4);
        const __m256i xs = _mm256_set1_epi32(quad);
        const __m256i ax = _mm256_sign_epi8(xs, xs);
        DIXIE_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = dot4(acc[r][v], ax, _mm256_sign_epi8(w[v], xs));
      }
    }
    __m256 ws[NV];
    DIXIE_UNROLL for (int v = 0; v < NV; ++v)
      ws[v] = LoadF16::eight(reinterpret_cast<const uint16_t*>(block + (v / 2) * strip_bytes + kQ8ScalesAt) + (v % 2) * 8);
    DIXIE_UNROLL for (int r = 0; r < MR; ++r) {
      const __m256 xd = _mm256_set1_ps(x.d[r * lds + b]);
      DIXIE_UNROLL for (int v = 0; v < NV; ++v)
        chain[r][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][v]), _mm256_mul_ps(xd, ws[v]), chain[r][v]);
    }
  }
  DIXIE_UNROLL for (int r = 0; r < MR; ++r) DIXIE_UNROLL for (int v = 0; v < NV; ++v) {
      float* t = tile + static_cast<size_t>(r) * kPanelCols + 8 * v;
      _mm256_storeu_ps(t, kAdd ? _mm256_add_ps(_mm256_loadu_ps(t), chain[r][v]) : chain[r][v]);
    }
}

// tile[R, kPanelCols] (+)= x[R, part] @ panel, in blocks of 4 rows x one strip (8 integer accumulators) and the last
// rows in the widest block that fits the 16 registers; strips outermost, as for float weights.
template <bool kAdd>
void q8_panel_rows(float* tile, const Q8Rows& x, const uint8_t* panel, int R, int height, int kn) {
  const size_t strip_bytes = static_cast<size_t>(height / kQ8Block) * kQ8BlockBytes;
  const int blocks = (kn + kQ8Block - 1) / kQ8Block, full = R / 4 * 4;
  float* rest_tile = tile + static_cast<size_t>(full) * kPanelCols;
  const Q8Rows rest = x.from(full);
  for (int s = 0; s < kPanelCols; s += kStrip) {
    const uint8_t* strip = panel + (s / kStrip) * strip_bytes;
    for (int r = 0; r < full; r += 4)
      q8_micro_kernel<kAdd, 4, 2>(tile + static_cast<size_t>(r) * kPanelCols + s, x.from(r), strip, strip_bytes, blocks);
    switch (R - full) {
      case 1: if (s == 0) q8_micro_kernel<kAdd, 1, 8>(rest_tile, rest, strip, strip_bytes, blocks); break;  // the whole panel
      case 2: if (s % (2 * kStrip) == 0) q8_micro_kernel<kAdd, 2, 4>(rest_tile + s, rest, strip, strip_bytes, blocks); break;
      case 3: q8_micro_kernel<kAdd, 3, 2>(rest_tile + s, rest, strip, strip_bytes, blocks); break;
      default: break;
    }
  }
}
#undef DIXIE_UNROLL
#else
template <bool kAdd>
void q8_panel_rows(float* tile, const Q8Rows& x, const uint8_t* panel, int R, int height, int kn) {
  const size_t strip_bytes = static_cast<size_t>(height / kQ8Block) * kQ8BlockBytes;
  const int blocks = (kn + kQ8Block - 1) / kQ8Block, lds = x.ld / kQ8Block;
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kPanelCols; ++c) {
      float chain = 0.0f;
      for (int b = 0; b < blocks; ++b) {
        const uint8_t* block = panel + (c / kStrip) * strip_bytes + static_cast<size_t>(b) * kQ8BlockBytes;
        const int8_t* xq = x.q + static_cast<size_t>(r) * x.ld + b * kQ8Block;
        int32_t sum = 0;
        for (int k = 0; k < kQ8Block; ++k) sum += xq[k] * static_cast<int8_t>(block[(k / 4) * 64 + (c % kStrip) * 4 + k % 4]);
        chain = std::fma(static_cast<float>(sum), x.d[r * lds + b] * q8_scale(block + kQ8ScalesAt + (c % kStrip) * 2), chain);
      }
      float& t = tile[static_cast<size_t>(r) * kPanelCols + c];
      t = kAdd ? t + chain : chain;
    }
}
#endif

// ---- the weight types, as the schedules below see them --------------------------------------------------------
//   T                   the panels' storage type
//   height(C)           rows of a part
//   block(C)            elements of T in one (part, panel) block
//   Rows                one part of the input rows as the products read them
//   prepared(R, height, pack)   floats of scratch that prepare needs for a part of R rows
//   prepare(...)        the rows [k0, k0 + kn) of inp[R, ld] (inp already at k0) as Rows, in buf or in place
//   rows<kAdd>(...)     tile[R, kPanelCols] (+)= Rows @ one (part, panel) block

// Float weights read through loader W. The streaming schedule reads the input in place; the tiled one copies it by
// parts, which puts the rows that the micro-kernels load a part's height apart, not C apart (4C = 12 KB would put six
// rows in one L1 set).
template <class W>
struct FloatWeights {
  using T = typename W::T;
  struct Rows {
    const float* x;
    int ld;
  };
  static int height(int C) { return part_rows(C); }
  static size_t block(int C) { return static_cast<size_t>(part_rows(C)) * kPanelCols; }
  static size_t prepared(int R, int height, bool pack) { return pack ? static_cast<size_t>(R) * height : 0; }
  static Rows prepare(float* buf, const float* inp, int ld, int R, int kn, int height, bool pack) {
    if (!pack) return {inp, ld};
    for (int r = 0; r < R; ++r) std::copy(inp + static_cast<size_t>(r) * ld, inp + static_cast<size_t>(r) * ld + kn, buf + static_cast<size_t>(r) * height);
    return {buf, height};
  }
  template <bool kAdd>
  static void rows(float* tile, const Rows& x, const T* panel, int R, int height, int kn) {
    float_panel_rows<W, kAdd>(tile, x.x, x.ld, panel, R, height, kn);
  }
};

// 8-bit weights: both schedules quantize the input, a part at a time (so a row's blocks are the same either way).
struct Q8Weights {
  using T = uint8_t;
  using Rows = Q8Rows;
  static int height(int C) { return q8_part_rows(C); }
  static size_t block(int C) { return static_cast<size_t>(q8_part_rows(C) / kQ8Block) * (kPanelCols / kStrip) * kQ8BlockBytes; }
  static size_t prepared(int R, int height, bool) {
    const size_t bytes = static_cast<size_t>(R) * (height / kQ8Block) * sizeof(float) + static_cast<size_t>(R) * height;
    return (bytes + 63) / 64 * 16;
  }
  static Rows prepare(float* buf, const float* inp, int ld, int R, int kn, int height, bool) {
    const int lds = height / kQ8Block;
    int8_t* q = reinterpret_cast<int8_t*>(buf + static_cast<size_t>(R) * lds);
    for (int r = 0; r < R; ++r)
      for (int b = 0; b * kQ8Block < kn; ++b)
        buf[r * lds + b] = quantize_row_block(inp + static_cast<size_t>(r) * ld + b * kQ8Block, std::min(kQ8Block, kn - b * kQ8Block),
                                              q + static_cast<size_t>(r) * height + b * kQ8Block);
    return {q, buf, height};
  }
  template <bool kAdd>
  static void rows(float* tile, const Rows& x, const uint8_t* panel, int R, int height, int kn) {
    q8_panel_rows<kAdd>(tile, x, panel, R, height, kn);
  }
};

// ---- the two schedules ----------------------------------------------------------------------------------------

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

// The streaming schedule's tasks: groups of G parts read side by side (G = 4, 3 or 2 where it divides the parts;
// several long runs keep memory busy) times ranges of panels, at least two tasks per thread and a multiple of the
// threads, so that no thread is left alone with a last task (7 parts at 1600 channels gave 4 tasks to one thread
// and 3 to the other).
struct StreamPlan {
  int group = 1, chunks = 1, per_chunk = 0, tasks = 0;
};
constexpr int kMaxGroup = 4;

StreamPlan plan_stream(int parts, int panels, int threads) {
  StreamPlan plan;
  for (int g : {4, 3, 2})
    if (parts % g == 0) {
      plan.group = g;
      break;
    }
  const int groups = parts / plan.group;
  while (plan.chunks < panels && (groups * plan.chunks < 2 * threads || groups * plan.chunks % threads != 0)) ++plan.chunks;
  plan.per_chunk = (panels + plan.chunks - 1) / plan.chunks;
  plan.chunks = (panels + plan.per_chunk - 1) / plan.per_chunk;  // no empty range
  plan.tasks = groups * plan.chunks;
  return plan;
}

// Few rows, bound by reading the weights: every (part, panel) product is independent, so the threads stream
// the panels without a barrier between parts and write P_p; the tasks after them wait for all of those and add up
// out = epilogue(((bias + P_0) + P_1) + ...) for a panel each.
template <class P>
void stream_matmul(float* out, const float* inp, const typename P::T* w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool) {
  const int height = P::height(C), parts = num_parts(C, height), panels = num_panels(OC);
  const size_t block = P::block(C), prepared = P::prepared(R, height, false);
  const StreamPlan plan = plan_stream(parts, panels, pool.size());
  const size_t part_stride = static_cast<size_t>(panels) * R * kPanelCols;  // partials: [parts][panels][R][kPanelCols]
  float* partials = scratch;
  float* buffers = partials + parts * part_stride;  // [threads][kMaxGroup][prepared]
  std::atomic<int> streams_done{0};
  pool.run(plan.tasks + panels, [&](int64_t task, int thread) {
    if (task < plan.tasks) {
      const int p0 = static_cast<int>(task) / plan.chunks * plan.group, q0 = static_cast<int>(task) % plan.chunks * plan.per_chunk;
      typename P::Rows x[kMaxGroup];
      for (int g = 0; g < plan.group; ++g)
        x[g] = P::prepare(buffers + (static_cast<size_t>(thread) * kMaxGroup + g) * prepared, inp + (p0 + g) * height, C, R,
                          std::min(height, C - (p0 + g) * height), height, false);
      for (int q = q0; q < std::min(panels, q0 + plan.per_chunk); ++q)
        for (int g = 0; g < plan.group; ++g) {
          const int p = p0 + g;
          P::template rows<false>(partials + p * part_stride + static_cast<size_t>(q) * R * kPanelCols, x[g],
                                  w + (static_cast<size_t>(p) * panels + q) * block, R, height, std::min(height, C - p * height));
        }
      streams_done.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    wait_for(streams_done, plan.tasks);
    const int q = static_cast<int>(task - plan.tasks), j0 = q * kPanelCols, n = std::min(kPanelCols, OC - j0);
    float y[kPanelCols];
    for (int r = 0; r < R; ++r) {
      if (bias) std::copy(bias + j0, bias + j0 + n, y);
      else std::fill(y, y + n, 0.0f);
      for (int p = 0; p < parts; ++p) {
        const float* part = partials + p * part_stride + (static_cast<size_t>(q) * R + r) * kPanelCols;
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

// More rows, bound by the arithmetic: each panel's tile starts at the bias and takes the parts in order, a parallel
// region per part, over the input prepared (copied or quantized) by parts first.
template <class P>
void tiled_matmul(float* out, const float* inp, const typename P::T* w, const float* bias, int R, int C, int OC,
                  Epilogue epilogue, float* scratch, ThreadPool& pool) {
  const int height = P::height(C), parts = num_parts(C, height), panels = num_panels(OC);
  const size_t block = P::block(C), prepared = P::prepared(R, height, true);
  float* tiles = scratch;                                       // [panels][R][kPanelCols]
  float* xpack = tiles + static_cast<size_t>(panels) * R * kPanelCols;  // [parts][prepared]
  std::vector<typename P::Rows> x(parts);
  const auto rows_of = [&](int p) { return std::min(height, C - p * height); };
  pool.run(parts + panels, [&](int64_t task, int) {
    if (task < parts) {
      const int p = static_cast<int>(task);
      x[p] = P::prepare(xpack + p * prepared, inp + p * height, C, R, rows_of(p), height, true);
      return;
    }
    const int j0 = static_cast<int>(task - parts) * kPanelCols, cols = std::min(kPanelCols, OC - j0);
    for (int r = 0; r < R; ++r) {
      float* t = tiles + (static_cast<size_t>(task - parts) * R + r) * kPanelCols;
      if (bias) std::copy(bias + j0, bias + j0 + cols, t);
      else std::fill(t, t + cols, 0.0f);
      std::fill(t + cols, t + kPanelCols, 0.0f);
    }
  });
  for (int p = 0; p < parts; ++p) {
    pool.run(panels, [&](int64_t task, int) {
      const int q = static_cast<int>(task);
      float* tile = tiles + static_cast<size_t>(q) * R * kPanelCols;
      P::template rows<true>(tile, x[p], w + (static_cast<size_t>(p) * panels + q) * block, R, height, rows_of(p));
      if (p + 1 == parts) {
        const int j0 = q * kPanelCols, cols = std::min(kPanelCols, OC - j0);
        for (int r = 0; r < R; ++r) finish(out + static_cast<size_t>(r) * OC + j0, tile + static_cast<size_t>(r) * kPanelCols, cols, epilogue);
      }
    });
  }
}

template <class P>
void matmul_t(float* out, const float* inp, const typename P::T* w, const float* bias, int R, int C, int OC,
              Epilogue epilogue, float* scratch, ThreadPool& pool) {
  if (R <= kStreamRows) stream_matmul<P>(out, inp, w, bias, R, C, OC, epilogue, scratch, pool);
  else tiled_matmul<P>(out, inp, w, bias, R, C, OC, epilogue, scratch, pool);
}

// Floats of scratch for either schedule of P.
template <class P>
size_t matmul_scratch(int max_rows, int C, int OC, int threads) {
  const int height = P::height(C);
  const size_t parts = num_parts(C, height), panels = num_panels(OC);
  const int stream_rows = std::min(max_rows, kStreamRows);
  const size_t stream = parts * panels * stream_rows * kPanelCols + static_cast<size_t>(threads) * kMaxGroup * P::prepared(stream_rows, height, false);
  const size_t tiled = panels * max_rows * kPanelCols + parts * P::prepared(max_rows, height, true);
  return std::max(stream, tiled);
}

// ---- output head ----------------------------------------------------------------------------------------------

constexpr int kHeadTask = 128;  // vocabulary rows per task

// The head's operands, as dot_rows reads them:
//   T, Input        the storage type of the rows of w; the rows of inp
//   stride(C)       elements of T from one row of w to the next
//   at(x, r, C)     the rows of x from row r on
//   dot<RB, NB>(out, ldo, out_step, x, w, w_step, C)
//                   out[r * ldo + i * out_step] = inp row r . w row i for RB rows of x and NB rows of w (w_step apart)

// Rows of w in a float type read through W: per output one 8-lane fma chain over C, a horizontal sum, then the tail,
// whatever the block shape.
template <class W>
struct FloatHead {
  using T = typename W::T;
  using Input = const float*;
  static size_t stride(int C) { return C; }
  static Input at(Input x, int r, int C) { return x + static_cast<size_t>(r) * C; }
  template <int RB, int NB>
  static void dot(float* out, int ldo, int out_step, Input inp, const T* w, size_t w_step, int C) {
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
};

// Q8_0 rows of w against the input quantized by the same blocks (Q8Rows, ld a whole number of blocks): per output
// 8 lanes, lane l an fma chain over the blocks of (the exact int32 sum of the products of bytes 4l..4l+3) x (the
// input block's scale x the row block's scale), then the horizontal sum of hsum. The plain path computes the same
// lanes in the same order, so it gives the same bits.
struct Q8Head {
  using T = uint8_t;
  using Input = Q8Rows;
  static size_t stride(int C) { return q8_row_bytes(C); }
  static Input at(const Input& x, int r, int) { return x.from(r); }
  template <int RB, int NB>
  static void dot(float* out, int ldo, int out_step, const Input& x, const uint8_t* w, size_t w_step, int C) {
    const int blocks = (C + kQ8Block - 1) / kQ8Block, lds = x.ld / kQ8Block;
#ifdef DIXIE_AVX2
    __m256 acc[RB][NB];
    for (int r = 0; r < RB; ++r)
      for (int i = 0; i < NB; ++i) acc[r][i] = _mm256_setzero_ps();
    for (int b = 0; b < blocks; ++b) {
      __m256i wq[NB];
      float wd[NB];
      for (int i = 0; i < NB; ++i) {
        const uint8_t* block = w + i * w_step + static_cast<size_t>(b) * kQ8RowBlockBytes;
        wd[i] = q8_scale(block);
        wq[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
      }
      for (int r = 0; r < RB; ++r) {
        const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + static_cast<size_t>(r) * x.ld + b * kQ8Block));
        const __m256i ax = _mm256_sign_epi8(xq, xq);
        const float xd = x.d[r * lds + b];
        for (int i = 0; i < NB; ++i) {
          const __m256i sums = dot4(_mm256_setzero_si256(), ax, _mm256_sign_epi8(wq[i], xq));
          acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(xd * wd[i]), acc[r][i]);
        }
      }
    }
    for (int r = 0; r < RB; ++r)
      for (int i = 0; i < NB; ++i) out[static_cast<size_t>(r) * ldo + i * out_step] = hsum(acc[r][i]);
#else
    for (int r = 0; r < RB; ++r)
      for (int i = 0; i < NB; ++i) {
        float lane[8] = {};
        for (int b = 0; b < blocks; ++b) {
          const uint8_t* block = w + i * w_step + static_cast<size_t>(b) * kQ8RowBlockBytes;
          const int8_t* xq = x.q + static_cast<size_t>(r) * x.ld + b * kQ8Block;
          const float scale = x.d[r * lds + b] * q8_scale(block);
          for (int l = 0; l < 8; ++l) {
            int32_t sum = 0;
            for (int k = 4 * l; k < 4 * l + 4; ++k) sum += xq[k] * static_cast<int8_t>(block[2 + k]);
            lane[l] = std::fma(static_cast<float>(sum), scale, lane[l]);
          }
        }
        out[static_cast<size_t>(r) * ldo + i * out_step] = ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
      }
#endif
  }
};

// out[R, n] (rows ldo apart) = inp[R, C] @ w[n, C]^T, inp and w as H reads them. The n rows of w are read as NB
// streams of n / NB consecutive rows each, side by side (eight for one row of inp, four shared by pairs of rows for
// more): many streams keep memory busy, and each runs through many rows, long even where a row is short.
template <class H>
void dot_rows(float* out, int ldo, const typename H::Input& x, const typename H::T* w, int n, int R, int C) {
  const int NB = R == 1 ? 8 : 4;
  const int m = n / NB;  // rows per stream
  const size_t stride = H::stride(C), step = m * stride;
  for (int i = 0; i < m; ++i) {
    const typename H::T* wi = w + i * stride;
    if (R == 1) {
      H::template dot<1, 8>(out + i, ldo, m, x, wi, step, C);
      continue;
    }
    int r = 0;
    for (; r + 2 <= R; r += 2) H::template dot<2, 4>(out + static_cast<size_t>(r) * ldo + i, ldo, m, H::at(x, r, C), wi, step, C);
    if (r < R) H::template dot<1, 4>(out + static_cast<size_t>(r) * ldo + i, ldo, m, H::at(x, r, C), wi, step, C);
  }
  for (int j = NB * m; j < n; ++j)
    for (int r = 0; r < R; ++r)
      H::template dot<1, 1>(out + static_cast<size_t>(r) * ldo + j, ldo, 1, H::at(x, r, C), w + j * stride, 0, C);
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
      dot_rows<FloatHead<W>>(out + begin, V, inp, wt, n, R, C);
      return;
    }
    float* rows = scratch + static_cast<size_t>(thread) * 4 * C;
    for (int j = 0; j < n; j += 4) {
      const int m = std::min(4, n - j);
      convert_rows<W>(rows, wt + static_cast<size_t>(j) * C, static_cast<size_t>(m) * C);
      dot_rows<FloatHead<LoadF32>>(out + begin + j, V, inp, rows, m, R, C);
    }
  });
}

// Q8_0 rows: the input quantized once into scratch, by the blocks of the rows.
void head_matmul_q8(float* out, const float* inp, const uint8_t* w, int R, int C, int V, float* scratch, ThreadPool& pool) {
  const Q8Rows x = Q8Weights::prepare(scratch, inp, C, R, C, q8_row_ld(C), true);
  pool.run((V + kHeadTask - 1) / kHeadTask, [&](int64_t task, int) {
    const int begin = static_cast<int>(task) * kHeadTask, n = std::min(V, begin + kHeadTask) - begin;
    dot_rows<Q8Head>(out + begin, V, x, w + begin * Q8Head::stride(C), n, R, C);
  });
}

}  // namespace

int q8_part_rows(int C) {
  const int blocks = (C + kQ8Block - 1) / kQ8Block, most = kQ8MaxPartRows / kQ8Block;
  if (blocks <= most) return blocks * kQ8Block;
  int best = most;
  for (int m = most; m >= most / 2; --m)
    if ((blocks + m - 1) / m * m < (blocks + best - 1) / best * best) best = m;
  return best * kQ8Block;
}

void dequantize_q8_row(float* dst, const uint8_t* row, int j, int n) {
  for (int i = 0; i < n; ++i) {
    const uint8_t* block = row + static_cast<size_t>((j + i) / kQ8Block) * kQ8RowBlockBytes;
    dst[i] = q8_scale(block) * static_cast<float>(static_cast<int8_t>(block[2 + (j + i) % kQ8Block]));
  }
}

void quantize_q8_row(uint8_t* row, int C, int j, int n, const float* x) {
  for (int k = 0; k < n; k += kQ8Block) {
    uint8_t* block = row + static_cast<size_t>((j + k) / kQ8Block) * kQ8RowBlockBytes;
    const uint16_t scale = quantize_q8_block(x + k, 1, std::min(kQ8Block, C - (j + k)), reinterpret_cast<int8_t*>(block + 2));
    std::memcpy(block, &scale, sizeof(scale));
  }
}

size_t decode_matmul_scratch(int max_rows, int C, int OC, DType dtype, int threads) {
  return dtype == DType::Q8_0 ? matmul_scratch<Q8Weights>(max_rows, C, OC, threads)
                              : matmul_scratch<FloatWeights<LoadF32>>(max_rows, C, OC, threads);
}

size_t panel_elements(int C, int OC, DType dtype) {
  if (dtype == DType::Q8_0) return static_cast<size_t>(num_parts(C, q8_part_rows(C))) * num_panels(OC) * Q8Weights::block(C);
  return static_cast<size_t>(num_parts(C, part_rows(C))) * num_panels(OC) * FloatWeights<LoadF32>::block(C);
}

// dst = w[C, OC] (Conv1D layout) in panel layout, [part][strip][height][kStrip], zero past C and OC. One task
// per (part, strip), which writes its block as one contiguous run.
void pack_panels(float* dst, const float* w, int C, int OC, ThreadPool& pool) {
  const int strips = num_panels(OC) * (kPanelCols / kStrip), height = part_rows(C);
  pool.run(static_cast<int64_t>(num_parts(C, height)) * strips, [&](int64_t task, int) {
    const int p = static_cast<int>(task / strips), s = static_cast<int>(task % strips);
    const int k0 = p * height, kn = std::min(height, C - k0), j0 = s * kStrip, n = std::max(0, std::min(kStrip, OC - j0));
    float* block = dst + static_cast<size_t>(task) * height * kStrip;
    std::fill(block, block + static_cast<size_t>(height) * kStrip, 0.0f);
    for (int k = 0; k < kn; ++k) std::copy_n(w + static_cast<size_t>(k0 + k) * OC + j0, n, block + static_cast<size_t>(k) * kStrip);
  });
}

void unpack_panels(float* w, WeightsView panels, int C, int OC, ThreadPool& pool) {
  const int strips = num_panels(OC) * (kPanelCols / kStrip);
  const int height = panels.dtype == DType::Q8_0 ? q8_part_rows(C) : part_rows(C);
  pool.run(static_cast<int64_t>(num_parts(C, height)) * strips, [&](int64_t task, int) {
    const int p = static_cast<int>(task / strips), s = static_cast<int>(task % strips);
    const int k0 = p * height, kn = std::min(height, C - k0), j0 = s * kStrip, n = std::min(kStrip, OC - j0);
    if (n <= 0) return;  // a strip of padding
    float* out = w + static_cast<size_t>(k0) * OC + j0;
    if (panels.dtype == DType::Q8_0) {
      // Blocks of kQ8Block rows: their int8s four rows of a column side by side, then the columns' f16 scales.
      for (int kb = 0; kb < kn; kb += kQ8Block) {
        const uint8_t* q = panels.q8 + ((static_cast<size_t>(task) * height + kb) / kQ8Block) * kQ8BlockBytes;  // q8_index's block
        float scale[kStrip];
        for (int j = 0; j < n; ++j) {
          uint16_t h;
          std::memcpy(&h, q + kQ8Block * kStrip + j * 2, sizeof(h));
          scale[j] = f16_to_f32(h);
        }
        for (int r = 0; r < std::min(kQ8Block, kn - kb); ++r) {
          float* row = out + static_cast<size_t>(kb + r) * OC;
          for (int j = 0; j < n; ++j) row[j] = scale[j] * static_cast<float>(static_cast<int8_t>(q[(r / 4) * 64 + j * 4 + r % 4]));
        }
      }
      return;
    }
    const size_t block = static_cast<size_t>(task) * height * kStrip;
    for (int k = 0; k < kn; ++k) {
      float* row = out + static_cast<size_t>(k) * OC;
      const size_t at = block + static_cast<size_t>(k) * kStrip;
      switch (panels.dtype) {
        case DType::F16: convert_rows<LoadF16>(row, panels.u16 + at, n); break;
        case DType::BF16: convert_rows<LoadBF16>(row, panels.u16 + at, n); break;
        default: std::copy_n(panels.f32 + at, n, row); break;
      }
    }
  });
}

void decode_matmul(float* out, const float* inp, WeightsView w, const float* bias, int R, int C, int OC,
                   Epilogue epilogue, float* scratch, ThreadPool& pool) {
  switch (w.dtype) {
    case DType::F32: matmul_t<FloatWeights<LoadF32>>(out, inp, w.f32, bias, R, C, OC, epilogue, scratch, pool); break;
    case DType::F16: matmul_t<FloatWeights<LoadF16>>(out, inp, w.u16, bias, R, C, OC, epilogue, scratch, pool); break;
    case DType::BF16: matmul_t<FloatWeights<LoadBF16>>(out, inp, w.u16, bias, R, C, OC, epilogue, scratch, pool); break;
    case DType::Q8_0: matmul_t<Q8Weights>(out, inp, w.q8, bias, R, C, OC, epilogue, scratch, pool); break;
  }
}

size_t head_matmul_scratch(int max_rows, int C, DType dtype, int threads) {
  if (dtype == DType::Q8_0) return Q8Weights::prepared(max_rows, q8_row_ld(C), true);
  return static_cast<size_t>(threads) * 4 * C;
}

void head_matmul(float* out, const float* inp, WeightsView wte, int R, int C, int V, float* scratch, ThreadPool& pool) {
  switch (wte.dtype) {
    case DType::F32: head_matmul_t<LoadF32>(out, inp, wte.f32, R, C, V, scratch, pool); break;
    case DType::F16: head_matmul_t<LoadF16>(out, inp, wte.u16, R, C, V, scratch, pool); break;
    case DType::BF16: head_matmul_t<LoadBF16>(out, inp, wte.u16, R, C, V, scratch, pool); break;
    case DType::Q8_0: head_matmul_q8(out, inp, wte.q8, R, C, V, scratch, pool); break;
  }
}

void convert_to_f32(float* dst, WeightsView src, size_t n, ThreadPool& pool) {
  pool.parallel_for(static_cast<int64_t>(n), 1 << 16, [&](int64_t begin, int64_t end) {
    const size_t count = static_cast<size_t>(end - begin);
    switch (src.dtype) {
      case DType::F32: std::copy(src.f32 + begin, src.f32 + end, dst + begin); break;
      case DType::F16: convert_rows<LoadF16>(dst + begin, src.u16 + begin, count); break;
      case DType::BF16: convert_rows<LoadBF16>(dst + begin, src.u16 + begin, count); break;
      case DType::Q8_0: throw std::logic_error("convert_to_f32: 8-bit weights are only panels");
    }
  });
}

}  // namespace dixie
