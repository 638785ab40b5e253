// Conversions between float32 and the 16-bit float formats that weights are stored in, and the 8-bit one.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dixie {

// How weights are stored. Q8_0 is llama.cpp's 8-bit type (below): a model's layer matrices as int8 in blocks of 32
// along their input dimension with an f16 scale per block, its other parameters as f16; never a type of data given.
enum class DType { F32, F16, BF16, Q8_0 };

inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
      bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, with overflow to infinity and gradual underflow.
inline uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;                   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;                  // rounds to >= 65536: infinity
  if (abs < 0x38800000u) {                                       // below the smallest normal half
    if (abs < 0x33000000u) return sign;                          // rounds to zero
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);          // 14..24
    const uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    const uint32_t rounded = half + ((rem > halfway || (rem == halfway && (half & 1u))) ? 1u : 0u);
    return static_cast<uint16_t>(sign | rounded);
  }
  const uint32_t rebased = abs - (112u << 23);                   // exponent 127 -> 15
  const uint32_t half = rebased >> 13;
  const uint32_t rem = rebased & 0x1fffu;
  const uint32_t rounded = half + ((rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ? 1u : 0u);
  return static_cast<uint16_t>(sign | rounded);
}

// src[i] of data of type F32, F16 or BF16, as float32.
inline float element_to_f32(const void* src, size_t i, DType dtype) {
  if (dtype == DType::F32) return static_cast<const float*>(src)[i];
  const uint16_t h = static_cast<const uint16_t*>(src)[i];
  return dtype == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// Q8_0, llama.cpp's 8-bit weights: a matrix's values in blocks of kQ8Block along its input dimension, each value an
// int8 q in [-127, 127] and each block one f16 scale d, the value being d * q.
constexpr int kQ8Block = 32;

// Quantizes a block x[0], x[stride], ..., x[(n - 1) * stride] (n <= kQ8Block; a shorter block is one that ends a
// matrix) into q[0, n) and returns its scale as f16. This is llama.cpp's reference quantizer (quantize_row_q8_0_ref:
// d = amax / 127, q = round half away from zero of x / d computed as x * (1 / d)), so that a Q8_0 file's blocks,
// expanded to float32 and quantized again, come back as they were.
inline uint16_t quantize_q8_block(const float* x, size_t stride, int n, int8_t* q) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i * stride]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i) q[i] = static_cast<int8_t>(std::round(x[i * stride] * id));
  return f32_to_f16(d);
}

}  // namespace dixie
