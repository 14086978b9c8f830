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
#      bf16 autocast) first, then JAX with factorized convs (the GPU default) and the
#      candidates: the hand-written BatchNorm backward (+fbn, corp_jax/models/batchnorm.py),
#      the space-to-depth stem (+s2d), both; clips/s, model FLOPs, MFU, JAX/PyTorch
#   3. profile_step.py CORP_f factorized: a jax.profiler trace, kernel time by category, the
#      top instructions with their layer, time by stage, the roofline bounds beside them; the
#      raw trace and optimised HLO kept (--keep) for re-reading with --from_kept
#   4. hlo_check.py factorized: transposes / copies around the convs, bytes per category
#   5. XLA:GPU command buffers (CUDA graphs) off, and on for every thunk kind (JAX alone)
#   6. profile_step.py CORP_f native 3D convs, and 7. CORP_m factorized
#   8. native convs with --xla_gpu_force_conv_nhwc (JAX alone)
#   9. CORP_f factorized at a 3x larger per-device batch (JAX alone)
#  10. train_step.py CORP_m: PyTorch, factorized, factorized+fbn
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
step "train_step corp_f" 240 "$PY" benchmarks/train_step.py --size "$SIZE" --dtype "$DTYPE" \
  --objective corp_f --conv_impl factorized,factorized+fbn,factorized+s2d,factorized+fbn+s2d \
  --torch_compile "$COMPILE" "${STEPS[@]}" --json "$OUT/train_step_corp_f.json"
cleanup
step "profile_step corp_f factorized" 70 "$PY" benchmarks/profile_step.py --size "$SIZE" \
  --dtype "$DTYPE" --objective corp_f --conv_impl factorized --steps 3 --warmup 3 --top 30 \
  --json "$RAW/profile_corp_f_factorized.json" --keep "$RAW/profile_corp_f_factorized"
step "hlo_check factorized" 40 "$PY" benchmarks/hlo_check.py --size "$SIZE" \
  --dtype "$DTYPE" --conv_impl factorized --examples 3
# XLA:GPU flags (read when the backend starts, so each is its own process; JAX alone, against
# the PyTorch figure above): CUDA graphs (command buffers) off, and on for every kind of thunk
# with no minimum graph size -- the gap between wall time and device busy time says which.
step "train_step corp_f, command buffers off" 60 env XLA_FLAGS="--xla_gpu_enable_command_buffer=" \
  "$PY" benchmarks/train_step.py --size "$SIZE" --dtype "$DTYPE" --objective corp_f \
  --conv_impl factorized --no_torch "${STEPS[@]}" --json "$RAW/train_step_cmdbuf_off.json"
step "train_step corp_f, command buffers everywhere" 60 env \
  XLA_FLAGS="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN --xla_gpu_graph_min_graph_size=1" \
  "$PY" benchmarks/train_step.py --size "$SIZE" --dtype "$DTYPE" --objective corp_f \
  --conv_impl factorized --no_torch "${STEPS[@]}" --json "$RAW/train_step_cmdbuf_all.json"
step "profile_step corp_f native" 70 "$PY" benchmarks/profile_step.py --size "$SIZE" \
  --dtype "$DTYPE" --objective corp_f --conv_impl native --steps 3 --warmup 3 --top 15 \
  --json "$RAW/profile_corp_f_native.json" --keep "$RAW/profile_corp_f_native"
step "profile_step corp_m factorized" 70 "$PY" benchmarks/profile_step.py --size "$SIZE" \
  --dtype "$DTYPE" --objective corp_m --conv_impl factorized --steps 3 --warmup 3 --top 15 \
  --json "$RAW/profile_corp_m_factorized.json" --keep "$RAW/profile_corp_m_factorized"
if (( ! SMOKE )); then  # an XLA:GPU flag: meaningless on CPU
  step "train_step corp_f native, force_conv_nhwc" 90 env XLA_FLAGS="--xla_gpu_force_conv_nhwc" \
    "$PY" benchmarks/train_step.py --size "$SIZE" --dtype "$DTYPE" --objective corp_f \
    --conv_impl native --no_torch "${STEPS[@]}" --json "$RAW/train_step_native_nhwc.json"
fi
# Throughput at a larger per-device batch (JAX only): does a bigger step use the GPU better?
step "train_step corp_f big batch" 50 "$PY" benchmarks/train_step.py --size "$SIZE" \
  --dtype "$DTYPE" --objective corp_f --conv_impl factorized --no_torch "${STEPS[@]}" \
  --batch "$BIG_BATCH" --json "$RAW/train_step_corp_f_big.json"
step "train_step corp_m" 150 "$PY" benchmarks/train_step.py --size "$SIZE" --dtype "$DTYPE" \
  --objective corp_m --conv_impl factorized,factorized+fbn --torch_compile "$COMPILE" \
  "${STEPS[@]}" --json "$RAW/train_step_corp_m.json"
cleanup

# At most 8 files come back from the device machine: everything but the log goes in one archive.
tar -C "$OUT" -czf "$OUT/raw.tgz" raw && rm -rf "$RAW"
echo "=== suite done in $(( $(date +%s) - SUITE_START ))s; log: $LOG" | tee -a "$LOG"
