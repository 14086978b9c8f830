"""Train-step throughput of CORP_f / CORP_m in JAX, next to a PyTorch reference, in one run.

For each objective and JAX conv implementation it prints: clips/s and step time (median over
timed steps after warm-up, each step synchronised with block_until_ready), XLA's compiled FLOPs
per clip (`compiled.cost_analysis()`), the model FLOPs per clip (cost analysis of the
unoptimised HLO of the step without remat, i.e. what the model needs, not what remat recomputes)
and the model FLOPs utilisation (MFU) = model FLOPs / step time / device peak. Then the same step
in PyTorch (benchmarks/lib/torch_r3d.py: same architecture, batch and shapes, on the same device)
and the ratio JAX clips/s / PyTorch clips/s.

Device peaks (dense, per device; `--peak_tflops` overrides): H100/H200 SXM 989 bf16 / 495 TF32
(the nominal figures; MFU is reported against these, and also against the ~790 TFLOP/s that a
large bf16 matmul reaches on an H100/H200, see docs/DESIGN_NOTES.md), A100 312 / 156. On CPU
the peak is measured as the throughput of a 1024^3 float32 matmul in XLA.

PyTorch runs in a child process (torch_r3d.TorchWorker), so that its OpenMP threads and XLA's
thread pool never share a process. On CPU JAX and PyTorch are timed in alternating rounds, so
load from other processes hits both alike, and PyTorch is timed with its default thread count
and with one thread (`--torch_threads`): on a shared machine a multi-threaded OpenMP step slows
by an order of magnitude whenever another process holds a core. The JAX/PyTorch ratio is against
the fastest PyTorch variant. On an accelerator PyTorch runs first and its process exits, freeing
the device memory, before JAX starts.

`--find_max_batch` instead doubles the per-device batch until XLA reports resource exhaustion
and prints the largest batch that ran, with and without remat.

Needs jax, flax, optax, numpy (torch for the comparison); no TensorFlow, no ml_collections.

Usage:
  python -m benchmarks.train_step --size cpu --conv_impl native,factorized
  python -m benchmarks.train_step --size r3d50 --dtype bfloat16 --objective corp_f,corp_m
  python -m benchmarks.train_step --size r3d50 --dtype bfloat16 --find_max_batch
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time

# On a GPU PyTorch runs first in the same process: JAX must not grab most of the device memory
# when it initialises. Set before JAX's first use; an explicit setting wins.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp

from benchmarks.lib.step_builder import (NUM_CLIPS, SIZES, batch_size, build_jax_bench,
                                         parse_variant)

# (device_kind substring, {dtype: dense TFLOP/s}); the first match wins.
PEAK_TFLOPS = (
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}),
    ("H100", {"bfloat16": 989.0, "float32": 495.0}),
    ("H200", {"bfloat16": 989.0, "float32": 495.0}),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
)
MEASURED_MATMUL_TFLOPS = {"H100": 790.0, "H200": 790.0}  # bf16, docs/DESIGN_NOTES.md


def device_peak_tflops(dtype: str, override: float | None) -> tuple[float, str]:
  """(peak TFLOP/s per device, where it came from)."""
  if override:
    return override, "--peak_tflops"
  kind = jax.devices()[0].device_kind
  for key, peaks in PEAK_TFLOPS:
    if key in kind:
      return peaks[dtype], f"nominal dense {dtype} for {key}"
  if jax.default_backend() == "cpu":
    return measure_matmul_tflops(), "measured: XLA float32 1024^3 matmul on this CPU"
  return float("nan"), f"unknown device kind {kind!r}: pass --peak_tflops"


def measure_matmul_tflops(n: int = 1024, repeats: int = 5) -> float:
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  jax.block_until_ready(f(a))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(f(a))
    times.append(time.perf_counter() - start)
  return 2 * n ** 3 / min(times) / 1e12


def torch_workers(size: dict, objective: str, args, per_device_batch: int) -> list:
  """[(label, TorchWorker)] on the device matching JAX's backend, one per --torch_threads entry;
  [] with a printed reason when PyTorch cannot run there."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks.lib import torch_r3d  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f"  PyTorch unavailable ({e})")
    return []
  device = "cuda" if jax.default_backend() == "gpu" else "cpu"
  if device == "cuda" and not torch.cuda.is_available():
    print("  PyTorch has no CUDA device: no comparison")
    return []
  compile_mode = args.torch_compile
  if compile_mode == "auto":
    compile_mode = "on" if device == "cuda" else "off"
  spec = torch_r3d.make_spec(size["backbone"], size["projection_hidden"], size["projection_dim"],
                             size["head_num_heads"])
  kwargs = dict(spec=spec, objective=objective, batch=per_device_batch,
                num_clips=NUM_CLIPS[objective], clip_len=size["clip_len"], crop=size["crop"],
                group_size=min(size["group_size"], per_device_batch), dtype=args.dtype,
                device=device, compile_mode=compile_mode)
  threads = args.torch_threads or ("0,1" if device == "cpu" else "0")
  return [(f"torch threads={t}" if int(t) else "torch", torch_r3d.TorchWorker(kwargs, int(t)))
          for t in threads.split(",")]


def _median_ms(times: list) -> float:
  return 1e3 * statistics.median(times)


def run_objective(size_name: str, objective: str, args) -> dict:
  size = SIZES[size_name]
  per_device = batch_size(size, objective, args.batch)
  on_cpu = jax.default_backend() == "cpu"
  rounds = args.rounds or (3 if on_cpu else 1)
  print(f"\n== {objective} | size {size_name} ({size['backbone']}, {size['clip_len']}x"
        f"{size['crop']}x{size['crop']}) | {args.dtype} | batch {per_device} videos x "
        f"{NUM_CLIPS[objective]} clips per device | remat={args.remat}", flush=True)
  results = {"objective": objective, "size": size_name, "dtype": args.dtype,
             "per_device_batch": per_device, "remat": args.remat, "runs": {}}
  workers = [] if args.no_torch else torch_workers(size, objective, args, per_device)
  torch_times = {label: [] for label, _ in workers}
  if not on_cpu:  # accelerator: PyTorch first, then its process exits and frees the memory
    for label, worker in workers:
      print(f"  {label}: {worker.ready()}", flush=True)
      worker.warmup(args.torch_warmup)
      torch_times[label] = worker.time_steps(args.steps * rounds)
      worker.close()
      # Printed now so that a JAX failure or time-out later still leaves this figure.
      clips = per_device * NUM_CLIPS[objective]
      print(f"  {label}: {_median_ms(torch_times[label]):.1f} ms/step, "
            f"{clips / statistics.median(torch_times[label]):.1f} clips/s", flush=True)
    workers = []
  benches = []
  variants = args.conv_impl.split(",")
  for variant in variants:
    parse_variant(variant)  # a typo fails here, before any compile
  for impl in variants:
    try:
      bench = build_jax_bench(size, objective, dtype=args.dtype, conv_impl=impl,
                              remat=args.remat, per_device_batch=per_device,
                              num_devices=args.num_devices or None)
      for _ in range(args.warmup):
        jax.block_until_ready(bench.run())
    except Exception as e:  # pylint: disable=broad-except
      # On an accelerator run one failing candidate must not cost the other variants' figures.
      if len(variants) == 1:
        raise
      print(f"  jax {impl}: FAILED, left out: {type(e).__name__}: {str(e)[:300]}", flush=True)
      results["runs"][f"jax {impl}"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
      continue
    print(f"  {bench.name}: compiled in {bench.compile_s:.1f}s", flush=True)
    benches.append((bench, []))
  if not benches:
    raise RuntimeError(f"train_step: every JAX variant failed ({args.conv_impl})")
  for label, worker in workers:
    print(f"  {label}: {worker.ready()}", flush=True)
    worker.warmup(args.torch_warmup)
  for _ in range(rounds):  # alternate so that changing load hits every variant alike
    for bench, times in benches:
      times += bench.time_steps(args.steps)
    for label, worker in workers:
      torch_times[label] += worker.time_steps(args.steps)
  for _, worker in workers:
    worker.close()
  peak, peak_src = device_peak_tflops(args.dtype, args.peak_tflops)
  kind = jax.devices()[0].device_kind
  clips = per_device * NUM_CLIPS[objective]
  torch_cps = {label: clips / statistics.median(t) for label, t in torch_times.items() if t}
  best_torch = max(torch_cps.values(), default=0.0)
  print(f"  device {kind} x{benches[0][0].num_devices}; peak {peak:.3g} TFLOP/s ({peak_src}); "
        f"{len(benches[0][1])} timed steps in {rounds} round(s) after {args.warmup} warm-up")
  print(f"  {'variant':22s} {'step ms':>9s} {'clips/s':>9s} {'XLA GFLOP/clip':>15s} "
        f"{'model GFLOP/clip':>17s} {'MFU':>7s} {'JAX/torch':>10s}  (vs the fastest PyTorch run)")
  for bench, times in benches:
    step_s = statistics.median(times)
    cps = bench.clips_per_step / step_s
    per_dev_clips = bench.clips_per_step / bench.num_devices
    mfu = bench.model_flops / step_s / (peak * 1e12)
    # PyTorch runs on one device: compare per-device throughput.
    ratio = cps / bench.num_devices / best_torch if best_torch else float("nan")
    print(f"  {bench.name:22s} {1e3 * step_s:9.1f} {cps:9.1f} "
          f"{bench.compiled_flops / per_dev_clips / 1e9:15.3g} "
          f"{bench.model_flops / per_dev_clips / 1e9:17.3g} {100 * mfu:6.1f}% {ratio:10.2f}")
    extra = {}
    for key, tflops in MEASURED_MATMUL_TFLOPS.items():
      if key in kind and args.dtype == "bfloat16":
        extra["mfu_vs_measured_matmul"] = bench.model_flops / step_s / (tflops * 1e12)
        print(f"  {'':22s} MFU vs the ~{tflops:.0f} TFLOP/s measured bf16 matmul ceiling: "
              f"{100 * extra['mfu_vs_measured_matmul']:.1f}%")
    results["runs"][bench.name] = dict(
        step_ms=1e3 * step_s, clips_per_s=cps, compile_s=bench.compile_s,
        compiled_gflop_per_clip=bench.compiled_flops / per_dev_clips / 1e9,
        model_gflop_per_clip=bench.model_flops / per_dev_clips / 1e9, mfu=mfu,
        jax_over_torch=ratio, **extra)
  for label, times in torch_times.items():
    if times:
      print(f"  {label:22s} {_median_ms(times):9.1f} {torch_cps[label]:9.1f}")
      results["runs"][label] = dict(step_ms=_median_ms(times), clips_per_s=torch_cps[label])
  results.update(device=kind, peak_tflops=peak, peak_source=peak_src)
  del benches
  gc.collect()
  return results


def is_out_of_memory(error: Exception) -> bool:
  text = f"{type(error).__name__}: {error}"
  return any(s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory",
                                 "ResourceExhausted"))


def xla_bytes(compiled) -> float:
  """Device bytes XLA plans for one step: arguments + outputs + temporaries - aliased."""
  m = compiled.memory_analysis()
  if m is None:
    return float("nan")
  return float(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def linear_estimate(points: list) -> str:
  """From the last two (batch, bytes) fits, the batch that fills the device's memory limit."""
  limit = (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
  if len(points) < 2 or not limit:
    return ""
  (b1, m1), (b2, m2) = points[-2:]
  per_video = (m2 - m1) / (b2 - b1)
  if per_video <= 0:
    return ""
  return (f"; linear estimate from XLA's buffer sizes: up to ~{int((limit - m1) / per_video) + b1}"
          f" videos in the {limit / 2 ** 30:.1f} GiB limit")


def find_max_batch(size_name: str, objective: str, args) -> dict:
  """Doubles the per-device batch from --batch (or 1) until OOM; with and without remat."""
  size = SIZES[size_name]
  if "," in args.conv_impl:
    raise ValueError("--find_max_batch takes a single --conv_impl")
  found = {}
  for remat in (False, True):
    batch, largest, stop, points = args.batch or 1, None, "reached --max_batch", []
    deadline = time.perf_counter() + args.time_budget_s
    while batch <= args.max_batch:
      if objective == "corp_m" and batch % min(size["group_size"], batch):
        batch *= 2
        continue
      try:
        bench = build_jax_bench(size, objective, dtype=args.dtype, conv_impl=args.conv_impl,
                                remat=remat, per_device_batch=batch,
                                num_devices=args.num_devices or None)
        times = bench.time_steps(2)
        need = xla_bytes(bench.compiled)
        points.append((batch, need))
        print(f"  {objective} remat={remat} batch {batch}: fits, {1e3 * times[-1]:.0f} ms/step,"
              f" XLA buffers {need / 2 ** 30:.2f} GiB{linear_estimate(points)}", flush=True)
        largest = batch
        del bench
      except Exception as e:  # pylint: disable=broad-except
        if not is_out_of_memory(e):
          raise
        stop = f"out of memory at batch {batch}"
        print(f"  {objective} remat={remat} batch {batch}: {stop}", flush=True)
        break
      finally:
        gc.collect()
        jax.clear_caches()
      batch *= 2
      if batch <= args.max_batch and time.perf_counter() > deadline:
        stop = f"time budget {args.time_budget_s:.0f}s spent"
        break
    found[f"remat={remat}"] = dict(largest=largest, stopped=stop)
    print(f"  {objective} remat={remat}: largest per-device batch that ran = {largest} videos"
          f" x {NUM_CLIPS[objective]} clips ({stop})", flush=True)
  return found


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--size", choices=sorted(SIZES), default="cpu")
  p.add_argument("--objective", default="corp_f,corp_m", help="comma list of corp_f, corp_m")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  p.add_argument("--conv_impl", default="auto",
                 help="comma list of native, factorized, im2col, auto, each optionally with "
                      "'+s2d' (space-to-depth stem), '+fbn' / '+abn' (fused / autodiff "
                      "BatchNorm), e.g. factorized+abn,factorized+fbn")
  p.add_argument("--remat", action="store_true")
  p.add_argument("--batch", type=int, default=0, help="videos per device (0: the size's default)")
  p.add_argument("--num_devices", type=int, default=0, help="0: all devices")
  p.add_argument("--steps", type=int, default=5, help="timed steps per round")
  p.add_argument("--rounds", type=int, default=0, help="0: 3 on CPU (interleaved), 1 elsewhere")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--torch_warmup", type=int, default=3,
                 help="PyTorch warm-up steps (on CPU oneDNN builds its kernels over ~3 steps)")
  p.add_argument("--torch_threads", default="",
                 help="comma list of PyTorch intra-op thread counts, 0 = its default "
                      "(default: '0,1' on CPU, '0' elsewhere)")
  p.add_argument("--no_torch", action="store_true")
  p.add_argument("--torch_compile", choices=("auto", "on", "off"), default="auto",
                 help="auto: on for CUDA, off on CPU (its compile takes minutes there)")
  p.add_argument("--peak_tflops", type=float, default=0.0)
  p.add_argument("--find_max_batch", action="store_true")
  p.add_argument("--max_batch", type=int, default=256)
  p.add_argument("--time_budget_s", type=float, default=240.0,
                 help="find_max_batch: stop doubling after this long (per remat setting)")
  p.add_argument("--json", default="", help="also write the results to this file")
  return p.parse_args(argv)


def main(argv=None) -> list:
  args = parse_args(argv)
  print(f"jax {jax.__version__} backend={jax.default_backend()} "
        f"devices={jax.device_count()} ({jax.devices()[0].device_kind}) "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
  results = []
  for objective in args.objective.split(","):
    if objective not in NUM_CLIPS:
      raise ValueError(f"--objective: {objective!r} is not one of {sorted(NUM_CLIPS)}")
    if args.find_max_batch:
      print(f"\n== find_max_batch {objective} | size {args.size} | {args.dtype} | "
            f"conv {args.conv_impl}", flush=True)
      results.append({"objective": objective, "find_max_batch": find_max_batch(
          args.size, objective, args)})
    else:
      results.append(run_objective(args.size, objective, args))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2, default=float)
  return results


if __name__ == "__main__":
  main()
