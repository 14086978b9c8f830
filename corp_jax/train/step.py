"""The train step: one jitted function over the device mesh.

State replicated and donated, batch sharded on `data`, BatchNorm statistics over the global
batch (SPMD jit makes BatchNorm cross-replica without an axis name), randomness from
`fold_in(rng, step)`. Optionally the random colour augmentation runs here, on the
accelerator, on uint8 crops decoded by the CPU pipeline.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from corp_jax.train import mesh as mesh_lib
from corp_jax.train import objectives as objectives_lib
from corp_jax.train.state import TrainState


def make_train_step(model, tx, schedule, objective: objectives_lib.Objective, *,
                    temperature: float, group_size: int, mesh,
                    augment_fn: Callable | None = None, reversed_negatives: bool = False,
                    order_weight: float = 1.0):
  """Returns `step(state, batch, rng) -> (state, metrics)`, jitted over `mesh`.

  batch: {'clips': [B, K, T, H, W, 3], 'starts': [B, K], ...} global arrays.
  augment_fn: optional `(key, clips) -> clips` run on the device before the model.
  reversed_negatives: also run every clip played backwards (one forward pass over both, so
    BatchNorm sees both) as negatives (`objectives.compute_loss`; not in the paper).
  order_weight: CORP_m's factor on its P2/P3 terms (`loss.order_weight`; 1.0 = the paper).
  """

  def train_step(state: TrainState, batch, rng):
    clips = batch["clips"]
    if augment_fn is not None:
      clips = augment_fn(jax.random.fold_in(rng, state.step), clips)
    clips = clips.astype(jnp.float32)
    batch_size, num_clips = clips.shape[:2]
    flat = clips.reshape((batch_size * num_clips,) + clips.shape[2:])

    def loss_fn(params):
      inputs = jnp.concatenate([flat, flat[:, ::-1]]) if reversed_negatives else flat
      out, mutated = model.apply(
          {"params": params, "batch_stats": state.batch_stats}, inputs, train=True,
          mutable=["batch_stats"])
      z_all = out["z"].reshape(-1, batch_size, num_clips, out["z"].shape[-1])
      z, z_reversed = z_all[0], (z_all[1] if reversed_negatives else None)
      relate = lambda a, b: model.apply({"params": params}, a, b, method=model.relate)
      relate_all = lambda zz: model.apply({"params": params}, zz, method=model.relate_all)
      loss, metrics = objectives_lib.compute_loss(
          objective, z, batch["starts"], relate=relate, relate_all=relate_all,
          temperature=temperature, group_size=group_size, z_reversed=z_reversed,
          order_weight=order_weight)
      return loss, (metrics, mutated["batch_stats"])

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics)
    metrics.update(loss=loss, learning_rate=schedule(state.step),
                   grad_norm=optax.tree.norm(grads))
    new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                           opt_state=opt_state)
    return new_state, metrics

  replicated = mesh_lib.replicated(mesh)
  return jax.jit(
      train_step,
      in_shardings=(replicated, mesh_lib.batch_sharded(mesh), replicated),
      out_shardings=(replicated, replicated),
      donate_argnums=(0,),
  )

