"""corp_jax.models.batchnorm.BatchNormAct against flax's BatchNorm (+ add + ReLU): outputs,
gradients, running statistics, variables, evaluation mode, and the fused backward under
shard_map with cross-device statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from corp_jax.models.batchnorm import BatchNormAct, default_bn_impl, resolve_bn_impl

SHAPE = (8, 3, 5, 5, 6)


def _data(seed=0):
  rng = np.random.RandomState(seed)
  x = (2.0 * rng.normal(size=SHAPE) + 1.5).astype(np.float32)  # non-zero mean, non-unit var
  residual = rng.normal(size=SHAPE).astype(np.float32)
  cotangent = rng.normal(size=SHAPE).astype(np.float32)
  scale = rng.normal(size=SHAPE[-1:]).astype(np.float32)
  bias = rng.normal(size=SHAPE[-1:]).astype(np.float32)
  return x, residual, cotangent, {"bn": {"scale": scale, "bias": bias}}


class FlaxReference(nn.Module):
  relu: bool
  residual: bool

  @nn.compact
  def __call__(self, x, r, train=True):
    y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)
    y = y + r if self.residual else y
    return nn.relu(y) if self.relu else y


class Subject(nn.Module):
  relu: bool
  residual: bool
  impl: str
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, r, train=True):
    return BatchNormAct(use_running_average=not train, momentum=0.9, relu=self.relu,
                        impl=self.impl, axis_name=self.axis_name, name="bn")(
                            x, r if self.residual else None)


def _train_step(model, stats):
  """(output, updated batch_stats, (d params, d x, d residual)) for cotangent g."""
  def run(params, x, r, g):
    def f(p, x, r):
      return model.apply({"params": p, "batch_stats": stats}, x, r, mutable=["batch_stats"])
    (y, updates), pullback = jax.vjp(f, params, x, r)
    return y, updates, pullback((g, jax.tree.map(jnp.zeros_like, updates)))
  return jax.jit(run)


@pytest.mark.parametrize("impl", ["autodiff", "fused"])
@pytest.mark.parametrize("relu,residual", [(False, False), (True, False), (False, True),
                                           (True, True)])
def test_matches_flax_batchnorm_add_relu(impl, relu, residual):
  x, r, g, params = _data()
  reference, subject = FlaxReference(relu, residual), Subject(relu, residual, impl)
  ref_vars = jax.jit(lambda a, b: reference.init(jax.random.key(0), a, b))(x, r)
  sub_vars = jax.jit(lambda a, b: subject.init(jax.random.key(0), a, b))(x, r)
  # The same variables as flax's BatchNorm: checkpoints move between the two.
  assert jax.tree.map(np.shape, sub_vars) == jax.tree.map(np.shape, ref_vars)
  np.testing.assert_array_equal(sub_vars["batch_stats"]["bn"]["var"], 1.0)
  stats = ref_vars["batch_stats"]
  want = _train_step(reference, stats)(params, x, r, g)
  got = _train_step(subject, stats)(params, x, r, g)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5), got, want)
  # Evaluation mode uses the running statistics.
  ev = lambda m: m.apply({"params": params, "batch_stats": want[1]["batch_stats"]}, x, r,
                         train=False)
  np.testing.assert_allclose(jax.jit(lambda: ev(subject))(), jax.jit(lambda: ev(reference))(),
                             rtol=1e-5, atol=1e-5)


def test_bfloat16_output_float32_statistics():
  x, r, _, params = _data()
  model = BatchNormAct(relu=True, dtype=jnp.bfloat16, impl="fused")
  variables = {"params": params["bn"], "batch_stats": {"mean": np.zeros(6, np.float32),
                                                      "var": np.ones(6, np.float32)}}
  y, updates = jax.jit(lambda v, a: model.apply(v, a.astype(jnp.bfloat16),
                                                mutable=["batch_stats"]))(variables, x)
  assert y.dtype == jnp.bfloat16
  assert updates["batch_stats"]["mean"].dtype == jnp.float32
  exact = np.maximum((x - x.mean((0, 1, 2, 3))) / np.sqrt(x.var((0, 1, 2, 3)) + 1e-5)
                     * params["bn"]["scale"] + params["bn"]["bias"], 0)
  np.testing.assert_allclose(np.asarray(y, np.float32), exact, rtol=2e-2, atol=5e-2)


def test_impl_names():
  assert resolve_bn_impl("auto") == default_bn_impl() in ("autodiff", "fused")
  with pytest.raises(ValueError, match="bn_impl='cudnn'"):
    resolve_bn_impl("cudnn")
  x, r, _, _ = _data()
  with pytest.raises(ValueError, match="residual shape"):
    BatchNormAct().init(jax.random.key(0), x, r[:4])


def test_fused_under_shard_map_equals_single_device():
  """Statistics and both gradient sums are all-reduced: 8 shards give the global result."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS from tests/conftest.py)")
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  x, r, g, params = _data(seed=1)
  stats = {"bn": {"mean": np.zeros(6, np.float32), "var": np.ones(6, np.float32)}}
  want = _train_step(Subject(True, True, "fused"), stats)(params, x, r, g)
  sharded = Subject(True, True, "fused", axis_name="data")

  def per_device(params, x, r, g):
    y, updates, grads = _train_step(sharded, stats)(params, x, r, g)
    return y, updates, grads

  run = jax.jit(jax.shard_map(
      per_device, mesh=mesh, in_specs=(P(), P("data"), P("data"), P("data")),
      out_specs=(P("data"), P(), (P(), P("data"), P("data")))))
  got = run(params, x, r, g)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5), got, want)


@pytest.mark.slow
def test_tiny_backbone_gradients_fused_equal_autodiff_with_and_without_remat():
  from corp_jax.models import ResNet3D  # pylint: disable=g-import-not-at-top
  x = np.random.RandomState(0).uniform(size=(2, 8, 32, 32, 3)).astype(np.float32)
  base = ResNet3D("tiny", bn_impl="autodiff")
  variables = jax.jit(lambda a: base.init(jax.random.key(0), a, train=False))(x)
  # Non-zero residual-branch scales so every BatchNorm's backward matters.
  params = jax.tree.map(lambda a: a + 0.1, variables["params"])

  def loss_and_grads(model):
    def loss(p):
      y, _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, x, train=True,
                         mutable=["batch_stats"])
      return jnp.sum(y ** 2)
    return jax.jit(jax.value_and_grad(loss))(params)

  want = loss_and_grads(base)
  for model in (ResNet3D("tiny", bn_impl="fused"), ResNet3D("tiny", bn_impl="fused", remat=True)):
    got = loss_and_grads(model)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(
        np.max(np.abs(b)) + 1e-12)), got, want)
