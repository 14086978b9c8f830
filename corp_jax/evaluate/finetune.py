"""Semi-supervised fine-tuning (Sec. 4.1): every backbone layer plus a linear classifier
trained on a labelled subset, BatchNorm in training mode.

Contract:
  `FinetuneTrainer(backbone, num_classes, mean, std, learning_rate, total_steps, momentum,
  mesh)` starts from the pretrained backbone variables (copied; the restored arrays are not
  modified) and a zero classifier on z-scored features (mean/std: the pretrained backbone's
  features of the training subset, then fixed, so that step 0 is the linear-evaluation
  model). SGD with momentum, no weight decay, half-cosine decay without warm-up.
  `train(batches) -> losses` runs `total_steps` steps on batches with clips
  [B, 1, T, S, S, 3]; `variables()` returns {'params': {'backbone', 'classifier'},
  'batch_stats': {'backbone'}}; `logits_fn(chunk_size)` is a ChunkedApply mapping clips
  [N, T, S, S, 3] -> logits [N, C] with BatchNorm in inference mode (for the test views).
"""

from __future__ import annotations

from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from corp_jax.evaluate import features as features_lib
from corp_jax.evaluate import linear as linear_lib
from corp_jax.train import mesh as mesh_lib


class FinetuneTrainer:
  """All layers trainable; see the module docstring."""

  def __init__(self, backbone: features_lib.FrozenBackbone, num_classes: int, *,
               mean: np.ndarray, std: np.ndarray, learning_rate: float, total_steps: int,
               momentum: float, mesh):
    self.total_steps = int(total_steps)
    self._mesh = mesh
    self._module = backbone.module
    tx, self.schedule = linear_lib.make_sgd(learning_rate, total_steps, momentum)
    replicated = mesh_lib.replicated(mesh)
    # Copies: fine-tuning must not alias (and, through donation, invalidate) restored arrays.
    params = {
        "backbone": jax.tree_util.tree_map(np.array, backbone.variables["params"]),
        "classifier": linear_lib.init_classifier(backbone.feature_dim, num_classes),
    }
    self.params = jax.device_put(params, replicated)
    self.batch_stats = jax.device_put(
        jax.tree_util.tree_map(np.array, backbone.variables["batch_stats"]), replicated)
    self.opt_state = jax.device_put(tx.init(self.params), replicated)
    self._stats = jax.device_put((jnp.asarray(mean), jnp.asarray(std)), replicated)
    module = self._module

    def train_step(params, batch_stats, opt_state, stats, clips, labels):
      def loss_fn(p):
        feats, updates = module.apply(
            {"params": p["backbone"], "batch_stats": batch_stats}, clips, train=True,
            mutable=["batch_stats"])
        logits = linear_lib.classifier_logits(
            p["classifier"], features_lib.zscore(feats, *stats))
        return linear_lib.cross_entropy(logits, labels), updates["batch_stats"]

      (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), new_stats, opt_state, loss

    sharded = mesh_lib.batch_sharded(mesh)
    self._step = jax.jit(
        train_step, donate_argnums=(0, 1, 2),
        in_shardings=(replicated, replicated, replicated, replicated, sharded, sharded),
        out_shardings=(replicated, replicated, replicated, replicated))

  def train(self, batches: Iterator[dict], log_fn=None, log_every: int = 50) -> list[float]:
    losses = []
    sharded = mesh_lib.batch_sharded(self._mesh)
    for step in range(self.total_steps):
      clips, labels = linear_lib.labelled_views(next(batches))
      self.params, self.batch_stats, self.opt_state, loss = self._step(
          self.params, self.batch_stats, self.opt_state, self._stats,
          jax.device_put(clips, sharded), jax.device_put(labels, sharded))
      losses.append(linear_lib.log_training_loss(log_fn, step, self.total_steps, log_every, loss,
                                                 self.schedule, "fine-tuning"))
    return [float(v) for v in jax.device_get(losses)]

  def variables(self) -> dict:
    return jax.device_get({"params": self.params,
                           "batch_stats": {"backbone": self.batch_stats}})

  def logits_fn(self, chunk_size: int) -> features_lib.ChunkedApply:
    """clips [N, T, S, S, 3] -> logits [N, C], BatchNorm in inference mode."""
    module = self._module

    def fn(variables, clips):
      params, batch_stats, stats = variables
      feats = module.apply({"params": params["backbone"], "batch_stats": batch_stats},
                           clips.astype(jnp.float32), train=False)
      return linear_lib.classifier_logits(params["classifier"],
                                          features_lib.zscore(feats, *stats))

    return features_lib.ChunkedApply(fn, (self.params, self.batch_stats, self._stats),
                                     chunk_size, self._mesh)
