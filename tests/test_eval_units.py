"""Evaluation pieces on tiny hand-made inputs: multi-view averaging, metrics, balanced
subsets, z-scoring, the cached-feature classifier, reports, comparison, configs, errors."""

import csv
import importlib.util
import json
import os

import ml_collections
import numpy as np
import pytest

from corp_jax import config_defaults
from corp_jax.evaluate import compare
from corp_jax.evaluate import features as features_lib
from corp_jax.evaluate import job as job_lib
from corp_jax.evaluate import linear as linear_lib
from corp_jax.evaluate import plots
from corp_jax.evaluate import reports
from corp_jax.evaluate import subsets
from corp_jax.evaluate import views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_config(name, preset=None):
  path = os.path.join(ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"_unit_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


# ----------------------------------------------------------------------- multi-view testing


def test_views_average_softmax_not_logits():
  # One confident view for class 0, two mild views for class 1.
  logits = np.array([[[10.0, 0.0], [0.0, 2.0], [0.0, 2.0]]])
  probs = views.average_view_probabilities(logits)
  p1 = np.exp(2.0) / (1 + np.exp(2.0))
  expected_class1 = (1 / (1 + np.exp(10.0)) + 2 * p1) / 3
  np.testing.assert_allclose(probs[0, 1], expected_class1, rtol=1e-12)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0)
  assert probs.argmax() == 1  # averaging logits ([3.33, 1.33]) would have said class 0
  assert logits.mean(axis=1).argmax() == 0


def test_views_reject_wrong_shapes_and_labels():
  with pytest.raises(ValueError, match=r"\[B, V, C\]"):
    views.average_view_probabilities(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="found 7"):
    views.top_k_accuracy(np.full((2, 3), 1 / 3), np.array([0, 7]), 1)


def test_topk_confusion_per_class_and_reversal():
  probs = np.array([[0.6, 0.3, 0.1, 0.0],
                    [0.1, 0.3, 0.2, 0.4],
                    [0.5, 0.4, 0.1, 0.0],
                    [0.0, 0.1, 0.2, 0.7]])
  labels = np.array([0, 2, 1, 3])
  assert views.top_k_accuracy(probs, labels, 1) == 0.5
  assert views.top_k_accuracy(probs, labels, 2) == 0.75
  assert views.top_k_accuracy(probs, labels, 5) == 1.0  # k capped at C
  summary = views.classification_summary(probs, labels, 4)
  expected = np.zeros((4, 4), int)
  expected[0, 0] = expected[2, 3] = expected[1, 0] = expected[3, 3] = 1
  np.testing.assert_array_equal(summary["confusion"], expected)
  np.testing.assert_array_equal(summary["per_class_accuracy"], [1.0, 0.0, 0.0, 1.0])
  rows = views.reversal_confusion(np.array([[3, 1], [2, 2]]), [(0, 1)], ["up", "down"])
  assert rows == [{"forward": 0, "reversed": 1, "forward_accuracy": 0.75,
                   "reversed_accuracy": 0.5, "forward_as_reversed": 0.25,
                   "reversed_as_forward": 0.5, "pair_accuracy": 5 / 8,
                   "forward_name": "up", "reversed_name": "down"}]
  assert np.isnan(views.per_class_accuracy(np.array([[1, 0], [0, 0]]))[1])


# -------------------------------------------------------------------------------- subsets


LABELS = np.array([0] * 50 + [1] * 30 + [2] * 3 + [3])


def test_subset_keeps_proportions_and_at_least_one_per_class():
  chosen = subsets.class_balanced_subset(LABELS, 0.1, seed=0)
  counts = np.bincount(LABELS[chosen], minlength=4)
  np.testing.assert_array_equal(counts, [5, 3, 1, 1])
  assert len(np.unique(chosen)) == len(chosen) and np.all(np.diff(chosen) > 0)
  np.testing.assert_array_equal(np.bincount(
      LABELS[subsets.class_balanced_subset(LABELS, 0.01, seed=0)]), [1, 1, 1, 1])


def test_subset_is_reproducible_and_seed_dependent():
  a = subsets.class_balanced_subset(LABELS, 0.2, seed=7)
  np.testing.assert_array_equal(a, subsets.class_balanced_subset(LABELS, 0.2, seed=7))
  b = subsets.class_balanced_subset(LABELS, 0.2, seed=8)
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(np.bincount(LABELS[a]), np.bincount(LABELS[b]))
  np.testing.assert_array_equal(subsets.class_balanced_subset(LABELS, 1.0, 3),
                                np.arange(len(LABELS)))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_subset_rejects_bad_fractions(fraction):
  with pytest.raises(ValueError, match="config.subset_fraction"):
    subsets.class_balanced_subset(LABELS, fraction, 0)


def test_subset_rejects_unlabelled_videos_and_label_lookup():
  with pytest.raises(ValueError, match="label -1"):
    subsets.class_balanced_subset(np.array([0, -1, 1]), 0.5, 0)
  table = {"video_id": np.array([5, 1, 9]), "k": np.array([50, 10, 90])}
  np.testing.assert_array_equal(subsets.labels_for(np.array([9, 1, 1]), table, "k"),
                                [90, 10, 10])
  with pytest.raises(ValueError, match=r"\[4\]"):
    subsets.labels_for(np.array([4]), table, "k")


# ----------------------------------------------------------------- z-score and classifier


def test_zscore_uses_training_statistics():
  train = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])
  mean, std = features_lib.zscore_stats(train)
  np.testing.assert_allclose(mean, [3.0, 10.0])
  np.testing.assert_allclose(std, [np.sqrt(8 / 3), 1e-6], rtol=1e-6)  # constant: floored
  test = np.array([[3.0 + np.sqrt(8 / 3), 10.0]])
  np.testing.assert_allclose(features_lib.zscore(test, mean, std), [[1.0, 0.0]], atol=1e-5)
  moments = features_lib.RunningMoments()
  moments.update(train[:2])
  moments.update(train[2:])
  for a, b in zip(moments.stats(), (mean, std)):
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_cached_classifier_learns_a_separable_problem():
  rng = np.random.default_rng(0)
  centres = rng.normal(0, 3, (3, 8))
  labels = np.repeat(np.arange(3), 20)
  feats = centres[labels] + rng.normal(0, 0.3, (60, 8))
  optim = ml_collections.ConfigDict(dict(batch_size=16, learning_rate=0.16, momentum=0.9,
                                         num_epochs=30, num_steps=0))
  test = centres[labels][:, None, :] + rng.normal(0, 0.3, (60, 2, 8))
  scored = job_lib.fit_and_score(feats, labels, test, labels, 3, optim)
  assert scored["summary"]["top1"] == 1.0
  assert scored["epoch_losses"][-1] < scored["epoch_losses"][0]
  with pytest.raises(ValueError, match="label_key"):
    linear_lib.train_on_features(feats, labels + 5, 3, batch_size=8, num_epochs=1,
                                 learning_rate=0.1)


def test_sgd_schedule_is_half_cosine_without_warmup():
  _, schedule = linear_lib.make_sgd(0.16, 100, 0.9)
  assert float(schedule(0)) == pytest.approx(0.16)
  assert float(schedule(50)) == pytest.approx(0.08)
  assert float(schedule(100)) == pytest.approx(0.0)


# ---------------------------------------------------------------------- reports, compare


def _fake_run(directory, per_class, names=("up", "down", "hold")):
  per_class = np.asarray(per_class)
  confusion = np.diag(np.round(per_class * 10).astype(int))
  misses = 10 - confusion.sum(axis=1)
  confusion[np.arange(len(names)), (np.arange(len(names)) + 1) % len(names)] += misses
  summary = {"top1": float(per_class.mean()), "top5": 1.0, "confusion": confusion,
             "per_class_accuracy": views.per_class_accuracy(confusion)}
  config = ml_collections.ConfigDict({"job": "linear_eval"})
  return reports.write_report(str(directory), summary=summary, class_names=list(names),
                              config=config, backbone_step=7,
                              pretrain_workdir=str(directory / "no_pretraining"))


def test_report_files_exist_and_parse(tmp_path):
  paths = _fake_run(tmp_path / "run", [0.5, 0.8, 1.0])
  with open(paths["results_json"]) as f:
    results = json.load(f)
  assert results["backbone_step"] == 7 and results["per_class_accuracy"]["down"] == 0.8
  assert "skipped" in results["pretraining_curves"]  # no metrics.jsonl: said, not crashed
  rows = reports.read_per_class_csv(paths["per_class_csv"])
  assert [(r["class_name"], r["accuracy"]) for r in rows] == [
      ("up", 0.5), ("down", 0.8), ("hold", 1.0)]
  assert "| down | 10 | 80.0 |" in open(paths["per_class_md"]).read()
  for key in ("confusion_png", "per_class_png"):
    with open(paths[key], "rb") as f:
      assert f.read(8) == PNG_MAGIC


def test_training_curves_handle_missing_metrics(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("\n".join(json.dumps({"step": s, "loss": 5.0 - s, "contrast_top1": 0.1 * s})
                            for s in (1, 2, 3)) + "\n")
  assert plots.plot_training_curves(str(path), str(tmp_path / "c.png")) == ["loss"]  # SimCLR
  with open(tmp_path / "c.png", "rb") as f:
    assert f.read(8) == PNG_MAGIC
  path.write_text('{"step": 1, "loss": 1.0, "total_acc": 0.2, "pair_acc": 0.5}\n{bad\n')
  with pytest.raises(ValueError, match="metrics.jsonl:2"):
    plots.plot_training_curves(str(path), str(tmp_path / "d.png"))


def test_compare_writes_a_side_by_side_table(tmp_path):
  _fake_run(tmp_path / "simclr", [0.8, 0.3, 0.9])
  _fake_run(tmp_path / "corp_m", [0.8, 0.9, 0.9])
  compare.main([str(tmp_path / "simclr"), str(tmp_path / "corp_m"), "--out",
                str(tmp_path / "cmp"), "--sort", "spread"])
  with open(tmp_path / "cmp" / "comparison.csv") as f:
    rows = list(csv.DictReader(f))
  assert rows[0]["class_name"] == "down"  # largest spread first
  assert float(rows[0]["simclr"]) == 0.3 and float(rows[0]["corp_m"]) == 0.9
  assert float(rows[0]["spread"]) == pytest.approx(0.6)
  markdown = open(tmp_path / "cmp" / "comparison.md").read()
  assert "| down | 30.0 | 90.0 |" in markdown
  _fake_run(tmp_path / "other", [0.5, 0.5], names=("a", "b"))
  with pytest.raises(ValueError, match="other classes"):
    compare.compare_runs([str(tmp_path / "simclr"), str(tmp_path / "other")])


# ---------------------------------------------------------------------- configs, errors


def test_paper_recipes_in_the_presets():
  linear = _load_config("linear_eval", "k400")
  finetune = _load_config("finetune", "ssv2")
  assert (linear.job, finetune.job) == ("linear_eval", "finetune")
  assert (linear.optim.batch_size, linear.optim.learning_rate, linear.optim.momentum,
          linear.optim.num_epochs) == (1024, 0.16, 0.9, 100)
  assert finetune.optim.learning_rate == 0.2 and finetune.subset_fraction == 0.1
  for c in (linear, finetune):
    assert (c.eval.num_clips, c.eval.num_crops, c.data.clip_len) == (10, 3, 32)
    assert not c.cached_features and c.data.source == "tfrecord"
  assert _load_config("linear_eval").cached_features
  assert _load_config("finetune", "ucf101").data.num_classes == 101
  with pytest.raises(ValueError, match="unknown preset 'k401'"):
    _load_config("linear_eval", "k401")


def test_missing_pretrain_workdir_names_the_key(tmp_path):
  config = _load_config("linear_eval", "test")
  with pytest.raises(ValueError, match="config.pretrain_workdir is required"):
    job_lib.run(config, str(tmp_path))
  with config.unlocked():
    config.pretrain_workdir = str(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match="not a pretraining workdir"):
    job_lib.run(config, str(tmp_path))
  finetune = _load_config("finetune", "test")
  with finetune.unlocked():
    finetune.cached_features = True
  with pytest.raises(ValueError, match="cached_features=True is impossible for finetune"):
    job_lib.run(finetune, str(tmp_path))


def test_backbone_needs_every_model_key_of_the_pretraining_config():
  model = {"backbone": "tiny", "dtype": "float32", "conv_impl": "native",
           "stem_space_to_depth": False, "bn_impl": "auto", "bn_momentum": 0.9}
  module = features_lib.backbone_module(ml_collections.ConfigDict(model))
  assert (module.variant, module.conv_impl) == ("tiny", "native")
  del model["bn_impl"]
  with pytest.raises(ValueError, match=r"config.model lacks \['bn_impl'\]"):
    features_lib.backbone_module(ml_collections.ConfigDict(model))


def test_transfer_without_shard_patterns_names_the_key():
  config = _load_config("linear_eval", "ucf101")
  pre = config_defaults.pretrain_config("corp_f", "k400")  # clip_len 16, stride 2, crop 224
  with pytest.raises(ValueError, match="config.data.train_pattern is required"):
    job_lib.resolve_data(config, pre)
  with config.unlocked():
    config.data.train_pattern = "/data/ucf101/ucf101_train-*"
  with pytest.raises(ValueError, match="config.data.eval_pattern is required"):
    job_lib.resolve_data(config, pre)
  with config.unlocked():
    config.data.eval_pattern = "/data/ucf101/ucf101_test-*"
  data = job_lib.resolve_data(config, pre)
  assert (data.num_classes, data.clip_len, data.stride, data.crop_size) == (101, 32, 2, 224)


def test_figure3_panels_follow_what_the_run_logged(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("\n".join(json.dumps({"step": s, "loss": 2.0 / s, "order_acc": 0.5 + 0.1 * s,
                                        "contrast_top1": 0.2 * s}) for s in (1, 2)) + "\n")
  assert plots.plot_training_curves(str(path), str(tmp_path / "f.png")) == ["loss", "order_acc"]
  path.write_text(json.dumps({"step": 1, "loss": 1.0, "total_acc": 0.2, "order_acc": 0.5,
                              "pair_acc": 0.6}) + "\n")
  assert plots.plot_training_curves(str(path), str(tmp_path / "m.png")) == [
      "loss", "total_acc", "order_acc", "pair_acc"]


def test_report_titles_name_the_run_not_its_path(tmp_path):
  summary = views.classification_summary(
      np.eye(2, dtype=np.float32)[[0, 1, 1]], np.array([0, 1, 0]), 2)
  config = ml_collections.ConfigDict({"job": "linear_eval"})
  run = tmp_path / "deep" / "runs" / "corp_f"
  paths = reports.write_report(str(tmp_path / "eval"), summary=summary, class_names=["a", "b"],
                               config=config, backbone_step=7, pretrain_workdir=str(run),
                               training_curves=False)
  first_line = open(paths["per_class_md"]).readline()
  assert first_line.startswith("# linear_eval of corp_f (step 7)"), first_line
  assert str(tmp_path) not in first_line
  assert "pretraining_curves_png" not in paths
