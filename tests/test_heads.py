"""Relation heads: Eq. 1 per head, Eq. 7-8 decomposition, (anti-)symmetry, all_pairs, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corp_jax.heads import DecouplingAttention
from corp_jax.heads import MixedAttention
from corp_jax.heads import RelationHead

D = 8


def _inputs(seed=0, shape=(5,)):
  kx, ky = jax.random.split(jax.random.PRNGKey(seed))
  return jax.random.normal(kx, shape + (D,)), jax.random.normal(ky, shape + (D,))


def _init(module, *inputs, method=None):
  # jit: eager Flax init dispatches op by op, which is slow on a shared 2-core machine.
  init = jax.jit(lambda rng, *args: module.init(rng, *args, method=method))
  return init(jax.random.PRNGKey(42), *inputs)


def _apply(module, method=None):
  return jax.jit(lambda params, *args: module.apply(params, *args, method=method))


def test_decoupling_parts_exactly_symmetric_and_antisymmetric():
  """Bit-exact under jit, where fused multiply-adds could otherwise break the anti-symmetry."""
  x, y = _inputs()
  module = DecouplingAttention(num_symmetric=6, num_antisymmetric=4)
  params = _init(module, x, y)
  sym = _apply(module, module.symmetric_part)
  anti = _apply(module, module.antisymmetric_part)
  np.testing.assert_array_equal(sym(params, x, y), sym(params, y, x))
  np.testing.assert_array_equal(anti(params, x, y), -anti(params, y, x))
  # The parts are not trivially zero / identical.
  assert np.abs(np.asarray(anti(params, x, y))).min() > 0
  pairs = _apply(module, module.all_pairs)(params, x)
  np.testing.assert_array_equal(pairs[..., 6:], -jnp.swapaxes(pairs[..., 6:], 0, 1))
  np.testing.assert_array_equal(pairs[..., :6], jnp.swapaxes(pairs[..., :6], 0, 1))
  full = _apply(module)(params, x, y)
  assert full.shape == (5, 10)
  np.testing.assert_array_equal(full[:, :6], sym(params, x, y))
  np.testing.assert_array_equal(full[:, 6:], anti(params, x, y))


def test_decoupling_sum_equals_bilinear_form_of_eq7_matrix():
  x, y = _inputs(1)
  module = DecouplingAttention(num_symmetric=3, num_antisymmetric=5)
  params = _init(module, x, y)
  p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
  g, pp, q = p["G"], p["P"], p["Q"]
  m = g.T @ g + pp.T @ q - q.T @ pp  # sum_i g g^T + sum_j (p q^T - q p^T), Eq. 7
  expected = np.einsum("bd,de,be->b", np.asarray(x, np.float64), m, np.asarray(y, np.float64))
  got = np.asarray(_apply(module)(params, x, y)).sum(-1)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  # The anti-symmetric matrix alone gives the anti-symmetric part's sum.
  anti = np.asarray(_apply(module, module.antisymmetric_part)(params, x, y)).sum(-1)
  expected_anti = np.einsum("bd,de,be->b", np.asarray(x, np.float64), pp.T @ q - q.T @ pp,
                            np.asarray(y, np.float64))
  np.testing.assert_allclose(anti, expected_anti, rtol=1e-5, atol=1e-5)


def test_mixed_attention_equals_per_head_bilinear_form():
  x, y = _inputs(2)
  module = MixedAttention(num_heads=4)
  params = _init(module, x, y)
  u = np.asarray(params["params"]["U"], np.float64)
  v = np.asarray(params["params"]["V"], np.float64)
  assert u.shape == v.shape == (4, 2, D)  # U_k, V_k in R^{d/h x d}
  x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
  expected = np.stack([np.einsum("bd,de,be->b", x64, u[k].T @ v[k], y64) for k in range(4)], -1)
  got = _apply(module)(params, x, y)
  assert got.shape == (5, 4)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  # The mixed head is not symmetric in general (U != V).
  assert not np.allclose(got, _apply(module)(params, y, x))


def test_mixed_attention_rejects_indivisible_dim():
  x, y = _inputs()
  with pytest.raises(ValueError, match=r"d=8 must be divisible by num_heads=3"):
    jax.eval_shape(MixedAttention(num_heads=3).init, jax.random.PRNGKey(0), x, y)


@pytest.mark.parametrize("kwargs, match", [
    (dict(attention="dot"), "attention"),
    (dict(mlp_layers=3), "mlp_layers"),
    (dict(num_classes=1), "num_classes"),
    (dict(attention="mixed", num_symmetric=4), "num_symmetric"),
    (dict(num_heads=0), "num_heads"),
])
def test_relation_head_rejects_bad_config(kwargs, match):
  x, y = _inputs()
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(RelationHead(**kwargs).init, jax.random.PRNGKey(0), x, y)


def test_relation_inputs_must_share_dim():
  x, _ = _inputs()
  with pytest.raises(ValueError, match="feature dim"):
    jax.eval_shape(RelationHead(num_heads=4).init, jax.random.PRNGKey(0), x, jnp.ones((5, D + 1)))


@pytest.mark.parametrize("attention, mlp_layers", [("mixed", 2), ("decoupling", 1),
                                                   ("decoupling", 2)])
def test_all_pairs_equals_pairwise_calls(attention, mlp_layers):
  z = jax.random.normal(jax.random.PRNGKey(3), (6, D))
  head = RelationHead(attention=attention, num_heads=4, mlp_layers=mlp_layers, num_classes=3)
  params = _init(head, z[0], z[1])
  pairs = _apply(head, head.all_pairs)(params, z)
  assert pairs.shape == (6, 6, 3)
  call = _apply(head)
  for i in range(6):
    for j in range(6):
      np.testing.assert_allclose(pairs[i, j], call(params, z[i], z[j]), rtol=1e-5, atol=1e-6)
  # Broadcasting call over leading dims gives the same matrix.
  np.testing.assert_allclose(call(params, z[:, None], z[None, :]), pairs, rtol=1e-5, atol=1e-6)


def test_shapes_param_counts_and_dtype():
  z = jnp.ones((2, 3, 128))
  mixed = RelationHead(attention="mixed", num_heads=128, num_classes=2)
  decoupled = RelationHead(attention="decoupling", num_heads=128, num_classes=3)
  # Shapes and dtypes only: eval_shape traces without compiling or running.
  key = jax.random.PRNGKey(0)
  p_mixed = jax.eval_shape(mixed.init, key, z, z)
  p_dec = jax.eval_shape(decoupled.init, key, z, z)
  count = lambda tree: sum(a.size for a in jax.tree_util.tree_leaves(tree))
  # Paper sizes h = d = 128: decoupling (n=128, l=64) has the mixed head's 2 d^2 parameters.
  assert count(p_mixed["params"]["relation"]) == count(p_dec["params"]["relation"]) == 2 * 128**2
  assert jax.eval_shape(mixed.apply, p_mixed, z, z).shape == (2, 3, 2)
  assert jax.eval_shape(decoupled.apply, p_dec, z, z).shape == (2, 3, 3)
  assert p_dec["params"]["mlp_hidden"]["kernel"].shape == (192, 192)
  bf16 = RelationHead(num_heads=4, dtype=jnp.bfloat16)
  x, y = _inputs()
  p_bf16 = jax.eval_shape(bf16.init, key, x, y)
  assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(p_bf16))
  assert jax.eval_shape(bf16.apply, p_bf16, x, y).dtype == jnp.bfloat16
  assert jax.eval_shape(
      lambda p, a: bf16.apply(p, a, method=bf16.all_pairs), p_bf16, x[:3]).dtype == jnp.bfloat16


def test_order_gradients_reach_only_pq_and_similarity_only_g():
  """Sec. 3.4: a signal on the symmetric part has no gradient on P, Q, and vice versa."""
  x, y = _inputs(4)
  module = DecouplingAttention(num_symmetric=3, num_antisymmetric=2)
  params = _init(module, x, y)
  grad_sym = jax.jit(jax.grad(
      lambda p: module.apply(p, x, y, method=module.symmetric_part).sum()))(params)
  grad_anti = jax.jit(jax.grad(
      lambda p: module.apply(p, x, y, method=module.antisymmetric_part).sum()))(params)
  assert np.abs(grad_sym["params"]["G"]).sum() > 0
  assert np.abs(grad_sym["params"]["P"]).sum() == 0 == np.abs(grad_sym["params"]["Q"]).sum()
  assert np.abs(grad_anti["params"]["G"]).sum() == 0
  assert np.abs(grad_anti["params"]["P"]).sum() > 0
