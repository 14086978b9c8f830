"""Diagnostics for the embedded demo's order task: supervised upper bounds.

Trains the pretraining backbone of a config (the same `ResNet3D`, clip sampler, crops and
augmentation as `corp_jax.main`, from `corp_jax.train.inputs` / `corp_jax.data.pipeline`) with
a supervised target instead of the self-supervised objective, to separate "the data and the
backbone cannot carry the signal" from "the self-supervised objective fails to find it":

  motion   8-way motion class of the clip (linear head on the pooled backbone features).
           Also reports the 4-way motion-pair accuracy (prediction // 2) and, within the right
           pair, the direction accuracy (time reversal).
  order    2-way order of the two clips of a video from their backbone features: the relation
           head of the model (decoupling attention + MLP, as CORP_f) on z, trained on the
           order cross-entropy only (no contrast), with K = 2 clips as in CORP_f.

Both modes print train metrics every `--log_every` steps and, at the end, the same metrics on
the embedded *test* split (same sampling and augmentation, `--eval_batches` batches), and
write them to `--out` (JSON) when given.

  python -m corp_jax.tools.order_diagnostics --mode=motion --config=configs/corp_f.py \
      --steps=300 --config.data.aug_flip_prob=0 --out=workdirs/diag/motion.json
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import optax

from corp_jax import heads
from corp_jax import io_paths
from corp_jax.data import from_config
from corp_jax.data import pipeline
from corp_jax.losses import corp_f as corp_f_loss_lib
from corp_jax.losses import metrics as metrics_lib
from corp_jax.train import inputs as inputs_lib
from corp_jax.train import model as model_lib

MODES = ("motion", "order")

_CONFIG = config_flags.DEFINE_config_file("config", "configs/corp_f.py", "pretraining config")
_MODE = flags.DEFINE_enum("mode", "motion", MODES, "supervised target")
_STEPS = flags.DEFINE_integer("steps", 300, "training steps")
_BATCH = flags.DEFINE_integer("batch", 32, "videos per batch (2 clips each)")
_LR = flags.DEFINE_float("lr", 1e-3, "Adam learning rate")
_LOG_EVERY = flags.DEFINE_integer("log_every", 25, "log interval (steps)")
_EVAL_BATCHES = flags.DEFINE_integer("eval_batches", 8, "test batches at the end")
_OUT = flags.DEFINE_string("out", "", "write final metrics here (JSON)")


def _stream(config, files, *, batch: int, seed: int, label_key: str):
  data = config.data
  return pipeline.make_train_dataset(
      files, batch_size_per_process=batch, num_clips=2, clip_len=data.clip_len,
      stride=data.stride, crop_size=data.crop_size, seed=seed,
      shuffle_buffer=data.shuffle_buffer, label_key=label_key,
      augment=from_config.augment_config(data), process_index=0, process_count=1)


def _mean_metrics(metrics: list) -> dict:
  """The mean of each metric over a list of per-step metric dicts."""
  return {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}


def motion_metrics(logits, labels):
  """8-way accuracy, 4-way pair accuracy, and direction accuracy given the right pair."""
  pred = jnp.argmax(logits, -1)
  right_pair = (pred // 2) == (labels // 2)
  # Direction within the true pair: compare the two logits of that pair only.
  pair_logits = jnp.take_along_axis(
      logits, jnp.stack([labels // 2 * 2, labels // 2 * 2 + 1], -1), axis=-1)
  direction_right = jnp.argmax(pair_logits, -1) == labels % 2
  return {
      "acc8": jnp.mean(pred == labels),
      "pair_acc4": jnp.mean(right_pair),
      "direction_acc_in_true_pair": jnp.mean(direction_right),
  }


def build(config, mode: str):
  """Model, init function and `loss_fn(params, batch_stats, clips, starts, labels, train)`."""
  num_classes = 2 if mode == "order" else 0
  model = model_lib.model_from_config(config.model, num_classes)

  def forward(variables, flat, train):
    if train:
      out, mutated = model.apply(variables, flat, train=True, mutable=["batch_stats"])
      return out, mutated["batch_stats"]
    return model.apply(variables, flat, train=False), variables["batch_stats"]

  def loss_fn(params, batch_stats, clips, starts, labels, train):
    b, k = clips.shape[:2]
    flat = clips.reshape((b * k,) + clips.shape[2:])
    variables = {"params": params["model"], "batch_stats": batch_stats}
    out, new_stats = forward(variables, flat, train)
    if mode == "motion":
      # Standardised over the batch (as the demo's probe z-scores its features): the raw
      # pooled features of a fresh tiny backbone are small, which alone stalls a linear head.
      feats = out["features"]
      feats = (feats - jnp.mean(feats, 0)) * jax.lax.rsqrt(jnp.var(feats, 0) + 1e-5)
      logits = feats @ params["linear"]["w"] + params["linear"]["b"]
      clip_labels = jnp.repeat(labels, k)
      loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, clip_labels))
      metrics = motion_metrics(logits, clip_labels)
    else:
      relate = lambda x, y: model.apply({"params": params["model"]}, x, y, method=model.relate)
      order_logits = heads.corp_f_order_logits(out["z"].reshape(b, k, -1), relate)
      order_labels, valid = corp_f_loss_lib.order_labels(starts)
      ce = optax.softmax_cross_entropy_with_integer_labels(
          order_logits.astype(jnp.float32), order_labels)
      loss = metrics_lib.masked_mean(ce, valid)
      metrics = {"order_acc": metrics_lib.order_accuracy(order_logits, order_labels, valid)}
    metrics["loss"] = loss
    return loss, (metrics, new_stats)

  def init(rng, clips):
    b, k = clips.shape[:2]
    flat = clips.reshape((b * k,) + clips.shape[2:])
    variables = model.init(rng, flat, method=model.init_all)
    params = {"model": variables["params"]}
    if mode == "motion":
      feat_dim = model.apply(variables, flat[:1], method=model.embed).shape[-1]
      params["linear"] = {"w": jnp.zeros((feat_dim, 8)), "b": jnp.zeros((8,))}
    return params, variables["batch_stats"]

  return init, loss_fn


def run(config, mode: str, *, steps: int, batch: int, lr: float, log_every: int,
        eval_batches: int, log=print) -> dict:
  """Trains on the embedded train split, evaluates on its test split; returns the metrics."""
  if config.data.source != "embedded":
    raise ValueError("order_diagnostics needs config.data.source='embedded' (for the labels)")
  info = inputs_lib.embedded_dataset(config.data)
  label_key = "label/motion/index"
  train = _stream(config, info["train"]["files"], batch=batch, seed=config.seed,
                  label_key=label_key)
  init, loss_fn = build(config, mode)
  first = next(train)
  params, batch_stats = init(jax.random.PRNGKey(config.seed), jnp.asarray(first["clips"]))
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, lr, max(steps // 20, 1), steps))
  opt_state = tx.init(params)

  @jax.jit
  def train_step(params, batch_stats, opt_state, clips, starts, labels):
    (_, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, clips, starts, labels, True)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, metrics

  @jax.jit
  def eval_step(params, batch_stats, clips, starts, labels):
    return loss_fn(params, batch_stats, clips, starts, labels, False)[1][0]

  t0 = time.time()
  history = []
  window = []
  batch_np = first
  for step in range(1, steps + 1):
    params, batch_stats, opt_state, metrics = train_step(
        params, batch_stats, opt_state, batch_np["clips"], batch_np["starts"],
        batch_np["label"])
    window.append(jax.device_get(metrics))
    if step % log_every == 0 or step == steps:
      mean = _mean_metrics(window)
      history.append({"step": step, **mean})
      log(f"step {step:5d}  " + "  ".join(f"{k} {v:.3f}" for k, v in mean.items())
          + f"  ({time.time() - t0:.0f}s)")
      window = []
    batch_np = next(train)
  test = _stream(config, info["test"]["files"], batch=batch, seed=config.seed + 1,
                 label_key=label_key)
  test_metrics = [jax.device_get(eval_step(params, batch_stats, b["clips"], b["starts"],
                                           b["label"]))
                  for _, b in zip(range(eval_batches), test)]
  test_mean = _mean_metrics(test_metrics)
  log("test   " + "  ".join(f"{k} {v:.3f}" for k, v in test_mean.items()))
  return {"mode": mode, "steps": steps, "wall_s": time.time() - t0, "train": history,
          "test": test_mean}


def main(argv):
  del argv
  result = run(_CONFIG.value, _MODE.value, steps=_STEPS.value, batch=_BATCH.value,
               lr=_LR.value, log_every=_LOG_EVERY.value, eval_batches=_EVAL_BATCHES.value)
  if _OUT.value:
    io_paths.write_text(io_paths.resolve(_OUT.value), json.dumps(result, indent=1))


if __name__ == "__main__":
  app.run(main)
