"""The photo set as NumPy arrays (no codec, no TensorFlow): the renderings of the shard set,
a deterministic and crash-safe build, the `arrays` training source, and the protocol on it."""

import json
import os

import numpy as np
import pytest

from corp_jax.data import embedded_arrays
from corp_jax.data import photo_arrays
from corp_jax.data import photo_render
from corp_jax.tools import fidelity
from corp_jax.tools import photo_set

pytest.importorskip("skimage")

_TINY = dict(seed=3, num_train=10, num_test=5, num_frames=6, size=16)


def _file_bytes(directory):
  return {name: open(os.path.join(directory, name), "rb").read()
          for name in sorted(os.listdir(directory))}


def test_array_videos_are_the_shard_sets_renderings_with_their_labels(tmp_path):
  info = photo_arrays.write_photo_arrays(str(tmp_path / "a"), log=lambda _: None, **_TINY)
  frames, labels = embedded_arrays.load_split(info["train"])
  assert frames.shape == (10, 6, 16, 16, 3) and frames.dtype == np.uint8
  motions, photos = photo_arrays.split_classes(3, "train", 10)
  np.testing.assert_array_equal(labels["motion"], motions)
  np.testing.assert_array_equal(labels["photo"], photos)
  np.testing.assert_array_equal(labels["combined"], motions * len(photo_render.PHOTO_NAMES)
                                + photos)
  for index in (0, 7):
    expected = photo_render.render_video(photo_arrays.video_rng(3, "train", index),
                                         int(photos[index]), int(motions[index]), 6, 16)
    np.testing.assert_array_equal(frames[index], expected)
  # The shard set draws its classes and generators from the same functions.
  assert photo_set.split_classes is photo_arrays.split_classes
  assert photo_set.video_rng is photo_arrays.video_rng
  metadata = info["metadata"]
  assert embedded_arrays.label_family(metadata, "clip/label/index") == "combined"
  assert embedded_arrays.label_family(metadata, "label/photo/index") == "photo"
  assert metadata["reversal_pairs"] == [list(p) for p in photo_render.REVERSAL_PAIRS]
  assert info["test"]["num_examples"] == 5


def test_build_is_deterministic_for_any_worker_count_and_kept_when_complete(tmp_path):
  one = photo_arrays.write_photo_arrays(str(tmp_path / "one"), log=lambda _: None, **_TINY)
  photo_arrays.write_photo_arrays(str(tmp_path / "two"), workers=2, log=lambda _: None, **_TINY)
  assert _file_bytes(tmp_path / "one") == _file_bytes(tmp_path / "two")
  stamp = os.stat(one["train"]["frames_path"]).st_mtime_ns
  photo_arrays.write_photo_arrays(str(tmp_path / "one"), log=lambda _: None, **_TINY)
  assert os.stat(one["train"]["frames_path"]).st_mtime_ns == stamp  # found, not redone
  # Other arguments render again; a torn split (no metadata) is not taken for complete.
  photo_arrays.write_photo_arrays(str(tmp_path / "one"), log=lambda _: None,
                                  **dict(_TINY, num_test=4))
  assert photo_arrays.open_arrays(str(tmp_path / "one"))["test"]["num_examples"] == 4
  os.remove(tmp_path / "one" / "train.metadata.json")
  with pytest.raises(FileNotFoundError, match="photo_set --out DIR --arrays"):
    photo_arrays.open_arrays(str(tmp_path / "one"))
  with pytest.raises(ValueError, match="num_frames must be >= 2"):
    photo_arrays.write_photo_arrays(str(tmp_path / "x"), **dict(_TINY, num_frames=1))


def _build_array_set(out):
  code = photo_set.main(["--out", str(out), "--arrays", "--seed", "3", "--num_train", "16",
                         "--num_test", "8", "--num_frames", "8", "--size", "32"])
  assert code == 0
  return json.loads((out / "set.json").read_text())


def test_photo_set_arrays_option_writes_an_array_manifest(tmp_path, capsys):
  manifest = _build_array_set(tmp_path / "set")
  assert manifest["arrays_dir"] == str(tmp_path / "set" / "arrays")
  assert "train_pattern" not in manifest and manifest["arguments"]["arrays"] is True
  assert set(manifest["families"]) == {"motion", "photo"}
  assert not (tmp_path / "set" / "videos").exists()
  assert photo_set.main(["--out", str(tmp_path / "k"), "--arrays",
                         "--keyframe_interval", "1"]) == 2
  assert "--keyframe_interval" in capsys.readouterr().err
  # The protocol refuses TFRecord inputs for it, naming the fix.
  assert fidelity.main(["--set", str(tmp_path / "set" / "set.json"), "--source", "records",
                        "--root", str(tmp_path / "root")]) == 2
  assert "pass --source arrays" in capsys.readouterr().err


def test_arrays_source_needs_its_folder():
  from corp_jax.config_defaults import pretrain_config  # pylint: disable=g-import-not-at-top
  from corp_jax.train import inputs  # pylint: disable=g-import-not-at-top
  config = pretrain_config("corp_f", "test")
  config.data.source = "arrays"
  with pytest.raises(ValueError, match="config.data.arrays_dir is required"):
    inputs.validate_data_config(config.data)
  config.data.arrays_dir = "/no/such/folder"
  with pytest.raises(FileNotFoundError, match="no complete 'train' array split"):
    inputs.make_train_inputs(config, per_process_batch=2, start_step=0)


def test_tiny_protocol_on_the_array_photo_set(tmp_path, monkeypatch):
  monkeypatch.setenv("CORP_JAX_CACHE", str(tmp_path / "cache"))
  manifest = _build_array_set(tmp_path / "set")
  argv = ["--set", str(tmp_path / "set" / "set.json"), "--source", "arrays",
          "--root", str(tmp_path / "root"), "--objectives", "corp_f", "--seeds", "0",
          "--steps", "2", "--preset", "test", "--linear_preset", "test", "--in_process",
          "--override", "train.async_checkpoints=False"]
  assert fidelity.main(argv) == 0
  result = json.loads((tmp_path / "root" / "photo_arrays_8f_seed3" / "fidelity.json").read_text())
  run = result["runs"][0]
  assert "data.source=arrays" in fidelity.pretrain_overrides(
      fidelity.build_parser().parse_args(argv), manifest, 0)
  for family in ("motion", "photo"):
    assert 0.0 <= run["probe"][family]["linear_top1"] <= 1.0
  assert run["probe"]["source"] == "arrays" and 0.0 <= run["order_acc"] <= 1.0
  assert run["probe"]["motion"]["num_classes"] == 10
  assert run["probe"]["photo"]["num_classes"] == len(photo_render.PHOTO_NAMES)


def test_jobs_run_concurrently_and_keep_the_table_order(tmp_path, monkeypatch, capsys):
  import threading  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  active, peak, lock = [0], [0], threading.Lock()

  def fake_run(args, manifest, objective, seed, run_dir):
    with lock:
      active[0] += 1
      peak[0] = max(peak[0], active[0])
    time.sleep(0.2 if (objective, seed) == ("simclr", 0) else 0.05)  # the first ends last
    with lock:
      active[0] -= 1
    return {"settings": {"objective": objective, "seed": seed}, "order_acc": None,
            "probe": {"motion": {"linear_top1": 0.1, "knn_top1": 0.1, "num_classes": 10,
                                 "chance": 0.1}},
            "pretrain_wall_s": 1.0, "probe_wall_s": 1.0, "cpu_s": 1.0,
            "load_average_1min": {}}

  monkeypatch.setattr(fidelity, "run_one", fake_run)
  monkeypatch.setattr(fidelity, "run_clip_overlap", lambda *_: None)
  assert fidelity.main(["--set", "embedded", "--root", str(tmp_path), "--objectives",
                        "simclr,corp_f", "--seeds", "0,1", "--jobs", "4"]) == 0
  assert peak[0] > 1
  runs = json.loads((tmp_path / "embedded" / "fidelity.json").read_text())["runs"]
  assert [(r["settings"]["seed"], r["settings"]["objective"]) for r in runs] == [
      (0, "simclr"), (0, "corp_f"), (1, "simclr"), (1, "corp_f")]
  assert fidelity.main(["--jobs", "2", "--in_process"]) == 2
  assert fidelity.main(["--jobs", "0"]) == 2
  assert "--jobs" in capsys.readouterr().err
