"""Dashboards beyond metrics.jsonl: TensorBoard hparams, evaluation results, Weights & Biases.

Contract:
  `flat_hparams(config) -> {'optim.base_lr': 0.2, 'model.backbone': 'tiny', ...}`: every leaf
  of a ConfigDict as bool / int / float / str (sequences become their string), what
  TensorBoard's HParams plugin and W&B take.
  `make_wandb(config, workdir) -> WandbLogger | None`: None unless `config.wandb.project` is
  set (off by default). `WandbLogger.log(step, scalars)`, `.finish()`. W&B is imported only
  when enabled; enabled without the package installed is an ImportError saying how to install
  it. `config.wandb.mode`: 'online', 'offline' (writes WORKDIR/wandb, sync later with
  `wandb sync`) or 'disabled'.
  `log_eval_results(workdir, job, results, step)`: an evaluation's top-1 / top-5 (and
  mean per-class accuracy, k-NN when present; a per-class histogram) as TensorBoard events
  under WORKDIR/tb, tags `<job>/<name>`; also to W&B when `wandb` (a WandbLogger) is given.
tensorboardX only (no TensorFlow); a missing tensorboardX means no events, never an error.
"""

from __future__ import annotations

import math
from typing import Mapping

from corp_jax import io_paths


def flat_hparams(config, prefix: str = "") -> dict:
  out = {}
  items = config.items() if hasattr(config, "items") else []
  for key, value in items:
    name = f"{prefix}{key}"
    if hasattr(value, "items"):
      out.update(flat_hparams(value, name + "."))
    elif isinstance(value, (bool, int, float, str)):
      out[name] = value
    else:
      out[name] = str(value)
  return out


class WandbLogger:
  """A W&B run that mirrors the scalars written to TensorBoard."""

  def __init__(self, wandb_cfg, run_config: dict, workdir: str):
    try:
      import wandb  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("config.wandb.project is set but Weights & Biases is not installed: "
                        "pip install wandb (or leave config.wandb.project empty)") from e
    if wandb_cfg.mode not in ("online", "offline", "disabled"):
      raise ValueError(f"config.wandb.mode must be 'online', 'offline' or 'disabled', got "
                       f"{wandb_cfg.mode!r}")
    self._wandb = wandb
    self.run = wandb.init(project=wandb_cfg.project, entity=wandb_cfg.entity or None,
                          name=wandb_cfg.name or io_paths.basename(io_paths.resolve(workdir)),
                          mode=wandb_cfg.mode, dir=workdir, config=run_config,
                          reinit="finish_previous")

  def log(self, step: int, scalars: Mapping[str, float], prefix: str = "train") -> None:
    data = {f"{prefix}/{k}": float(v) for k, v in scalars.items() if math.isfinite(float(v))}
    self.run.log(data, step=int(step))

  def finish(self) -> None:
    self.run.finish()


def make_wandb(config, workdir: str) -> WandbLogger | None:
  wandb_cfg = config.get("wandb", None)
  if wandb_cfg is None or not wandb_cfg.get("project", ""):
    return None
  return WandbLogger(wandb_cfg, flat_hparams(config), workdir)


def _scalars_of(results: Mapping) -> dict:
  scalars = {k: float(results[k]) for k in ("top1", "top5", "knn_top1", "mean_class_accuracy")
             if isinstance(results.get(k), (int, float))}
  for key in ("summary", "metrics"):
    if isinstance(results.get(key), Mapping):
      scalars.update(_scalars_of(results[key]))
  return scalars


def log_eval_results(workdir: str, job: str, results: Mapping, step: int = 0,
                     wandb: WandbLogger | None = None) -> dict:
  """Writes an evaluation's scalars to WORKDIR/tb; returns what was written."""
  scalars = _scalars_of(results)
  per_class = results.get("per_class_accuracy")
  if isinstance(per_class, Mapping):  # results.json: {class name: accuracy}
    per_class = list(per_class.values())
  if isinstance(per_class, (list, tuple)):
    per_class = [float(v) for v in per_class if v is not None and math.isfinite(float(v))]
    if per_class:
      scalars["mean_class_accuracy"] = sum(per_class) / len(per_class)
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    tensorboardX = None
  if tensorboardX is not None and scalars:
    from corp_jax.train import reporting  # pylint: disable=g-import-not-at-top
    writer = reporting.tensorboard_writer(io_paths.join(workdir, "tb"))
    for name, value in scalars.items():
      writer.add_scalar(f"{job}/{name}", value, step)
    if per_class:
      import numpy as np  # pylint: disable=g-import-not-at-top
      writer.add_histogram(f"{job}/per_class_accuracy", np.asarray(per_class), step)
    writer.close()
  if wandb is not None and scalars:
    wandb.log(step, scalars, prefix=job)
  return scalars
