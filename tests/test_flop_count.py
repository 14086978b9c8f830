"""benchmarks/lib/flop_count.py against hand-counted multiply-adds and XLA's CPU cost analysis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from benchmarks.lib import flop_count
from corp_jax.models.conv import Conv3D


def _conv(x, k, padding="VALID", groups=1, strides=(1, 1)):
  return lax.conv_general_dilated(x, k, strides, padding,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=groups)


def test_conv_and_dot_counts_by_hand():
  x = jnp.zeros((2, 9, 7, 6))
  k = jnp.zeros((3, 2, 6, 5))
  # Output 2 x 7 x 6 x 5 positions, each a 3*2*6 multiply-add window.
  assert flop_count.jaxpr_flops(_conv, x, k) == 2 * (2 * 7 * 6 * 5) * (3 * 2 * 6)
  grouped = jnp.zeros((3, 2, 3, 4))  # 2 groups of 3 input channels
  assert flop_count.jaxpr_flops(lambda a, b: _conv(a, b, groups=2), x, grouped) == (
      2 * (2 * 7 * 6 * 4) * (3 * 2 * 3))
  a, b = jnp.zeros((4, 3, 5)), jnp.zeros((4, 5, 7))
  assert flop_count.jaxpr_flops(lambda p, q: jnp.einsum("bij,bjk->bik", p, q), a, b) == (
      2 * 4 * 3 * 7 * 5)


def test_nested_jit_scan_and_cond():
  m = jnp.zeros((8, 8))
  matmul = 2 * 8 * 8 * 8
  inner = jax.jit(lambda v: v @ v)
  assert flop_count.jaxpr_flops(lambda v: inner(inner(v)), m) == 2 * matmul

  def scanned(v):
    return lax.scan(lambda c, _: (c @ v, None), v, None, length=5)[0]
  assert flop_count.jaxpr_flops(scanned, m) == 5 * matmul

  def branchy(v, flag):
    return lax.cond(flag, lambda u: u @ u @ u, lambda u: u + 1.0, v)
  assert flop_count.jaxpr_flops(branchy, m, True) == 2 * matmul  # the costlier branch


def test_matches_xla_cpu_cost_analysis_for_valid_convs():
  x = jnp.ones((2, 10, 10, 4))
  k = jnp.ones((3, 3, 4, 8))
  f = lambda a, b: _conv(a, b, strides=(2, 1))  # VALID: XLA counts the same window products
  xla = jax.jit(f).lower(x, k).compile().cost_analysis()
  xla = xla[0] if isinstance(xla, (list, tuple)) else xla
  assert flop_count.jaxpr_flops(f, x, k) == pytest.approx(float(xla["flops"]), rel=1e-6)


@pytest.mark.parametrize("kernel,strides", [((3, 1, 1), (1, 1, 1)), ((3, 3, 3), (2, 2, 2)),
                                            ((1, 3, 3), (1, 2, 2))])
def test_every_conv_impl_counts_the_same_work(kernel, strides):
  x = jnp.zeros((2, 6, 8, 8, 3))
  counts = {}
  for impl in ("native", "factorized", "im2col"):
    conv = Conv3D(4, kernel_size=kernel, strides=strides, impl=impl)
    variables = jax.eval_shape(conv.init, jax.random.key(0), x)
    counts[impl] = flop_count.jaxpr_flops(conv.apply, variables, x)
  assert len(set(counts.values())) == 1, counts
  out = conv.apply(jax.tree_util.tree_map(jnp.zeros_like, variables), x)
  assert counts["native"] == 2 * np.prod(out.shape) * np.prod(kernel) * 3


def test_model_train_flops_is_three_forward_passes():
  from benchmarks.lib import step_builder  # pylint: disable=g-import-not-at-top
  size = step_builder.SIZES["smoke"]
  model = step_builder.make_model(size, "corp_f", "float32", "native", remat=False)
  clips = jax.ShapeDtypeStruct((2, size["clip_len"], size["crop"], size["crop"], 3), jnp.float32)
  variables = jax.eval_shape(lambda key: model.init(key, jnp.zeros(clips.shape), train=False),
                             jax.random.key(0))
  forward = flop_count.jaxpr_flops(
      lambda v, c: model.apply(v, c, train=True, mutable=["batch_stats"]), variables, clips)
  assert forward > 0
  assert flop_count.model_train_flops(model, variables, clips) == 3 * forward
