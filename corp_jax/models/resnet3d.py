"""R3D video backbones (CVRL / CORP R3D-50, R3D-18, a tiny CPU variant) in Flax linen.

Contract (docs/CONTRACTS.md):
  `ResNet3D(variant, dtype, conv_impl, bn_axis_name, bn_momentum, remat, stem_space_to_depth,
  bn_impl)`;
  `__call__(x: [N, T, H, W, 3], train: bool) -> [N, F]` float32 globally average-pooled features,
  F = `feature_dim(variant)`. Parameters are float32 (`params`), BatchNorm running statistics are
  in `batch_stats`; computation runs in `dtype` (float32 or bfloat16).

Architecture (paper Sec. 3.1, following CVRL [37]; "R3D-50 (31.7M)" in Table 1):
  stem    conv kt x 7 x 7 (5x7x7 for R3D-50), stride (2, 2, 2) -> BN -> ReLU ->
          max-pool 1x3x3 stride (1, 2, 2)
  res2-5  residual stages; spatial stride 2 at the start of res3, res4, res5; no temporal
          downsampling after the stem. The stage's temporal kernel goes on the first conv of each
          block (bottleneck: its 1x1 becomes kt x 1 x 1; basic: its 3x3 becomes kt x 3 x 3);
          R3D-50 uses kt = 1, 1, 3, 3 for res2..res5.
  head    global average pool over (T, H, W) -> [N, F].
Variants are data (`BackboneSpec`) in `VARIANTS`, not code. All convs have no bias (BN follows)
and use "fixed" symmetric padding (k - 1) // 2 like TF ResNets, so 224x224x16 -> 7x7x8 at res5
(`BackboneSpec.padding='same'`: TensorFlow's SAME instead, variant 'r3d50_cvrl').
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from corp_jax.models.batchnorm import BatchNormAct, resolve_bn_impl
from corp_jax.models.conv import Conv3D, resolve_conv_impl
from corp_jax.models.platform import resolve_stem_space_to_depth

BLOCK_TYPES = ("basic", "bottleneck")
PADDINGS = ("fixed", "same")
_EXPANSION = {"basic": 1, "bottleneck": 4}


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """Shape of an R3D backbone.

  Attributes:
    block: 'bottleneck' (1x1 -> 3x3 -> 1x1, 4x expansion) or 'basic' (3x3 -> 3x3).
    stage_depths: residual blocks per stage (res2, res3, ...).
    stage_widths: inner width per stage; a stage outputs width * expansion channels.
    temporal_kernels: temporal kernel of each stage's first conv per block (odd).
    spatial_strides: spatial stride at the start of each stage.
    stem_width: channels of the stem conv.
    stem_kernel: (kt, kh, kw) of the stem conv.
    stem_strides: (st, sh, sw) of the stem conv.
    pool_kernel / pool_strides: the stem max-pool window and strides over (T, H, W).
    padding: 'fixed' (symmetric (k - 1) // 2, the default) or 'same' (TensorFlow's SAME: the
      odd pixel of padding after, as in CVRL's Model Garden R3D-50, so that its published
      weights compute the same function here; see corp_jax/export/cvrl.py).
    bn_epsilon: BatchNorm epsilon (1e-5; Model Garden's Keras default is 1e-3).
  """
  block: str
  stage_depths: tuple[int, ...]
  stage_widths: tuple[int, ...]
  temporal_kernels: tuple[int, ...]
  spatial_strides: tuple[int, ...] = (1, 2, 2, 2)
  stem_width: int = 64
  stem_kernel: tuple[int, int, int] = (5, 7, 7)
  stem_strides: tuple[int, int, int] = (2, 2, 2)
  pool_kernel: tuple[int, int, int] = (1, 3, 3)
  pool_strides: tuple[int, int, int] = (1, 2, 2)
  padding: str = "fixed"
  bn_epsilon: float = 1e-5

  def __post_init__(self):
    if self.block not in BLOCK_TYPES:
      raise ValueError(f"BackboneSpec.block={self.block!r} is not one of {BLOCK_TYPES}")
    per_stage = {"stage_depths": self.stage_depths, "stage_widths": self.stage_widths,
                 "temporal_kernels": self.temporal_kernels,
                 "spatial_strides": self.spatial_strides}
    lengths = {k: len(v) for k, v in per_stage.items()}
    if len(set(lengths.values())) != 1 or not self.stage_depths:
      raise ValueError(f"BackboneSpec: per-stage tuples must be non-empty and equally long, "
                       f"got lengths {lengths}")
    for key, values in per_stage.items():
      if any(int(v) < 1 for v in values):
        raise ValueError(f"BackboneSpec.{key}={values!r}: all entries must be >= 1")
    if any(k % 2 == 0 for k in self.temporal_kernels + self.stem_kernel + self.pool_kernel):
      raise ValueError(f"BackboneSpec: kernels must be odd for symmetric padding, got "
                       f"temporal_kernels={self.temporal_kernels}, stem_kernel="
                       f"{self.stem_kernel}, pool_kernel={self.pool_kernel}")
    for key in ("stem_kernel", "stem_strides", "pool_kernel", "pool_strides"):
      value = getattr(self, key)
      if len(value) != 3 or min(value) < 1:
        raise ValueError(f"BackboneSpec.{key}={value!r}: expected three positive ints (t, h, w)")
    if self.padding not in PADDINGS:
      raise ValueError(f"BackboneSpec.padding={self.padding!r} is not one of {PADDINGS}")
    if self.stem_width < 1:
      raise ValueError(f"BackboneSpec.stem_width={self.stem_width}: must be >= 1")

  @property
  def feature_dim(self) -> int:
    return self.stage_widths[-1] * _EXPANSION[self.block]


VARIANTS: dict[str, BackboneSpec] = {
    # CVRL's R3D-50: ResNet-50 depths, 3x1x1 first convs in res4/res5. 31.7M parameters.
    "r3d50": BackboneSpec(block="bottleneck", stage_depths=(3, 4, 6, 3),
                          stage_widths=(64, 128, 256, 512), temporal_kernels=(1, 1, 3, 3)),
    # Basic-block counterpart (ResNet-18 depths, same temporal-kernel placement).
    "r3d18": BackboneSpec(block="basic", stage_depths=(2, 2, 2, 2),
                          stage_widths=(64, 128, 256, 512), temporal_kernels=(1, 1, 3, 3)),
    # For tests and CPU demos: same topology, one narrow block per stage, small stem.
    "tiny": BackboneSpec(block="basic", stage_depths=(1, 1, 1, 1),
                         stage_widths=(8, 16, 32, 64), temporal_kernels=(1, 1, 3, 3),
                         stem_width=8, stem_kernel=(3, 5, 5)),
    # The scale step above tiny for CPU studies: twice tiny's widths (feature size 128, 0.50M
    # parameters); a CORP_m step at the demo's sizes took 1.6x tiny's time on a 2-core CPU.
    "small": BackboneSpec(block="basic", stage_depths=(1, 1, 1, 1),
                          stage_widths=(16, 32, 64, 128), temporal_kernels=(1, 1, 3, 3),
                          stem_width=16, stem_kernel=(3, 5, 5)),
    # r3d50 exactly as CVRL's TF2 Model Garden code computes it (TF 'SAME' padding, BN epsilon
    # 1e-3): the variant for its published checkpoints (config.init_from). Same parameters.
    "r3d50_cvrl": BackboneSpec(block="bottleneck", stage_depths=(3, 4, 6, 3),
                               stage_widths=(64, 128, 256, 512), temporal_kernels=(1, 1, 3, 3),
                               padding="same", bn_epsilon=1e-3),
}


def get_spec(variant: str | BackboneSpec) -> BackboneSpec:
  """Looks a variant name up in VARIANTS (a BackboneSpec passes through)."""
  if isinstance(variant, BackboneSpec):
    return variant
  if variant not in VARIANTS:
    raise ValueError(f"ResNet3D variant={variant!r} is not one of {sorted(VARIANTS)}")
  return VARIANTS[variant]


def feature_dim(variant: str | BackboneSpec) -> int:
  """F, the pooled feature size: 2048 for r3d50, 512 for r3d18."""
  return get_spec(variant).feature_dim


def _fixed_pads(kernel_size, padding: str = "fixed"):
  """Symmetric 'fixed' padding (k - 1) // 2 per dim, independent of the input size; or 'SAME'
  (XLA's rule, which is TensorFlow's) when the backbone's padding is 'same'."""
  if padding == "same":
    return "SAME"
  return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size)


class BottleneckBlock(nn.Module):
  """kt x 1 x 1 -> 1 x 3 x 3 (spatial stride) -> 1 x 1 x 1 (4x width), projection shortcut.

  x: [N, T, H, W, C] -> [N, T, H / s, W / s, 4 * width].
  """
  width: int
  spatial_stride: int
  temporal_kernel: int
  conv: Any  # functools.partial(Conv3D, ...)
  norm: Any  # functools.partial(BatchNormAct, ...)
  zero_init_last: bool = True
  padding: str = "fixed"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s, kt, out_width = self.spatial_stride, self.temporal_kernel, 4 * self.width
    y = self.conv(self.width, (kt, 1, 1), padding=_fixed_pads((kt, 1, 1), self.padding),
                  name="conv_a")(x)
    y = self.norm(name="bn_a", relu=True)(y)
    y = self.conv(self.width, (1, 3, 3), strides=(1, s, s),
                  padding=_fixed_pads((1, 3, 3), self.padding),
                  name="conv_b")(y)
    y = self.norm(name="bn_b", relu=True)(y)
    y = self.conv(out_width, (1, 1, 1), padding=_fixed_pads((1, 1, 1), self.padding),
                  name="conv_c")(y)
    # relu(BN(y) + shortcut) in one BatchNormAct. Zero gamma on the last BN starts each block
    # as the identity (Goyal et al.), which the large-batch SSL recipes (SimCLR, CVRL) use.
    return self.norm(name="bn_c", relu=True, scale_init=_last_scale_init(self))(
        y, _shortcut(self, x, out_width, s))


class BasicBlock(nn.Module):
  """kt x 3 x 3 (spatial stride) -> 1 x 3 x 3, projection shortcut when the shape changes.

  x: [N, T, H, W, C] -> [N, T, H / s, W / s, width].
  """
  width: int
  spatial_stride: int
  temporal_kernel: int
  conv: Any
  norm: Any
  zero_init_last: bool = True
  padding: str = "fixed"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s, kt = self.spatial_stride, self.temporal_kernel
    y = self.conv(self.width, (kt, 3, 3), strides=(1, s, s),
                  padding=_fixed_pads((kt, 3, 3), self.padding),
                  name="conv_a")(x)
    y = self.norm(name="bn_a", relu=True)(y)
    y = self.conv(self.width, (1, 3, 3), padding=_fixed_pads((1, 3, 3), self.padding),
                  name="conv_b")(y)
    return self.norm(name="bn_b", relu=True, scale_init=_last_scale_init(self))(
        y, _shortcut(self, x, self.width, s))


def _last_scale_init(block: nn.Module):
  return nn.initializers.zeros if block.zero_init_last else nn.initializers.ones


def _shortcut(block: nn.Module, x: jax.Array, out_width: int, stride: int) -> jax.Array:
  """Identity, or a strided 1x1x1 conv + BN when channels or resolution change."""
  if x.shape[-1] == out_width and stride == 1:
    return x
  x = block.conv(out_width, (1, 1, 1), strides=(1, stride, stride),
                 padding=_fixed_pads((1, 1, 1), block.padding), name="conv_proj")(x)
  return block.norm(name="bn_proj")(x)


_BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class ResNet3D(nn.Module):
  """R3D backbone; see the module docstring.

  Attributes:
    variant: a name in VARIANTS ('r3d50', 'r3d18', 'tiny') or a BackboneSpec.
    dtype: compute dtype (jnp.float32 or jnp.bfloat16); parameters stay float32.
    conv_impl: 'native', 'factorized' or 'auto' (see corp_jax.models.conv).
    bn_axis_name: mapped axis to average BN statistics over (only inside shard_map; None
      under SPMD jit, whose statistics already span the global batch).
    bn_momentum: running-average decay of the BN statistics.
    remat: wrap each residual block in nn.remat (recompute activations in the backward pass).
    zero_init_last: zero-initialise the last BN scale of each residual block.
    bn_impl: BatchNorm (+ residual add + ReLU) implementation, 'autodiff', 'fused' or 'auto'
      (corp_jax.models.batchnorm); the variables are flax BatchNorm's either way.
    stem_space_to_depth: run the strided stem conv as a stride-1 conv over space-to-depth
      blocks (conv.conv3d_space_to_depth): exact, same parameters; 3 colour channels fill
      GEMM / tensor-core tiles badly. True, False or 'auto' (platform.default_stem_space_to_depth:
      on for GPU, where it made the R3D-50 step 1.17-1.21x faster; off for CPU, where the tiny
      demo step was 1.7x slower; off for TPU, unmeasured).
  """
  variant: str | BackboneSpec = "r3d50"
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  bn_axis_name: str | None = None
  bn_momentum: float = 0.9
  remat: bool = False
  zero_init_last: bool = True
  stem_space_to_depth: bool | str = "auto"
  bn_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """x: [N, T, H, W, 3] -> [N, F] float32 (F = feature_dim(self.variant))."""
    spec = get_spec(self.variant)
    if x.ndim != 5 or x.shape[-1] != 3:
      raise ValueError(f"ResNet3D: expected clips of shape [N, T, H, W, 3], got {x.shape}")
    conv = functools.partial(Conv3D, impl=resolve_conv_impl(self.conv_impl), dtype=self.dtype)
    norm = functools.partial(BatchNormAct, use_running_average=not train,
                             momentum=self.bn_momentum, epsilon=spec.bn_epsilon, dtype=self.dtype,
                             axis_name=self.bn_axis_name, impl=resolve_bn_impl(self.bn_impl))

    x = conv(spec.stem_width, spec.stem_kernel, strides=spec.stem_strides,
             padding=_fixed_pads(spec.stem_kernel, spec.padding),
             space_to_depth=resolve_stem_space_to_depth(self.stem_space_to_depth),
             name="stem_conv")(x)
    x = norm(name="stem_bn", relu=True)(x)
    x = nn.max_pool(x, spec.pool_kernel, strides=spec.pool_strides,
                    padding=_fixed_pads(spec.pool_kernel, spec.padding))

    block_cls = _BLOCKS[spec.block]
    if self.remat:
      block_cls = nn.remat(block_cls)
    for stage, (depth, width, kt, stride) in enumerate(zip(
        spec.stage_depths, spec.stage_widths, spec.temporal_kernels, spec.spatial_strides)):
      for index in range(depth):
        # Explicit names keep the parameter tree identical with and without remat.
        x = block_cls(width=width, spatial_stride=stride if index == 0 else 1,
                      temporal_kernel=kt, conv=conv, norm=norm,
                      zero_init_last=self.zero_init_last, padding=spec.padding,
                      name=f"res{stage + 2}_block{index}")(x)
    # Average in float32: a bfloat16 mean over T*H*W positions loses precision.
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
