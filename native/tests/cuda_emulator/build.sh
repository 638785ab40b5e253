#!/usr/bin/env bash
# Builds dixie_gpu_check (native/tests/cuda_check.cu) on a CPU emulation of CUDA, for checking kernel changes
# where there is no GPU: the CUDA sources are rewritten by transform.py and compiled by g++ against emu.h and
# runtime.cpp, next to the real CPU backend. The emulator is slow (the reference section takes minutes), so
# use the --small shapes:
#
#   bash native/tests/cuda_emulator/build.sh /tmp/emu
#   /tmp/emu/emu_check reference           # from the repository root
#   /tmp/emu/emu_check cpu --small         # also decode, graphs, sampler, lora and adapters, each --small
#
# Own GEMM kernels only (cuBLASLt is not emulated); no timings; x86-64 only (emu.h).
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${1:?usage: build.sh OUTPUT_DIR}
HERE=native/tests/cuda_emulator
CUDA_INC=${CUDA_HOME:-/usr/local/cuda}/include
mkdir -p "$OUT/src" "$OUT/obj"
for f in native/cuda/*.cu native/tests/cuda_check.cu; do
  python3 "$HERE/transform.py" "$f" "$OUT/src/$(basename "$f" .cu).cpp"
done
EMU=(-std=c++20 -O1 -w -DDIXIE_CUDA_SM90A -I"$CUDA_INC" -Inative -Inative/cuda -include "$HERE/emu.h")
pids=()
for f in "$OUT"/src/*.cpp; do
  g++ "${EMU[@]}" -c "$f" -o "$OUT/obj/emu_$(basename "$f" .cpp).o" &
  pids+=($!)
done
for f in native/core/*.cpp native/cpu/*.cpp; do
  g++ -std=c++17 -O2 -march=native -Inative -c "$f" -o "$OUT/obj/cpu_$(basename "$f" .cpp).o"
done
g++ -std=c++20 -O2 -w -I"$CUDA_INC" -I"$HERE" -c "$HERE/runtime.cpp" -o "$OUT/obj/runtime.o"
for p in "${pids[@]}"; do wait "$p"; done
g++ -pthread "$OUT"/obj/*.o -ldl -o "$OUT/emu_check"
echo "built $OUT/emu_check"
