#!/usr/bin/env bash
# The CUDA backend on a machine with an NVIDIA GPU, in one run of a few minutes: builds the checks program
# (native/tests/cuda_check.cu, plain CMake + nvcc, no Node.js needed), checks the backend against the gpt2-tiny
# reference vectors and against the CPU backend (float32 tight, bf16 within bf16's tolerance), on cuBLASLt and
# on dixie's own GEMM kernels (DIXIE_CUBLAS=0), benchmarks, times each kernel of one training step (ncu), runs
# checks under compute-sanitizer, then runs the Node.js sections (bench/gpu_node.sh): bin/serve on the GPU and
# bin/train under mpirun. Every check prints PASS or FAIL; a failing or crashing section does not stop the others.
# The end of the output is the summary: every FAIL line and the benchmark tables (paste them into bench/NOTES.md
# with the card's name).
#
#   bash bench/gpu.sh            from the repository root
#   DIXIE_CUDA_ARCHS=80 ...      other CUDA architectures (default: 90a, the H100/H200 with its wgmma)
#   GPU_BUDGET_S=480 ...         sections that would start later than this are skipped
#   GPU_SECTIONS="a b*" ...      only the sections named (shell patterns; the names are those the output heads
#                                each section with), e.g. to run again what failed or what the budget skipped
#   GPU_LOG_DIR=dir ...          where the section logs go (default $TMPDIR/dixie-gpu, $TMPDIR being /tmp when
#                                unset); with $OUT set, the summary and all logs in one file are also written there,
#                                after every section
#   BUILD_DIR=dir ...            where the checks program is built (default $TMPDIR/dixie-gpu-build)
set -uo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/cuda/bin"
BUILD_DIR=${BUILD_DIR:-${TMPDIR:-/tmp}/dixie-gpu-build}
LOG_DIR=${GPU_LOG_DIR:-${TMPDIR:-/tmp}/dixie-gpu}
ARCHS=${DIXIE_CUDA_ARCHS:-90a}
mkdir -p "$LOG_DIR"
START=$(date +%s)
SUMMARY=()
RAN=(build)  # the sections this run has logs of (earlier runs' logs may lie beside them)

elapsed() { echo "$(( $(date +%s) - START ))s"; }

summary() {
  echo "================================ summary [$(elapsed)] ================================"
  # what bench/NOTES.md heads a run with: the card, the date, the commit
  local card
  card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  echo "${card:-no NVIDIA GPU found}, $(date -u '+%Y-%m-%d %H:%M UTC')," \
    "commit $(git describe --always --dirty 2>/dev/null || cat "${GPU_KIT:-.gpu-kit}/commit" 2>/dev/null || echo unknown)"
  printf '%s\n' "${SUMMARY[@]}"
  [ -f "$LOG_DIR/attention.log" ] && grep -h '^attention times' "$LOG_DIR/attention.log"
  for b in bench own-gemm-bench profile prepared-profile server data-parallel; do
    [[ " ${RAN[*]} " == *" $b "* ]] && sed -n '/^### /,$p' "$LOG_DIR/$b.log" | head -45
  done
  echo "logs: $LOG_DIR"
}
# With $OUT set, the summary so far and all the logs in one file, after every section: a run stopped from outside
# still leaves what it did.
save_out() {
  { [ -n "${OUT:-}" ] && [ -d "$OUT" ]; } || return 0
  summary >"$OUT/gpu-summary.txt"
  for name in "${RAN[@]}"; do echo "######## $name.log"; cat "$LOG_DIR/$name.log"; done >"$OUT/gpu-logs.txt"
}

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
  SUMMARY+=("FAIL  build: the log's end is above")
  save_out
  exit 1
fi
grep -i "warning" "$LOG_DIR/build.log" | head -20
# A function call in a wgmma kernel makes ptxas serialize its products, which it only mentions (C7510).
if grep "C7510" "$LOG_DIR/build.log" | head -3 | grep .; then
  SUMMARY+=("FAIL  build: ptxas serialized a kernel's wgmma (C7510; its lines are above)")
fi
CHECK="$BUILD_DIR/dixie_gpu_check"
echo "built [$(elapsed)]"

# run NAME TIMEOUT ENV... -- ARGS: one section in its own process (a CUDA fault cannot spoil the next one); LAST
# says how it went (PASS, FAIL or SKIP). Sections that would start after BUDGET seconds are skipped, so that the
# script ends inside a short loan.
BUDGET=${GPU_BUDGET_S:-480}
LAST=
wanted() {
  [ -z "${GPU_SECTIONS:-}" ] && return 0
  local pattern
  for pattern in $GPU_SECTIONS; do
    [[ $1 == $pattern ]] && return 0  # unquoted: matched as a pattern
  done
  return 1
}
run() {
  local name=$1 limit=$2
  shift 2
  if ! wanted "$name"; then
    LAST=SKIP
    return
  fi
  if [ $(( $(date +%s) - START )) -ge "$BUDGET" ]; then
    SUMMARY+=("SKIP  $name: past the ${BUDGET}s budget")
    LAST=SKIP
    return
  fi
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local log="$LOG_DIR/$name.log"
  echo "== $name [$(elapsed)]"
  env "${envs[@]}" timeout "$limit" "$@" 2>&1 | tee "$log"
  RAN+=("$name")
  local status=${PIPESTATUS[0]}
  local pass fail
  pass=$(grep -c '^PASS' "$log")
  fail=$(grep -c '^FAIL' "$log")
  LAST=FAIL
  if [ "$status" -eq 124 ]; then
    SUMMARY+=("FAIL  $name: timed out after ${limit}s ($pass passed, $fail failed before)")
  elif [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then
    SUMMARY+=("FAIL  $name: exit status $status ($pass passed)")
  elif [ "$pass" -eq 0 ] && [ "$fail" -eq 0 ] && grep -q '^SKIP' "$log"; then  # what it needs is not here
    LAST=SKIP
    SUMMARY+=("$(grep -m1 '^SKIP' "$log")")
  else
    [ "$fail" -eq 0 ] && LAST=PASS
    SUMMARY+=("$LAST  $name: $pass passed, $fail failed")
  fi
  while IFS= read -r line; do SUMMARY+=("      $line"); done < <(grep -E '^FAIL|^========= (ERROR SUMMARY|RACECHECK SUMMARY|Invalid|Race|Error)' "$log" | head -20)
  save_out
}

run reference 60 DIXIE_CUBLAS=1 -- "$CHECK" reference
run cpu 150 DIXIE_CUBLAS=1 -- "$CHECK" cpu
run decode 90 DIXIE_CUBLAS=1 -- "$CHECK" decode
run graphs 90 DIXIE_CUBLAS=1 -- "$CHECK" graphs
run attention 60 DIXIE_CUBLAS=1 -- "$CHECK" attention
# The switches of work prepared without a GPU, all on (docs/building.md): the same checks must pass. A Hopper
# attention that failed its own check, crashed or hung stays out of the sections after it, which would spend
# their time limits on it (DIXIE_HOPPER_ATTENTION=0 keeps it out of the bench section's rows too); so does one whose
# section did not run.
PREPARED=(DIXIE_FUSED_ADAMW=1 DIXIE_BIAS_GRAD_EPILOGUE=1)
if [ "$LAST" = PASS ]; then
  PREPARED+=(DIXIE_HOPPER_ATTENTION=1)
else
  export DIXIE_HOPPER_ATTENTION=0
  SUMMARY+=("      the Hopper attention is left out of the sections after this one")
fi
run prepared-reference 60 DIXIE_CUBLAS=1 "${PREPARED[@]}" -- "$CHECK" reference
run prepared-cpu 150 DIXIE_CUBLAS=1 "${PREPARED[@]}" -- "$CHECK" cpu
run sampler 60 DIXIE_CUBLAS=1 -- "$CHECK" sampler
# The figures before the checks of LoRA adapters and of the own GEMM kernels, which the prepared work does not
# touch: a short loan gives the figures.
run bench 320 DIXIE_CUBLAS=1 -- "$CHECK" bench
# Kernel times of one step; --clock-control none keeps the card's own clocks, as in the benchmark.
profile() {  # the section's name, then its environment
  local name=$1
  shift
  run "$name" 120 DIXIE_CUBLAS=1 "$@" -- bash -c "ncu --profile-from-start off --clock-control none --csv \
    --metrics gpu__time_duration.sum '$CHECK' profile >'$LOG_DIR/$name.csv' && python3 bench/ncu_kernels.py <'$LOG_DIR/$name.csv'"
}
if command -v ncu >/dev/null && command -v python3 >/dev/null; then
  profile profile
  profile prepared-profile "${PREPARED[@]}"
else
  SUMMARY+=("SKIP  profile: ncu or python3 not found")
fi
# 124M served by bin/serve from the GPU, decode steps eager and as CUDA graphs (Node.js: bench/gpu_node.sh).
run server 240 -- bash bench/gpu_node.sh server "$BUILD_DIR" "$ARCHS"
run lora 240 DIXIE_CUBLAS=1 -- "$CHECK" lora
run adapters 150 DIXIE_CUBLAS=1 -- "$CHECK" adapters
run own-gemm-reference 60 DIXIE_CUBLAS=0 -- "$CHECK" reference
run own-gemm-bench 90 DIXIE_CUBLAS=0 -- "$CHECK" bench-train
run own-gemm-cpu 150 DIXIE_CUBLAS=0 -- "$CHECK" cpu
run own-gemm-decode 90 DIXIE_CUBLAS=0 -- "$CHECK" decode
if command -v compute-sanitizer >/dev/null; then
  run memcheck 120 DIXIE_CUBLAS=0 -- compute-sanitizer --tool memcheck --error-exitcode 99 "$CHECK" reference
  # the small model has the head size of the tensor-core attention and a padded vocabulary
  run memcheck-small 120 DIXIE_CUBLAS=1 -- compute-sanitizer --tool memcheck --error-exitcode 99 "$CHECK" cpu --small
  run memcheck-adapters 120 DIXIE_CUBLAS=1 -- compute-sanitizer --tool memcheck --error-exitcode 99 "$CHECK" adapters --small
  run memcheck-graphs 120 DIXIE_CUBLAS=1 -- compute-sanitizer --tool memcheck --error-exitcode 99 "$CHECK" graphs --small
  run memcheck-attention 60 DIXIE_CUBLAS=1 -- compute-sanitizer --tool memcheck --error-exitcode 99 "$CHECK" attention --small
  # What the emulator cannot see: shared-memory races between barriers (racecheck) and barriers used wrongly
  # (synccheck), in the kernels that stage tiles through shared memory, the prepared ones included.
  run racecheck-attention 120 DIXIE_CUBLAS=1 -- compute-sanitizer --tool racecheck --error-exitcode 99 "$CHECK" attention --small
  run synccheck-attention 120 DIXIE_CUBLAS=1 -- compute-sanitizer --tool synccheck --error-exitcode 99 "$CHECK" attention --small
  run racecheck-small 180 DIXIE_CUBLAS=1 "${PREPARED[@]}" -- compute-sanitizer --tool racecheck --error-exitcode 99 "$CHECK" cpu --small
else
  SUMMARY+=("SKIP  memcheck: compute-sanitizer not found")
fi

# bin/train under mpirun: 1 rank over NCCL equals the plain run; with 2+ GPUs, tokens/s and scaling efficiency.
run data-parallel 300 -- bash bench/gpu_node.sh data-parallel "$BUILD_DIR" "$ARCHS"

echo
summary
save_out
