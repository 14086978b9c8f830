#!/usr/bin/env bash
# The accelerator benchmark suite, prepared for one run on an H100 / H200 (about 9 minutes).
#
#   bash benchmarks/gpu_suite.sh            # on the GPU machine; log in $OUT/bench.log
#   bash benchmarks/gpu_suite.sh --smoke    # the same steps at tiny sizes on CPU (a dry run)
#
# Steps, most important first, each under its own `timeout` so that one slow or failing step
# cannot eat the others' time (the remaining suite budget also caps each step; a step left with
# under 10 s is skipped):
#   1. environment: GPU, driver, jax / flax / optax / torch versions
#   2. train_step.py R3D-50 16x224x224 bf16 CORP_f: PyTorch (torch.compile, channels_last_3d,
#      bf16 autocast), then JAX 'auto' (the GPU defaults) and factorised convs with the same
#      options; clips/s, model FLOPs, MFU, JAX/PyTorch
#   3. the same for CORP_m (PyTorch and 'auto')
#   4. profile_step.py CORP_f 'auto': kernel time by category, the top instructions with
#      their layer, time by stage, the roofline beside them; trace and HLO kept (--keep)
#   5. hlo_check.py 'auto': transposes / copies around the convs, bytes per category
#   6. CORP_f 'auto' at a 3x larger per-device batch (JAX alone)
#   7. profile_step.py CORP_m 'auto'
# Everything but bench.log ends in $OUT/raw.tgz (the device tool returns at most 8 files).
# Needs jax (CUDA), flax, optax, numpy, torch; no TensorFlow, no ml_collections.
# The JAX persistent compilation cache is shared by the steps (same program, same flags).
set -u -o pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
OUT="${OUT:-/tmp/corp_bench_out}"
mkdir -p "$OUT"
LOG="$OUT/bench.log"
RAW="$OUT/raw"
mkdir -p "$RAW"
: > "$LOG"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/corp_bench_jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
SUITE_BUDGET_S="${SUITE_BUDGET_S:-540}"  # the run tool allows 600 s per command
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
# 'auto' is the platform's default model (corp_jax/models/platform.py: on GPU native
# channels-last convs, space-to-depth stem, fused BatchNorm); the others are references.
step "train_step corp_f" 200 "$PY" -m benchmarks.train_step --size "$SIZE" --dtype "$DTYPE" \
  --objective corp_f --conv_impl auto,factorized+fbn+s2d --torch_compile "$COMPILE" \
  "${STEPS[@]}" --json "$OUT/train_step_corp_f.json"
cleanup
step "train_step corp_m" 170 "$PY" -m benchmarks.train_step --size "$SIZE" --dtype "$DTYPE" \
  --objective corp_m --conv_impl auto --torch_compile "$COMPILE" "${STEPS[@]}" \
  --json "$RAW/train_step_corp_m.json"
cleanup
# XLA's command buffers (CUDA graphs) hide the kernels inside them from the trace: off here.
step "profile_step corp_f auto" 70 env XLA_FLAGS="--xla_gpu_enable_command_buffer=" "$PY" \
  -m benchmarks.profile_step --size "$SIZE" --dtype "$DTYPE" --objective corp_f \
  --conv_impl auto --steps 3 --warmup 3 --top 40 --json "$RAW/profile_corp_f_auto.json" \
  --keep "$RAW/profile_corp_f_auto"
step "hlo_check auto" 40 "$PY" -m benchmarks.hlo_check --size "$SIZE" --dtype "$DTYPE" \
  --conv_impl auto --examples 3
# Throughput at a larger per-device batch (JAX only): does a bigger step use the GPU better?
step "train_step corp_f big batch" 90 "$PY" -m benchmarks.train_step --size "$SIZE" \
  --dtype "$DTYPE" --objective corp_f --conv_impl auto --no_torch "${STEPS[@]}" \
  --batch "$BIG_BATCH" --json "$RAW/train_step_corp_f_big.json"
step "profile_step corp_m auto" 70 env XLA_FLAGS="--xla_gpu_enable_command_buffer=" "$PY" \
  -m benchmarks.profile_step --size "$SIZE" --dtype "$DTYPE" --objective corp_m \
  --conv_impl auto --steps 3 --warmup 3 --top 15 --json "$RAW/profile_corp_m_auto.json" \
  --keep "$RAW/profile_corp_m_auto"

# At most 8 files come back from the device machine: everything but the log goes in one archive.
tar -C "$OUT" -czf "$OUT/raw.tgz" raw && rm -rf "$RAW"
echo "=== suite done in $(( $(date +%s) - SUITE_START ))s; log: $LOG" | tee -a "$LOG"
