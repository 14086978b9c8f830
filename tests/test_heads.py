"""Relation heads: Eq. 1 per head, Eq. 7-8 decomposition, (anti-)symmetry, all_pairs, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corp_jax.heads import DecouplingAttention
from corp_jax.heads import MixedAttention
from corp_jax.heads import RelationHead
from corp_jax.heads import relation

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


# bfloat16 compute: gradient sums over pairs must accumulate in float32 (corp_jax/heads/relation.py
# module docstring). Each bound sits between the old bfloat16-accumulating code and the current
# code, both measured on CPU.


@pytest.mark.parametrize("layer, name, width", [("hidden_layer", "mlp_hidden", 4),
                                                ("output_layer", "mlp_out", 3)])
def test_bf16_bias_gradient_sums_over_pairs_in_float32(layer, name, width):
  """The bias gradient of an MLP layer over M^2 = 4096 pairs, against its float64 value.

  d/db sum(c * (W r + b)) = sum of c over all pairs, whatever r is. nn.Dense adds a bfloat16 copy
  of the bias, so its gradient was a bfloat16 reduce_sum: norm error 6.0e-2 (hidden) and 4.1e-2
  (out) before the fix. Summed in float32 it is 2.1e-3 and 3.1e-3, limited only by rounding the
  cotangent to bfloat16. PyTorch bf16 gives 2.3e-3.
  """
  m = 64
  head = RelationHead(attention="mixed", num_heads=4, mlp_layers=2, num_classes=3,
                      dtype=jnp.bfloat16)
  params = _init(head, jnp.zeros((1, D)), jnp.zeros((1, D)))
  rng = np.random.default_rng(0)
  r = jnp.asarray(rng.normal(size=(m, m, 4)), jnp.bfloat16)
  cotangent = rng.normal(size=(m, m, width)).astype(np.float32)
  apply_layer = lambda module, r: getattr(module, layer)(r)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(
      head.apply(p, r, method=apply_layer).astype(jnp.float32) * cotangent)))(params)
  got = np.asarray(grads["params"][name]["bias"], np.float64)
  want = cotangent.astype(np.float64).sum(axis=(0, 1))
  assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-2


def _decoupling_all_pairs_grads_float64(params, z, cotangent, n):
  """Exact gradients of sum(cotangent * all_pairs(z)) w.r.t. G, P, Q and z (NumPy float64)."""
  g_w, p_w, q_w = (np.asarray(params["params"][k], np.float64) for k in "GPQ")
  z = z.astype(np.float64)
  c_sym, c_anti = cotangent[..., :n].astype(np.float64), cotangent[..., n:].astype(np.float64)
  g, p, q = z @ g_w.T, z @ p_w.T, z @ q_w.T
  # [i, j] = g_i * g_j and p_i * q_j - q_i * p_j: every z_i appears as the first and the second.
  d_g = np.einsum("ijk,jk->ik", c_sym, g) + np.einsum("jik,jk->ik", c_sym, g)
  d_p = np.einsum("ijk,jk->ik", c_anti, q) - np.einsum("jik,jk->ik", c_anti, q)
  d_q = np.einsum("jik,jk->ik", c_anti, p) - np.einsum("ijk,jk->ik", c_anti, p)
  return {"G": d_g.T @ z, "P": d_p.T @ z, "Q": d_q.T @ z, "z": d_g @ g_w + d_p @ p_w + d_q @ q_w}


@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_decoupling_all_pairs_gradients_sum_over_pairs_in_float32(seed):
  """all_pairs shares Gz_j, Pz_j, Qz_j over all M pairs (i, j), and their gradients sum over i.

  Against float64, at M = 128, the mean norm error of the G, P, Q and z gradients was 9.0e-3 and
  8.4e-3 (seeds 0, 1) with the sums in bfloat16. It is 4.3e-3 with them in float32.
  """
  m, n, l = 128, 8, 4
  module = DecouplingAttention(num_symmetric=n, num_antisymmetric=l, dtype=jnp.bfloat16)
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(m, 16)).astype(np.float32)
  cotangent = rng.normal(size=(m, m, n + l)).astype(np.float32)
  params = jax.jit(module.init)(jax.random.PRNGKey(seed), z[:1], z[:1])
  objective = lambda p, z: jnp.sum(
      module.apply(p, z, method=module.all_pairs).astype(jnp.float32) * cotangent)
  grad_params, grad_z = jax.jit(jax.grad(objective, (0, 1)))(params, z)
  got = {**grad_params["params"], "z": grad_z}
  want = _decoupling_all_pairs_grads_float64(params, z, cotangent, n)
  errors = {k: np.linalg.norm(np.asarray(got[k], np.float64) - want[k]) / np.linalg.norm(want[k])
            for k in want}
  assert np.mean(list(errors.values())) < 6.5e-3, errors


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
def test_mlp_dense_matches_flax_dense(dtype):
  """The head's MLP layer has nn.Dense's parameters, initial values and forward values."""
  ours = relation._Dense(5, dtype=dtype)  # pylint: disable=protected-access
  flax_dense = nn.Dense(5, dtype=dtype)
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 4, D))
  params = _init(ours, x)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, _init(flax_dense, x))
  params = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # non-zero bias
  got, want = _apply(ours)(params, x), _apply(flax_dense)(params, x)
  assert got.dtype == want.dtype
  np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))
