"""k-NN probe (pure function and periodic job), feature extraction and the dashboards
(TensorBoard scalars / hparams, W&B in offline mode)."""

import glob
import json
import os
from unittest import mock

import numpy as np
import pytest

from corp_jax.evaluate import knn
from corp_jax.train import dashboards
from corp_jax.train import loop
from tests.train_helpers import tiny_config


def test_knn_top1_by_hand():
  train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.8, 0.2]], np.float32)
  labels = np.array([0, 0, 1, 1, 1])
  test = np.array([[10, 1], [1, 10], [0.7, 0.3]], np.float32)  # scale does not matter (cosine)
  # k = 1: nearest neighbour by angle.
  assert knn.knn_predict(train, labels, test, k=1).tolist() == [0, 1, 1]
  # k = 3, votes: [10, 1] sees rows 0, 1, 4 -> two votes for 0; [0.7, 0.3] sees 4, 1, 0 -> 0.
  assert knn.knn_predict(train, labels, test, k=3, temperature=None).tolist() == [0, 1, 0]
  assert knn.knn_top1(train, labels, test, np.array([0, 1, 1]), k=1) == 1.0
  assert knn.knn_top1(train, labels, test, np.array([0, 1, 1]), k=3,
                      temperature=None) == pytest.approx(2 / 3)
  # k larger than the bank is capped; a weighted vote with a small temperature follows the
  # nearest neighbour.
  assert knn.knn_predict(train, labels, test, k=50, temperature=0.01).tolist() == [0, 1, 1]


def test_knn_errors_name_the_input():
  with pytest.raises(ValueError, match="train_labels must be"):
    knn.knn_top1(np.ones((3, 2)), np.zeros(2), np.ones((1, 2)), np.zeros(1))
  with pytest.raises(ValueError, match="feature sizes differ"):
    knn.knn_top1(np.ones((3, 2)), np.zeros(3), np.ones((1, 4)), np.zeros(1))
  with pytest.raises(ValueError, match="unlabelled"):
    knn.knn_top1(np.ones((3, 2)), -np.ones(3), np.ones((1, 2)), np.zeros(1))


def _events(directory):
  tf = pytest.importorskip("tensorflow")
  tags = {}
  for path in glob.glob(os.path.join(directory, "**", "events.out.tfevents.*"), recursive=True):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append((event.step, value))
  return tags


@pytest.fixture(scope="module")
def knn_run(tmp_path_factory):
  pytest.importorskip("wandb")
  os.environ["WANDB_SILENT"] = "true"
  workdir = str(tmp_path_factory.mktemp("knn_run"))
  cache = str(tmp_path_factory.mktemp("embedded"))
  config = tiny_config("simclr", steps=2, num_devices=1, train__checkpoint_every=2,
                       knn_every=1, data__cache_dir=cache, data__embedded_num_train=16,
                       data__embedded_num_test=8, data__embedded_frame_size=32,
                       data__embedded_num_frames=16, wandb__project="corp-jax-test",
                       wandb__mode="offline")
  # The same run also starts from another workdir's backbone (config.init_from).
  source = str(tmp_path_factory.mktemp("init_source"))
  _write_checkpoint(config, source)
  with config.unlocked():
    config.init_from = source
  from corp_jax.export import init_from  # pylint: disable=g-import-not-at-top
  with mock.patch.object(init_from, "warm_start", wraps=init_from.warm_start) as warm_start:
    loop.pretrain(config, workdir)
  assert warm_start.call_count == 1
  return workdir, config


def _write_checkpoint(config, workdir):
  """A checkpoint of a freshly initialised model, written without training."""
  # pylint: disable=g-import-not-at-top
  import jax
  from corp_jax.train import checkpoint as ckpt_lib
  from corp_jax.train import mesh as mesh_lib, model as model_lib
  from corp_jax.train import optim as optim_lib, state as state_lib
  model = model_lib.model_from_config(config.model, 0)
  tx, _ = optim_lib.make_optimizer(config.optim, 8, 1)
  state = state_lib.create_train_state(model, tx, jax.random.PRNGKey(9), (4, 16, 16, 3),
                                       mesh_lib.create_mesh(1))
  manager = ckpt_lib.make_manager(workdir, async_save=False)
  ckpt_lib.save(manager, 1, state.as_dict(), force=True)
  manager.close()


def test_knn_probe_is_logged_to_jsonl_tensorboard_and_wandb(knn_run):
  workdir, _ = knn_run
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  knn_rows = [r for r in rows if "knn_top1" in r]
  assert [r["step"] for r in knn_rows] == [1, 2]
  assert all(0.0 <= r["knn_top1"] <= 1.0 for r in knn_rows)
  assert [r["step"] for r in rows if "loss" in r] == [2]  # log_every=2: one train row
  tags = _events(os.path.join(workdir, "tb"))
  assert [s for s, _ in tags["eval/knn_top1"]] == [1, 2]
  assert "train/loss" in tags
  # Hyperparameters for TensorBoard's HParams plugin, with the final metrics.
  assert "_hparams_/session_start_info" in tags
  assert "hparam/knn_top1" in tags
  # W&B offline: a run directory under the workdir, nothing sent anywhere.
  runs = glob.glob(os.path.join(workdir, "wandb", "offline-run-*"))
  assert len(runs) == 1 and glob.glob(os.path.join(runs[0], "*.wandb"))


def test_flat_hparams_are_tensorboard_types():
  config = tiny_config("corp_f")
  flat = dashboards.flat_hparams(config)
  assert flat["optim.base_lr"] == config.optim.base_lr
  assert flat["model.projection_hidden"] == "(32,)"
  assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())


def test_wandb_is_off_by_default_and_says_how_to_install(monkeypatch, tmp_path):
  config = tiny_config("corp_f")
  assert dashboards.make_wandb(config, str(tmp_path)) is None
  import builtins  # pylint: disable=g-import-not-at-top
  real_import = builtins.__import__

  def no_wandb(name, *args, **kwargs):
    if name == "wandb":
      raise ImportError("No module named 'wandb'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_wandb)
  with config.unlocked():
    config.wandb.project = "p"
  with pytest.raises(ImportError, match="pip install wandb"):
    dashboards.make_wandb(config, str(tmp_path))


def test_eval_results_go_to_tensorboard(tmp_path):
  results = {"top1": 0.5, "top5": 0.75, "per_class_accuracy": {"a": 1.0, "b": 0.0, "c": None}}
  written = dashboards.log_eval_results(str(tmp_path), "linear_eval", results, step=7)
  assert written == {"top1": 0.5, "top5": 0.75, "mean_class_accuracy": 0.5}
  tags = _events(str(tmp_path / "tb"))
  assert tags["linear_eval/top1"][0][0] == 7
  assert tags["linear_eval/top1"][0][1].simple_value == pytest.approx(0.5)
  assert "linear_eval/per_class_accuracy" in tags


def test_extract_writes_ids_labels_and_view_features(knn_run, tmp_path):
  from corp_jax import extract  # pylint: disable=g-import-not-at-top
  workdir, config = knn_run
  out = str(tmp_path / "feats.npz")
  common = [f"--pretrain_workdir={workdir}", "--data=embedded:test", "--num_clips=2",
            "--num_crops=1"]
  assert extract.main(common + [f"--out={out}"]) == 0
  assert extract.main(common + [f"--out={out}.all.npz", "--all_views"]) == 0
  mean, views = np.load(out), np.load(out + ".all.npz")
  info = json.loads(str(mean["info"]))
  assert info["step"] == 2 and info["clip_len"] == config.data.clip_len
  assert mean["features"].shape == (8, 64) and views["features"].shape == (8, 2, 64)
  np.testing.assert_allclose(mean["features"], views["features"].mean(axis=1), rtol=1e-6)
  assert sorted(mean["video_id"].tolist()) == sorted(set(mean["video_id"].tolist()))
  assert (mean["label"] >= 0).all()
  assert extract.main([f"--pretrain_workdir={workdir}", "--data=/nonexistent/x-*",
                       f"--out={out}"]) == 2


def test_extract_from_a_folder_of_videos(knn_run, tmp_path):
  """videos:DIR goes through data_prep's decoder; filenames come back with the features."""
  from corp_jax import extract  # pylint: disable=g-import-not-at-top
  from tests import test_data_prep  # pylint: disable=g-import-not-at-top
  if test_data_prep.MP4 is None:
    pytest.skip("this PyAV build has no mp4 encoder")
  workdir, _ = knn_run
  for name, frames in (("a.mp4", 12), ("sub/b.mp4", 20)):
    test_data_prep.write_video(str(tmp_path / "videos" / name), test_data_prep.MP4[1], frames)
  out = str(tmp_path / "v.npz")
  assert extract.main([f"--pretrain_workdir={workdir}", f"--data=videos:{tmp_path / 'videos'}",
                       f"--out={out}", "--num_clips=1", "--num_crops=1"]) == 0
  result = np.load(out)
  assert sorted(os.path.basename(f) for f in result["filename"]) == ["a.mp4", "b.mp4"]
  assert result["features"].shape == (2, 64) and (result["label"] == -1).all()
  assert np.isfinite(result["features"]).all()
