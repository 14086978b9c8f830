"""LARS masks BatchNorm parameters and biases out of weight decay and trust-ratio scaling."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from corp_jax.train import optim


def _cfg(name="lars"):
  return ml_collections.ConfigDict(dict(
      name=name, base_lr=1.0, weight_decay=0.1, momentum=0.0, trust_coefficient=0.001,
      warmup_fraction=0.0, grad_clip_norm=0.0))


def test_decay_mask_excludes_biases_and_bn():
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones(4)},
            "bn": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}}
  mask = optim.decay_mask(params)
  assert mask == {"conv": {"kernel": True, "bias": False}, "bn": {"scale": False, "bias": False}}


def test_lars_zero_gradient_moves_only_kernels():
  params = {"dense": {"kernel": jnp.full((4, 4), 2.0), "bias": jnp.full((4,), 2.0)},
            "bn": {"scale": jnp.full((4,), 3.0)}}
  tx, _ = optim.make_optimizer(_cfg(), global_batch=256, total_steps=10)
  state = tx.init(params)
  grads = {"dense": {"kernel": jnp.zeros((4, 4)), "bias": jnp.zeros(4)},
           "bn": {"scale": jnp.zeros(4)}}
  updates, _ = tx.update(grads, state, params)
  assert float(jnp.abs(updates["dense"]["kernel"]).max()) > 0  # decayed
  np.testing.assert_array_equal(updates["dense"]["bias"], 0.0)
  np.testing.assert_array_equal(updates["bn"]["scale"], 0.0)


def test_lars_unmasked_params_get_plain_sgd_step():
  # Without trust-ratio scaling, a bias moves by exactly -lr * grad (momentum 0).
  params = {"bias": jnp.full((3,), 5.0)}
  tx, schedule = optim.make_optimizer(_cfg(), global_batch=256, total_steps=10)
  grads = {"bias": jnp.array([1.0, -2.0, 0.5])}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["bias"], -float(schedule(0)) * grads["bias"], rtol=1e-6)


def test_schedule_scales_with_batch_and_warms_up():
  sched = optim.learning_rate_schedule(1.0, global_batch=512, total_steps=100,
                                       warmup_fraction=0.05)
  assert float(sched(0)) == 0.0
  np.testing.assert_allclose(float(sched(5)), 2.0, rtol=1e-6)  # peak = 512 / 256
  assert float(sched(50)) < 2.0 and float(sched(100)) < 1e-6


def test_sgd_option_and_bad_name():
  tx, _ = optim.make_optimizer(_cfg("sgd"), global_batch=256, total_steps=10)
  assert isinstance(tx, optax.GradientTransformation)
  try:
    optim.make_optimizer(_cfg("adamw"), global_batch=256, total_steps=10)
  except ValueError as e:
    assert "'lars' or 'sgd'" in str(e)
  else:
    raise AssertionError("expected ValueError")
