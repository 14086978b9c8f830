"""The losses give the same value and gradients on 1 device and on 8 host devices.

The batch (videos for CORP_f, groups for CORP_m) is sharded on the 'data' axis of a Mesh and the
head params are replicated; jit partitions the global computation (SPMD), so the result must not
depend on the device count. conftest.py provides 8 CPU devices.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from corp_jax import losses
from corp_jax.heads import RelationHead

NUM_DEVICES = 8
DIM = 8


def _mesh():
  devices = jax.devices()
  if len(devices) < NUM_DEVICES:
    pytest.skip(f"needs {NUM_DEVICES} devices (conftest sets XLA_FLAGS), found {len(devices)}")
  return Mesh(np.array(devices[:NUM_DEVICES]), ("data",))


def _corp_f_setup():
  rng = np.random.default_rng(0)
  b = 2 * NUM_DEVICES
  z = rng.normal(size=(b, 2, DIM)).astype(np.float32)
  starts = np.stack([rng.permutation(30)[:2] for _ in range(b)]).astype(np.int32)
  head = RelationHead(attention="decoupling", num_heads=4, num_classes=2)

  def loss_fn(params, z, starts):
    zn = losses.l2_normalize(z)
    logits = jnp.stack([head.apply(params, zn[:, 0], zn[:, 1]),
                        head.apply(params, zn[:, 1], zn[:, 0])], axis=1)
    return losses.corp_f_loss(z, starts, logits)[0]

  params = jax.jit(head.init)(jax.random.PRNGKey(0), z[:, 0], z[:, 1])
  return loss_fn, params, z, starts


def _corp_m_setup():
  rng = np.random.default_rng(1)
  groups, g, k = NUM_DEVICES, 2, 2
  z = rng.normal(size=(groups, g * k, DIM)).astype(np.float32)
  video_index = np.tile(np.repeat(np.arange(g), k), (groups, 1)).astype(np.int32)
  starts = rng.integers(0, 1000, size=(groups, g * k)).astype(np.int32)
  head = RelationHead(attention="mixed", num_heads=4, num_classes=3)

  def loss_fn(params, z, starts):
    logits = jax.vmap(lambda zg: head.apply(params, zg, method=head.all_pairs))(z)
    return losses.corp_m_loss(logits, video_index, starts)[0]

  params = jax.jit(head.init)(jax.random.PRNGKey(0), z[0, :1], z[0, :1])
  return loss_fn, params, z, starts


@pytest.mark.parametrize("setup", [_corp_f_setup, _corp_m_setup], ids=["corp_f", "corp_m"])
def test_loss_and_grads_match_single_device(setup):
  mesh = _mesh()
  loss_fn, params, z, starts = setup()
  value_and_grad = jax.value_and_grad(loss_fn, argnums=(0, 1))

  single = jax.devices()[0]
  one = jax.jit(value_and_grad)(jax.device_put(params, single), jax.device_put(z, single),
                                jax.device_put(starts, single))

  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  z_sharded = jax.device_put(z, sharded)
  assert len(z_sharded.sharding.device_set) == NUM_DEVICES
  args = (jax.device_put(params, replicated), z_sharded, jax.device_put(starts, sharded))
  # Compiled ahead of time once, so the HLO can be inspected without a second compile.
  step = jax.jit(value_and_grad, out_shardings=(replicated, (replicated, sharded)))
  compiled = step.lower(*args).compile()
  many = compiled(*args)
  # The computation really is partitioned: every device holds 1/8 of z's gradient, and the
  # global sums over the batch need a cross-device reduction.
  assert many[1][1].addressable_shards[0].data.shape[0] == z.shape[0] // NUM_DEVICES
  assert "all-reduce" in compiled.as_text()

  np.testing.assert_allclose(many[0], one[0], rtol=1e-5)
  flat_one, tree_one = jax.tree_util.tree_flatten(one[1])
  flat_many, tree_many = jax.tree_util.tree_flatten(many[1])
  assert tree_one == tree_many
  for a, b in zip(flat_many, flat_one):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  assert max(float(np.abs(np.asarray(g)).max()) for g in flat_one) > 0
