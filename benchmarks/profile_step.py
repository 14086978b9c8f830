"""Where the train step's time goes: a jax.profiler trace of a few steps, summarised as text.

Builds the step that benchmarks/train_step.py times (step_builder.py), warms it up, traces
`--steps` steps with `jax.profiler.trace`, and reads the trace back with `jax.profiler.ProfileData` (no TensorBoard,
no TensorFlow). Every device kernel (GPU: the device plane's stream events; CPU: XLA's thunk
events on the host plane) carries the optimised-HLO instruction it runs (`hlo_op` stat); the
instruction is looked up in `compiled.as_text()` and put in one category (hlo_check.categorize):
  convolution  plain `convolution` ops, cuDNN conv custom calls, fusions holding a convolution
  matmul       `dot`, cuBLAS custom calls, fusions holding a dot (Triton GEMMs)
  data_movement  transposes, copies, slices, pads, concatenations, iotas and fusions of nothing
               else (layout changes, the factorized convs' time shifts, the pool's indices)
  reduction    other fusions holding a reduce (BatchNorm statistics and their gradients)
  elementwise  other fusions and ops (BatchNorm normalise, ReLU, adds, optimizer updates)
  unmapped     kernels with no hlo_op of this module (memcpy, library helpers)
It prints per step: the wall time, the device's busy time (union of kernel intervals; the rest
is launch / host gaps), each category's time and share, and the top `--top` instructions.
For R3D-50 on an H100/H200 it also prints benchmarks/roofline.py's bounds next to the measured
convolution and non-convolution times, so the gap to each bound is visible.

Usage:
  python -m benchmarks.profile_step --size r3d50 --dtype bfloat16 --conv_impl factorized
  python -m benchmarks.profile_step --size smoke --steps 2 --top 5          # CPU check
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import re
import shutil
import tempfile
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # pylint: disable=g-import-not-at-top

from benchmarks import hlo_check
from benchmarks import roofline
from benchmarks.lib import step_builder

CATEGORIES = hlo_check.CATEGORIES + ("unmapped",)


def kernel_events(profile, module_substring: str) -> list[tuple[str, int, int]]:
  """(hlo_op, start_ns, end_ns) of the kernels that ran `module_substring`'s instructions, or
  ('', start, end) for device-plane events without one."""
  events = []
  for plane in profile.planes:
    on_device = plane.name.startswith("/device:")
    if not on_device and plane.name != "/host:CPU":
      continue
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        module = str(stats.get("hlo_module", ""))
        if event.name.startswith("end: "):  # CPU thunk-executor bookkeeping, not work
          continue
        if "hlo_op" in stats and module_substring in module:
          op = str(stats["hlo_op"])
        elif on_device and line.name.lower().startswith("stream"):
          op = ""
        else:
          continue
        start = int(event.start_ns)
        events.append((op, start, start + int(event.duration_ns)))
  return events


def busy_ns(events) -> int:
  """Length of the union of the events' intervals."""
  total, current_end = 0, None
  current_start = 0
  for _, start, end in sorted(events, key=lambda e: e[1]):
    if current_end is None or start > current_end:
      if current_end is not None:
        total += current_end - current_start
      current_start, current_end = start, end
    else:
      current_end = max(current_end, end)
  if current_end is not None:
    total += current_end - current_start
  return total


def summarize(events, categories: dict[str, str], steps: int) -> dict:
  """Per-step ms by category and by instruction."""
  by_op = collections.Counter()
  by_category = collections.Counter({c: 0 for c in CATEGORIES})
  for op, start, end in events:
    by_op[op or "<no hlo_op>"] += end - start
    by_category[categories.get(op, "unmapped")] += end - start
  per_step = lambda ns: ns / steps / 1e6
  return dict(
      busy_ms=per_step(busy_ns(events)), kernel_ms=per_step(sum(by_category.values())),
      categories={c: per_step(ns) for c, ns in by_category.items()},
      ops=[(op, categories.get(op, "unmapped"), per_step(ns)) for op, ns in by_op.most_common()])


def trace_steps(bench, steps: int, trace_dir: str) -> tuple[float, str]:
  """Runs `steps` steps under the profiler; (wall seconds per step, xplane.pb path)."""
  with jax.profiler.trace(trace_dir):
    start = time.perf_counter()
    for _ in range(steps):
      jax.block_until_ready(bench.run())
    wall = (time.perf_counter() - start) / steps
  paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True),
                 key=os.path.getmtime)
  if not paths:
    raise RuntimeError(f"profile_step: jax.profiler wrote no *.xplane.pb under {trace_dir}")
  return wall, paths[-1]


def roofline_lines(kind: str, size_name: str, objective: str, dtype: str, per_device_batch: int,
                   summary: dict) -> list[str]:
  """The roofline bounds for device `kind` next to the measured conv / non-conv time."""
  device = roofline.find_device(kind)
  size = step_builder.SIZES[size_name]
  if device is None or dtype not in roofline.DTYPE_BYTES:
    return [f"  (no roofline: device {kind!r} is not one of {sorted(roofline.DEVICES)})"]
  peak, bandwidth = roofline.DEVICES[device].peak(dtype), roofline.DEVICES[device].bandwidth_tb_s
  clips = per_device_batch * step_builder.NUM_CLIPS[objective]
  backbone = roofline.backbone_layers(size["backbone"], size["clip_len"], size["crop"])
  bound = roofline.step_bound(backbone, clips, roofline.DTYPE_BYTES[dtype], peak, bandwidth)
  cats = summary["categories"]
  non_conv = sum(cats[c] for c in hlo_check.NON_CONV)
  return [f"  roofline ({device}, {peak:g} TFLOP/s, {bandwidth:g} TB/s, {clips} clips): "
          f"convs {bound.conv_s * 1e3:.1f} ms, XLA-style BN/residual/pool passes "
          f"{bound.elementwise_s * 1e3:.1f} ms",
          f"  measured: convolution {cats['convolution']:.1f} ms "
          f"({bound.conv_s * 1e3 / max(cats['convolution'], 1e-9):.0%} of roofline speed); "
          f"reduction + elementwise + data movement {non_conv:.1f} ms "
          f"({bound.elementwise_s * 1e3 / max(non_conv, 1e-9):.0%} of roofline speed)"]


def describe(instr) -> str:
  """An entry instruction's result type and the tail of its source op_name (which layer)."""
  if instr is None:
    return ""
  match = re.search(r'op_name="([^"]*)"', instr["attrs"])
  where = "/".join(match.group(1).split("/")[-3:]) if match else ""
  return f"{instr['type'][:60]} {where}"


_STAGE = re.compile(r"\b(stem|res\d|head|projection|pool|loss|optimizer|lars)", re.IGNORECASE)


def by_stage(ops, instrs) -> dict:
  """{stage: [convolution ms, other ms]} from each instruction's op_name (stem, res2..res5, ...;
  'other' where the name has none, e.g. the optimizer update)."""
  stages = collections.defaultdict(lambda: [0.0, 0.0])
  for op, category, ms in ops:
    instr = instrs.get(op)
    match = re.search(r'op_name="([^"]*)"', instr["attrs"]) if instr else None
    stage = _STAGE.search(match.group(1)) if match else None
    stages[stage.group(1).lower() if stage else "other"][category != "convolution"] += ms
  return dict(sorted(stages.items()))


def keep_raw(prefix: str, xplane: str, hlo_text: str) -> None:
  """Gzipped copies of the trace and the optimised HLO: `summarize` can be re-run on them."""
  with open(xplane, "rb") as f, gzip.open(prefix + ".xplane.pb.gz", "wb") as out:
    shutil.copyfileobj(f, out)
  with gzip.open(prefix + ".hlo.txt.gz", "wt") as out:
    out.write(hlo_text)
  print(f"  kept: {prefix}.xplane.pb.gz, {prefix}.hlo.txt.gz")


def from_kept(args, per_device: int) -> dict:
  """`report` on files written by --keep; the wall time is not in them (NaN)."""
  with gzip.open(args.from_kept + ".hlo.txt.gz", "rt") as f:
    hlo_text = f.read()
  xplane = os.path.join(tempfile.mkdtemp(prefix="corp_profile_"), "kept.xplane.pb")
  with gzip.open(args.from_kept + ".xplane.pb.gz", "rb") as f, open(xplane, "wb") as out:
    shutil.copyfileobj(f, out)
  return report(args, hlo_text, xplane, float("nan"), per_device, device_kind=args.device)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--size", choices=sorted(step_builder.SIZES), default="cpu")
  p.add_argument("--objective", choices=("corp_f", "corp_m"), default="corp_f")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  p.add_argument("--conv_impl", default="auto")
  p.add_argument("--remat", action="store_true")
  p.add_argument("--batch", type=int, default=0, help="per-device videos (0: the size's)")
  p.add_argument("--steps", type=int, default=5, help="traced steps")
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--top", type=int, default=15)
  p.add_argument("--trace_dir", default="", help="keep the trace here (default: a temp dir)")
  p.add_argument("--json", default="", help="write the summary here")
  p.add_argument("--from_kept", default="",
                 help="summarise PREFIX.xplane.pb.gz + PREFIX.hlo.txt.gz written by --keep "
                      "(no step is built; give the same --steps)")
  p.add_argument("--device", default="", help="with --from_kept: the device kind for the "
                 "roofline (e.g. 'NVIDIA H200')")
  p.add_argument("--keep", default="",
                 help="also write PREFIX.xplane.pb.gz and PREFIX.hlo.txt.gz (the raw trace and "
                      "the optimised HLO, for re-reading the profile elsewhere)")
  return p.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.steps < 1:
    raise SystemExit(f"--steps {args.steps}: trace at least one step")
  size = step_builder.SIZES[args.size]
  per_device = step_builder.batch_size(size, args.objective, args.batch or None)
  if args.from_kept:
    return from_kept(args, per_device)
  bench = step_builder.build_jax_bench(size, args.objective, dtype=args.dtype,
                                     conv_impl=args.conv_impl, remat=args.remat,
                                     per_device_batch=per_device, num_devices=1)
  for _ in range(args.warmup):
    jax.block_until_ready(bench.run())
  hlo_text = bench.hlo_text_fn()  # megabytes for R3D-50: printed once, parsed once
  trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="corp_profile_")
  wall_s, xplane = trace_steps(bench, args.steps, trace_dir)
  return report(args, hlo_text, xplane, wall_s * 1e3, per_device,
                device_kind=jax.devices()[0].device_kind)


def report(args, hlo_text: str, xplane: str, wall_ms: float, per_device: int,
           device_kind: str) -> dict:
  """Summarises one trace of `args.steps` steps against its optimised HLO; prints, writes."""
  comps = hlo_check.parse_hlo(hlo_text)
  categories = hlo_check.categorize(comps)
  module = next(name for name, comp in comps.items() if comp["entry"])
  profile = jax.profiler.ProfileData.from_file(xplane)
  # The module name in the trace is the HloModule's (e.g. 'jit_train_step'), not the entry's.
  module_name = hlo_text.split(None, 2)[1].rstrip(",")
  events = kernel_events(profile, module_name)
  if not events:
    planes = {plane.name: [line.name for line in plane.lines][:4] for plane in profile.planes}
    print(f"  warning: no kernel events of module {module_name!r} in the trace (on a GPU: is "
          f"CUPTI available to the profiler?); planes and first lines: {planes}")
  summary = summarize(events, categories, args.steps)
  summary.update(wall_ms=wall_ms, size=args.size, objective=args.objective,
                 dtype=args.dtype, conv_impl=args.conv_impl, per_device_batch=per_device,
                 device=device_kind, xplane=xplane, entry=module)
  print(f"jax {jax.__version__} {summary['device']} | {args.objective} {args.size} {args.dtype} "
        f"conv {args.conv_impl} | batch {per_device} videos | {args.steps} traced steps")
  print(f"  per step: wall {summary['wall_ms']:.2f} ms, device busy {summary['busy_ms']:.2f} ms "
        f"({summary['busy_ms'] / summary['wall_ms']:.0%}), kernel time {summary['kernel_ms']:.2f}"
        f" ms in {len(events) // args.steps} kernels")
  for category in CATEGORIES:
    ms = summary["categories"][category]
    print(f"  {category:<14} {ms:9.2f} ms  {ms / max(summary['kernel_ms'], 1e-9):6.1%}")
  print(f"  top {args.top} instructions (ms per step):")
  entry_instrs = comps[module]["instrs"]
  for op, category, ms in summary["ops"][:args.top]:
    print(f"    {ms:8.3f}  {category:<14} {op}  {describe(entry_instrs.get(op))}")
  print("  by stage (ms per step, convolution / other kernels):")
  for stage, (conv_ms, other_ms) in by_stage(summary["ops"], entry_instrs).items():
    print(f"    {stage:<10} {conv_ms:8.2f} {other_ms:8.2f}")
  if args.size in ("r3d50", "r3d18") and roofline.find_device(device_kind) is not None:
    for line in roofline_lines(summary["device"], args.size, args.objective, args.dtype,
                               per_device, summary):
      print(line)
  print(f"  trace: {xplane}")
  if args.keep and not args.from_kept:
    keep_raw(args.keep, xplane, hlo_text)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
  return summary


if __name__ == "__main__":
  main()
