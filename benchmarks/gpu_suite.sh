#!/usr/bin/env bash
# The accelerator benchmark suite, prepared for one run on an H100 / H200 (about 8 minutes).
# The first H200 run (2026-11-26, benchmarks/results/) measured the step; what it could not say
# is where the step's time goes, so the profile now comes right after the step.
#
#   bash benchmarks/gpu_suite.sh            # on the GPU machine; log in $OUT/bench.log
#   bash benchmarks/gpu_suite.sh --smoke    # the same steps at tiny sizes on CPU (a dry run)
#
# Steps, most important first, each under its own `timeout` so that one slow or failing step
# cannot eat the others' time (the remaining suite budget also caps each step; a step left with
# under 10 s is skipped):
#   1. environment: GPU, driver, jax / flax / optax / torch versions
#   2. train_step.py R3D-50 16x224x224 bf16 CORP_f: PyTorch (torch.compile) first, then JAX
#      with factorized convs (the GPU default since the 2026-11-26 H200 run) and two
#      candidates: the hand-written BatchNorm backward (+fbn, corp_jax/models/batchnorm.py;
#      the step is bandwidth-bound, benchmarks/roofline.py) and the space-to-depth stem (+s2d:
#      3 input channels fill tensor cores badly); clips/s, XLA and model FLOPs, MFU, the
#      JAX/PyTorch ratio. (Native 3D convs measured 0.73x PyTorch in that run, factorized
#      0.89x with flax's BatchNorm; native is left out to save time.)
#   3. profile_step.py (factorized): a jax.profiler trace of 5 steps, kernel time by category
#      (convolution, matmul, data movement, reduction, elementwise), the top instructions and
#      the roofline bounds next to them (benchmarks/roofline.py); summary JSON in $OUT
#   4. hlo_check.py (factorized): transposes/copies around the convs with the default XLA
#      flags (the optimised HLO is kept in $OUT)
#   5. the same as 2 for CORP_m, factorized only
#   6. train_step.py --find_max_batch CORP_f, without and with remat
#   7. CORP_f JAX alone at a 3x larger per-device batch
#   8. hlo_check.py with --xla_gpu_force_conv_nhwc (native convs: does it make them NDHWC?)
#   9. python -m corp_jax.tools.parity --device cuda --dtype float32,bfloat16
# Needs jax (CUDA), flax, optax, numpy, torch; no TensorFlow, no ml_collections.
# The JAX persistent compilation cache is shared by the steps: step 3's compile and
# step 5's first batch reuse step 2's.
set -u -o pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
OUT="${OUT:-/tmp/corp_bench_out}"
mkdir -p "$OUT"
LOG="$OUT/bench.log"
: > "$LOG"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/corp_bench_jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
SUITE_BUDGET_S="${SUITE_BUDGET_S:-500}"  # the run tool allows 600 s per command
SUITE_START=$(date +%s)

# step NAME LIMIT_S CMD...: runs CMD with the smaller of LIMIT_S and the time left, logs it.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$(( SUITE_BUDGET_S - ($(date +%s) - SUITE_START) ))
  (( limit > left )) && limit=$left
  if (( limit < 10 )); then
    echo "=== $name: skipped, suite budget spent" | tee -a "$LOG"
    return
  fi
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: rc=$rc in $(( $(date +%s) - t0 ))s$( ((rc == 124)) && echo ' (TIMED OUT)')" \
    | tee -a "$LOG"
}

# A timed-out step's PyTorch child (spawned, daemon) must not keep GPU memory for the next one.
cleanup() { pkill -9 -f "multiprocessing.spawn" 2>/dev/null || true; }

if (( SMOKE )); then
  BIG_BATCH=4
  SIZE=smoke; DTYPE=float32; TORCH_DEVICE=cpu; COMPILE=off
  STEPS=(--steps 1 --warmup 1 --rounds 1); MAXB=(--batch 2 --max_batch 4)
  export JAX_PLATFORMS=cpu
else
  BIG_BATCH=48
  SIZE=r3d50; DTYPE=bfloat16; TORCH_DEVICE=cuda; COMPILE=on
  STEPS=(--steps 10 --warmup 3); MAXB=(--batch 16 --max_batch 256 --time_budget_s 45)
fi

step env 30 "$PY" -c "import subprocess, jax, flax, optax, torch
print(subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version',
                      '--format=csv'], capture_output=True, text=True).stdout
      if torch.cuda.is_available() else 'no CUDA for torch')
print('jax', jax.__version__, jax.devices(), '| flax', flax.__version__, '| optax',
      optax.__version__, '| torch', torch.__version__)"

# Most important first: a later step that runs out of suite budget is skipped, not this one.
step "train_step corp_f" 210 "$PY" benchmarks/train_step.py --size "$SIZE" --dtype "$DTYPE" \
  --objective corp_f --conv_impl factorized,factorized+fbn,factorized+s2d \
  --torch_compile "$COMPILE" "${STEPS[@]}" --json "$OUT/train_step_corp_f.json"
cleanup
step "profile_step corp_f" 90 "$PY" benchmarks/profile_step.py --size "$SIZE" --dtype "$DTYPE" \
  --objective corp_f --conv_impl factorized --steps 5 --warmup 3 --top 25 \
  --json "$OUT/profile_corp_f.json"
step "hlo_check default flags" 50 "$PY" benchmarks/hlo_check.py --size "$SIZE" \
  --dtype "$DTYPE" --conv_impl factorized --examples 3 --dump "$OUT/hlo_${SIZE}_${DTYPE}.txt"
step "train_step corp_m" 150 "$PY" benchmarks/train_step.py --size "$SIZE" --dtype "$DTYPE" \
  --objective corp_m --conv_impl factorized --torch_compile "$COMPILE" "${STEPS[@]}" \
  --json "$OUT/train_step_corp_m.json"
cleanup
# find_max_batch needs the whole device: let JAX use 95% of it.
step "find_max_batch corp_f" 90 env XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 "$PY" \
  benchmarks/train_step.py --find_max_batch --size "$SIZE" --dtype "$DTYPE" \
  --objective corp_f --conv_impl factorized "${MAXB[@]}" --json "$OUT/find_max_batch.json"
# Throughput at a larger per-device batch (JAX only): does a bigger step use the GPU better?
step "train_step corp_f big batch" 60 "$PY" benchmarks/train_step.py --size "$SIZE" \
  --dtype "$DTYPE" --objective corp_f --conv_impl factorized --no_torch "${STEPS[@]}" \
  --batch "$BIG_BATCH" --json "$OUT/train_step_corp_f_big.json"
if (( ! SMOKE )); then  # an XLA:GPU flag: meaningless on CPU
  step "hlo_check force_conv_nhwc" 60 "$PY" benchmarks/hlo_check.py --size "$SIZE" \
    --dtype "$DTYPE" --conv_impl native --examples 3 --force_conv_nhwc
fi
step parity 45 "$PY" -m corp_jax.tools.parity --device "$TORCH_DEVICE" --dtype float32,bfloat16

echo "=== suite done in $(( $(date +%s) - SUITE_START ))s; log: $LOG" | tee -a "$LOG"
