"""The evaluation jobs: `run(config, workdir)` for config.job 'linear_eval' or 'finetune'.

Contract (configs/linear_eval.py, configs/finetune.py):
  1. Restore the backbone of `config.pretrain_workdir` at `config.pretrain_step` (0 =
     latest), built from that workdir's config.json (`features.restore_frozen_backbone`).
  2. Train: linear_eval with `cached_features` -> features of `cache.train_passes`
     augmented views per training video, extracted once, classifier trained on them;
     linear_eval without -> the paper's streaming path (`linear.StreamingLinearTrainer`);
     finetune -> all layers on a class-balanced `subset_fraction` (`finetune.py`). z-score
     statistics always come from the training views.
  3. Test: `eval.num_clips` x `eval.num_crops` views per test video, softmax averaged.
  4. Write the reports (`reports.write_report`) into `workdir`; return the results dict.
TensorFlow (via corp_jax.data) is imported only inside the functions that build datasets.
`workdir` may be a URI (gs://...): every file goes through `corp_jax.io_paths`.

Test-view features of the linear evaluation (both paths) come from
`sharded_views.extract_view_features`: cached per test file in WORKDIR/features/test, so a
restarted job continues where it stopped, and sharded over processes. The cached path's
training features are cached too (WORKDIR/features/train.npz). Linear evaluation with
`cached_features` runs in any number of processes (test files split over them, results
gathered, every process the same classifier; process 0 writes the reports); the streaming
linear path and fine-tuning run in one process (any number of local devices).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Callable, Iterator

import jax
import numpy as np

from corp_jax import io_paths
from corp_jax.data import from_config
from corp_jax.data import read
from corp_jax.evaluate import features as features_lib
from corp_jax.evaluate import finetune as finetune_lib
from corp_jax.evaluate import linear as linear_lib
from corp_jax.evaluate import reports
from corp_jax.evaluate import sharded_views
from corp_jax.evaluate import subsets
from corp_jax.evaluate import views
from corp_jax.train import mesh as mesh_lib

JOBS = ("linear_eval", "finetune")


@dataclasses.dataclass(frozen=True)
class EvalData:
  """Where the videos are and what their labels mean."""
  train_source: str | list
  eval_source: str | list
  num_classes: int
  class_names: list
  num_train_videos: int | None
  clip_len: int
  stride: int
  crop_size: int
  augment: object  # the pretraining AugmentConfig (colour and blur are dropped for training)
  reversal_pairs: list | None = None


def resolve_data(config, pre) -> EvalData:
  """The train/test sources, classes and clip geometry of the evaluation."""
  d = config.data
  # The pretraining run's augmentation (colour and blur are dropped for the training views).
  geometry = dict(clip_len=d.clip_len or pre.data.clip_len, stride=d.stride or pre.data.stride,
                  crop_size=d.crop_size or pre.data.crop_size,
                  augment=from_config.augment_config(pre.data))
  if d.source == "embedded":
    from corp_jax.data import embedded  # pylint: disable=g-import-not-at-top
    from corp_jax.data import embedded_arrays  # pylint: disable=g-import-not-at-top
    # The pretraining run's location rule: cache_dir itself, else <default cache>/embedded.
    cache = from_config.embedded_cache_dir(d.cache_dir, pre.data.get("cache_dir", ""))
    info = embedded.ensure_embedded_dataset(cache, seed=d.embedded_seed,
                                            **from_config.embedded_sizes(d, pre.data))
    family = embedded_arrays.label_family(info["metadata"], config.label_key)
    return EvalData(info["train"]["files"], info["test"]["files"],
                    len(info["metadata"]["label_families"][family]),
                    list(info["metadata"]["label_families"][family]),
                    info["train"]["num_examples"],
                    reversal_pairs=info["metadata"]["reversal_pairs"] if family == "motion"
                    else None, **geometry)
  if d.source != "tfrecord":
    raise ValueError(f"config.data.source must be 'embedded' or 'tfrecord', got {d.source!r}")
  for key in ("train_pattern", "eval_pattern"):
    if not d[key]:
      raise ValueError(f"config.data.{key} is required for config.data.source='tfrecord', "
                       f"e.g. --config.data.{key}='/data/ucf101/ucf101_"
                       f"{'train' if key == 'train_pattern' else 'test'}-*' (shards from "
                       "python -m data_prep.videos_to_tfrecords)")
  train_meta = read.shard_metadata(d.train_pattern) or {}
  names = list(train_meta.get("class_names", []))
  num_classes = d.num_classes or len(names)
  if not num_classes:
    raise ValueError(f"no class count: set config.data.num_classes (no metadata file beside "
                     f"{d.train_pattern!r})")
  if names and len(names) != num_classes:
    raise ValueError(f"config.data.num_classes={num_classes} but the metadata of "
                     f"{d.train_pattern!r} lists {len(names)} classes")
  names = names or [f"class_{i}" for i in range(num_classes)]
  num_videos = d.num_train_videos or train_meta.get("num_videos") or None
  return EvalData(d.train_pattern, d.eval_pattern, num_classes, names, num_videos, **geometry)


def train_stream(config, data: EvalData, *, batch_size: int, seed: int,
                 source=None, **pipeline_kwargs) -> Iterator[dict]:
  """Augmented training views (no colour jitter, no blur): clips [B, 1, T, S, S, 3]."""
  from corp_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.make_linear_train_dataset(
      data.train_source if source is None else source, clip_len=data.clip_len,
      augment=data.augment,
      batch_size_per_process=batch_size, stride=data.stride, crop_size=data.crop_size,
      seed=seed, shuffle_buffer=config.data.shuffle_buffer, label_key=config.label_key,
      **pipeline_kwargs)


def eval_stream(config, data: EvalData) -> Iterator[dict]:
  """Test views: clips [B, V, T, S, S, 3], label, video_id, mask."""
  from corp_jax.data import eval_pipeline  # pylint: disable=g-import-not-at-top
  return eval_pipeline.make_eval_dataset(
      data.eval_source, batch_size=config.eval.batch_size, num_clips=config.eval.num_clips,
      num_crops=config.eval.num_crops, clip_len=data.clip_len, stride=data.stride,
      crop_size=data.crop_size, label_key=config.label_key)


def map_views(batches: Iterator[dict], fn: Callable[[np.ndarray], np.ndarray]) -> dict:
  """Applies fn to every view of every real (unmasked) test video (`sharded_views.map_views`):
  {'outputs': [N, V, ...], 'label': [N], 'video_id': [N]}."""
  return sharded_views.map_views(batches, fn)


def extract_train_features(batches: Iterator[dict], feature_fn, num_batches: int) -> dict:
  """{'features': [M, F], 'label': [M], 'video_id': [M]} of num_batches training batches."""
  feats, labels, ids = [], [], []
  for _ in range(num_batches):
    batch = next(batches)
    clips = np.asarray(batch["clips"], np.float32)
    feats.append(feature_fn(clips.reshape((-1,) + clips.shape[2:])))
    labels.append(np.asarray(batch["label"]))
    ids.append(np.asarray(batch["video_id"]))
  return {"features": np.concatenate(feats), "label": np.concatenate(labels),
          "video_id": np.concatenate(ids)}


def device_batch(requested: int, num_videos: int, mesh) -> int:
  """min(requested, videos), rounded down to a multiple of the device count (>= devices)."""
  devices = mesh.devices.size
  batch = min(int(requested), int(num_videos))
  return max(devices, batch // devices * devices)


def _num_steps(config, num_videos: int, batch: int) -> int:
  if config.optim.num_steps > 0:
    return int(config.optim.num_steps)
  if config.optim.num_epochs < 1:
    raise ValueError(f"config.optim.num_epochs must be >= 1, got {config.optim.num_epochs}")
  return max(1, math.ceil(config.optim.num_epochs * num_videos / batch))


class _Log:
  """Progress lines on stdout and WORKDIR/train_log.jsonl."""

  def __init__(self, workdir: str, job: str):
    self._path = io_paths.join(workdir, "train_log.jsonl")
    self._job = job
    self._writer = jax.process_index() == 0
    if self._writer:
      io_paths.write_text(self._path, "")

  def __call__(self, step: int, scalars: dict) -> None:
    print(f"{self._job} step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()),
          flush=True)
    if self._writer:
      io_paths.append_text(self._path, json.dumps({"step": step, **scalars}) + "\n")


def _validate(config) -> None:
  if config.get("job") not in JOBS:
    raise ValueError(f"config.job must be one of {JOBS}, got {config.get('job')!r}")
  if config.job == "finetune" and config.cached_features:
    raise ValueError("config.cached_features=True is impossible for finetune: the backbone "
                     "trains, so its features change every step")
  if jax.process_count() > 1 and not (config.job == "linear_eval" and config.cached_features):
    raise ValueError("in several processes only linear_eval with config.cached_features=True "
                     "runs (fine-tuning and the streaming linear path run in one process, any "
                     f"number of local devices); got {jax.process_count()} processes")
  if config.pretrain_step < 0:
    raise ValueError(f"config.pretrain_step must be >= 0 (0 = latest), got "
                     f"{config.pretrain_step}")


def restore(config) -> features_lib.FrozenBackbone:
  if config.get("init_from", ""):
    if config.pretrain_workdir:
      raise ValueError("set config.pretrain_workdir or config.init_from, not both")
    from corp_jax.export import init_from  # pylint: disable=g-import-not-at-top
    return init_from.frozen_backbone(config)
  try:
    return features_lib.restore_frozen_backbone(config.pretrain_workdir,
                                                config.pretrain_step or None)
  except ValueError as e:
    if config.pretrain_step and "no checkpoint for step" in str(e):
      raise ValueError(f"config.pretrain_step={config.pretrain_step}: {e}") from e
    raise


def _training_source(config, data: EvalData):
  """(source, number of videos, subset info) honouring config.subset_fraction."""
  if config.subset_fraction >= 1.0:
    return None, data.num_train_videos, None
  table = subsets.read_labels(data.train_source, [config.label_key])
  chosen = subsets.class_balanced_subset(table[config.label_key], config.subset_fraction,
                                         config.subset_seed)
  ids = table["video_id"][chosen]
  info = {"fraction": config.subset_fraction, "seed": config.subset_seed,
          "num_videos": int(len(ids)), "of": int(len(table["video_id"])),
          "video_ids": sorted(int(i) for i in ids)}
  return subsets.subset_source(data.train_source, ids, config.label_key), len(ids), info


def run(config, workdir: str) -> dict:
  """Runs config.job; writes the reports in `workdir`; returns the results dict."""
  _validate(config)
  started = time.time()
  backbone = restore(config)
  data = resolve_data(config, backbone.pretrain_config)
  mesh = mesh_lib.create_mesh()
  log = _Log(workdir, config.job)
  source, num_videos, subset_info = _training_source(config, data)
  if num_videos is None:
    num_videos = len(subsets.read_labels(data.train_source, [config.label_key])["video_id"])
  batch = device_batch(config.optim.batch_size, num_videos, mesh)
  stats_batches = max(1, math.ceil(num_videos / batch))
  # Per-process devices: in several processes each extracts features of its own videos.
  feature_fn = features_lib.backbone_features(backbone, config.eval.feature_chunk,
                                              sharded_views.local_mesh())
  extra = {"label_key": config.label_key, "num_train_videos": int(num_videos),
           "train_batch_size": batch, "subset": subset_info,
           "num_views": config.eval.num_clips * config.eval.num_crops,
           "clip": {"clip_len": data.clip_len, "stride": data.stride,
                    "crop_size": data.crop_size}}

  if config.job == "linear_eval" and config.cached_features:
    train = cached_train_features(config, data, backbone, workdir, feature_fn, source=source,
                                  batch=batch, num_videos=num_videos)
    test = test_view_features(config, data, backbone, workdir, feature_fn)
    scored = fit_and_score(train["features"], train["label"], test["outputs"], test["label"],
                           data.num_classes, config.optim, seed=config.seed)
    log(len(scored["epoch_losses"]), {"loss": float(scored["epoch_losses"][-1])})
    summary, test_ids = scored["summary"], test["video_id"]
    extra.update(cached_train_views=int(len(train["label"])),
                 final_train_loss=float(scored["epoch_losses"][-1]))
  else:
    # z-score statistics: the pretrained backbone's features of the first epoch of training
    # views; training then continues on the same stream (one tf.data graph, not two).
    stream = train_stream(config, data, batch_size=batch, seed=config.seed, source=source)
    moments = features_lib.RunningMoments()
    for _ in range(stats_batches):
      clips = np.asarray(next(stream)["clips"], np.float32)
      moments.update(feature_fn(clips.reshape((-1,) + clips.shape[2:])))
    mean, std = moments.stats()
    steps = _num_steps(config, num_videos, batch)
    trainer_cls = (linear_lib.StreamingLinearTrainer if config.job == "linear_eval"
                   else finetune_lib.FinetuneTrainer)
    trainer = trainer_cls(backbone, data.num_classes, mean=mean, std=std,
                          learning_rate=config.optim.learning_rate, total_steps=steps,
                          momentum=config.optim.momentum, mesh=mesh)
    losses = trainer.train(stream, log_fn=log, log_every=config.log_every)
    if config.job == "linear_eval":
      classifier = jax.tree_util.tree_map(np.asarray, trainer.classifier())
      test = test_view_features(config, data, backbone, workdir, feature_fn)
      probs = views.average_view_probabilities(np.asarray(linear_lib.classifier_logits(
          classifier, features_lib.zscore(test["outputs"], mean, std))))
    else:
      test = map_views(eval_stream(config, data), trainer.logits_fn(config.eval.feature_chunk))
      probs = views.average_view_probabilities(test["outputs"])
    summary = views.classification_summary(probs, test["label"], data.num_classes)
    test_ids = test["video_id"]
    extra.update(train_steps=steps, final_train_loss=losses[-1])

  if data.reversal_pairs:
    extra["reversal_confusion"] = views.reversal_confusion(
        summary["confusion"], data.reversal_pairs, data.class_names)
  extra["test_video_ids"] = test_ids
  extra["wall_seconds"] = round(time.time() - started, 2)
  if jax.process_index() != 0:  # the same results in every process; one writes them
    return {"top1": summary["top1"], "top5": summary["top5"], "backbone_step": backbone.step}
  source_name = config.pretrain_workdir or config.get("init_from", "")
  paths = reports.write_report(workdir, summary=summary, class_names=data.class_names,
                               config=config, backbone_step=backbone.step,
                               pretrain_workdir=source_name, extra=extra)
  print(f"{config.job} of {source_name} (step {backbone.step}): top-1 "
        f"{100 * summary['top1']:.1f}%, top-5 {100 * summary['top5']:.1f}% on "
        f"{len(test_ids)} test videos; reports in {workdir}", flush=True)
  results = json.loads(io_paths.read_text(paths["results_json"]))
  from corp_jax.train import dashboards  # pylint: disable=g-import-not-at-top
  dashboards.log_eval_results(workdir, config.job, results, step=backbone.step)
  results["report_files"] = paths
  return results


def _cache_key(config, data: EvalData, backbone, **more) -> str:
  """Everything cached features depend on, as one string (see sharded_views)."""
  return json.dumps(reports.jsonable({
      "pretrain_workdir": io_paths.resolve(config.pretrain_workdir),
      "backbone_step": backbone.step, "label_key": config.label_key,
      "clip": [data.clip_len, data.stride, data.crop_size], **more}), sort_keys=True)


def test_view_features(config, data: EvalData, backbone, workdir: str, feature_fn) -> dict:
  """Backbone features of every test view, [N, V, F], sharded and cached per test file."""
  return sharded_views.extract_view_features(
      data.eval_source, feature_fn, cache_dir=io_paths.join(workdir, "features", "test"),
      cache_key=_cache_key(config, data, backbone, eval_source=data.eval_source,
                           views=[config.eval.num_clips, config.eval.num_crops]),
      batch_size=config.eval.batch_size, num_clips=config.eval.num_clips,
      num_crops=config.eval.num_crops, clip_len=data.clip_len, stride=data.stride,
      crop_size=data.crop_size, label_key=config.label_key)


def cached_train_features(config, data: EvalData, backbone, workdir: str, feature_fn, *,
                          source, batch: int, num_videos: int) -> dict:
  """The cached path's training-view features (WORKDIR/features/train.npz when cached).

  Every process reads the whole training stream (the stream of one process), so all of
  them train the same classifier; process 0 writes the cache.
  """
  passes = max(1, int(config.cache.train_passes))
  path = io_paths.join(workdir, "features", "train.npz")
  key = _cache_key(config, data, backbone, train_source=data.train_source, passes=passes,
                   batch=batch, seed=config.seed, num_videos=num_videos,
                   subset=[config.subset_fraction, config.subset_seed],
                   augment=str(data.augment))
  keys = ("features", "label", "video_id")
  cached = sharded_views.read_npz(path, key, keys)
  if cached is not None:
    print(f"training-view features read from the cache {path}", flush=True)
    return cached
  train = extract_train_features(
      train_stream(config, data, batch_size=batch, seed=config.seed, source=source,
                   process_index=0, process_count=1),
      feature_fn, max(1, math.ceil(passes * num_videos / batch)))
  if jax.process_index() == 0:
    sharded_views.write_npz(path, train, key)
  return train


def fit_and_score(train_features: np.ndarray, train_labels: np.ndarray,
                  test_features: np.ndarray, test_labels: np.ndarray, num_classes: int,
                  optim, seed: int = 0) -> dict:
  """Cached path: z-score with training statistics, train the classifier, test on views.

  train_features [M, F], test_features [N, V, F]. Returns {'summary', 'classifier',
  'epoch_losses', 'mean', 'std'}.
  """
  mean, std = features_lib.zscore_stats(train_features)
  epochs = optim.num_epochs
  if optim.get("num_steps", 0) > 0:  # steps -> epochs of the cached set
    batch = min(optim.batch_size, len(train_features))
    epochs = max(1, math.ceil(optim.num_steps / max(1, len(train_features) // batch)))
  classifier, losses = linear_lib.train_on_features(
      features_lib.zscore(train_features, mean, std), train_labels, num_classes,
      batch_size=optim.batch_size, num_epochs=int(epochs), learning_rate=optim.learning_rate,
      momentum=optim.momentum, seed=seed)
  logits = linear_lib.classifier_logits(
      jax.tree_util.tree_map(np.asarray, classifier), features_lib.zscore(test_features, mean, std))
  probs = views.average_view_probabilities(np.asarray(logits))
  return {"summary": views.classification_summary(probs, test_labels, num_classes),
          "classifier": classifier, "epoch_losses": losses, "mean": mean, "std": std}
