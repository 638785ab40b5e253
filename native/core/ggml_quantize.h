// ggml's block-quantized weight types, written as llama.cpp's llama-quantize writes them when it has no importance
// matrix: each block by ggml's reference quantizer (quantize_row_<type>_ref), the same float32 operations in the same
// order, so that a GGUF file exported here holds the bytes llama-quantize would have written from the same float32
// weights. Every block is independent of the others, so a tensor is quantized as one flat run of blocks along its
// innermost dimension. lib/formats/ggml_quants.ts reads (expands) these types and more.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dixie {

struct GgmlBlockType {
  const char* name;   // ggml's name: "q4_0", "q4_K"...
  int block;          // values a block
  int bytes;          // bytes a block
  void (*quantize)(const float* x, uint8_t* out);  // one block
};

// The block type named `name`, or nullptr when it is not one this file writes.
const GgmlBlockType* ggml_block_type(const std::string& name);

// The names this file writes, comma-separated, for errors.
std::string ggml_block_type_names();

// Quantizes x[0, n) (a whole number of blocks) into out (n / block * bytes bytes), the blocks shared among
// `threads` threads.
void ggml_quantize(const GgmlBlockType& type, const float* x, size_t n, uint8_t* out, int threads);

}  // namespace dixie
