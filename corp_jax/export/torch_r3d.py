"""The R3D backbone in PyTorch: corp_jax.models.ResNet3D's network, named like pytorchvideo.

Contract:
  `R3D(arch: Mapping)`: `arch` holds the fields of corp_jax.models.BackboneSpec (block,
  stage_depths, stage_widths, temporal_kernels, spatial_strides, stem_width, stem_kernel,
  stem_strides, pool_kernel, pool_strides; optional padding 'fixed' | 'same' and bn_epsilon)
  plus optional `input_mean` / `input_std` ([3] each, default 0 / 1).
  `forward(x: [N, 3, T, H, W] float in [0, 1]) -> [N, F]` float32 pooled features;
  (x - input_mean) / input_std is applied first, inside the module. `feature_dim` is F.
  `ProjectionMLP(in_dim, hidden_dims, out_dim)`: Linear (no bias) -> BatchNorm1d -> ReLU per
  hidden layer, then Linear with bias, like corp_jax.models.ProjectionMLP.
  `VARIANTS`: the architecture dicts of 'r3d50', 'r3d18', 'tiny', 'small', 'r3d50_cvrl' (equal
  to the JAX VARIANTS; a test checks it), so torch-only code can build a backbone by name.
This module imports torch only (no JAX, no TensorFlow): it serves exported backbones
(corp_jax.export), the JAX-vs-PyTorch parity tool and the PyTorch train-step benchmark.

Module names (state_dict keys) follow pytorchvideo's ResNet (`create_resnet`), stage by stage:
  stem.conv, stem.norm, stem.pool                  pytorchvideo blocks.0.{conv,norm,pool}
  res{2..5}.{i}.branch1_conv / branch1_norm        blocks.{1..4}.res_blocks.{i}.branch1_*
  res{2..5}.{i}.branch2.conv_{a,b,c} / norm_{a,b,c} blocks.{1..4}.res_blocks.{i}.branch2.*
(PySlowFast: s1.pathway0_stem.{conv,bn}, s{2..5}.pathway0_res{i}.branch1{,_bn},
branch2.{a,b,c}{,_bn}.) Basic blocks have conv_a/norm_a and conv_b/norm_b only. The temporal
kernel sits on conv_a (bottleneck: kt x 1 x 1; basic: kt x 3 x 3). docs/INTEROP.md has the table.

Padding: 'fixed' (corp_jax's default) pads (k - 1) // 2 on both sides, which is nn.Conv3d's
symmetric `padding=k // 2` for odd k; 'same' is TensorFlow's SAME rule (more padding after than
before when the total is odd), used by CVRL's Model Garden R3D-50, done with F.pad.
BatchNorm: eps `bn_epsilon` (1e-5 unless given), running statistics in eval mode.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn
import torch.nn.functional as F

_EXPANSION = {"basic": 1, "bottleneck": 4}
ARCH_KEYS = ("block", "stage_depths", "stage_widths", "temporal_kernels", "spatial_strides",
             "stem_width", "stem_kernel", "stem_strides", "pool_kernel", "pool_strides")
_DEFAULTS = {"spatial_strides": (1, 2, 2, 2), "stem_width": 64, "stem_kernel": (5, 7, 7),
             "stem_strides": (2, 2, 2), "pool_kernel": (1, 3, 3), "pool_strides": (1, 2, 2),
             "padding": "fixed", "bn_epsilon": 1e-5}

VARIANTS = {
    "r3d50": dict(block="bottleneck", stage_depths=(3, 4, 6, 3), stage_widths=(64, 128, 256, 512),
                  temporal_kernels=(1, 1, 3, 3)),
    "r3d18": dict(block="basic", stage_depths=(2, 2, 2, 2), stage_widths=(64, 128, 256, 512),
                  temporal_kernels=(1, 1, 3, 3)),
    "tiny": dict(block="basic", stage_depths=(1, 1, 1, 1), stage_widths=(8, 16, 32, 64),
                 temporal_kernels=(1, 1, 3, 3), stem_width=8, stem_kernel=(3, 5, 5)),
    "small": dict(block="basic", stage_depths=(1, 1, 1, 1), stage_widths=(16, 32, 64, 128),
                  temporal_kernels=(1, 1, 3, 3), stem_width=16, stem_kernel=(3, 5, 5)),
    "r3d50_cvrl": dict(block="bottleneck", stage_depths=(3, 4, 6, 3),
                       stage_widths=(64, 128, 256, 512), temporal_kernels=(1, 1, 3, 3),
                       padding="same", bn_epsilon=1e-3),
}


def resolve_arch(arch: Mapping | str) -> dict:
  """A complete architecture dict (defaults filled in), from a dict or a VARIANTS name."""
  if isinstance(arch, str):
    if arch not in VARIANTS:
      raise ValueError(f"R3D: unknown variant {arch!r}; choose one of {sorted(VARIANTS)} or "
                       "pass an architecture dict")
    arch = VARIANTS[arch]
  missing = [k for k in ARCH_KEYS if k not in arch and k not in _DEFAULTS]
  if missing:
    raise ValueError(f"R3D architecture lacks {missing}; keys given: {sorted(arch)}")
  out = {**_DEFAULTS, **dict(arch)}
  for key in ARCH_KEYS:
    if key != "block" and key != "stem_width":
      out[key] = tuple(int(v) for v in out[key])
  if out["block"] not in _EXPANSION:
    raise ValueError(f"R3D: block={out['block']!r} is not one of {sorted(_EXPANSION)}")
  if out["padding"] not in ("fixed", "same"):
    raise ValueError(f"R3D: padding={out['padding']!r} is not 'fixed' or 'same'")
  return out


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
  """TensorFlow SAME: output ceil(size / s), the odd pixel of padding goes after."""
  total = max((math.ceil(size / s) - 1) * s + k - size, 0)
  return total // 2, total - total // 2


class Conv3d(nn.Conv3d):
  """nn.Conv3d without bias; 'fixed' padding is symmetric k // 2, 'same' pads like TF."""

  def __init__(self, cin: int, cout: int, kernel: Sequence[int], stride=(1, 1, 1),
               padding: str = "fixed"):
    kernel, stride = tuple(kernel), tuple(stride)
    super().__init__(cin, cout, kernel, stride=stride,
                     padding=tuple(k // 2 for k in kernel) if padding == "fixed" else 0,
                     bias=False)
    self.same = padding == "same"

  def forward(self, x):
    if self.same:
      pads = [_same_pads(n, k, s) for n, k, s in zip(x.shape[2:], self.kernel_size, self.stride)]
      x = F.pad(x, [p for pair in reversed(pads) for p in pair])
    return super().forward(x)


class MaxPool3d(nn.MaxPool3d):
  """Max-pool with 'fixed' (symmetric k // 2) or TF 'same' padding (padding never wins)."""

  def __init__(self, kernel: Sequence[int], stride: Sequence[int], padding: str = "fixed"):
    kernel, stride = tuple(kernel), tuple(stride)
    super().__init__(kernel, stride=stride,
                     padding=tuple(k // 2 for k in kernel) if padding == "fixed" else 0)
    self.same = padding == "same"

  def forward(self, x):
    if self.same:
      pads = [_same_pads(n, k, s) for n, k, s in zip(x.shape[2:], self.kernel_size, self.stride)]
      x = F.pad(x, [p for pair in reversed(pads) for p in pair], value=float("-inf"))
    return super().forward(x)


def _norm(channels: int, eps: float, zero: bool = False) -> nn.BatchNorm3d:
  # Flax momentum 0.9 (decay of the running average) is PyTorch momentum 0.1.
  bn = nn.BatchNorm3d(channels, eps=eps, momentum=0.1)
  if zero:
    nn.init.zeros_(bn.weight)
  return bn


class Stem(nn.Module):
  def __init__(self, arch: dict):
    super().__init__()
    width, pad = arch["stem_width"], arch["padding"]
    self.conv = Conv3d(3, width, arch["stem_kernel"], arch["stem_strides"], pad)
    self.norm = _norm(width, arch["bn_epsilon"])
    self.pool = MaxPool3d(arch["pool_kernel"], arch["pool_strides"], pad)

  def forward(self, x):
    return self.pool(F.relu(self.norm(self.conv(x)), inplace=True))


class Branch2(nn.Module):
  """The residual branch: conv_a -> norm_a -> ReLU -> conv_b -> norm_b [-> ReLU -> conv_c ->
  norm_c] (bottleneck), the last norm without ReLU (it follows the residual add)."""

  def __init__(self, block: str, cin: int, width: int, stride: int, kt: int, pad: str,
               eps: float):
    super().__init__()
    s = (1, stride, stride)
    if block == "bottleneck":
      self.conv_a = Conv3d(cin, width, (kt, 1, 1), padding=pad)
      self.norm_a = _norm(width, eps)
      self.conv_b = Conv3d(width, width, (1, 3, 3), s, pad)
      self.norm_b = _norm(width, eps)
      self.conv_c = Conv3d(width, 4 * width, (1, 1, 1), padding=pad)
      self.norm_c = _norm(4 * width, eps, zero=True)
    else:
      self.conv_a = Conv3d(cin, width, (kt, 3, 3), s, pad)
      self.norm_a = _norm(width, eps)
      self.conv_b = Conv3d(width, width, (1, 3, 3), padding=pad)
      self.norm_b = _norm(width, eps, zero=True)
    self.bottleneck = block == "bottleneck"

  def forward(self, x):
    x = F.relu(self.norm_a(self.conv_a(x)), inplace=True)
    x = self.norm_b(self.conv_b(x))
    if self.bottleneck:
      x = self.norm_c(self.conv_c(F.relu(x, inplace=True)))
    return x


class ResBlock(nn.Module):
  """relu(branch2(x) + shortcut(x)); the shortcut is branch1_conv + branch1_norm (1x1x1,
  strided) when channels or resolution change, else the identity."""

  def __init__(self, block: str, cin: int, width: int, stride: int, kt: int, pad: str,
               eps: float):
    super().__init__()
    cout = width * _EXPANSION[block]
    self.branch2 = Branch2(block, cin, width, stride, kt, pad, eps)
    self.branch1_conv = self.branch1_norm = None
    if cin != cout or stride != 1:
      self.branch1_conv = Conv3d(cin, cout, (1, 1, 1), (1, stride, stride), pad)
      self.branch1_norm = _norm(cout, eps)
    self.out_channels = cout

  def forward(self, x):
    skip = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
    return F.relu(self.branch2(x) + skip)


class R3D(nn.Module):
  """x: [N, 3, T, H, W] in [0, 1] -> [N, F] float32 pooled features (see module docstring)."""

  def __init__(self, arch: Mapping | str):
    super().__init__()
    arch = resolve_arch(arch)
    self.arch = arch
    self.stem = Stem(arch)
    cin = arch["stem_width"]
    for stage, (depth, width, kt, stride) in enumerate(zip(
        arch["stage_depths"], arch["stage_widths"], arch["temporal_kernels"],
        arch["spatial_strides"])):
      blocks = []
      for index in range(depth):
        blocks.append(ResBlock(arch["block"], cin, width, stride if index == 0 else 1, kt,
                               arch["padding"], arch["bn_epsilon"]))
        cin = blocks[-1].out_channels
      self.add_module(f"res{stage + 2}", nn.Sequential(*blocks))
    self.num_stages = len(arch["stage_depths"])
    self.feature_dim = cin
    mean = torch.tensor(arch.get("input_mean", (0.0, 0.0, 0.0)), dtype=torch.float32)
    std = torch.tensor(arch.get("input_std", (1.0, 1.0, 1.0)), dtype=torch.float32)
    if mean.shape != (3,) or std.shape != (3,) or bool((std <= 0).any()):
      raise ValueError(f"R3D: input_mean / input_std must be 3 values (std > 0), got "
                       f"{mean.tolist()} / {std.tolist()}")
    # Not in the state_dict: the normalisation belongs to the architecture (config.json).
    self.register_buffer("input_mean", mean.view(1, 3, 1, 1, 1), persistent=False)
    self.register_buffer("input_std", std.view(1, 3, 1, 1, 1), persistent=False)
    self.normalizes_input = bool((mean != 0).any() or (std != 1).any())

  def forward(self, x):
    if x.ndim != 5 or x.shape[1] != 3:
      raise ValueError(f"R3D: expected clips [N, 3, T, H, W], got {tuple(x.shape)}")
    if self.normalizes_input:
      x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
    x = self.stem(x)
    for stage in range(self.num_stages):
      x = getattr(self, f"res{stage + 2}")(x)
    # Averaged in float32 (or float64): a bfloat16 mean over T*H*W positions loses precision.
    return x.to(torch.promote_types(x.dtype, torch.float32)).mean(dim=(2, 3, 4))


class ProjectionMLP(nn.Module):
  """hidden{i} (Linear, no bias) -> bn{i} (BatchNorm1d) -> ReLU, then output (Linear + bias)."""

  def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, eps: float = 1e-5):
    super().__init__()
    width = in_dim
    self.num_hidden = len(hidden_dims)
    for i, hidden in enumerate(hidden_dims):
      self.add_module(f"hidden{i}", nn.Linear(width, hidden, bias=False))
      self.add_module(f"bn{i}", nn.BatchNorm1d(hidden, eps=eps, momentum=0.1))
      width = hidden
    self.output = nn.Linear(width, out_dim)

  def forward(self, h):
    for i in range(self.num_hidden):
      h = F.relu(getattr(self, f"bn{i}")(getattr(self, f"hidden{i}")(h)), inplace=True)
    return self.output(h).float()
