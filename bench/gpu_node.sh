#!/usr/bin/env bash
# The sections of bench/gpu.sh that run Node.js, on the CUDA addon they compile (cmake-js, into BUILD_DIR/addon):
#   server         bin/serve on the GPU (`npm run bench -- server --gpu`): GPT-2 124M shapes in bf16 with 32 slots,
#                  decode steps eager and as CUDA graphs, aggregate tokens/s at 1, 16 and 32 clients; FAIL where a
#                  request failed
#   data-parallel  bin/train under mpirun: checks that a 1-rank job over NCCL (and over MPI through host memory,
#                  DIXIE_NCCL=0, and with ZeRO-1) trains bit for bit as the plain run does, then, with 2 GPUs or
#                  more, that ZeRO-1 equals no sharding on all of them, and times GPT-2 124M shapes on 1 GPU and on
#                  all: tokens/s and scaling efficiency (tokens/s on N GPUs / (N x tokens/s on one))
# Each prints PASS/FAIL lines and a "### " table. They need node with the package's node_modules and compiled dist
# (npm install), and data-parallel mpirun; where the machine lacks them, the kit that bench/gpu_kit.sh packs
# elsewhere brings them (GPU_KIT, default .gpu-kit); without either they say SKIP.
#
#   bash bench/gpu_node.sh server|data-parallel [BUILD_DIR [ARCHS]]
# BUILD_DIR defaults to $TMPDIR/dixie-gpu-build ($TMPDIR: /tmp when unset), ARCHS to 90a; the runs go to a fresh
# folder under $TMPDIR, removed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
SECTION=${1:-}
BUILD=${2:-${TMPDIR:-/tmp}/dixie-gpu-build}/addon
ARCHS=${3:-90a}
KIT=${GPU_KIT:-.gpu-kit}
case "$SECTION" in
  server | data-parallel) ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
export PATH="$PATH:/usr/local/cuda/bin" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [ -d "$KIT" ]; then
  KIT_ENV=$(bash bench/gpu_kit.sh unpack "$KIT") || { echo "FAIL  $SECTION: the kit in $KIT could not be used"; exit 1; }
  eval "$KIT_ENV"
fi
NEEDS=(node)
[ "$SECTION" = data-parallel ] && NEEDS+=(mpirun)
for need in "${NEEDS[@]}"; do
  command -v "$need" >/dev/null || { echo "SKIP  $SECTION: $need not found (nor a kit: bench/gpu_kit.sh)"; exit 0; }
done
[ -d node_modules/cmake-js ] || { echo "SKIP  $SECTION: node_modules missing (npm install first)"; exit 0; }

# The addon with the CUDA backend (the second section finds it built), and dist compiled from these sources where
# TypeScript is installed (a kit's dist was checked against them when it was unpacked).
mkdir -p "$BUILD"
node node_modules/cmake-js/bin/cmake-js compile -O "$BUILD" --CDDIXIE_CUDA=ON --CDCMAKE_CUDA_ARCHITECTURES="$ARCHS" >"$BUILD.log" 2>&1
[ -d node_modules/typescript ] && node node_modules/typescript/bin/tsc -p tsconfig.json >>"$BUILD.log" 2>&1
if [ ! -f "$BUILD/Release/dixie_native.node" ] || [ ! -f dist/bin/commands/train.js ]; then
  tail -20 "$BUILD.log"
  echo "FAIL  $SECTION: build (log: $BUILD.log)"
  exit 1
fi
export DIXIE_ADDON="$BUILD/Release/dixie_native.node"

if [ "$SECTION" = server ]; then
  echo "### bin/serve on the GPU"
  LOG=$(mktemp "${TMPDIR:-/tmp}/dixie-server-XXXX.log")
  DIXIE_BENCH_SECONDS=${DIXIE_BENCH_SECONDS:-20} node dist/bench/run.js server --gpu 2>&1 | tee "$LOG"
  status=${PIPESTATUS[0]}
  if [ "$status" -ne 0 ]; then echo "FAIL  server: npm run bench -- server --gpu exited with $status"
  elif grep -q ' errors)' "$LOG"; then echo "FAIL  server: requests failed (the rows say how many)"
  else echo "PASS  server: every request answered"
  fi
  rm -f "$LOG"
  exit 0
fi

GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
# NCCL is loaded at run time: the system's, or the one a Python package (PyTorch's nvidia-nccl) brings.
if [ -z "${DIXIE_NCCL:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2'; then
  DIXIE_NCCL=$(find /usr/local /usr/lib /opt -name 'libnccl.so.2' 2>/dev/null | head -1)
  [ -n "$DIXIE_NCCL" ] && export DIXIE_NCCL
fi
echo "GPUs: $GPUS; $(mpirun --version 2>&1 | head -1); NCCL: ${DIXIE_NCCL:-libnccl.so.2 from the library path, if there}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dixie-dp-XXXX")
DATA=examples/chat/train

# train RUN RANKS FLAGS...: one bin/train run on the GPU (mpirun -np RANKS, or plain when RANKS is 0), in $WORK.
# Ranks started on this machine inherit the environment (DIXIE_NCCL=0 train ... reaches them).
train() {
  local run=$1 ranks=$2
  shift 2
  local cmd=(node dist/bin/commands/train.js --dataset "$DATA" --device cuda --run_name "$run" --checkpoint_dir "$WORK"
             --sample_dir "$WORK/samples" --sample_every 0 --save_every 0 --save_time 0 --seed 7 "$@")
  [ "$ranks" -gt 0 ] && cmd=(mpirun --bind-to none -np "$ranks" "${cmd[@]}")
  if ! "${cmd[@]}" >"$WORK/$run.log" 2>&1; then
    tail -15 "$WORK/$run.log"
    echo "FAIL  $run: bin/train failed (${cmd[*]})"
    return 1
  fi
}

# same A B WHAT: PASS when two runs' last checkpoints hold the same bytes.
same() {
  if cmp -s "$WORK/$1/model-$STEPS/model.safetensors" "$WORK/$2/model-$STEPS/model.safetensors"; then
    echo "PASS  $3"
  else
    echo "FAIL  $3: the weights differ"
  fi
}

# A small model for the equality checks: they need the runs, not the speed.
SMALL=(--fresh_model --n_layer 4 --n_head 4 --n_embd 256 --n_ctx 256 --context_length 128 --batch_size 8 --learning_rate 1e-3)
STEPS=10
train plain 0 "${SMALL[@]}" --stop_after $STEPS &&
  train nccl1 1 "${SMALL[@]}" --stop_after $STEPS && same plain nccl1 "1 rank over NCCL trains as the plain run"
DIXIE_NCCL=0 train mpi1 1 "${SMALL[@]}" --stop_after $STEPS && same plain mpi1 "1 rank over MPI through host memory trains as the plain run"
train zero1 1 "${SMALL[@]}" --stop_after $STEPS --zero 1 && same plain zero1 "1 rank with ZeRO-1 trains as the plain run"
grep -m1 "data-parallel:" "$WORK/nccl1.log"

# tokens/s of a run: the mean of its metrics' steps after the first 3.
rate() { node -e "const m=require('fs').readFileSync('$WORK/$1/metrics.jsonl','utf8').trim().split('\n').map(JSON.parse).filter(r=>r.type==='train').slice(3);console.log(Math.round(m.reduce((s,r)=>s+r.tokens_per_s,0)/m.length))"; }
REDUCE='const m=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").map(JSON.parse).filter(r=>r.type==="train").slice(3);console.log((1000*m.reduce((s,r)=>s+(r.reduce_s||0),0)/m.length).toFixed(1))'

# GPT-2 124M shapes, bf16, 16 x 1024 tokens a GPU: the same batch per GPU, so N GPUs take N times the tokens.
BIG=(--fresh_model --precision bf16 --context_length 1024 --batch_size 16 --learning_rate 1e-4)
STEPS=13
echo "### data-parallel (GPT-2 124M shapes, bf16, 16 x 1024 tokens per GPU a step, mean of steps 4-$STEPS)"
echo "| GPUs | reduction | tokens/s | scaling efficiency | MPI collectives ms a step (NCCL's, on the GPU, not counted) |"
echo "|---:|---|---:|---:|---:|"
if train big1 1 "${BIG[@]}" --stop_after $STEPS; then
  ONE=$(rate big1)
  echo "| 1 | NCCL (1 rank) | $ONE | 100% | $(node -e "$REDUCE" "$WORK/big1/metrics.jsonl") |"
  SIZES=()
  [ "$GPUS" -ge 2 ] && SIZES+=(2)
  [ "$GPUS" -gt 2 ] && SIZES+=("$GPUS")
  for n in "${SIZES[@]}"; do
    for zero in 0 1; do
      train "big$n-z$zero" "$n" "${BIG[@]}" --stop_after $STEPS --zero $zero || continue
      R=$(rate "big$n-z$zero")
      echo "| $n | NCCL$([ $zero -eq 1 ] && echo ', ZeRO-1') | $R | $(( 100 * R / (n * ONE) ))% | $(node -e "$REDUCE" "$WORK/big$n-z$zero/metrics.jsonl") |"
    done
  done
  [ "$GPUS" -lt 2 ] && echo "(one GPU: no scaling figures)"
fi
if [ "$GPUS" -ge 2 ]; then
  STEPS=10
  train z0 2 "${SMALL[@]}" --batch_size 4 --stop_after $STEPS && train z1 2 "${SMALL[@]}" --batch_size 4 --stop_after $STEPS --zero 1 &&
    same z0 z1 "2 ranks: ZeRO-1 trains as no sharding"
fi
rm -rf "$WORK"
