"""The fidelity protocol on one GPU, within a fixed time budget, without TensorFlow.

  python benchmarks/gpu_fidelity.py --out DIR [--budget_s 540] [--jobs 9]
  python benchmarks/gpu_fidelity.py --out DIR --smoke      # tiny sizes, on CPU (a dry run)

Stages (each prints and logs to DIR/log.txt; tables are copied to DIR as they are written):
  1. the photo set as arrays (`corp_jax.tools.photo_set --arrays`: 4,000 train / 160 test
     videos, 40 frames, 64x64, rendered in parallel; no codec, no TensorFlow, no PyAV);
  2. calibration, and a result of its own: the protocol at the demo length (400 steps) for
     simclr, corp_f and corp_m x 3 seeds, `--jobs` runs at a time on the one GPU;
  3. the longest run the rest of the budget holds: from stage 2's logged steps/s (the slowest
     run, same concurrency) and its fixed costs (start, compilation, probe), the step count
     (a multiple of 500, at most `--max_steps`) that ends within the budget with a margin;
  4. the protocol at that length (same objectives and seeds, the demo recipes unchanged;
     checkpoints every 1,000 steps), under a timeout so that a slow run cannot overrun.
The step count comes from the clock, not from any label: no probe result chooses it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log(out: str, message: str) -> None:
  line = f"[{time.strftime('%H:%M:%S')}] {message}"
  print(line, flush=True)
  with open(os.path.join(out, "log.txt"), "a") as f:
    f.write(line + "\n")


def _run(out: str, command: list, timeout: float | None = None) -> int:
  _log(out, "$ " + " ".join(command))
  try:
    return subprocess.run(command, cwd=REPO, timeout=timeout).returncode
  except subprocess.TimeoutExpired:
    _log(out, f"timed out after {timeout:.0f} s")
    return 124


def _copy_tables(out: str, table_dir: str, name: str) -> None:
  for ext in ("md", "json"):
    src = os.path.join(table_dir, f"fidelity.{ext}")
    if os.path.exists(src):
      shutil.copy(src, os.path.join(out, f"{name}.{ext}"))


def _rate_and_overhead(table_dir: str, steps: int) -> tuple[float, float]:
  """(steps/s of the slowest run, its largest fixed cost in s: wall minus steps / rate, plus
  the probe)."""
  rates, fixed = [], []
  for record_path in glob.glob(os.path.join(table_dir, "*", "seed*", "run.json")):
    with open(record_path) as f:
      record = json.load(f)
    metrics = os.path.join(os.path.dirname(record_path), "pretrain", "metrics.jsonl")
    with open(metrics) as f:
      lines = [json.loads(line) for line in f if '"steps_per_sec"' in line]
    later = [m["steps_per_sec"] for m in lines[len(lines) // 4:] if m.get("steps_per_sec")]
    if not later:
      continue
    rate = statistics.median(later)
    rates.append(rate)
    fixed.append((record.get("pretrain_wall_s") or 0) - steps / rate
                 + (record.get("probe_wall_s") or 0))
  if not rates:
    raise RuntimeError(f"no steps_per_sec logged under {table_dir}")
  return min(rates), max(fixed)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_fidelity"))
  p.add_argument("--work", default=os.path.join(REPO, "workdirs", "gpu_fidelity"))
  p.add_argument("--budget_s", type=float, default=540.0)
  p.add_argument("--jobs", type=int, default=9)
  p.add_argument("--max_steps", type=int, default=20000)
  p.add_argument("--objectives", default="simclr,corp_f,corp_m")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--smoke", action="store_true", help="tiny sizes and steps (CPU dry run)")
  args = p.parse_args(argv)
  started = time.time()
  os.makedirs(args.out, exist_ok=True)
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  py = sys.executable
  smoke = args.smoke
  _log(args.out, f"budget {args.budget_s:.0f} s, jobs {args.jobs}, smoke {smoke}")
  subprocess.run([py, "-c", "import jax; print('devices', jax.devices())"], cwd=REPO)

  set_dir = os.path.join(args.work, "photo_smoke" if smoke else "photo")
  workers = max(1, (os.cpu_count() or 2) - 2)
  sizes = ["--num_train", "40", "--num_test", "20"] if smoke else ["--num_train", "4000"]
  t0 = time.time()
  if _run(args.out, [py, "-m", "corp_jax.tools.photo_set", "--out", set_dir, "--arrays",
                     "--workers", str(workers)] + sizes) != 0:
    return 1
  _log(args.out, f"photo arrays ready in {time.time() - t0:.0f} s")

  base = [py, "-m", "corp_jax.tools.fidelity", "--set", os.path.join(set_dir, "set.json"),
          "--source", "arrays", "--root", os.path.join(args.work, "runs"),
          "--objectives", args.objectives, "--seeds", args.seeds, "--jobs", str(args.jobs),
          # Every video resized once per process (~2 GB each at 4,000 videos): the host's
          # per-clip resize held the GPU at 20-25% busy (docs/FIDELITY.md, "On a GPU").
          "--override", "data.arrays_cache_mb=4096"]
  if smoke:
    base += ["--preset", "test", "--linear_preset", "test"]
  calib_steps = 20 if smoke else 400
  table_root = os.path.join(args.work, "runs")
  code = _run(args.out, base + ["--steps", str(calib_steps), "--tag", f"s{calib_steps}"])
  calib_dir = os.path.join(table_root, f"photo_arrays_40f_s{calib_steps}")
  _copy_tables(args.out, calib_dir, f"photo_arrays_s{calib_steps}")
  if code != 0:
    return 1
  rate, fixed = _rate_and_overhead(calib_dir, calib_steps)
  margin = 30.0
  left = args.budget_s - (time.time() - started) - margin
  unit = 10 if smoke else 500
  steps = int((left - 1.3 * fixed) * rate * 0.85) // unit * unit
  steps = min(steps, args.max_steps)
  _log(args.out, f"calibration: slowest run {rate:.1f} steps/s, fixed cost up to {fixed:.0f} s; "
                 f"{left:.0f} s left -> {steps} steps")
  if steps < 2 * calib_steps:
    _log(args.out, "too little time for a longer run; stopping")
    return 0
  long_dir = os.path.join(table_root, f"photo_arrays_40f_s{steps}")
  code = _run(args.out, base + ["--steps", str(steps), "--tag", f"s{steps}",
                                "--override", "train.checkpoint_every=1000"],
              timeout=max(10.0, args.budget_s - (time.time() - started) - 5))
  _copy_tables(args.out, long_dir, f"photo_arrays_s{steps}")
  _log(args.out, f"done in {time.time() - started:.0f} s (exit {code})")
  return 0 if code == 0 else 1


if __name__ == "__main__":
  sys.exit(main())
