"""The k-NN probe as a periodic evaluation during pretraining (`config.knn_every` > 0).

Contract:
  `KnnMonitor(config)` reads `config.knn` (train_pattern / eval_pattern: TFRecord shard globs,
  both empty = the embedded data set's train / test splits; label_key; k; num_clips x
  num_crops views per video, averaged; batch_size; max_videos: 0 = all) and the run's clip
  geometry (config.data.clip_len / stride / crop_size) and backbone (config.model).
  `monitor(backbone_params, backbone_batch_stats) -> {'knn_top1': float, 'knn_seconds': float}`
  (`monitor.run(state) -> (scalars, seconds)` for a TrainState):
  features of every training and test video with BatchNorm in inference mode (the evaluation
  pipeline's views), then `knn.knn_top1` (cosine, weighted vote, k = config.knn.k).
Cheap by design: one centre view per video by default, the test split only as queries. Runs
on this process's first device; the variables are copied to the host first. With several
processes, each reads its own share of the shards (the evaluation pipeline's rule), so the
probe process 0 reports uses that process's share of both splits. Skipped at a SIGTERM stop.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from corp_jax.evaluate import knn


class KnnMonitor:
  def __init__(self, config):
    from corp_jax.evaluate import features as features_lib  # pylint: disable=g-import-not-at-top
    self._cfg = config.knn
    self._data = config.data
    self._module = features_lib.backbone_module(config.model)
    if bool(self._cfg.train_pattern) != bool(self._cfg.eval_pattern):
      raise ValueError("config.knn.train_pattern and config.knn.eval_pattern go together (both "
                       "empty = the embedded data set)")
    self._apply = jax.jit(lambda v, x: self._module.apply(v, x, train=False))

  def _sources(self):
    if self._cfg.train_pattern:
      return self._cfg.train_pattern, self._cfg.eval_pattern
    from corp_jax.train import inputs  # pylint: disable=g-import-not-at-top
    info = inputs.embedded_dataset(self._data)
    return info["train"]["files"], info["test"]["files"]

  def _features(self, variables, source) -> tuple[np.ndarray, np.ndarray]:
    from corp_jax.data import eval_pipeline  # pylint: disable=g-import-not-at-top
    cfg = self._cfg
    batches = eval_pipeline.make_eval_dataset(
        source, batch_size=cfg.batch_size, num_clips=cfg.num_clips, num_crops=cfg.num_crops,
        clip_len=self._data.clip_len, stride=self._data.stride, crop_size=self._data.crop_size,
        label_key=cfg.label_key)
    feats, labels, seen = [], [], 0
    for batch in batches:
      keep = np.asarray(batch["mask"], bool)
      clips = np.asarray(batch["clips"], np.float32)[keep]
      if not len(clips):
        continue
      views = clips.shape[1]
      out = np.asarray(self._apply(variables, clips.reshape((-1,) + clips.shape[2:])))
      feats.append(out.reshape(len(clips), views, -1).mean(axis=1))
      labels.append(np.asarray(batch["label"])[keep])
      seen += len(clips)
      if cfg.max_videos and seen >= cfg.max_videos:
        break
    if not feats:
      raise ValueError(f"k-NN probe: {source!r} yielded no videos")
    return np.concatenate(feats), np.concatenate(labels)

  def __call__(self, params, batch_stats) -> dict:
    started = time.time()
    variables = jax.device_get({"params": params, "batch_stats": batch_stats})
    train_source, test_source = self._sources()
    train_feats, train_labels = self._features(variables, train_source)
    test_feats, test_labels = self._features(variables, test_source)
    top1 = knn.knn_top1(train_feats, train_labels, test_feats, test_labels, k=self._cfg.k)
    return {"knn_top1": top1, "knn_seconds": time.time() - started}

  def run(self, state) -> tuple[dict, float]:
    """(scalars, seconds) of the probe on a TrainState's backbone."""
    scalars = self(state.params["backbone"], state.batch_stats.get("backbone", {}))
    return scalars, scalars["knn_seconds"]
