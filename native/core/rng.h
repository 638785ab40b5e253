// The sampler's random numbers, one definition for the CPU and the GPU, so that both backends draw the same
// tokens from the same state: xoroshiro128++ (Blackman & Vigna) over a row's two 64-bit state words, advanced in
// place. An all-zero state would stay zero, so it is replaced by a fixed one.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define DIXIE_HOST_DEVICE __host__ __device__
#else
#define DIXIE_HOST_DEVICE
#endif

namespace dixie::rng {

DIXIE_HOST_DEVICE inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

DIXIE_HOST_DEVICE inline uint64_t next(uint64_t* s) {
  if (s[0] == 0 && s[1] == 0) {
    s[0] = 0x9e3779b97f4a7c15ull;
    s[1] = 0xbf58476d1ce4e5b9ull;
  }
  const uint64_t s0 = s[0];
  uint64_t s1 = s[1];
  const uint64_t result = rotl(s0 + s1, 17) + s0;
  s1 ^= s0;
  s[0] = rotl(s0, 49) ^ s1 ^ (s1 << 21);
  s[1] = rotl(s1, 28);
  return result;
}

// Uniform in [0, 1) with 53 random bits.
DIXIE_HOST_DEVICE inline double uniform(uint64_t* s) { return static_cast<double>(next(s) >> 11) * (1.0 / 9007199254740992.0); }

}  // namespace dixie::rng
