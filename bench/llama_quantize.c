// llama.cpp's own quantizer, llama_model_quantize of the libllama that node-llama-cpp ships, for the gguf_quants
// bench: quantizes the GGUF IN into OUT as llama.cpp's file type FTYPE (15: q4_K_M, ...), as llama-quantize does.
// The parameters are llama_model_quantize_default_params() with the thread count and the file type set: only their
// first two fields are named here, and the struct is declared larger than libllama's, so that both sides return it
// through memory and libllama fills what it has.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  int32_t nthread;
  int32_t ftype;
  unsigned char rest[1024];
} quantize_params;

quantize_params llama_model_quantize_default_params(void);
uint32_t llama_model_quantize(const char* in, const char* out, const quantize_params* params);
void llama_backend_init(void);

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: llama_quantize IN OUT FTYPE\n");
    return 2;
  }
  llama_backend_init();
  quantize_params params = llama_model_quantize_default_params();
  params.nthread = 2;
  params.ftype = atoi(argv[3]);
  return (int)llama_model_quantize(argv[1], argv[2], &params);
}
