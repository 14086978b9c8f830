"""3D convolution with two exactly equivalent implementations sharing one parameter layout.

Contract:
  `Conv3D(features, kernel_size=(kt, kh, kw), strides=(st, sh, sw), padding, impl, dtype)`;
  `__call__(x: [N, T, H, W, Cin]) -> [N, T', H', W', Cout]` in `dtype`.
  One parameter, `kernel: [kt, kh, kw, Cin, Cout]` float32 (no bias: every conv in the backbone
  is followed by BatchNorm). The same variables work with every `impl`.

Implementations:
  'native'      one `lax.conv_general_dilated` over NDHWC.
  'factorized'  the same 3D convolution written as kt time-shifted 2D convolutions over
                (N*T', H, W, Cin), one per temporal tap, summed. Mathematically identical (a 3D
                conv is a sum over its temporal taps of 2D convs of time-shifted frames); it
                exists because XLA:CPU is slow at 3D convolutions and far slower at their
                gradients (see benchmarks/conv_impl_cpu.py and docs/DESIGN_NOTES.md). When kt == 1 it is a
                single 2D conv over N*T frames.
  'im2col'      the same function as one matrix product: the kt*kh*kw strided views of the
                padded input are concatenated on the channel axis into patches
                [N*T'*H'*W', kt*kh*kw*Cin] and multiplied by the reshaped kernel. Forward and
                both gradients become matmuls, slices and pads, which XLA:CPU runs much faster
                than its convolution kernels at real widths (benchmarks/README.md: an R3D-18
                step at 8x64x64 measured 2.65 s vs 16.5 s factorized vs 1.96 s PyTorch), at
                kt*kh*kw times the input's memory. Opt-in (`conv_impl='im2col'`): at the tiny
                demo size 'factorized' measured faster (131 vs 208 ms).
  'auto'        `platform.default_conv_impl()`: 'factorized' on CPU; on GPU 'native' when
                XLA:GPU is asked for channels-last convs (`platform.configure_xla_flags`,
                which corp_jax.main applies), else 'factorized'; 'native' elsewhere.

Space-to-depth (`Conv3D(space_to_depth=True)`, used for the stem): a strided conv computed as
a stride-1 conv over strides-sized blocks folded into channels (`conv3d_space_to_depth`), by
whichever implementation `impl` names. Exact; same parameter.

Padding: 'SAME', 'VALID', or explicit `((t_lo, t_hi), (h_lo, h_hi), (w_lo, w_hi))`. 'SAME' is
resolved with XLA's own rule (`lax.padtype_to_pads`) before either implementation runs, so both
see the same explicit pads, including for temporal stride > 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from corp_jax.models.platform import default_conv_impl

CONV_IMPLS = ("native", "factorized", "im2col", "auto")

Padding = str | Sequence[tuple[int, int]]

# He-normal over fan-out, the usual ResNet initialiser (torchvision / CVRL).
default_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def resolve_conv_impl(impl: str) -> str:
  """Maps 'auto' to a concrete implementation; rejects unknown names."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl={impl!r} is not one of {CONV_IMPLS}")
  return default_conv_impl() if impl == "auto" else impl


def _check_triple(name: str, value: Sequence[int]) -> tuple[int, int, int]:
  value = tuple(int(v) for v in value)
  if len(value) != 3 or any(v < 1 for v in value):
    raise ValueError(f"Conv3D {name}={value!r}: expected three positive ints (t, h, w)")
  return value  # type: ignore[return-value]


def explicit_padding(padding: Padding, in_spatial: Sequence[int], kernel_size: Sequence[int],
                     strides: Sequence[int]) -> tuple[tuple[int, int], ...]:
  """Resolves `padding` to explicit ((lo, hi),) * 3 pads for input dims (T, H, W)."""
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"Conv3D padding={padding!r}: expected 'SAME', 'VALID' or 3 (lo, hi) pairs")
    return tuple(lax.padtype_to_pads(tuple(in_spatial), tuple(kernel_size), tuple(strides),
                                     padding.upper()))
  pads = tuple(tuple(int(p) for p in pair) for pair in padding)
  if len(pads) != 3 or any(len(p) != 2 or min(p) < 0 for p in pads):
    raise ValueError(f"Conv3D padding={padding!r}: expected 3 non-negative (lo, hi) pairs")
  return pads  # type: ignore[return-value]


def conv3d_native(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                  pads: Sequence[tuple[int, int]]) -> jax.Array:
  """x: [N, T, H, W, Cin], kernel: [kt, kh, kw, Cin, Cout] -> [N, T', H', W', Cout]."""
  return lax.conv_general_dilated(
      x, kernel, window_strides=tuple(strides), padding=tuple(pads),
      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def conv3d_factorized(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                      pads: Sequence[tuple[int, int]]) -> jax.Array:
  """The same function as `conv3d_native`, as a sum of kt time-shifted 2D convolutions.

  out[:, t'] = sum_dt conv2d(x_pad[:, t' * st + dt], kernel[dt]), where x_pad is x zero-padded
  in time by pads[0]. Each tap's frames are gathered by one strided slice and folded into the
  batch dimension, so each tap is one 2D conv over (N * T', H, W, Cin).
  """
  n, t, h, w, cin = x.shape
  kt, st = kernel.shape[0], strides[0]
  (t_lo, t_hi), spatial_pads = pads[0], tuple(pads[1:])
  t_out = (t + t_lo + t_hi - kt) // st + 1
  if t_out < 1:
    raise ValueError(f"Conv3D: temporal kernel {kt} larger than padded input length "
                     f"{t + t_lo + t_hi} (T={t}, pads={pads[0]})")
  if t_lo or t_hi:
    x = jnp.pad(x, ((0, 0), (t_lo, t_hi), (0, 0), (0, 0), (0, 0)))

  def conv2d(frames: jax.Array, tap: jax.Array) -> jax.Array:
    """frames: [N, T', H, W, Cin] -> [N * T', H', W', Cout] with tap: [kh, kw, Cin, Cout]."""
    folded = frames.reshape((n * t_out,) + frames.shape[2:])
    return lax.conv_general_dilated(
        folded, tap, window_strides=tuple(strides[1:]), padding=spatial_pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  out = None
  for dt in range(kt):
    # Frames t'*st + dt for t' = 0..T'-1 of the padded input.
    frames = lax.slice_in_dim(x, dt, dt + (t_out - 1) * st + 1, stride=st, axis=1)
    term = conv2d(frames, kernel[dt])
    out = term if out is None else out + term
  return out.reshape((n, t_out) + out.shape[1:])


def conv3d_im2col(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                  pads: Sequence[tuple[int, int]]) -> jax.Array:
  """The same function as `conv3d_native`, as patches [M, kt*kh*kw*Cin] @ kernel [.., Cout].

  Patch column (dt, dh, dw, c) of output position (t', h', w') is
  x_pad[t'*st + dt, h'*sh + dh, w'*sw + dw, c]: one strided slice per tap, concatenated on the
  channel axis in the kernel's (kt, kh, kw, Cin) order, so the kernel is used by a reshape.
  """
  n, cin = x.shape[0], x.shape[-1]
  kt, kh, kw, _, cout = kernel.shape
  if any(lo or hi for lo, hi in pads):
    x = jnp.pad(x, ((0, 0),) + tuple(tuple(p) for p in pads) + ((0, 0),))
  out_shape = tuple((size - k) // s + 1
                    for size, k, s in zip(x.shape[1:4], (kt, kh, kw), strides))
  if min(out_shape) < 1:
    raise ValueError(f"Conv3D: kernel {(kt, kh, kw)} larger than the padded input "
                     f"{x.shape[1:4]} (pads={tuple(pads)})")
  (t_out, h_out, w_out), (st, sh, sw) = out_shape, strides
  taps = []
  for dt in range(kt):
    for dh in range(kh):
      for dw in range(kw):
        limit = (n, dt + (t_out - 1) * st + 1, dh + (h_out - 1) * sh + 1,
                 dw + (w_out - 1) * sw + 1, cin)
        taps.append(lax.slice(x, (0, dt, dh, dw, 0), limit, (1, st, sh, sw, 1)))
  patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
  depth = kt * kh * kw * cin
  out = jnp.dot(patches.reshape(-1, depth), kernel.reshape(depth, cout))
  return out.reshape((n,) + out_shape + (cout,))


def conv3d_space_to_depth(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                          pads: Sequence[tuple[int, int]], inner=conv3d_native) -> jax.Array:
  """The same function as `conv3d_native`, as a stride-1 conv over space-to-depth blocks.

  For a strided conv with few input channels (the stem: 3 colour channels, stride 2x2x2) the
  padded input is cut into strides-sized blocks that become channels ([N, T/st, H/sh, W/sw,
  st*sh*sw*Cin]), and the kernel, zero-padded to a multiple of the strides, is cut the same way
  ([ceil(kt/st), ceil(kh/sh), ceil(kw/sw), st*sh*sw*Cin, Cout]). Kernel tap q = j*s + r meets
  input x_pad[o*s + q] = block o + j, offset r, so a stride-1 VALID conv of the blocks is exact
  (the same trick as MLPerf's ResNet-50 stem on TPU). For R3D-50's 5x7x7 stem: 3x4x4 taps over
  24 channels instead of 5x7x7 over 3, i.e. 1.57x the multiply-adds of the stem, in a shape that
  tensor cores and CPU GEMM kernels fill far better, with 3 temporal taps instead of 5 and no
  strided slicing. `inner` (any conv3d_* implementation) runs the blocked conv.
  """
  n, cin = x.shape[0], x.shape[-1]
  ksize, cout = kernel.shape[:3], kernel.shape[-1]
  outs = [(size + lo + hi - k) // s + 1
          for size, (lo, hi), k, s in zip(x.shape[1:4], pads, ksize, strides)]
  if min(outs) < 1:
    raise ValueError(f"Conv3D: kernel {tuple(ksize)} larger than the padded input "
                     f"(input {x.shape[1:4]}, pads={tuple(pads)})")
  blocks = [-(-k // s) for k, s in zip(ksize, strides)]
  # Exactly the blocks the outputs read: windows o*s .. o*s + k - 1 for o < out lie inside
  # (out + blocks - 1) * s padded elements; lax.pad crops where that is shorter than the input.
  lengths = [(o + b - 1) * s for o, b, s in zip(outs, blocks, strides)]
  x = lax.pad(x, jnp.zeros((), x.dtype),
              [(0, 0, 0)] + [(lo, length - size - lo, 0) for size, (lo, _), length
                             in zip(x.shape[1:4], pads, lengths)] + [(0, 0, 0)])
  (st, sh, sw), (tb, hb, wb) = strides, (length // s for length, s in zip(lengths, strides))
  depth = st * sh * sw * cin
  x = x.reshape(n, tb, st, hb, sh, wb, sw, cin).transpose(0, 1, 3, 5, 2, 4, 6, 7)
  x = x.reshape(n, tb, hb, wb, depth)
  kernel = jnp.pad(kernel, [(0, b * s - k) for b, s, k in zip(blocks, strides, ksize)]
                   + [(0, 0), (0, 0)])
  kernel = kernel.reshape(blocks[0], st, blocks[1], sh, blocks[2], sw, cin, cout)
  kernel = kernel.transpose(0, 2, 4, 1, 3, 5, 6, 7).reshape(*blocks, depth, cout)
  return inner(x, kernel, (1, 1, 1), ((0, 0),) * 3)


_IMPLEMENTATIONS = {"native": conv3d_native, "factorized": conv3d_factorized,
                    "im2col": conv3d_im2col}


class Conv3D(nn.Module):
  """3D convolution without bias; see the module docstring for the contract.

  Attributes:
    features: Cout.
    kernel_size: (kt, kh, kw).
    strides: (st, sh, sw).
    padding: 'SAME', 'VALID' or ((lo, hi),) * 3 over (T, H, W).
    impl: 'native', 'factorized', 'im2col' or 'auto'.
    space_to_depth: compute a strided conv as a stride-1 conv over space-to-depth blocks
      (conv3d_space_to_depth, run by `impl`); no effect when all strides are 1.
    dtype: compute dtype (the kernel is stored float32 and cast).
    kernel_init: initialiser of the [kt, kh, kw, Cin, Cout] kernel.
  """
  features: int
  kernel_size: Sequence[int] = (1, 1, 1)
  strides: Sequence[int] = (1, 1, 1)
  padding: Padding = "SAME"
  impl: str = "auto"
  space_to_depth: bool = False
  dtype: Any = jnp.float32
  kernel_init: Any = default_kernel_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [N, T, H, W, Cin] -> [N, T', H', W', features] in self.dtype."""
    if x.ndim != 5:
      raise ValueError(f"Conv3D {self.name}: expected x of shape [N, T, H, W, C], got {x.shape}")
    kernel_size = _check_triple("kernel_size", self.kernel_size)
    strides = _check_triple("strides", self.strides)
    impl = resolve_conv_impl(self.impl)
    pads = explicit_padding(self.padding, x.shape[1:4], kernel_size, strides)
    kernel = self.param("kernel", self.kernel_init,
                        kernel_size + (x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.space_to_depth and max(strides) > 1:
      return conv3d_space_to_depth(x, kernel, strides, pads, inner=_IMPLEMENTATIONS[impl])
    return _IMPLEMENTATIONS[impl](x, kernel, strides, pads)
