"""BatchNorm (+ residual add) (+ ReLU) as one module, optionally with a hand-written backward.

Contract:
  `BatchNormAct(use_running_average, momentum, epsilon, dtype, axis_name, relu, scale_init,
  impl)`; `__call__(x: [..., C], residual: [..., C] | None = None) -> [..., C]` in `dtype`:
  relu?(BN(x) + residual?). Variables are exactly flax.linen.BatchNorm's (`params`: scale, bias
  float32 [C]; `batch_stats`: mean, var float32 [C]; statistics over every axis but the last,
  biased variance, running averages `m * old + (1 - m) * new`, not updated during init), so
  checkpoints move freely between this module and `nn.BatchNorm` followed by the same add/ReLU.

Implementations (`impl`), one function:
  'autodiff'  the formula in jnp ops, differentiated by JAX (the reference; 'auto' on CPU
              and TPU: `platform.default_bn_impl`).
  'fused'     ('auto' on GPU: 1-3% faster R3D-50 step on an H200, docs/PERFORMANCE.md)
              the same forward under `jax.custom_vjp` with the textbook backward, arranged so
              that each pass over the activations is one XLA fusion:
                forward   statistics: sum x and sum x^2 in f32 (sibling reductions of x);
                          output: read x (and the residual), write y
                backward  sibling reductions reading dy and x (sum dz, sum dz * x_hat, where
                          dz = dy * [y > 0]); one pass reading dy, x (and y for the ReLU
                          mask), writing dx (and the residual's gradient, which is dz).
              Residuals kept for the backward pass are x and y, which the surrounding convs
              keep anyway, plus per-channel vectors: no normalised copy, no float32 copy.
              Measured on XLA:CPU for one bf16 BN + residual + ReLU forward and backward over
              [8, 8, 28, 28, 128] (benchmarks/README.md, "BatchNorm"): flax's BatchNorm moved
              38 activation-sized buffers, 'autodiff' 28, 'fused' 30 (its two statistics
              reductions are separate kernels on CPU), in 75, 57 and 53 ms.
  Both compute statistics and the normalisation in float32 and return `dtype`.
  Under `axis_name` (shard_map / pmap) the two sums are all-reduced (psum) in both passes.

Backward (per channel; M = number of reduced elements, x_hat = (x - mean) * rstd,
a = scale * rstd):  dbias = sum dz;  dscale = sum dz * x_hat;
dx = a * (dz - dbias / M - x_hat * dscale / M).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from corp_jax.models.platform import default_bn_impl

BN_IMPLS = ("autodiff", "fused", "auto")


def resolve_bn_impl(impl: str) -> str:
  """Maps 'auto' to a concrete implementation; rejects unknown names."""
  if impl not in BN_IMPLS:
    raise ValueError(f"bn_impl={impl!r} is not one of {BN_IMPLS}")
  return default_bn_impl() if impl == "auto" else impl


def _sums(a: jax.Array, b: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
  """Per-channel (sum a, sum b) over all axes but the last.

  Two sibling reductions of the same inputs, which XLA:GPU's multi-output fusion runs as one
  pass. One variadic `lax.reduce` would force a single pass everywhere, but XLA:CPU runs it
  with its slow generic loop: a BN + ReLU step measured 69-81 ms that way against 50-54 ms with
  two sums (and 62-64 ms for flax's BatchNorm), so the sums it is.
  """
  axes = tuple(range(a.ndim - 1))
  sa, sb = jnp.sum(a, axes), jnp.sum(b, axes)
  if axis_name is not None:
    sa, sb = lax.psum((sa, sb), axis_name)
  return sa, sb


def _count(x: jax.Array, axis_name: str | None) -> jax.Array:
  count = jnp.asarray(x.size // x.shape[-1], jnp.float32)
  return lax.psum(count, axis_name) if axis_name is not None else count


def _statistics(x: jax.Array, axis_name: str | None):
  """(mean, biased var) per channel in float32, var = E[x^2] - E[x]^2 clipped at 0."""
  xf = x.astype(jnp.float32)
  total, total_sq = _sums(xf, xf * xf, axis_name)
  count = _count(x, axis_name)
  mean = total / count
  return mean, jnp.maximum(total_sq / count - mean * mean, 0.0)


def _forward(x, scale, bias, residual, mean, var, epsilon, relu, dtype):
  rstd = lax.rsqrt(var + epsilon)
  a = scale * rstd
  y = x.astype(jnp.float32) * a + (bias - mean * a)
  if residual is not None:
    y = y + residual.astype(jnp.float32)
  if relu:
    y = jnp.maximum(y, 0.0)
  return y.astype(dtype), rstd


def bn_act_autodiff(x, scale, bias, residual, *, epsilon, relu, dtype, axis_name):
  """(y, mean, var): training-mode BN(+residual)(+ReLU), differentiated by JAX."""
  mean, var = _statistics(x, axis_name)
  y, _ = _forward(x, scale, bias, residual, mean, var, epsilon, relu, dtype)
  return y, mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _bn_act_fused(x, scale, bias, residual, epsilon, relu, dtype, axis_name):
  return bn_act_autodiff(x, scale, bias, residual, epsilon=epsilon, relu=relu, dtype=dtype,
                         axis_name=axis_name)


def _fused_fwd(x, scale, bias, residual, epsilon, relu, dtype, axis_name):
  mean, var = _statistics(x, axis_name)
  y, rstd = _forward(x, scale, bias, residual, mean, var, epsilon, relu, dtype)
  saved_y = y if relu else None
  # The residual's presence is pytree structure (None or an empty marker), not a traced value.
  marker = None if residual is None else jnp.zeros((0,), jnp.float32)
  return (y, mean, var), (x, saved_y, scale, mean, rstd, marker)


def _fused_bwd(epsilon, relu, dtype, axis_name, saved, cotangents):
  del epsilon, dtype
  x, y, scale, mean, rstd, marker = saved
  dy = cotangents[0]  # the statistics are outputs for the running averages only: no gradient
  dz = dy.astype(jnp.float32)
  if relu:
    dz = jnp.where(y > 0, dz, 0.0)
  x_hat = (x.astype(jnp.float32) - mean) * rstd
  dbias, dscale = _sums(dz, dz * x_hat, axis_name)
  count = _count(x, axis_name)
  a = scale * rstd
  dx = (a * (dz - dbias / count - x_hat * (dscale / count))).astype(x.dtype)
  d_residual = None if marker is None else dz.astype(x.dtype)
  return dx, dscale, dbias, d_residual


_bn_act_fused.defvjp(_fused_fwd, _fused_bwd)


def bn_act_fused(x, scale, bias, residual, *, epsilon, relu, dtype, axis_name):
  """(y, mean, var): the same function as bn_act_autodiff with the hand-written backward."""
  if residual is not None and residual.dtype != x.dtype:
    residual = residual.astype(x.dtype)
  return _bn_act_fused(x, scale, bias, residual, epsilon, relu, dtype, axis_name)


_IMPLEMENTATIONS = {"autodiff": bn_act_autodiff, "fused": bn_act_fused}


class BatchNormAct(nn.Module):
  """relu?(BatchNorm(x) + residual?); see the module docstring.

  Attributes:
    use_running_average: evaluation mode (running statistics, nothing updated).
    momentum: running-average decay.
    epsilon: added to the variance.
    dtype: output dtype (the computation runs in float32).
    axis_name: mapped axis to all-reduce statistics over (shard_map / pmap only).
    relu: apply ReLU after the (residual) add.
    scale_init: initialiser of `scale` (zeros for the last BN of a residual block).
    impl: 'autodiff', 'fused' or 'auto'.
  """
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  axis_name: str | None = None
  relu: bool = False
  scale_init: Callable = nn.initializers.ones
  impl: str = "fused"

  @nn.compact
  def __call__(self, x: jax.Array, residual: jax.Array | None = None) -> jax.Array:
    impl = resolve_bn_impl(self.impl)
    if residual is not None and residual.shape != x.shape:
      raise ValueError(f"BatchNormAct {self.name}: residual shape {residual.shape} differs from "
                       f"the input's {x.shape}")
    features = x.shape[-1]
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    if self.use_running_average:
      y, _ = _forward(x, scale, bias, residual, ra_mean.value, ra_var.value, self.epsilon,
                      self.relu, self.dtype)
      return y
    y, mean, var = _IMPLEMENTATIONS[impl](
        x, scale, bias, residual, epsilon=self.epsilon, relu=self.relu, dtype=self.dtype,
        axis_name=self.axis_name)
    if not self.is_initializing():
      mean, var = lax.stop_gradient(mean), lax.stop_gradient(var)
      ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
    return y
