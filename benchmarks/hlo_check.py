"""Counts layout transposes / copies next to the convolutions of the compiled train step.

Compiles the real CORP train step (benchmarks/lib/step_builder.py) for a size, dtype and
conv implementation, reads the optimised HLO (`compiled.as_text()`) and prints:
  * the convolutions: plain `convolution` ops, cuDNN `custom-call`s whose target names a conv,
    and fusions that contain a convolution; with a histogram of their `dim_labels` (the layout
    XLA chose: `b012f` is channels-last NDHWC, `bf012` is channels-first NCDHW);
  * how many of them have a layout op (a `transpose`, a `copy` that changes the layout, or a
    fusion made only of transpose / copy / bitcast / reshape / convert) as a direct operand or
    user (looking through bitcast and get-tuple-element), how many of those have one that is
    activation-sized (not the size of the conv's kernel, the smallest of its input, kernel and
    output), and a few examples;
  * the total transposes and layout-changing copies in the module (fusion bodies included);
  * the bytes each kernel category moves per step (`traffic`: operands + results of every
    top-level instruction, cuDNN / cuBLAS scratch buffers excluded), with the time that takes at
    the device's HBM bandwidth, next to benchmarks/roofline.py's minimum for R3D sizes. Kernels
    are put in categories by `categorize` (convolution, matmul, data_movement, reduction,
    elementwise), the same ones benchmarks/profile_step.py times.
`--hlo FILE` analyses a saved optimised HLO text (e.g. one dumped on a GPU) without compiling.
On a GPU the goal is no layout transposes around the 3D convolutions. The step is compiled with
corp_jax's per-platform XLA flags (`corp_jax.models.platform.configure_xla_flags`: channels-last
convs on GPU); `XLA_FLAGS=--xla_gpu_force_conv_nhwc=false` compiles without. On CPU XLA
lowers convolutions to its own (Eigen / oneDNN) kernels; the figures are reported for
information. The XLA_FLAGS in effect are printed.

Usage:
  python -m benchmarks.hlo_check --size r3d50 --dtype bfloat16 --conv_impl native
  python -m benchmarks.hlo_check --size cpu --conv_impl factorized --examples 5
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import pathlib
import re

CATEGORIES = ("convolution", "matmul", "data_movement", "reduction", "elementwise")
# The categories that are memory traffic between the convolutions (BatchNorm, ReLU, adds, ...).
NON_CONV = ("data_movement", "reduction", "elementwise")
LAYOUT_OPS = {"transpose", "copy"}
# Ops that only move or index data; a fusion of nothing else is 'data_movement'.
DATA_MOVEMENT = {"transpose", "copy", "slice", "pad", "concatenate", "dynamic-slice",
                 "dynamic-update-slice", "reverse", "broadcast", "iota", "bitcast", "reshape",
                 "convert", "parameter", "constant", "tuple", "get-tuple-element"}
# Top-level instructions that are not kernels (no data is moved for them).
NOT_KERNELS = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all",
               "partition-id", "replica-id"}
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f16": 2, "bf16": 2, "s16": 2, "u16": 2, "f32": 4,
          "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}
# Ops a pure layout fusion may contain besides transposes and copies.
LAYOUT_NEUTRAL = {"parameter", "bitcast", "reshape", "convert", "tuple", "get-tuple-element"}
PASS_THROUGH = {"bitcast", "get-tuple-element"}

_INSTR = re.compile(r"^\s*(ROOT\s+)?%?(?P<name>[^\s=]+)\s*=\s*(?P<rest>.*)$")


def _closing(text: str, start: int) -> int:
  """Index of the parenthesis closing the one at text[start]."""
  depth = 0
  for i in range(start, len(text)):
    depth += {"(": 1, ")": -1}.get(text[i], 0)
    if depth == 0:
      return i
  return len(text) - 1


def parse_hlo(text: str) -> dict:
  """{computation: {'instrs': {name: instr}, 'root': name}}; instr = dict(opcode, operands,
  attrs, line). Names are unique within a module."""
  comps, current = {}, None
  for line in text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
      comps[current] = {"instrs": {}, "root": None, "entry": line.startswith("ENTRY")}
      continue
    if current is None or line.strip() == "}":
      continue
    match = _INSTR.match(line)
    if not match:
      continue
    rest = match.group("rest")
    type_end = _closing(rest, 0) + 1 if rest.startswith("(") else rest.find(" ")
    body = rest[type_end:].lstrip()
    paren = body.find("(")
    if paren < 0:
      continue
    close = _closing(body, paren)
    instr = dict(type=rest[:type_end], opcode=body[:paren].strip(), operands=re.findall(r"%([\w.\-]+)",
                                                                   body[paren:close + 1]),
                 attrs=body[close + 1:], line=line.strip())
    comps[current]["instrs"][match.group("name")] = instr
    if match.group(1):
      comps[current]["root"] = match.group("name")
  return comps


def _called(instr) -> list:
  return re.findall(r"calls=%?([\w.\-]+)", instr["attrs"])


def _ops_of(comps, names) -> set:
  return {i["opcode"] for c in names if c in comps for i in comps[c]["instrs"].values()}


def _custom_call_target(instr) -> str:
  match = re.search(r'custom_call_target="([^"]+)"', instr["attrs"])
  return match.group(1).lower() if match else ""


def is_conv(instr, comps) -> bool:
  if instr["opcode"] == "convolution":
    return True
  if instr["opcode"] == "custom-call":
    return "conv" in _custom_call_target(instr)
  return instr["opcode"] == "fusion" and "convolution" in _ops_of(comps, _called(instr))


def _layout(instr) -> str:
  """The minor-to-major layout of an instruction's (first) result type, e.g. '4,3,2,1,0'."""
  match = re.search(r"\{([\d,]*)", instr["type"])
  return match.group(1) if match else ""


def is_layout_op(instr, comps, instrs) -> bool:
  """A transpose, a copy that changes the layout (not a plain buffer copy, e.g. of a donated
  parameter), or a fusion of nothing but such ops and layout-neutral ones."""
  if instr["opcode"] == "transpose":
    return True
  if instr["opcode"] == "copy":
    source = instrs.get(instr["operands"][0]) if instr["operands"] else None
    return source is None or _layout(source) != _layout(instr)
  if instr["opcode"] == "fusion":
    ops = _ops_of(comps, _called(instr))
    return bool(ops & LAYOUT_OPS) and ops <= LAYOUT_OPS | LAYOUT_NEUTRAL
  return False


def _elements(instr) -> int:
  """Element count of an instruction's (first) result array; -1 when it has none."""
  match = re.search(r"\w+\[([\d,]*)\]", instr["type"])
  return math.prod(int(d) for d in filter(None, match.group(1).split(","))) if match else -1


def _fused_computations(comps) -> set:
  return {c for comp in comps.values() for i in comp["instrs"].values()
          if i["opcode"] == "fusion" for c in _called(i)}


def categorize(comps: dict) -> dict:
  """{instruction name: category} for every instruction outside fusion bodies."""
  fused = _fused_computations(comps)
  categories = {}
  for name, comp in comps.items():
    if name in fused:
      continue
    instrs = comp["instrs"]
    for instr_name, instr in instrs.items():
      inner = (_ops_of(comps, _called(instr)) if instr["opcode"] == "fusion"
               else {instr["opcode"]})
      target = _custom_call_target(instr) if instr["opcode"] == "custom-call" else ""
      if is_conv(instr, comps):
        category = "convolution"
      elif "dot" in inner or "gemm" in target or "cublas" in target:
        category = "matmul"
      elif is_layout_op(instr, comps, instrs) or (
          inner <= DATA_MOVEMENT and inner - {"parameter", "constant", "tuple"}):
        category = "data_movement"
      elif inner & {"reduce", "reduce-window", "select-and-scatter"}:
        category = "reduction"
      else:
        category = "elementwise"
      categories[instr_name] = category
  return categories


def result_bytes(instr) -> int:
  """Bytes of an instruction's result(s); a custom call's u8 scratch buffer is not counted."""
  total = 0
  for dtype, dims in re.findall(r"\b(\w+)\[([\d,]*)\]", instr["type"]):
    if dtype == "u8" and instr["opcode"] == "custom-call":
      continue
    total += _BYTES.get(dtype, 4) * math.prod(int(d) for d in filter(None, dims.split(",")))
  return total


def traffic(comps: dict) -> dict:
  """{category: bytes read + written per step} over the top-level instructions (kernels)."""
  categories = categorize(comps)
  fused = _fused_computations(comps)
  totals = dict.fromkeys(CATEGORIES, 0)
  for name, comp in comps.items():
    if name in fused:
      continue
    instrs = comp["instrs"]
    for instr_name, instr in instrs.items():
      if instr["opcode"] in NOT_KERNELS:
        continue
      read = sum(result_bytes(instrs[op]) for op in instr["operands"] if op in instrs)
      totals[categories[instr_name]] += read + result_bytes(instr)
  return totals


def analyse(text: str, examples: int = 3) -> dict:
  """Counts over every non-fused computation (fusion bodies are looked into, not walked)."""
  comps = parse_hlo(text)
  if not comps:
    raise ValueError("hlo_check: no HLO computations found in the compiled text")
  fused = {c for comp in comps.values() for i in comp["instrs"].values()
           if i["opcode"] == "fusion" for c in _called(i)}
  convs, adjacent, shown, labels = 0, 0, [], collections.Counter()
  activation_adjacent = 0
  layout_total = sum(1 for comp in comps.values() for i in comp["instrs"].values()
                     if i["opcode"] in LAYOUT_OPS and is_layout_op(i, comps, comp["instrs"]))
  for name, comp in comps.items():
    if name in fused:
      continue
    instrs = comp["instrs"]
    users = collections.defaultdict(list)
    for user, instr in instrs.items():
      for op in instr["operands"]:
        users[op].append(user)

    def producers(n, depth=0):
      instr = instrs.get(n)
      if instr is None or depth > 3 or instr["opcode"] not in PASS_THROUGH:
        return [n]
      return [p for op in instr["operands"] for p in producers(op, depth + 1)]

    def consumers(n, depth=0):
      out = []
      for u in users.get(n, []):
        if instrs[u]["opcode"] in PASS_THROUGH and depth < 3:
          out += consumers(u, depth + 1)
        else:
          out.append(u)
      return out

    for conv_name, instr in instrs.items():
      if not is_conv(instr, comps):
        continue
      convs += 1
      dims = re.search(r"dim_labels=([\w>\-]+)", instr["attrs"])
      if not dims:  # a conv inside a fusion: read the fused convolution's labels
        inner = [i for c in _called(instr) if c in comps for i in comps[c]["instrs"].values()
                 if i["opcode"] == "convolution"]
        dims = re.search(r"dim_labels=([\w>\-]+)", inner[0]["attrs"]) if inner else None
      labels[dims.group(1) if dims else "?"] += 1
      near = [n for op in instr["operands"] for n in producers(op)] + consumers(conv_name)
      layout = [n for n in near if n in instrs and is_layout_op(instrs[n], comps, instrs)]
      # The kernel (or, for a filter-gradient conv, its result) is the smallest of a conv's
      # input, kernel and output in a CNN: a layout op of exactly that size is weight-side.
      sizes = [_elements(instrs[n]) for n in instr["operands"][:2] if n in instrs]
      weight_size = min([x for x in sizes + [_elements(instr)] if x > 0], default=-1)
      if any(_elements(instrs[n]) != weight_size for n in layout):
        activation_adjacent += 1
      if layout:
        adjacent += 1
        if len(shown) < examples:
          shown.append((instr["line"][:240], [instrs[n]["line"][:240] for n in layout[:2]]))
  return dict(convolutions=convs, with_adjacent_layout_op=adjacent,
              with_adjacent_activation_layout_op=activation_adjacent,
              layout_ops_total=layout_total,
              dim_labels=dict(labels), examples=shown, traffic_bytes=traffic(comps))


def parse_args(argv=None):
  from benchmarks.lib.step_builder import SIZES  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--size", choices=sorted(SIZES), default="cpu")
  p.add_argument("--objective", choices=("corp_f", "corp_m"), default="corp_f")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  p.add_argument("--conv_impl", default="auto",
                 help="a conv_impl variant (step_builder.parse_variant), e.g. factorized+fbn")
  p.add_argument("--remat", action="store_true")
  p.add_argument("--batch", type=int, default=0)
  p.add_argument("--examples", type=int, default=3)
  p.add_argument("--dump", default="", help="write the optimised HLO text to this file")
  p.add_argument("--hlo", default="", help="analyse this saved optimised HLO text instead of "
                                          "compiling (--size/--dtype/--batch still set the "
                                          "roofline comparison)")
  p.add_argument("--device", default="", help="HBM bandwidth to use with --hlo: H100 or H200")
  return p.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks.lib import step_builder as ts  # pylint: disable=g-import-not-at-top

  size = ts.SIZES[args.size]
  batch = ts.batch_size(size, args.objective, args.batch)
  device_kind = args.device or jax.devices()[0].device_kind
  print(f"jax {jax.__version__} backend={jax.default_backend()} "
        f"({jax.devices()[0].device_kind}) XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"train step {args.objective} | size {args.size} | {args.dtype} | conv {args.conv_impl}"
        f" | remat={args.remat} | batch {batch} videos per device", flush=True)
  if args.hlo:
    try:
      text = pathlib.Path(args.hlo).read_text()
    except OSError as e:
      raise SystemExit(f"--hlo {args.hlo}: cannot read it ({e})") from e
    print(f"analysing the saved HLO {args.hlo} (not compiling)")
  else:
    step, state, data, rng, *_ = ts.build_step(
        size, args.objective, dtype=args.dtype, conv_impl=args.conv_impl, remat=args.remat,
        per_device_batch=batch, num_devices=1)
    text = step.lower(state, data, rng).compile().as_text()
  if args.dump:
    pathlib.Path(args.dump).write_text(text)
    print(f"optimised HLO written to {args.dump} ({len(text) / 1e6:.1f} MB)")
  result = analyse(text, args.examples)
  print(f"convolutions: {result['convolutions']}; with a transpose/copy as direct operand or "
        f"user: {result['with_adjacent_layout_op']} ({result['with_adjacent_activation_layout_op']}"
        f" of them activation-sized, the rest weight-sized); transposes + layout copies in the "
        f"module: {result['layout_ops_total']}")
  print(f"conv dim_labels: {result['dim_labels']}")
  for conv, layout in result["examples"]:
    print(f"  conv:   {conv}")
    for line in layout:
      print(f"    next: {line}")
  for line in traffic_lines(result["traffic_bytes"], device_kind, size, args.objective, batch,
                            args.dtype):
    print(line)
  return result


def traffic_lines(totals: dict, device_kind: str, size: dict, objective: str, batch: int,
                  dtype: str) -> list:
  """The per-category bytes, their time at the device's bandwidth and the roofline minimum."""
  from benchmarks import roofline  # pylint: disable=g-import-not-at-top
  from benchmarks.lib import step_builder  # pylint: disable=g-import-not-at-top
  device = roofline.find_device(device_kind)
  bandwidth = roofline.DEVICES[device].bandwidth_tb_s * 1e12 if device else None
  at = lambda b: f", {b / bandwidth * 1e3:.1f} ms at {device}'s {bandwidth / 1e12:g} TB/s" \
      if bandwidth else ""
  lines = ["bytes moved per step by kernel category (operands + results of each kernel):"]
  for category in CATEGORIES:
    lines.append(f"  {category:<14} {totals[category] / 1e9:8.2f} GB{at(totals[category])}")
  non_conv = sum(totals[c] for c in NON_CONV)
  lines.append(f"  {'non-conv total':<14} {non_conv / 1e9:8.2f} GB{at(non_conv)}")
  if size["backbone"] in ("r3d50", "r3d18") and dtype in roofline.DTYPE_BYTES:
    backbone = roofline.backbone_layers(size["backbone"], size["clip_len"], size["crop"])
    clips = batch * step_builder.NUM_CLIPS[objective]
    act = roofline.DTYPE_BYTES[dtype]
    minimum = sum(roofline.elementwise_bytes(backbone, clips, act).values())
    conv = sum(k.bytes for k in roofline.conv_kernels(backbone, clips, act))
    lines.append(f"  roofline.py's minimum: convs {conv / 1e9:.2f} GB, BN/residual/pool passes "
                 f"{minimum / 1e9:.2f} GB{at(minimum)}; non-conv traffic here is "
                 f"{non_conv / minimum:.1f}x that")
  return lines


if __name__ == "__main__":
  main()
