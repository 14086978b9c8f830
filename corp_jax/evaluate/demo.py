"""The embedded-data linear probe that closes the CPU demo: one feature extraction, one
linear classifier per label family, a small printed table.

Contract: `run_embedded_linear_eval(pretrain_workdir, out_dir, label_families=('appearance',
'motion'), ...) -> dict` restores the latest (or `step`) backbone of a pretraining workdir,
extracts frozen features once (train split: `train_passes` augmented views per video; test
split: `num_clips` x `num_crops` views per video), joins each family's labels by video id,
trains a classifier per family on the cached features (z-score, SGD momentum 0.9, half-cosine)
and tests it with softmax-averaged views. Writes each family's reports (reports.write_report)
to OUT_DIR/<family>/ and OUT_DIR/demo_summary.json; prints the table. The returned dict maps
each family to {'top1', 'top5', 'num_classes', 'per_class_accuracy', 'knn_top1' (the k-NN
probe, corp_jax.evaluate.knn, on the same features)} plus, for 'motion', the
'reversal_confusion' rows (views.reversal_confusion), and 'timing' (seconds). Each family's
scalars also go to TensorBoard under OUT_DIR/tb (tags `linear_eval_<family>/...`).
Run from the shell: python -m corp_jax.evaluate.demo PRETRAIN_WORKDIR OUT_DIR
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Sequence

import ml_collections

from corp_jax import io_paths
from corp_jax.evaluate import config_defaults
from corp_jax.evaluate import features as features_lib
from corp_jax.evaluate import job as job_lib
from corp_jax.evaluate import knn
from corp_jax.evaluate import reports
from corp_jax.evaluate import subsets
from corp_jax.evaluate import views
from corp_jax.train import dashboards
from corp_jax.train import mesh as mesh_lib


def demo_config(*, num_clips: int, num_crops: int, train_passes: int, num_epochs: int,
                batch_size: int, learning_rate: float, data_dir: str,
                embedded: dict) -> ml_collections.ConfigDict:
  """The linear_eval config of the embedded preset with the demo's settings."""
  c = config_defaults.linear_eval_config()
  c.data.cache_dir = data_dir
  for key, value in embedded.items():
    c.data[f"embedded_{key}"] = value
  c.eval.num_clips = num_clips
  c.eval.num_crops = num_crops
  c.cache.train_passes = train_passes
  c.optim.num_epochs = num_epochs
  c.optim.batch_size = batch_size
  c.optim.learning_rate = learning_rate
  return c


def _print_table(results: dict, families: Sequence[str]) -> None:
  print("\nlinear probe on frozen features (embedded data, train -> test split)")
  print(f"  {'label family':<14}{'classes':>8}{'top-1':>9}{'top-5':>9}{'chance':>9}")
  for family in families:
    r = results[family]
    print(f"  {family:<14}{r['num_classes']:>8}{100 * r['top1']:>8.1f}%"
          f"{100 * r['top5']:>8.1f}%{100 / r['num_classes']:>8.1f}%")
  if "motion" in results and results["motion"].get("reversal_confusion"):
    print("  motion, time-reversed pairs (accuracy; share predicted as the reversal partner):")
    for row in results["motion"]["reversal_confusion"]:
      print(f"    {row['forward_name']:>18} / {row['reversed_name']:<24} "
            f"acc {100 * row['forward_accuracy']:5.1f}% / {100 * row['reversed_accuracy']:5.1f}%"
            f"   as partner {100 * row['forward_as_reversed']:5.1f}% / "
            f"{100 * row['reversed_as_forward']:5.1f}%")
  print(flush=True)


def run_embedded_linear_eval(pretrain_workdir: str, out_dir: str,
                             label_families: Sequence[str] = ("appearance", "motion"), *,
                             step: int | None = None, num_clips: int = 4, num_crops: int = 3,
                             train_passes: int = 2, num_epochs: int = 100, batch_size: int = 256,
                             learning_rate: float = 0.16, data_dir: str = "",
                             num_train: int = 0, num_test: int = 0, frame_size: int = 0,
                             num_frames: int = 0, seed: int = 0, verbose: bool = True) -> dict:
  """See the module docstring. data_dir '' and sizes 0: the pretraining run's data set."""
  if not label_families:
    raise ValueError("label_families is empty")
  started = time.time()
  backbone = features_lib.restore_frozen_backbone(pretrain_workdir, step)
  config = demo_config(num_clips=num_clips, num_crops=num_crops, train_passes=train_passes,
                       num_epochs=num_epochs, batch_size=batch_size,
                       learning_rate=learning_rate, data_dir=data_dir,
                       embedded=dict(seed=seed, num_train=num_train, num_test=num_test,
                                     frame_size=frame_size, num_frames=num_frames))
  # For the record in results.json: the functions below take the workdir and seed directly.
  config.pretrain_workdir = pretrain_workdir
  config.seed = seed
  data = job_lib.resolve_data(config, backbone.pretrain_config)
  from corp_jax.data import embedded  # pylint: disable=g-import-not-at-top
  from corp_jax.data import records  # pylint: disable=g-import-not-at-top
  unknown = sorted(set(label_families) - set(embedded.LABEL_FAMILIES))
  if unknown:
    raise ValueError(f"unknown label families {unknown}; choose from {embedded.LABEL_FAMILIES}")
  keys = {family: records.extra_label_key(family) for family in label_families}
  mesh = mesh_lib.create_mesh()
  feature_fn = features_lib.backbone_features(backbone, config.eval.feature_chunk, mesh)
  batch = job_lib.device_batch(64, data.num_train_videos, mesh)

  t0 = time.time()
  train = job_lib.extract_train_features(
      job_lib.train_stream(config, data, batch_size=batch, seed=seed), feature_fn,
      max(1, math.ceil(train_passes * data.num_train_videos / batch)))
  test = job_lib.map_views(job_lib.eval_stream(config, data), feature_fn)
  extract_seconds = time.time() - t0
  tables = {split: subsets.read_labels(source, [config.label_key, *keys.values()])
            for split, source in (("train", data.train_source), ("test", data.eval_source))}
  for split, part in (("train", train), ("test", test)):
    # The join by video id must reproduce the labels the pipeline itself read.
    joined = subsets.labels_for(part["video_id"], tables[split], config.label_key)
    if not (joined == part["label"]).all():
      raise RuntimeError(f"{split}: labels joined by video id disagree with the pipeline's; "
                         "the video-id convention of corp_jax.data.pipeline changed")
  metadata = records.read_metadata(os.path.dirname(data.train_source[0]), "train")

  t0 = time.time()
  results = {}
  for family, key in keys.items():
    names = metadata["label_families"][family]
    scored = job_lib.fit_and_score(
        train["features"], subsets.labels_for(train["video_id"], tables["train"], key),
        test["outputs"], subsets.labels_for(test["video_id"], tables["test"], key),
        len(names), config.optim, seed=seed)
    summary = scored["summary"]
    entry = {"top1": summary["top1"], "top5": summary["top5"], "num_classes": len(names),
             "per_class_accuracy": dict(zip(names, summary["per_class_accuracy"].tolist())),
             "final_train_loss": float(scored["epoch_losses"][-1])}
    # The k-NN probe on the same features (training views as the bank, view-averaged tests).
    entry["knn_top1"] = knn.knn_top1(
        train["features"], subsets.labels_for(train["video_id"], tables["train"], key),
        test["outputs"].mean(axis=1), subsets.labels_for(test["video_id"], tables["test"], key))
    if family == "motion":
      entry["reversal_confusion"] = views.reversal_confusion(
          summary["confusion"], metadata["reversal_pairs"], names)
    with config.unlocked():
      config.label_key = key
    reports.write_report(io_paths.join(out_dir, family), summary=summary, class_names=names,
                         config=config, backbone_step=backbone.step,
                         pretrain_workdir=pretrain_workdir,
                         extra={k: v for k, v in entry.items() if k == "reversal_confusion"},
                         training_curves=not results)
    results[family] = entry
    dashboards.log_eval_results(out_dir, f"linear_eval_{family}", entry, step=backbone.step)
  results["timing"] = {"feature_extraction_s": round(extract_seconds, 2),
                       "classifiers_s": round(time.time() - t0, 2),
                       "total_s": round(time.time() - started, 2),
                       "train_views": int(len(train["label"])),
                       "test_videos": int(len(test["label"])),
                       "views_per_test_video": num_clips * num_crops}
  results["backbone_step"] = backbone.step
  io_paths.write_text(io_paths.join(out_dir, "demo_summary.json"),
                      json.dumps(reports.jsonable(results), indent=2))
  if verbose:
    _print_table(results, list(label_families))
    print(f"  timing: {results['timing']}; reports in {out_dir}/<family>/", flush=True)
  return results


if __name__ == "__main__":
  if len(sys.argv) != 3:
    raise SystemExit("usage: python -m corp_jax.evaluate.demo PRETRAIN_WORKDIR OUT_DIR")
  run_embedded_linear_eval(sys.argv[1], sys.argv[2])
