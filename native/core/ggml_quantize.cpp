// ggml's reference quantizers, step by step in float32. This file is compiled without floating-point contraction
// (CMakeLists.txt): a fused multiply-add would round differently from ggml's separate multiply and add, and the
// blocks would no longer be llama-quantize's bytes. test/formats/ggml_quantize.test.ts holds ggml's own output.
#include "core/ggml_quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "core/dtype.h"

namespace dixie {
namespace {

void put_f16(uint8_t* at, float v) {
  const uint16_t h = f32_to_f16(v);
  at[0] = static_cast<uint8_t>(h);
  at[1] = static_cast<uint8_t>(h >> 8);
}

// The f16 at `at`, as the block's readers will see it.
float get_f16(const uint8_t* at) { return f16_to_f32(static_cast<uint16_t>(at[0] | (at[1] << 8))); }

// Round half to even for |v| < 2^22 by ggml's float addition (1.5 * 2^23 puts the integer in the low mantissa bits),
// rather than lrintf, whose result depends on the rounding mode.
int nearest_int(float v) {
  const float shifted = v + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

int clamp(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// 32 4-bit values as 16 bytes: value j in the low nibble of byte j, value j + 16 in its high nibble.
void pack_nibbles(const uint8_t* q, uint8_t* out) {
  for (int j = 0; j < 16; ++j) out[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
}

// The fifth bits of 32 5-bit values as a little-endian u32, value j's at bit j.
void pack_fifth_bits(const uint8_t* q, uint8_t* out) {
  uint32_t bits = 0;
  for (int j = 0; j < 32; ++j) bits |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
  for (int b = 0; b < 4; ++b) out[b] = static_cast<uint8_t>(bits >> (8 * b));
}

// ---- 32-value blocks: q4_0, q5_0 (a scale), q4_1, q5_1 (a scale and a minimum), q8_0 ----

// x = (q - 2^(bits-1)) d, with d the value of largest magnitude over -2^(bits-1): that value maps to q = 0, so the
// other side keeps one level more. Layout: d, [the fifth bits], the low nibbles.
template <int kBits>
void quantize_symmetric(const float* x, uint8_t* out) {
  constexpr int kHalf = 1 << (kBits - 1);
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < 32; ++i) {
    if (amax < std::fabs(x[i])) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  const float d = max / -kHalf;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(out, d);
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) {
    const float scaled = x[i] * id;
    q[i] = static_cast<uint8_t>(std::min(2 * kHalf - 1, static_cast<int>(static_cast<int8_t>(scaled + (kHalf + 0.5f)))));
  }
  if (kBits == 5) pack_fifth_bits(q, out + 2);
  pack_nibbles(q, out + (kBits == 5 ? 6 : 2));
}

// x = q d + m over the block's range [m, max]. Layout: d, m, [the fifth bits], the low nibbles.
template <int kBits>
void quantize_with_min(const float* x, uint8_t* out) {
  constexpr int kMax = (1 << kBits) - 1;
  float min = FLT_MAX, max = -FLT_MAX;
  for (int i = 0; i < 32; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
  }
  const float d = (max - min) / kMax;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(out, d);
  put_f16(out + 2, min);
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) {
    const float scaled = (x[i] - min) * id;
    q[i] = static_cast<uint8_t>(std::min(kMax, static_cast<int>(static_cast<int8_t>(scaled + 0.5f))));
  }
  if (kBits == 5) pack_fifth_bits(q, out + 4);
  pack_nibbles(q, out + (kBits == 5 ? 8 : 4));
}

// The in-memory Q8_0 quantizer (core/dtype.h) is already ggml's.
void quantize_q8_0(const float* x, uint8_t* out) {
  const uint16_t d = quantize_q8_block(x, 1, kQ8Block, reinterpret_cast<int8_t*>(out + 2));
  out[0] = static_cast<uint8_t>(d);
  out[1] = static_cast<uint8_t>(d >> 8);
}

// ---- the k-quants: 256-value super-blocks of sub-blocks whose scales are themselves quantized ----

// x ~ scale L + min with L in [0, nmax] and min <= 0, over n values weighted by w: the range's own fit, then
// nstep + 1 scales around it (nmax + rmin + rdelta * step levels over the range), each with the weighted
// least-squares scale and min of its levels, keeping the one of least weighted squared error. Returns the scale and
// sets *neg_min to -min. (ggml's make_qkx2_quants.)
float fit_scale_and_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min, float rmin, float rdelta,
                        int nstep) {
  float min = x[0], max = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, 0);
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best_error += w[i] * (diff * diff);
  }
  uint8_t trial[32];
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * step + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * trial[i] + this_min - x[i];
      error += w[i] * (diff * diff);
    }
    if (error < best_error) {
      std::copy(trial, trial + n, L);
      best_error = error;
      scale = this_scale;
      min = this_min;
    }
  }
  *neg_min = -min;
  return scale;
}

// q4_K and q5_K: 8 sub-blocks of 32, x = d sc L - dmin m, each sub-block's sc and m 6-bit, the super-block's d and
// dmin f16. Layout: d, dmin, the 12 bytes of packed scales and mins, [the fifth bits (q5_K)], the low nibbles.
template <int kBits>
void quantize_k_with_min(const float* x, uint8_t* out) {
  constexpr int kMax = (1 << kBits) - 1;
  uint8_t L[256];
  float scales[8], mins[8], weights[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = kBits == 4 ? fit_scale_and_min(32, kMax, xs, weights, L + 32 * j, &mins[j], -1.0f, 0.1f, 20)
                           : fit_scale_and_min(32, kMax, xs, weights, L + 32 * j, &mins[j], -0.5f, 0.1f, 15);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  uint8_t ls[8], lm[8];
  uint8_t* packed = out + 4;
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    // Through uint8_t first, as ggml stores them: a negative scale wraps and is then capped at 63.
    ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    if (j < 4) {
      packed[j] = ls[j];
      packed[j + 4] = lm[j];
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls[j] & 15) | ((lm[j] & 15) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
  put_f16(out, max_scale / 63.0f);
  put_f16(out + 2, max_min / 63.0f);
  // The levels again, against the scales as stored.
  const float d = get_f16(out), dmin = get_f16(out + 2);
  for (int j = 0; j < 8; ++j) {
    const float dj = d * ls[j];
    if (dj == 0) continue;
    const float mj = dmin * lm[j];
    for (int i = 0; i < 32; ++i) L[32 * j + i] = static_cast<uint8_t>(clamp(nearest_int((x[32 * j + i] + mj) / dj), 0, kMax));
  }
  // Each 64 values: the first 32 in the low nibbles of 32 bytes, the next 32 in the high; q5_K's fifth bits in 32
  // bytes, bit 2k (2k + 1) for the first (second) 32 of the k-th 64.
  uint8_t* qh = out + 16;
  uint8_t* qs = out + (kBits == 5 ? 48 : 16);
  if (kBits == 5) std::memset(qh, 0, 32);
  for (int k = 0; k < 4; ++k) {
    for (int j = 0; j < 32; ++j) {
      const uint8_t lo = L[64 * k + j], hi = L[64 * k + j + 32];
      qs[32 * k + j] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
      if (kBits == 5) qh[j] |= static_cast<uint8_t>(((lo >> 4) << (2 * k)) | ((hi >> 4) << (2 * k + 1)));
    }
  }
}

// x ~ scale (L - nmax) with L - nmax in [-nmax, nmax - 1], weighted by x^2: the scale that puts the value of largest
// magnitude at -nmax, then 18 neighbours (nmax +- 0.1 k levels), keeping the least-squares scale of greatest
// sum(w x l)^2 / sum(w l^2). Returns the scale. (ggml's make_qx_quants, as q6_K calls it.)
float fit_symmetric_scale(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  const auto sums = [&](float iscale, float* sumlx, float* suml2) {
    *sumlx = 0;
    *suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      *sumlx += w * x[i] * l;
      *suml2 += w * l * l;
    }
  };
  const auto levels = [&](float iscale) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
  };
  float iscale = -nmax / max;
  float sumlx, suml2;
  sums(iscale, &sumlx, &suml2);
  levels(iscale);
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int k = -9; k <= 9; ++k) {
    if (k == 0) continue;
    iscale = -(nmax + 0.1f * k) / max;
    sums(iscale, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      levels(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// q6_K: 16 sub-blocks of 16, x = d sc (q - 32), sc int8, d f16. Layout: the low 4 bits (128 bytes), the high 2 bits
// (64), the scales (16), d.
void quantize_q6_K(const float* x, uint8_t* out) {
  int8_t L[256];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int b = 0; b < 16; ++b) {
    scales[b] = fit_symmetric_scale(16, 32, x + 16 * b, L + 16 * b);
    if (std::fabs(scales[b]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[b]);
      max_scale = scales[b];
    }
  }
  if (max_abs_scale < 1e-15f) {
    std::memset(out, 0, 210);
    return;
  }
  const float iscale = -128.0f / max_scale;
  put_f16(out + 208, 1 / iscale);
  int8_t* sc = reinterpret_cast<int8_t*>(out + 192);
  for (int b = 0; b < 16; ++b) sc[b] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[b])));
  // The levels again, against the scales as stored.
  const float d = get_f16(out + 208);
  for (int b = 0; b < 16; ++b) {
    const float db = d * sc[b];
    if (db == 0) continue;
    for (int i = 0; i < 16; ++i) L[16 * b + i] = static_cast<int8_t>(clamp(nearest_int(x[16 * b + i] / db), -32, 31) + 32);
  }
  // Each 128 values as four runs of 32: low nibbles of runs 0 and 2 share 32 bytes, of runs 1 and 3 the next 32; the
  // top two bits of all four share 32 bytes, run r's at bits 2r.
  uint8_t* ql = out;
  uint8_t* qh = out + 128;
  for (int h = 0; h < 2; ++h, ql += 64, qh += 32) {
    const int8_t* q = L + 128 * h;
    for (int j = 0; j < 32; ++j) {
      ql[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 64] & 15) << 4));
      ql[j + 32] = static_cast<uint8_t>((q[j + 32] & 15) | ((q[j + 96] & 15) << 4));
      qh[j] = static_cast<uint8_t>((q[j] >> 4) | ((q[j + 32] >> 4) << 2) | ((q[j + 64] >> 4) << 4) | ((q[j + 96] >> 4) << 6));
    }
  }
}

const GgmlBlockType kBlockTypes[] = {
    {"q4_0", 32, 18, quantize_symmetric<4>},  {"q4_1", 32, 20, quantize_with_min<4>},
    {"q5_0", 32, 22, quantize_symmetric<5>},  {"q5_1", 32, 24, quantize_with_min<5>},
    {"q8_0", 32, 34, quantize_q8_0},          {"q4_K", 256, 144, quantize_k_with_min<4>},
    {"q5_K", 256, 176, quantize_k_with_min<5>}, {"q6_K", 256, 210, quantize_q6_K},
};

}  // namespace

const GgmlBlockType* ggml_block_type(const std::string& name) {
  for (const GgmlBlockType& t : kBlockTypes) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

std::string ggml_block_type_names() {
  std::string names;
  for (const GgmlBlockType& t : kBlockTypes) names += (names.empty() ? "" : ", ") + std::string(t.name);
  return names;
}

void ggml_quantize(const GgmlBlockType& type, const float* x, size_t n, uint8_t* out, int threads) {
  const size_t blocks = n / type.block;
  const size_t workers = std::max<size_t>(1, std::min<size_t>(threads, blocks / 64));
  const auto run = [&](size_t from, size_t to) {
    for (size_t b = from; b < to; ++b) type.quantize(x + b * type.block, out + b * type.bytes);
  };
  std::vector<std::thread> pool;
  for (size_t w = 1; w < workers; ++w) pool.emplace_back(run, blocks * w / workers, blocks * (w + 1) / workers);
  run(0, blocks / workers);
  for (std::thread& t : pool) t.join();
}

}  // namespace dixie
