"""Evaluation jobs end to end on a tiny pretraining run (synthetic pretraining data, a tiny
embedded data set for evaluation): restored features, frozen backbone, reports, fine-tuning.

One pretraining workdir is shared by every test (module fixture): compilation dominates.
"""

import copy
import csv
import json
import os

import jax
import numpy as np
import pytest

from corp_jax.evaluate import features as features_lib
from corp_jax.evaluate import finetune as finetune_lib
from corp_jax.evaluate import linear as linear_lib
from corp_jax.evaluate import config_defaults as eval_config_defaults
from corp_jax.evaluate import demo as demo_lib
from corp_jax.evaluate import job as job_lib
from corp_jax.train import checkpoint as ckpt_lib
from corp_jax.train import loop
from corp_jax.train import mesh as mesh_lib
from corp_jax.train import model as model_lib
from tests.train_helpers import apply_overrides, flat_params, tiny_config


def _eval_config(job, **overrides):
  return apply_overrides(eval_config_defaults.eval_config(job, "test"), **overrides)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """(workdir, final TrainState, pretraining config, embedded cache dir)."""
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  config = tiny_config("corp_f", steps=2, train__checkpoint_every=2)
  state, summary = loop.pretrain(config, workdir)
  assert summary["step"] == 2
  return workdir, state, config, str(tmp_path_factory.mktemp("embedded"))


def test_restored_backbone_features_equal_the_pretraining_model(pretrained):
  workdir, state, config, _ = pretrained
  backbone = features_lib.restore_frozen_backbone(workdir)
  assert backbone.step == 2
  model = model_lib.model_from_config(config.model, 2)
  clips = np.random.default_rng(0).uniform(0, 1, (8, 4, 16, 16, 3)).astype(np.float32)
  expected = model.apply({"params": jax.device_get(state.params),
                          "batch_stats": jax.device_get(state.batch_stats)},
                         clips, method=model.embed)
  got = features_lib.backbone_features(backbone, 8, mesh_lib.create_mesh())(clips)
  assert got.shape == (8, backbone.feature_dim)
  np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-6)
  assert np.std(got) > 0  # features are not trivially equal (all zero)


def _record_restored_backbones(monkeypatch) -> list:
  """Makes restore_frozen_backbone remember (backbone, deep copy of its variables)."""
  used = []
  real = features_lib.restore_frozen_backbone

  def recording(*args, **kwargs):
    backbone = real(*args, **kwargs)
    used.append((backbone, copy.deepcopy(jax.device_get(backbone.variables))))
    return backbone

  monkeypatch.setattr(features_lib, "restore_frozen_backbone", recording)
  return used


def _assert_same(a: dict, b: dict):
  a, b = flat_params(a), flat_params(b)
  assert a.keys() == b.keys() and a
  for key, value in a.items():
    np.testing.assert_array_equal(b[key], value, err_msg=key)


def test_linear_eval_writes_reports_and_keeps_the_backbone_frozen(pretrained, tmp_path,
                                                                   monkeypatch):
  workdir, _, _, cache = pretrained
  on_disk_before = ckpt_lib.restore_backbone(workdir)[:2]
  used = _record_restored_backbones(monkeypatch)
  config = _eval_config("linear_eval", pretrain_workdir=workdir, data__cache_dir=cache)
  out = str(tmp_path / "linear")
  results = job_lib.run(config, out)

  backbone, snapshot = used[0]
  _assert_same(snapshot, backbone.variables)  # the in-memory variables the job used
  _assert_same(on_disk_before, ckpt_lib.restore_backbone(workdir)[:2])  # the checkpoint
  assert any("mean" in k for k in flat_params(snapshot))  # BN statistics were compared

  with open(os.path.join(out, "results.json")) as f:
    saved = json.load(f)
  assert saved["backbone_step"] == 2 and saved["job"] == "linear_eval"
  assert 0.0 <= saved["top1"] <= saved["top5"] <= 1.0
  assert saved["num_test_videos"] == 8 and saved["num_views"] == 6
  assert len(saved["per_class_accuracy"]) == 8  # motion classes
  assert len(saved["reversal_confusion"]) == 4
  assert results["top1"] == saved["top1"]
  with open(os.path.join(out, "per_class.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["class_name"] for r in rows] == saved["class_names"]
  assert sum(int(r["num_videos"]) for r in rows) == 8
  correct = sum(float(r["accuracy"] or 0) * int(r["num_videos"]) for r in rows)
  assert abs(correct / 8 - saved["top1"]) < 1e-6
  assert "| Class |" in open(os.path.join(out, "per_class.md")).read()
  for png in ("confusion_matrix.png", "per_class_accuracy.png", "pretraining_curves.png"):
    with open(os.path.join(out, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", png
  assert saved["pretraining_curves"]["plotted"] == ["loss", "order_acc"]  # corp_f's log


def _synthetic_batches(num_classes, seed=0):
  rng = np.random.default_rng(seed)
  while True:
    yield {"clips": rng.uniform(0, 1, (8, 1, 4, 16, 16, 3)).astype(np.float32),
           "label": rng.integers(0, num_classes, 8).astype(np.int32)}


@pytest.mark.slow
def test_streaming_trainers_freeze_or_train_the_backbone(pretrained):
  workdir, _, _, _ = pretrained
  backbone = features_lib.restore_frozen_backbone(workdir)
  snapshot = copy.deepcopy(jax.device_get(backbone.variables))
  mesh = mesh_lib.create_mesh()
  dim = backbone.feature_dim
  common = dict(mean=np.zeros(dim, np.float32), std=np.ones(dim, np.float32),
                total_steps=2, momentum=0.9, mesh=mesh)
  linear = linear_lib.StreamingLinearTrainer(backbone, 3, learning_rate=0.16, **common)
  losses = linear.train(_synthetic_batches(3))
  assert len(losses) == 2 and all(np.isfinite(losses))
  assert np.abs(linear.classifier()["kernel"]).sum() > 0  # the classifier did train
  _assert_same(snapshot, linear.backbone_variables)  # what the jitted step was given
  _assert_same(snapshot, backbone.variables)

  tuned = finetune_lib.FinetuneTrainer(backbone, 3, learning_rate=0.2, **common)
  tuned.train(_synthetic_batches(3, seed=1))
  variables = tuned.variables()
  changed = flat_params(variables["params"]["backbone"])
  initial = flat_params(snapshot["params"])
  assert any(not np.array_equal(changed[k], initial[k]) for k in initial)  # all layers train
  new_stats = flat_params(variables["batch_stats"]["backbone"])
  old_stats = flat_params(snapshot["batch_stats"])
  assert any(not np.array_equal(new_stats[k], old_stats[k]) for k in old_stats)  # BN train mode
  _assert_same(snapshot, backbone.variables)  # fine-tuning copies, never edits, the restore


@pytest.mark.slow
def test_finetune_runs_on_a_balanced_subset(pretrained, tmp_path):
  workdir, _, _, cache = pretrained
  config = _eval_config("finetune", pretrain_workdir=workdir, data__cache_dir=cache)
  results = job_lib.run(config, str(tmp_path / "finetune"))
  assert results["job"] == "finetune"
  assert results["train_steps"] == 1 and np.isfinite(results["final_train_loss"])
  assert results["subset"]["num_videos"] == 8 and results["subset"]["of"] == 16
  assert 0.0 <= results["top1"] <= 1.0


def test_missing_checkpoint_step_is_a_clear_error(pretrained):
  workdir, _, _, cache = pretrained
  config = _eval_config("linear_eval", pretrain_workdir=workdir, data__cache_dir=cache,
                        pretrain_step=99)
  with pytest.raises(ValueError, match=r"config.pretrain_step=99.*available: \[2\]"):
    job_lib.run(config, "/tmp/unused")


def test_backbone_shape_mismatch_is_a_clear_error(pretrained, tmp_path):
  workdir, _, _, _ = pretrained
  broken = str(tmp_path / "broken")
  os.makedirs(broken)
  os.symlink(os.path.join(workdir, "checkpoints"), os.path.join(broken, "checkpoints"))
  with open(os.path.join(workdir, "config.json")) as f:
    raw = json.load(f)
  raw["model"]["backbone"] = "r3d18"
  with open(os.path.join(broken, "config.json"), "w") as f:
    json.dump(raw, f)
  with pytest.raises(ValueError, match="does not match the configured model"):
    features_lib.restore_frozen_backbone(broken)


@pytest.mark.slow
def test_demo_reports_both_label_families(pretrained, tmp_path, capsys):
  workdir, _, _, cache = pretrained
  out = str(tmp_path / "demo")
  results = demo_lib.run_embedded_linear_eval(
      workdir, out, num_clips=2, num_crops=1, train_passes=1, num_epochs=3, data_dir=cache,
      num_train=16, num_test=8, frame_size=32, num_frames=8)
  assert results["appearance"]["num_classes"] == 5 and results["motion"]["num_classes"] == 8
  pairs = results["motion"]["reversal_confusion"]
  assert [(p["forward_name"], p["reversed_name"]) for p in pairs][0] == ("rise", "fall")
  assert results["timing"]["test_videos"] == 8
  printed = capsys.readouterr().out
  assert "appearance" in printed and "rise" in printed
  for family in ("appearance", "motion"):
    with open(os.path.join(out, family, "results.json")) as f:
      assert json.load(f)["top1"] == pytest.approx(results[family]["top1"])
  with open(os.path.join(out, "demo_summary.json")) as f:
    assert json.load(f)["backbone_step"] == 2
  assert all(0.0 <= results[f]["knn_top1"] <= 1.0 for f in ("appearance", "motion"))
  assert os.listdir(os.path.join(out, "tb"))  # the families' scalars for TensorBoard
