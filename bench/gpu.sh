#!/usr/bin/env bash
# The CUDA backend on a machine with an NVIDIA GPU, in one run of a few minutes: builds the checks program
# (native/tests/cuda_check.cu, plain CMake + nvcc, no Node.js needed), checks the backend against the gpt2-tiny
# reference vectors and against the CPU backend (float32 tight, bf16 within bf16's tolerance), on cuBLASLt and
# on dixie's own GEMM kernels (DIXIE_CUBLAS=0), runs the reference checks under compute-sanitizer, then
# benchmarks. Every check prints PASS or FAIL; a failing or crashing section does not stop the others.
# The end of the output is the summary: every FAIL line and the benchmark tables (paste them into
# bench/NOTES.md with the card's name).
#
#   bash bench/gpu.sh            from the repository root
#   DIXIE_CUDA_ARCHS=90a ...     other CUDA architectures (default: 90, the H100/H200)
#   GPU_LOG_DIR=dir ...          where the section logs go (default /tmp/dixie-gpu); with $OUT set, the
#                                summary and all logs in one file are also written there
set -uo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/cuda/bin"
BUILD_DIR=${BUILD_DIR:-/tmp/dixie-gpu-build}
LOG_DIR=${GPU_LOG_DIR:-/tmp/dixie-gpu}
ARCHS=${DIXIE_CUDA_ARCHS:-90}
mkdir -p "$LOG_DIR"
START=$(date +%s)
SUMMARY=()

elapsed() { echo "$(( $(date +%s) - START ))s"; }

echo "== machine"
nvidia-smi -L 2>&1 | head -4
nvcc --version 2>&1 | tail -1
echo "cores: $(nproc)"

# cuBLASLt is loaded at run time: the CUDA toolkit's, the system's, or the one a Python package (PyTorch) brings.
if [ -z "${DIXIE_CUBLASLT:-}" ]; then
  DIXIE_CUBLASLT=$(ldconfig -p 2>/dev/null | grep -o '/[^ ]*libcublasLt\.so\.1[0-9]*$' | head -1)
  [ -z "$DIXIE_CUBLASLT" ] && DIXIE_CUBLASLT=$(find /usr/local /usr/lib /opt -name 'libcublasLt.so.1[0-9]' 2>/dev/null | head -1)
fi
export DIXIE_CUBLASLT
echo "cuBLASLt: ${DIXIE_CUBLASLT:-none found, so the checks run on the own GEMM kernels only}"

echo "== build (CUDA architectures $ARCHS) [$(elapsed)]"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
if ! { cmake -S . -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DDIXIE_CUDA=ON -DDIXIE_GPU_CHECK=ON \
         -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" >"$LOG_DIR/build.log" 2>&1 &&
       cmake --build "$BUILD_DIR" --target dixie_gpu_check -j "$(nproc)" >>"$LOG_DIR/build.log" 2>&1; }; then
  tail -40 "$LOG_DIR/build.log"
  echo "FAIL  build (log: $LOG_DIR/build.log)"
  exit 1
fi
grep -i "warning" "$LOG_DIR/build.log" | head -20
CHECK="$BUILD_DIR/dixie_gpu_check"
echo "built [$(elapsed)]"

# run NAME TIMEOUT ENV... -- ARGS: one section in its own process (a CUDA fault cannot spoil the next one)
run() {
  local name=$1 limit=$2
  shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local log="$LOG_DIR/$name.log"
  echo "== $name [$(elapsed)]"
  env "${envs[@]}" timeout "$limit" "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  local pass fail
  pass=$(grep -c '^PASS' "$log")
  fail=$(grep -c '^FAIL' "$log")
  if [ "$status" -eq 124 ]; then
    SUMMARY+=("FAIL  $name: timed out after ${limit}s ($pass passed, $fail failed before)")
  elif [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then
    SUMMARY+=("FAIL  $name: exit status $status ($pass passed)")
  else
    SUMMARY+=("$( [ "$fail" -eq 0 ] && echo PASS || echo FAIL )  $name: $pass passed, $fail failed")
  fi
  while IFS= read -r line; do SUMMARY+=("      $line"); done < <(grep -E '^FAIL|^========= (ERROR SUMMARY|Invalid|Race|Error)' "$log" | head -20)
}

run reference 120 DIXIE_CUBLAS=1 -- "$CHECK" reference
run cpu 240 DIXIE_CUBLAS=1 -- "$CHECK" cpu
run decode 180 DIXIE_CUBLAS=1 -- "$CHECK" decode
run sampler 120 DIXIE_CUBLAS=1 -- "$CHECK" sampler
run bench 300 DIXIE_CUBLAS=1 -- "$CHECK" bench
run own-gemm-reference 120 DIXIE_CUBLAS=0 -- "$CHECK" reference
run own-gemm-cpu 240 DIXIE_CUBLAS=0 -- "$CHECK" cpu
run own-gemm-decode 180 DIXIE_CUBLAS=0 -- "$CHECK" decode
run own-gemm-bench 120 DIXIE_CUBLAS=0 -- "$CHECK" bench-train
if command -v compute-sanitizer >/dev/null; then
  run memcheck 240 DIXIE_CUBLAS=0 -- compute-sanitizer --tool memcheck --error-exitcode 99 "$CHECK" reference
else
  SUMMARY+=("SKIP  memcheck: compute-sanitizer not found")
fi

summary() {
  echo "================================ summary [$(elapsed)] ================================"
  printf '%s\n' "${SUMMARY[@]}"
  for b in bench own-gemm-bench; do
    [ -f "$LOG_DIR/$b.log" ] && sed -n '/^### /,$p' "$LOG_DIR/$b.log"
  done
  echo "logs: $LOG_DIR"
}
echo
summary
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
  summary >"$OUT/gpu-summary.txt"
  for f in "$LOG_DIR"/*.log; do echo "######## $(basename "$f")"; cat "$f"; done >"$OUT/gpu-logs.txt"
fi
