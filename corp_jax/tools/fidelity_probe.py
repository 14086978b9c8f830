"""Probes one pretrained backbone on every label family of an evaluation set: the linear
probe of the linear_eval job and a k-NN probe, on one set of frozen features.

  python -m corp_jax.tools.fidelity_probe PRETRAIN_WORKDIR SET OUT_JSON [--linear_preset P]
      [--source records|arrays] [--train_views pretraining|whole]

SET is `embedded` (the pretraining run's embedded data set; families `appearance` and
`motion`) or the `set.json` of a shard set (`corp_jax.tools.photo_set` writes one: shard
patterns, and per family its class names and the family class of every stored label).

Inputs (`source`): 'records' reads TFRecords through tf.data; 'arrays' reads NumPy array
splits (`corp_jax.evaluate.array_data`), the same views without TensorFlow: the embedded
videos rendered to arrays (no JPEG), or the `arrays_dir` of a set built with
`photo_set --arrays` (no codec).

Contract: `probe(pretrain_workdir, set_spec, linear_preset='', source='records',
train_views='pretraining') -> dict`
restores the latest backbone, resolves the data with the linear_eval config of `linear_preset`
(corp_jax/evaluate/config_defaults.py; its defaults unchanged: frozen backbone and BatchNorm
statistics, `cache.train_passes` augmented views per training video without colour or blur,
`eval.num_clips` x `eval.num_crops` views per test video), extracts features once, and for
each family
  linear  z-score with training statistics, linear classifier (SGD, momentum, half-cosine;
          `job.fit_and_score`, the job's cached-feature path), softmax-averaged test views;
  knn     cosine k-NN, k = 20 (`corp_jax.evaluate.knn`), training views as the bank, test
          videos as the normalised mean of their views.
For a family with reversal pairs (motion) it also reports, per probe, the direction accuracy:
among test videos predicted inside their own reversal pair, the share given the right member
(0.5 = no sense of direction). For a model with a relation head (corp_f, corp_m,
order_only), 'order_views': the head's same-video order accuracy on the test videos' views
and on as many training videos' views (`corp_jax.tools.view_order`: order on videos never
trained on, against order that may be learned per video). `train_views='whole'` (CLI
`--train_views whole`) takes the training views as whole frames, without the pretraining
run's random resized crop (`training_views`): not the protocol, but one probe for runs
pretrained with and without the crop, whose protocol probes differ in their training views.
Returns and writes {family: {'linear_top1', 'knn_top1', 'num_classes', 'linear_direction',
'knn_direction', ...},
'order_views': {'test_videos': {'accuracy', ...}, 'train_videos': {...}}, 'timing': {...}}.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

from corp_jax.evaluate import job as job_lib
from corp_jax.evaluate import knn as knn_lib
from corp_jax.evaluate import reports
from corp_jax.evaluate import subsets
from corp_jax.evaluate import views
from corp_jax.evaluate.config_defaults import linear_eval_config
from corp_jax.train import mesh as mesh_lib


def read_set(set_spec: str) -> dict:
  """'embedded' -> {'name': 'embedded'}; a set.json path -> its checked contents."""
  if set_spec == "embedded":
    return {"name": "embedded"}
  if not os.path.exists(set_spec):
    raise FileNotFoundError(f"set {set_spec!r}: neither 'embedded' nor an existing set.json "
                            "(python -m corp_jax.tools.photo_set --out DIR writes DIR/set.json)")
  with open(set_spec) as f:
    manifest = json.load(f)
  for key in ("name", "families"):
    if key not in manifest:
      raise ValueError(f"{set_spec} lacks {key!r}")
  if "arrays_dir" not in manifest and not {"train_pattern", "test_pattern"} <= set(manifest):
    raise ValueError(f"{set_spec} names neither 'train_pattern' and 'test_pattern' (shards) "
                     "nor 'arrays_dir' (array splits)")
  for family, info in manifest["families"].items():
    if "class_names" not in info or "of_label" not in info:
      raise ValueError(f"{set_spec}: family {family!r} needs 'class_names' and 'of_label'")
  return manifest


def _config_for(manifest: dict, pretrain_workdir: str, preset: str, source: str = "records"):
  config = linear_eval_config(preset)
  with config.unlocked():
    config.pretrain_workdir = pretrain_workdir
    if manifest["name"] != "embedded" and source == "arrays":
      config.data.arrays_dir = manifest["arrays_dir"]
      config.label_key = manifest.get("label_key", "clip/label/index")
    elif manifest["name"] != "embedded":
      config.data.source = "tfrecord"
      config.data.train_pattern = manifest["train_pattern"]
      config.data.eval_pattern = manifest["test_pattern"]
      config.label_key = manifest.get("label_key", "clip/label/index")
  return config


def _families(manifest: dict, data: job_lib.EvalData) -> dict:
  """{family: (label key, class names, of_label array or None, reversal pairs or None)}."""
  if manifest["name"] == "embedded":
    from corp_jax.data import records  # pylint: disable=g-import-not-at-top
    metadata = (data.train_source["metadata"] if isinstance(data.train_source, dict)  # arrays
                else records.read_metadata(os.path.dirname(data.train_source[0]), "train"))
    return {family: (records.extra_label_key(family), metadata["label_families"][family],
                     None, metadata["reversal_pairs"] if family == "motion" else None)
            for family in ("appearance", "motion")}
  key = manifest.get("label_key", "clip/label/index")
  return {family: (key, info["class_names"], np.asarray(info["of_label"], np.int64),
                   info.get("reversal_pairs"))
          for family, info in manifest["families"].items()}


def direction_accuracy(predictions: np.ndarray, labels: np.ndarray, pairs) -> float:
  """Among videos predicted inside their own reversal pair, the share predicted right."""
  partner = {}
  for a, b in pairs:
    partner[int(a)], partner[int(b)] = int(b), int(a)
  right = wrong = 0
  for p, y in zip(np.asarray(predictions).tolist(), np.asarray(labels).tolist()):
    if y in partner:
      right += p == y
      wrong += p == partner[y]
  return float(right / (right + wrong)) if right + wrong else float("nan")


SOURCES = ("records", "arrays")


def _inputs(source: str, manifest: dict):
  """(module with resolve_data / train_stream / eval_stream, read_labels) of `source`."""
  if source not in SOURCES:
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
  if source == "records" and manifest["name"] != "embedded" and "train_pattern" not in manifest:
    raise ValueError(f"set {manifest['name']!r} holds array splits only ('arrays_dir'): "
                     "use --source arrays")
  if source == "records":
    return job_lib, subsets.read_labels
  if manifest["name"] != "embedded" and "arrays_dir" not in manifest:
    raise ValueError(f"source 'arrays' needs the embedded set or a set with 'arrays_dir' "
                     f"(python -m corp_jax.tools.photo_set --arrays), not {manifest['name']!r}")
  from corp_jax.evaluate import array_data  # pylint: disable=g-import-not-at-top
  return array_data, array_data.read_labels


def held_out_order(pretrain_workdir: str, step: int, config, data, inputs, test: dict,
                   feature_fn) -> dict | None:
  """The relation head's same-video order on the test videos' views and on as many
  training videos' views (`corp_jax.tools.view_order`); None without a relation head or
  with one clip per test video (`eval.num_clips` = 1: no pair to order)."""
  from corp_jax.tools import view_order  # pylint: disable=g-import-not-at-top
  clips, crops = int(config.eval.num_clips), int(config.eval.num_crops)
  if clips < 2:
    return None
  head = view_order.HeadOrder(pretrain_workdir, step)
  if not head.applies:
    return None
  test_order = head.score(test["outputs"], clips, crops)
  train = view_order.first_video_views(
      inputs.eval_stream(config, dataclasses.replace(data, eval_source=data.train_source)),
      feature_fn, len(test["outputs"]))
  train_order = head.score(train["outputs"], clips, crops)
  return {"test_videos": dict(test_order, videos=int(len(test["outputs"]))),
          "train_videos": dict(train_order, videos=int(len(train["outputs"])))}


TRAIN_VIEWS = ("pretraining", "whole")


def training_views(data: job_lib.EvalData, train_views: str) -> job_lib.EvalData:
  """The probe's data with its training views' augmentation: 'pretraining' (the protocol:
  the pretraining run's crop and flip) or 'whole' (its flip, whole frames)."""
  if train_views not in TRAIN_VIEWS:
    raise ValueError(f"fidelity_probe: train_views must be one of {TRAIN_VIEWS}, got "
                     f"{train_views!r}")
  if train_views == "pretraining":
    return data
  return dataclasses.replace(
      data, augment=dataclasses.replace(data.augment, crop_area_range=(1.0, 1.0)))


def probe(pretrain_workdir: str, set_spec: str, linear_preset: str = "",
          source: str = "records", train_views: str = "pretraining") -> dict:
  """See the module docstring."""
  started = time.time()
  manifest = read_set(set_spec)
  inputs, read_labels = _inputs(source, manifest)
  config = _config_for(manifest, pretrain_workdir, linear_preset, source)
  backbone = job_lib.restore(config)
  data = training_views(inputs.resolve_data(config, backbone.pretrain_config), train_views)
  families = _families(manifest, data)
  mesh = mesh_lib.create_mesh()
  from corp_jax.evaluate import features as features_lib  # pylint: disable=g-import-not-at-top
  feature_fn = features_lib.backbone_features(backbone, config.eval.feature_chunk, mesh)
  num_videos = data.num_train_videos or len(
      read_labels(data.train_source, [config.label_key])["video_id"])
  batch = job_lib.device_batch(config.optim.batch_size, num_videos, mesh)
  passes = max(1, int(config.cache.train_passes))
  train = job_lib.extract_train_features(
      inputs.train_stream(config, data, batch_size=batch, seed=config.seed), feature_fn,
      max(1, math.ceil(passes * num_videos / batch)))
  test = job_lib.map_views(inputs.eval_stream(config, data), feature_fn)
  extract_seconds = time.time() - started
  keys = sorted({key for key, *_ in families.values()} | {config.label_key})
  tables = {split: read_labels(split_source, keys) for split, split_source in
            (("train", data.train_source), ("test", data.eval_source))}

  results = {}
  for family, (key, names, of_label, pairs) in families.items():
    labels = {}
    for split, part in (("train", train), ("test", test)):
      raw = subsets.labels_for(part["video_id"], tables[split], key)
      labels[split] = of_label[raw] if of_label is not None else raw
    scored = job_lib.fit_and_score(train["features"], labels["train"], test["outputs"],
                                   labels["test"], len(names), config.optim, seed=config.seed)
    knn_pred = knn_lib.knn_predict(train["features"], labels["train"],
                                   knn_lib.video_embeddings(test["outputs"]))
    entry = {"linear_top1": float(scored["summary"]["top1"]),
             "knn_top1": float(np.mean(knn_pred == labels["test"])),
             "num_classes": len(names), "class_names": list(names),
             "chance": 1.0 / len(names)}
    if pairs:
      linear_pred = np.asarray(scored["summary"]["predictions"])
      entry["linear_direction"] = direction_accuracy(linear_pred, labels["test"], pairs)
      entry["knn_direction"] = direction_accuracy(knn_pred, labels["test"], pairs)
      entry["reversal_confusion"] = views.reversal_confusion(
          scored["summary"]["confusion"], pairs, names)
    results[family] = entry
  order = held_out_order(pretrain_workdir, backbone.step, config, data, inputs, test,
                         feature_fn)
  if order is not None:
    results["order_views"] = order
  results["timing"] = {"feature_extraction_s": round(extract_seconds, 2),
                       "total_s": round(time.time() - started, 2),
                       "train_views": int(len(train["label"])),
                       "test_videos": int(len(test["label"]))}
  results["backbone_step"] = int(backbone.step)
  results["set"] = manifest["name"]
  results["source"] = source
  results["train_views"] = train_views
  return reports.jsonable(results)


def main(argv) -> int:
  options = dict(zip(argv[4::2], argv[5::2]))
  if (len(argv) < 4 or len(argv) % 2
      or set(options) - {"--linear_preset", "--source", "--train_views"}
      or options.get("--source", "records") not in SOURCES
      or options.get("--train_views", "pretraining") not in TRAIN_VIEWS):
    print("usage: python -m corp_jax.tools.fidelity_probe PRETRAIN_WORKDIR SET OUT_JSON "
          "[--linear_preset P] [--source records|arrays] [--train_views pretraining|whole]",
          file=sys.stderr)
    return 2
  results = probe(argv[1], argv[2], options.get("--linear_preset", ""),
                  options.get("--source", "records"),
                  options.get("--train_views", "pretraining"))
  os.makedirs(os.path.dirname(os.path.abspath(argv[3])), exist_ok=True)
  tmp = argv[3] + ".partial"
  with open(tmp, "w") as f:
    json.dump(results, f, indent=2)
  os.replace(tmp, argv[3])
  print(json.dumps({k: {m: v for m, v in r.items() if m.endswith(("top1", "direction"))}
                    for k, r in results.items() if isinstance(r, dict) and "knn_top1" in r}))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
