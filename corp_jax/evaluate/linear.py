"""The linear classifier of linear evaluation (Sec. 4.1) and its two training paths.

Contract:
  Classifier parameters are `{'kernel': [F, C], 'bias': [C]}` float32, initialised to zero
  (the problem is convex; zero makes runs deterministic). The inputs are z-scored features.
  `make_sgd(learning_rate, total_steps, momentum) -> optax transform`: SGD with momentum, no
  weight decay, half-cosine decay from `learning_rate` to 0 over `total_steps`, no warm-up.
  `train_on_features(features [N, F], labels [N], num_classes, ...) -> (params, epoch_losses)`
  trains on cached (already standardised) features: each epoch a fresh permutation, N //
  batch_size full batches (at least one; batch_size is capped at N). Fast: one jitted epoch.
  `StreamingLinearTrainer`: the paper's path. Each step takes a batch of augmented clips,
  runs the frozen backbone (BatchNorm in inference mode, no gradient to the backbone), z-scores
  with fixed training statistics, and updates only the classifier.
  `classifier_logits(params, features [..., F]) -> [..., C]`.
"""

from __future__ import annotations

from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from corp_jax.evaluate import features as features_lib
from corp_jax.train import mesh as mesh_lib


def init_classifier(feature_dim: int, num_classes: int) -> dict:
  return {"kernel": jnp.zeros((feature_dim, num_classes), jnp.float32),
          "bias": jnp.zeros((num_classes,), jnp.float32)}


def classifier_logits(params: dict, features):
  return features @ params["kernel"] + params["bias"]


def make_sgd(learning_rate: float, total_steps: int, momentum: float):
  """SGD(momentum), no weight decay, half-cosine from learning_rate to 0, no warm-up."""
  if learning_rate <= 0:
    raise ValueError(f"config.optim.learning_rate must be > 0, got {learning_rate}")
  if total_steps < 1:
    raise ValueError(f"the classifier needs at least one step, got {total_steps}")
  schedule = optax.cosine_decay_schedule(learning_rate, decay_steps=int(total_steps))
  return optax.sgd(schedule, momentum=momentum or None), schedule


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_on_features(features: np.ndarray, labels: np.ndarray, num_classes: int, *,
                      batch_size: int, num_epochs: int, learning_rate: float,
                      momentum: float = 0.9, seed: int = 0) -> tuple[dict, np.ndarray]:
  """Trains the classifier on cached standardised features; returns (params, loss per epoch)."""
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels, np.int32)
  if features.ndim != 2 or len(features) != len(labels):
    raise ValueError(f"features [N, F] and labels [N] expected, got {features.shape} and "
                     f"{labels.shape}")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"training labels must lie in [0, {num_classes}); found range "
                     f"[{labels.min()}, {labels.max()}] (check config.label_key)")
  if num_epochs < 1:
    raise ValueError(f"config.optim.num_epochs must be >= 1, got {num_epochs}")
  batch = min(int(batch_size), len(features))
  steps_per_epoch = max(1, len(features) // batch)
  tx, _ = make_sgd(learning_rate, steps_per_epoch * num_epochs, momentum)
  params = init_classifier(features.shape[1], num_classes)
  opt_state = tx.init(params)
  x, y = jnp.asarray(features), jnp.asarray(labels)

  def step(carry, indices):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(
        lambda p: cross_entropy(classifier_logits(p, x[indices]), y[indices]))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  @jax.jit
  def epoch(params, opt_state, key):
    order = jax.random.permutation(key, len(features))[:steps_per_epoch * batch]
    (params, opt_state), losses = jax.lax.scan(
        step, (params, opt_state), order.reshape(steps_per_epoch, batch))
    return params, opt_state, losses.mean()

  key = jax.random.PRNGKey(seed)
  losses = []
  for index in range(num_epochs):
    params, opt_state, loss = epoch(params, opt_state, jax.random.fold_in(key, index))
    losses.append(loss)
  return jax.device_get(params), np.asarray(jax.device_get(losses), np.float64)


def labelled_views(batch: dict) -> tuple[np.ndarray, np.ndarray]:
  """A training batch's clips [B, V, T, S, S, 3] -> (clips [B*V, T, S, S, 3] float32,
  labels [B*V] int32: each video's label repeated for its V views)."""
  clips = np.asarray(batch["clips"], np.float32)
  clips = clips.reshape((-1,) + clips.shape[2:])
  labels = np.repeat(np.asarray(batch["label"], np.int32), len(clips) // len(batch["label"]))
  if labels.min() < 0:
    raise ValueError(f"training batch has label {labels.min()}: the records lack the "
                     "configured config.label_key")
  return clips, labels


def log_training_loss(log_fn, step: int, total_steps: int, log_every: int, loss, schedule,
                      what: str):
  """Every `log_every` steps and at the last: checks the loss is finite, calls log_fn.

  Returns the loss as a float when it was read back (the device sync this costs is paid only
  on logged steps), else the device value unchanged."""
  if log_fn and ((step + 1) % log_every == 0 or step + 1 == total_steps):
    loss = float(loss)
    if not np.isfinite(loss):
      raise FloatingPointError(f"{what} loss is {loss} at step {step + 1}")
    log_fn(step + 1, {"loss": loss, "learning_rate": float(schedule(step))})
  return loss


class StreamingLinearTrainer:
  """Linear classifier on a frozen backbone, fed batches of augmented clips."""

  def __init__(self, backbone: features_lib.FrozenBackbone, num_classes: int, *,
               mean: np.ndarray, std: np.ndarray, learning_rate: float, total_steps: int,
               momentum: float, mesh):
    self.total_steps = int(total_steps)
    self._mesh = mesh
    tx, self.schedule = make_sgd(learning_rate, total_steps, momentum)
    replicated = mesh_lib.replicated(mesh)
    self.backbone_variables = jax.device_put(backbone.variables, replicated)
    self._stats = jax.device_put((jnp.asarray(mean), jnp.asarray(std)), replicated)
    self.params = jax.device_put(init_classifier(backbone.feature_dim, num_classes), replicated)
    self.opt_state = jax.device_put(tx.init(self.params), replicated)
    module = backbone.module

    def train_step(params, opt_state, backbone_variables, stats, clips, labels):
      # The backbone is an input, not a parameter: no gradient, BN in inference mode.
      feats = jax.lax.stop_gradient(module.apply(backbone_variables, clips, train=False))
      feats = features_lib.zscore(feats, *stats)
      loss, grads = jax.value_and_grad(
          lambda p: cross_entropy(classifier_logits(p, feats), labels))(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    sharded = mesh_lib.batch_sharded(mesh)
    # Only the classifier and its optimizer state are donated; the backbone never is.
    self._step = jax.jit(
        train_step, donate_argnums=(0, 1),
        in_shardings=(replicated, replicated, replicated, replicated, sharded, sharded),
        out_shardings=(replicated, replicated, replicated))

  def train(self, batches: Iterator[dict], log_fn=None, log_every: int = 50) -> list[float]:
    """Runs total_steps steps on `batches` (clips [B, 1, T, S, S, 3]); returns the losses."""
    losses = []
    sharded = mesh_lib.batch_sharded(self._mesh)
    for step in range(self.total_steps):
      clips, labels = labelled_views(next(batches))
      self.params, self.opt_state, loss = self._step(
          self.params, self.opt_state, self.backbone_variables, self._stats,
          jax.device_put(clips, sharded), jax.device_put(labels, sharded))
      losses.append(log_training_loss(log_fn, step, self.total_steps, log_every, loss,
                                      self.schedule, "linear classifier"))
    return [float(v) for v in jax.device_get(losses)]

  def classifier(self) -> dict:
    return jax.device_get(self.params)
