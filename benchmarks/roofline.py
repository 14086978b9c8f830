"""Per-kernel roofline bound on an R3D train step: the fastest it could run on a given GPU.

Why: the measured R3D-50 CORP_f step reaches ~15% of the nominal bf16 peak on an H200 (README,
performance). That alone does not say whether 35% is a matter of better kernels or out of reach
for this network. This script answers it from the network's shapes and the device's two
ceilings, without a GPU.

Model (every assumption is a choice in favour of speed, so the time is a lower bound):
  * Every convolution becomes three kernels per step: forward, data gradient (not for the stem,
    whose input needs no gradient) and weight gradient. Each runs at the device's roofline:
    time = max(FLOPs / peak, bytes / bandwidth), where bytes = its activation input + output
    (read / written once, in the compute dtype) + its weights. Kernels run one after another.
  * BatchNorm (+ ReLU, + residual add) is memory traffic between the convolutions. Two ways:
      'fused'  none at all: BN statistics in the conv's epilogue, normalisation in the next
               conv's prologue (what a hand-fused cuDNN graph could do; no framework here does
               it in training).
      'xla'    what XLA (and PyTorch Inductor) generate: per BN with output size A, forward =
               a statistics pass (read A) + a normalise/ReLU pass (read A, write A); backward =
               a reduction pass (read dZ and Y) + an apply pass (read dZ and Y, write dY):
               8 A in all. Each residual block adds a read of the shortcut (1 A_out) and the
               sum of the two input gradients (read 2 A_in, write A_in). The stem max-pool adds
               its output write (A/4) forward and a read of its input and output gradient plus a
               write of the input gradient (2.25 A) backward. All at full bandwidth.
  * Optimizer, projection head, loss and layout copies cost nothing.
The convolution table comes from `resnet3d.BackboneSpec` (the same shapes the Flax model uses;
tests/test_roofline.py checks it against the convolutions in the model's jaxpr).

Device ceilings (per device, nominal, SXM): H100 989 dense bf16 TFLOP/s (495 TF32 for float32)
and 3.35 TB/s HBM3; H200 the same peaks and 4.8 TB/s HBM3e. `--peak_tflops` / `--bandwidth_tb_s`
override them (e.g. 790 TFLOP/s, the bf16 matmul ceiling measured on an
H100/H200, docs/DESIGN_NOTES.md).

Usage:
  python -m benchmarks.roofline                      # R3D-50 16x224^2 bf16, 32 clips, H100+H200
  python -m benchmarks.roofline --device H200 --measured 'jax=59.9,torch=53.4' --per_stage
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from corp_jax.models import resnet3d

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclasses.dataclass(frozen=True)
class Device:
  """Nominal SXM ceilings: dense tensor-core TFLOP/s per compute dtype (float32 = TF32, JAX's
  default matmul precision on these GPUs) and HBM TB/s."""
  peak_tflops: dict
  bandwidth_tb_s: float

  def peak(self, dtype: str) -> float:
    return self.peak_tflops[dtype]


_HOPPER_PEAKS = {"bfloat16": 989.0, "float16": 989.0, "float32": 495.0}
DEVICES = {"H100": Device(_HOPPER_PEAKS, 3.35), "H200": Device(_HOPPER_PEAKS, 4.8)}


def find_device(device_kind: str) -> str | None:
  """The DEVICES key named in a JAX device_kind ('NVIDIA H200' -> 'H200'), or None."""
  return next((name for name in DEVICES if name in device_kind), None)
BN_PASSES = 8  # forward 3 (stats read; normalise read + write) + backward 5 (2 + 3): see above


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """One convolution of the backbone, per clip. Shapes are (T, H, W, C)."""
  name: str
  in_shape: tuple[int, int, int, int]
  out_shape: tuple[int, int, int, int]
  kernel: tuple[int, int, int]
  needs_input_grad: bool = True

  @property
  def in_elems(self) -> int:
    return math.prod(self.in_shape)

  @property
  def out_elems(self) -> int:
    return math.prod(self.out_shape)

  @property
  def weight_elems(self) -> int:
    return math.prod(self.kernel) * self.in_shape[-1] * self.out_shape[-1]

  @property
  def macs(self) -> int:
    return self.out_elems * math.prod(self.kernel) * self.in_shape[-1]


@dataclasses.dataclass(frozen=True)
class Residual:
  """A residual block's add, per clip: block input and output element counts."""
  name: str
  in_elems: int
  out_elems: int


@dataclasses.dataclass(frozen=True)
class Backbone:
  convs: tuple[ConvLayer, ...]
  residuals: tuple[Residual, ...]
  pool_in_elems: int  # the stem max-pool's input (the stem BN/ReLU output)


def _down(size: int, stride: int) -> int:
  """Output length of a 'fixed'-padded ((k-1) total) window with this stride: ceil(size / s)."""
  return -(-size // stride)


def backbone_layers(variant: str | resnet3d.BackboneSpec, clip_len: int,
                    crop: int) -> Backbone:
  """The convolutions, residual adds and stem pool of `variant` on one [clip_len, crop, crop, 3]
  clip, in the order resnet3d.ResNet3D applies them."""
  spec = resnet3d.get_spec(variant)
  convs, residuals = [], []
  t, h, w = (_down(n, s) for n, s in zip((clip_len, crop, crop), spec.stem_strides))
  convs.append(ConvLayer("stem_conv", (clip_len, crop, crop, 3), (t, h, w, spec.stem_width),
                         spec.stem_kernel, needs_input_grad=False))
  pool_in = t * h * w * spec.stem_width
  t, h, w = (_down(n, s) for n, s in zip((t, h, w), spec.pool_strides))
  channels = spec.stem_width
  for stage, (depth, width, kt, stride) in enumerate(zip(
      spec.stage_depths, spec.stage_widths, spec.temporal_kernels, spec.spatial_strides)):
    for index in range(depth):
      s = stride if index == 0 else 1
      name = f"res{stage + 2}_block{index}"
      ho, wo = _down(h, s), _down(w, s)
      if spec.block == "bottleneck":
        out_ch = 4 * width
        convs += [ConvLayer(f"{name}/conv_a", (t, h, w, channels), (t, h, w, width), (kt, 1, 1)),
                  ConvLayer(f"{name}/conv_b", (t, h, w, width), (t, ho, wo, width), (1, 3, 3)),
                  ConvLayer(f"{name}/conv_c", (t, ho, wo, width), (t, ho, wo, out_ch),
                            (1, 1, 1))]
      else:
        out_ch = width
        convs += [ConvLayer(f"{name}/conv_a", (t, h, w, channels), (t, ho, wo, width), (kt, 3, 3)),
                  ConvLayer(f"{name}/conv_b", (t, ho, wo, width), (t, ho, wo, width), (1, 3, 3))]
      if channels != out_ch or s != 1:
        convs.append(ConvLayer(f"{name}/conv_proj", (t, h, w, channels), (t, ho, wo, out_ch),
                               (1, 1, 1)))
      residuals.append(Residual(name, t * h * w * channels, t * ho * wo * out_ch))
      h, w, channels = ho, wo, out_ch
  return Backbone(tuple(convs), tuple(residuals), pool_in)


@dataclasses.dataclass(frozen=True)
class Kernel:
  name: str
  flops: float
  bytes: float

  def seconds(self, peak_flops: float, bandwidth: float) -> float:
    return max(self.flops / peak_flops, self.bytes / bandwidth)


def conv_kernels(backbone: Backbone, clips: int, act_bytes: int) -> list[Kernel]:
  """Forward, data-gradient and weight-gradient kernels of every conv for `clips` clips."""
  kernels = []
  for conv in backbone.convs:
    flops = 2.0 * conv.macs * clips
    activations = act_bytes * clips * (conv.in_elems + conv.out_elems)
    weights = act_bytes * conv.weight_elems
    kernels.append(Kernel(f"{conv.name}/fwd", flops, activations + weights))
    if conv.needs_input_grad:
      kernels.append(Kernel(f"{conv.name}/dgrad", flops, activations + weights))
    # The weight gradient is written in float32.
    kernels.append(Kernel(f"{conv.name}/wgrad", flops, activations + 4 * conv.weight_elems))
  return kernels


def elementwise_bytes(backbone: Backbone, clips: int, act_bytes: int) -> dict[str, float]:
  """Bytes of the BN / residual / pool passes under the 'xla' model (module docstring)."""
  bn = BN_PASSES * sum(c.out_elems for c in backbone.convs)
  residual = sum(r.out_elems + 3 * r.in_elems for r in backbone.residuals)
  pool = (0.25 + 2.25) * backbone.pool_in_elems
  scale = clips * act_bytes
  return {"batchnorm": bn * scale, "residual": residual * scale, "pool": pool * scale}


@dataclasses.dataclass(frozen=True)
class Bound:
  """Lower bounds on one step's time. `model_flops` follows the MFU convention of
  flop_count.model_train_flops (3 x forward), so the MFU figures match train_step.py's; the
  times use the FLOPs actually executed (no data gradient for the stem)."""
  model_flops: float
  executed_flops: float
  compute_s: float      # all executed FLOPs at peak
  conv_s: float         # the conv kernels, each at its roofline
  conv_memory_bound: float  # share of conv_s spent in bandwidth-bound kernels
  elementwise_s: float  # the 'xla' BN/residual/pool passes at full bandwidth

  @property
  def fused_s(self) -> float:
    return self.conv_s

  @property
  def xla_s(self) -> float:
    return self.conv_s + self.elementwise_s


def step_bound(backbone: Backbone, clips: int, act_bytes: int, peak_tflops: float,
               bandwidth_tb_s: float) -> Bound:
  peak, bandwidth = peak_tflops * 1e12, bandwidth_tb_s * 1e12
  kernels = conv_kernels(backbone, clips, act_bytes)
  times = [k.seconds(peak, bandwidth) for k in kernels]
  memory_bound = sum(t for k, t in zip(kernels, times) if k.bytes / bandwidth > k.flops / peak)
  flops = sum(k.flops for k in kernels)
  conv_s = sum(times)
  model_flops = 3 * sum(2.0 * c.macs for c in backbone.convs) * clips
  return Bound(model_flops=model_flops, executed_flops=flops, compute_s=flops / peak,
               conv_s=conv_s,
               conv_memory_bound=memory_bound / conv_s,
               elementwise_s=sum(elementwise_bytes(backbone, clips, act_bytes).values())
               / bandwidth)


def stage_of(name: str) -> str:
  return name.split("_block")[0] if name.startswith("res") else "stem"


def per_stage_table(backbone: Backbone, clips: int, act_bytes: int, peak_tflops: float,
                    bandwidth_tb_s: float) -> list[tuple[str, float, float, float]]:
  """(stage, GFLOP per clip, conv ms at roofline, conv ms if all at peak FLOPs) per stage."""
  peak, bandwidth = peak_tflops * 1e12, bandwidth_tb_s * 1e12
  rows: dict[str, list[float]] = {}
  for kernel in conv_kernels(backbone, clips, act_bytes):
    row = rows.setdefault(stage_of(kernel.name), [0.0, 0.0, 0.0])
    row[0] += kernel.flops / clips / 1e9
    row[1] += kernel.seconds(peak, bandwidth) * 1e3
    row[2] += kernel.flops / peak * 1e3
  return [(stage, *values) for stage, values in rows.items()]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--variant", default="r3d50", choices=sorted(resnet3d.VARIANTS))
  p.add_argument("--clip_len", type=int, default=16)
  p.add_argument("--crop", type=int, default=224)
  p.add_argument("--clips", type=int, default=32, help="clips per device per step (16 x 2)")
  p.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPE_BYTES))
  p.add_argument("--device", default="H100,H200", help="comma list of " + ",".join(DEVICES))
  p.add_argument("--peak_tflops", type=float, default=0.0, help="override the device's peak")
  p.add_argument("--bandwidth_tb_s", type=float, default=0.0, help="override its HBM bandwidth")
  p.add_argument("--measured", default="",
                 help="measured step times to set against the bound: 'label=ms,label=ms'")
  p.add_argument("--per_stage", action="store_true")
  return p.parse_args(argv)


def parse_measured(text: str) -> list[tuple[str, float]]:
  """'jax=59.9,torch=53.4' -> [('jax', 59.9), ('torch', 53.4)]."""
  pairs = []
  for item in filter(None, (part.strip() for part in text.split(","))):
    label, sep, ms = item.rpartition("=")
    try:
      value = float(ms)
    except ValueError:
      value = float("nan")
    if not sep or not label or not value > 0:
      raise SystemExit(f"--measured: {item!r} is not 'label=milliseconds' with a positive number")
    pairs.append((label, value))
  return pairs


def main(argv=None) -> dict:
  args = parse_args(argv)
  backbone = backbone_layers(args.variant, args.clip_len, args.crop)
  act_bytes = DTYPE_BYTES[args.dtype]
  measured = parse_measured(args.measured)
  if measured and "," in args.device:
    raise SystemExit("--measured: name the one device the times were measured on (--device)")
  results = {}
  print(f"{args.variant} {args.clip_len}x{args.crop}^2 {args.dtype}, {args.clips} clips/step; "
        f"{len(backbone.convs)} convs, {len(backbone.residuals)} residual blocks")
  for device in args.device.split(","):
    if device not in DEVICES:
      raise SystemExit(f"--device {device!r} is not one of {sorted(DEVICES)}")
    peak = args.peak_tflops or DEVICES[device].peak(args.dtype)
    bandwidth = args.bandwidth_tb_s or DEVICES[device].bandwidth_tb_s
    bound = step_bound(backbone, args.clips, act_bytes, peak, bandwidth)
    print(f"\n{device}: peak {peak:g} TFLOP/s, {bandwidth:g} TB/s; model "
          f"{bound.model_flops / args.clips / 1e9:.1f} GFLOP/clip (3 x forward; executed "
          f"{bound.executed_flops / args.clips / 1e9:.1f}: the stem has no data gradient)")
    print(f"  {'bound':<44} {'step ms':>8} {'clips/s':>8} {'MFU':>6}")
    lines = [("all FLOPs at peak, no memory traffic", bound.compute_s),
             ("convs at roofline, BN fused away ('fused')", bound.fused_s),
             ("convs at roofline + XLA's BN passes ('xla')", bound.xla_s)]
    for label, ms in measured:
      lines.append((f"measured: {label}", ms / 1e3))
    for label, seconds in lines:
      mfu = bound.model_flops / seconds / (peak * 1e12)
      print(f"  {label:<44} {seconds * 1e3:8.1f} {args.clips / seconds:8.0f} {mfu:6.1%}")
    print(f"  bandwidth-bound conv kernels take {bound.conv_memory_bound:.0%} of the conv time; "
          f"the BN/residual/pool passes add {bound.elementwise_s * 1e3:.1f} ms")
    for label, ms in measured:
      print(f"  {label}: {bound.xla_s / (ms / 1e3):.0%} of the 'xla' bound's speed")
    if args.per_stage:
      print(f"  {'stage':<6} {'GFLOP/clip':>10} {'conv ms':>8} {'at peak':>8}")
      for stage, gflop, ms, peak_ms in per_stage_table(backbone, args.clips, act_bytes, peak,
                                                       bandwidth):
        print(f"  {stage:<6} {gflop:10.1f} {ms:8.2f} {peak_ms:8.2f}")
    results[device] = dataclasses.asdict(bound) | {"xla_s": bound.xla_s}
  return results


if __name__ == "__main__":
  main()
