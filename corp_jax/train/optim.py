"""Optimizer and learning-rate schedule of section 4.1.

LARS (momentum 0.9, weight decay 1e-6) with BatchNorm parameters and biases excluded from
both weight decay and trust-ratio scaling (SimCLR's practice: `optax.lars` masks default to
True for every parameter, so the mask `p.ndim > 1` is explicit here). Plain SGD with momentum
(CVRL's public recipe) is the alternative. Learning rate = batch/256 × base, linear warm-up
for the first `warmup_fraction` of steps, then half-cosine decay to zero.
"""

from __future__ import annotations

import jax
import optax


def decay_mask(params):
  """True for kernels (ndim > 1), False for biases and BatchNorm scales/offsets."""
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def learning_rate_schedule(base_lr: float, global_batch: int, total_steps: int,
                           warmup_fraction: float):
  if total_steps < 1:
    raise ValueError(f"total training steps must be >= 1, got {total_steps}")
  if not 0.0 <= warmup_fraction < 1.0:
    raise ValueError(f"config.optim.warmup_fraction must be in [0, 1), got {warmup_fraction}")
  peak = base_lr * global_batch / 256.0
  warmup = int(round(warmup_fraction * total_steps))
  if warmup == 0:
    return optax.cosine_decay_schedule(peak, decay_steps=total_steps)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup, decay_steps=total_steps,
      end_value=0.0)


def make_optimizer(optim_cfg, global_batch: int, total_steps: int):
  """Returns (optax transformation, schedule) from `config.optim`."""
  schedule = learning_rate_schedule(optim_cfg.base_lr, global_batch, total_steps,
                                    optim_cfg.warmup_fraction)
  if optim_cfg.name == "lars":
    tx = optax.lars(
        learning_rate=schedule,
        weight_decay=optim_cfg.weight_decay,
        weight_decay_mask=decay_mask,
        trust_coefficient=optim_cfg.trust_coefficient,
        trust_ratio_mask=decay_mask,
        momentum=optim_cfg.momentum,
    )
  elif optim_cfg.name == "sgd":
    tx = optax.chain(
        optax.add_decayed_weights(optim_cfg.weight_decay, mask=decay_mask),
        optax.sgd(schedule, momentum=optim_cfg.momentum),
    )
  else:
    raise ValueError(f"config.optim.name must be 'lars' or 'sgd', got {optim_cfg.name!r}")
  if optim_cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip_norm), tx)
  return tx, schedule
