"""The TensorFlow-free embedded source: the array cache, TF's resize in NumPy, training and
evaluation views against the TF pipelines, determinism and resume, and the fidelity protocol
run with TensorFlow made unimportable."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from corp_jax.config_defaults import pretrain_config
from corp_jax.data import array_frames
from corp_jax.data import array_stream
from corp_jax.data import embedded
from corp_jax.data import embedded_arrays
from corp_jax.data import sampling
from corp_jax.data.from_config import augment_config
from corp_jax.evaluate import array_data
from corp_jax.evaluate import job as job_lib
from corp_jax.evaluate import subsets
from corp_jax.evaluate.config_defaults import linear_eval_config

# The demo recipe's geometry (configs/*.py without a preset) on a few videos.
SIZES = dict(num_train=8, num_test=4, frame_size=64, num_frames=32)
# JPEG (quality 90) round trip of the embedded frames: the TF path sees decoded JPEGs, the
# array path the rendered pixels. Measured on these videos: mean |error| 0.0113 per frame
# pixel (2.9 grey levels), 0.0077 per training clip (at most 0.0083). A resized pixel is a
# convex combination of frame pixels, so its error is at most the same combination of their
# errors: the bound is the frames' own error, rounded up. Another video, a shifted start or
# a wrong resize differs by far more; and the same clips computed from the decoded JPEGs
# must equal TF's to float rounding, which separates the codec from the crop/resize code.
JPEG_MEAN_ABS_BOUND = 0.012


def _demo_data(**sizes):
  config = pretrain_config("corp_f")
  with config.unlocked():
    for name, value in sizes.items():
      config.data[f"embedded_{name}"] = value
  return config


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("embedded"))
  return {"records": embedded.ensure_embedded_dataset(root, **SIZES),
          "arrays": embedded_arrays.ensure_embedded_arrays(root, **SIZES), "root": root}


def _decoded_videos(files):
  """{video id: decoded JPEG frames uint8 [L, H, W, 3]} of embedded shards."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from corp_jax.data import records  # pylint: disable=g-import-not-at-top
  out = {}
  for file_index, path in enumerate(sorted(files)):
    for record_index, serialized in enumerate(tf.data.TFRecordDataset(path)):
      elem = records.parse_sequence_example(serialized)
      out[record_index * len(files) + file_index] = np.stack(
          [tf.io.decode_jpeg(j, channels=3).numpy() for j in elem[records.IMAGE_KEY]])
  return out


def test_resize_and_views_are_tfs():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from corp_jax.data import crop  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for height, width, out_h, out_w in ((64, 64, 32, 32), (64, 64, 37, 37), (32, 32, 37, 37),
                                      (48, 64, 24, 40), (40, 40, 40, 40)):
    frames = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    expected = (crop.resize_tf(frames, out_h) if out_h == out_w  # the training resize
                else tf.image.resize(frames, [out_h, out_w], method="bilinear"))
    np.testing.assert_allclose(array_frames.resize_bilinear(frames, out_h, out_w),
                               expected.numpy(), atol=1e-3)
    shape = crop.resize_short_side_tf(tf.zeros((1, height, width, 3)), 37).shape[1:3]
    assert array_frames.short_side_size(height, width, 37) == tuple(shape)
  clips = rng.random((2, 3, 37, 49, 3)).astype(np.float32)
  for num_crops in (1, 3):
    np.testing.assert_array_equal(array_frames.spatial_crops(clips, 32, num_crops),
                                  crop.spatial_crops_tf(clips, 32, num_crops).numpy())


def test_cache_holds_the_rendered_videos_and_is_reused(tmp_path):
  sizes = dict(num_train=3, num_test=2, frame_size=16, num_frames=4)
  info = embedded_arrays.ensure_embedded_arrays(str(tmp_path), **sizes)
  frames, labels = embedded_arrays.load_split(info["train"])
  for index, appearance, motion, video in embedded.render_split(0, "train", 3, 16, 4):
    np.testing.assert_array_equal(frames[index], video)
    assert (labels["appearance"][index], labels["motion"][index]) == (appearance, motion)
  assert labels["combined"][1] == embedded.embedded_render.combined_class(
      labels["appearance"][1], labels["motion"][1])
  assert embedded_arrays.label_family(info["metadata"], "clip/label/index") == "motion"
  assert embedded_arrays.label_family(info["metadata"], "label/appearance/index") == "appearance"
  with pytest.raises(ValueError, match="label/motion/index"):
    embedded_arrays.label_family(info["metadata"], "label/colour/index")
  stamp = os.stat(info["test"]["frames_path"]).st_mtime_ns
  assert embedded_arrays.ensure_embedded_arrays(str(tmp_path), **sizes)["test"] == info["test"]
  assert os.stat(info["test"]["frames_path"]).st_mtime_ns == stamp  # reused, not rewritten
  os.remove(info["train"]["labels_path"])  # a torn split is rendered again
  again = embedded_arrays.ensure_embedded_arrays(str(tmp_path), **sizes)
  np.testing.assert_array_equal(embedded_arrays.load_split(again["train"])[1]["motion"],
                                labels["motion"])
  assert not [p for p in os.listdir(info["directory"]) if p.endswith(".partial")]
  with pytest.raises(ValueError, match="embedded_frame_size"):
    embedded_arrays.ensure_embedded_arrays(str(tmp_path), frame_size=8)


@pytest.mark.parametrize("num_clips", [2, 1])  # pretraining clips; linear-evaluation views
def test_training_clips_match_the_tf_pipeline(sets, num_clips):
  from corp_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  data = _demo_data(**SIZES).data
  geometry = dict(clip_len=data.clip_len, stride=data.stride, crop_size=data.crop_size)
  batch = next(pipeline.make_train_dataset(
      sets["records"]["train"]["files"], batch_size_per_process=6, num_clips=num_clips,
      seed=3, shuffle_buffer=8, augment=augment_config(data), process_index=0,
      process_count=1, label_key="label/appearance/index", **geometry))
  frames, labels = embedded_arrays.load_split(sets["arrays"]["train"])
  decoded = _decoded_videos(sets["records"]["train"]["files"])
  for row, video in enumerate(batch["video_id"]):
    indices = sampling.clip_frame_indices(batch["starts"][row], data.clip_len, data.stride,
                                          SIZES["num_frames"])
    from_arrays = array_stream.clip_pixels(frames[video], indices, data.crop_size)
    from_jpegs = array_stream.clip_pixels(decoded[video], indices, data.crop_size)
    np.testing.assert_allclose(from_jpegs, batch["clips"][row], atol=1e-5)
    assert np.mean(np.abs(from_arrays - batch["clips"][row])) < JPEG_MEAN_ABS_BOUND
    assert labels["appearance"][video] == batch["label"][row]
  ours = next(array_stream.train_batches(
      sets["arrays"]["train"], batch_size_per_process=6, num_clips=num_clips, seed=3,
      label_key="label/appearance/index", **geometry))
  assert ours["clips"].shape == batch["clips"].shape and ours["clips"].dtype == np.float32
  gaps = np.abs(np.diff(ours["starts"], axis=1))
  assert np.all(gaps >= sampling.min_start_gap(SIZES["num_frames"], data.clip_len,
                                               data.stride, num_clips))


def test_probe_inputs_match_the_tf_evaluation_inputs(sets):
  config = linear_eval_config("test")
  pre = _demo_data(**SIZES)
  with config.unlocked():
    config.data.cache_dir = sets["root"]
    config.label_key = "label/motion/index"
    for name, value in SIZES.items():
      config.data[f"embedded_{name}"] = value
  ours, theirs = array_data.resolve_data(config, pre), job_lib.resolve_data(config, pre)
  for field in ("num_classes", "class_names", "num_train_videos", "clip_len", "stride",
                "crop_size", "augment", "reversal_pairs"):
    assert getattr(ours, field) == getattr(theirs, field), field
  keys = ["clip/label/index", "label/appearance/index", "label/combined/index"]
  for split in ("train_source", "eval_source"):
    mine = array_data.read_labels(getattr(ours, split), keys)
    tf_table = subsets.read_labels(getattr(theirs, split), keys)
    for key in keys:
      np.testing.assert_array_equal(mine[key], subsets.labels_for(mine["video_id"], tf_table,
                                                                  key))
  decoded = _decoded_videos(theirs.eval_source)
  tf_batches = list(job_lib.eval_stream(config, theirs))
  our_batches = list(array_data.eval_stream(config, ours))
  assert len(tf_batches) == len(our_batches)
  for tf_batch, our_batch in zip(tf_batches, our_batches):
    for key in ("label", "video_id", "mask"):
      np.testing.assert_array_equal(our_batch[key], tf_batch[key])
    for row in np.flatnonzero(tf_batch["mask"]):
      video = int(tf_batch["video_id"][row])
      views = array_frames.eval_views(decoded[video], num_clips=config.eval.num_clips,
                                      num_crops=config.eval.num_crops, clip_len=ours.clip_len,
                                      stride=ours.stride, crop_size=ours.crop_size)
      np.testing.assert_allclose(views, tf_batch["clips"][row], atol=1e-5)
      assert np.mean(np.abs(our_batch["clips"][row] - tf_batch["clips"][row])) < \
          JPEG_MEAN_ABS_BOUND
  views = next(array_data.train_stream(config, ours, batch_size=4, seed=0))
  assert views["clips"].shape == (4, 1, ours.clip_len, ours.crop_size, ours.crop_size, 3)


def test_stream_is_deterministic_resumable_and_split_over_processes(sets):
  split = sets["arrays"]["train"]
  args = dict(num_clips=2, clip_len=4, stride=3, crop_size=16, seed=5,
              label_key="clip/label/index")
  stream = array_stream.train_batches(split, batch_size_per_process=4, **args)
  first = [next(stream) for _ in range(4)]
  # Every video once per epoch (8 videos, 4 per step).
  assert sorted(np.concatenate([b["video_id"] for b in first[:2]])) == list(range(8))
  resumed = array_stream.train_batches(split, batch_size_per_process=4, start_step=2, **args)
  halves = [array_stream.train_batches(split, batch_size_per_process=2, start_step=1,
                                       process_index=p, process_count=2, **args)
            for p in (0, 1)]
  joined, third = [next(h) for h in halves], next(resumed)
  for key in ("clips", "starts", "label", "video_id"):
    np.testing.assert_array_equal(third[key], first[2][key])
    np.testing.assert_array_equal(np.concatenate([j[key] for j in joined]), first[1][key])
  other = next(array_stream.train_batches(split, batch_size_per_process=4,
                                          **{**args, "seed": 6}))
  assert not np.array_equal(other["starts"], first[0]["starts"])


def test_options_reverse_shuffle_and_uint8(sets):
  split = sets["arrays"]["train"]
  frames, _ = embedded_arrays.load_split(split)
  args = dict(batch_size_per_process=3, num_clips=2, clip_len=4, stride=3, crop_size=64,
              seed=1, label_key="clip/label/index")
  plain = next(array_stream.train_batches(split, output_uint8=True, **args))
  backwards = next(array_stream.train_batches(split, output_uint8=True, reverse_prob=1.0,
                                              **args))
  shuffled = next(array_stream.train_batches(split, output_uint8=True, shuffle_frames=True,
                                             **args))
  flipped = next(array_stream.train_batches(split, output_uint8=True, flip_prob=1.0, **args))
  np.testing.assert_array_equal(flipped["clips"], plain["clips"][:, :, :, :, ::-1])
  assert plain["clips"].dtype == np.uint8
  np.testing.assert_array_equal(plain["starts"], backwards["starts"])
  for row, video in enumerate(plain["video_id"]):
    indices = sampling.clip_frame_indices(plain["starts"][row], 4, 3, SIZES["num_frames"])
    np.testing.assert_array_equal(plain["clips"][row], frames[video][indices])  # same size
    np.testing.assert_array_equal(backwards["clips"][row],
                                  frames[video][SIZES["num_frames"] - 1 - indices])
    assert sorted(map(bytes, shuffled["clips"][row, 0])) == sorted(
        map(bytes, plain["clips"][row, 0]))
  assert not np.array_equal(shuffled["clips"], plain["clips"])


@pytest.mark.parametrize("cache_mb", [0.6, 100.0])  # half the videos kept; all of them
def test_kept_resizes_give_the_same_clips_over_epochs(sets, cache_mb):
  split = sets["arrays"]["train"]
  args = dict(batch_size_per_process=4, num_clips=2, clip_len=4, stride=3, crop_size=20,
              seed=2, label_key="clip/label/index", reverse_prob=0.5, shuffle_frames=True,
              flip_prob=0.5)
  plain = array_stream.train_batches(split, **args)
  kept = array_stream.train_batches(split, cache_mb=cache_mb, **args)
  for _ in range(6):  # three epochs of the 8 videos: kept resizes are read again
    a, b = next(plain), next(kept)
    for key in ("clips", "starts", "label", "video_id"):
      np.testing.assert_array_equal(a[key], b[key])
  for output_uint8 in (False, True):
    frames, _ = embedded_arrays.load_split(split)
    videos = array_stream.ResizedVideos(frames, 20, int(cache_mb * 2 ** 20))
    assert videos.capacity == (4 if cache_mb < 1 else len(frames))
    indices = np.array([[0, 3, 6, 9], [2, 5, 8, 11]])
    flips = np.array([True, False])
    for _ in range(2):  # filling, then reading: a flip must not change what is kept
      np.testing.assert_array_equal(
          videos.clips(1, indices, flips, output_uint8),
          array_stream.clip_pixels(frames[1], indices, 20, flips, output_uint8))
  with pytest.raises(ValueError, match="config.data.arrays_cache_mb"):
    next(array_stream.train_batches(split, cache_mb=-1, **args))


def test_array_source_checks_the_crop_area_and_augments_on_the_accelerator():
  from corp_jax.train import array_inputs  # pylint: disable=g-import-not-at-top
  from corp_jax.train import inputs  # pylint: disable=g-import-not-at-top
  config = pretrain_config("corp_f")
  with config.unlocked():
    config.data.source = "embedded_arrays"
  inputs.validate_data_config(config.data)
  assert not array_inputs.accelerator_augments(config.data)  # the demo: float clips
  with config.unlocked():
    config.data.aug_flip_prob = 0.5
  assert array_inputs.accelerator_augments(config.data)
  with config.unlocked():
    config.data.aug_crop_area_min = 0.3  # the paper's crop: cut on the host
  inputs.validate_data_config(config.data)
  assert array_inputs.crop_ranges(config.data) == {"crop_area_range": (0.3, 1.0),
                                                   "crop_aspect_ratio_range": (0.5, 2.0),
                                                   "crop_shared": False}
  for bad in (0.0, 1.5):
    with config.unlocked():
      config.data.aug_crop_area_min = bad
    with pytest.raises(ValueError, match="config.data.aug_crop_area_min"):
      inputs.validate_data_config(config.data)


@pytest.mark.slow
def test_pretraining_on_arrays_augments_on_the_accelerator(tmp_path, monkeypatch):
  from corp_jax.train import inputs  # pylint: disable=g-import-not-at-top
  from corp_jax.train import loop  # pylint: disable=g-import-not-at-top
  from train_helpers import tiny_config  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("CORP_JAX_CACHE", str(tmp_path / "cache"))
  config = tiny_config("corp_f", steps=2, source="embedded_arrays", data__embedded_num_train=8,
                       data__embedded_num_test=2, data__embedded_frame_size=16,
                       data__embedded_num_frames=16, data__aug_flip_prob=0.5,
                       data__aug_color_jitter_prob=0.8)
  stream = inputs.make_train_inputs(config, per_process_batch=8, start_step=0)
  assert stream.uint8_clips and next(stream.iterator)["clips"].dtype == np.uint8
  _, summary = loop.pretrain(config, str(tmp_path / "run"))
  assert summary["step"] == 2 and np.isfinite(summary["final_metrics"]["loss"])


def test_arrays_source_needs_the_embedded_set_or_an_array_set(tmp_path, capsys):
  from corp_jax.tools import fidelity  # pylint: disable=g-import-not-at-top
  from corp_jax.tools import fidelity_probe  # pylint: disable=g-import-not-at-top
  args = fidelity.build_parser().parse_args(["--source", "arrays"])
  assert "data.source=embedded_arrays" in fidelity.pretrain_overrides(args, {"name": "embedded"},
                                                                      seed=0)
  manifest = {"name": "photo", "train_pattern": "/s/train-*", "test_pattern": "/s/test-*",
              "families": {"object": {"class_names": ["a"], "of_label": [0]}}}
  (tmp_path / "set.json").write_text(json.dumps(manifest))
  assert fidelity.main(["--set", str(tmp_path / "set.json"), "--source", "arrays",
                        "--root", str(tmp_path)]) == 2
  assert "holds shards only" in capsys.readouterr().err
  with pytest.raises(ValueError, match="set with 'arrays_dir'"):
    fidelity_probe.probe(str(tmp_path), str(tmp_path / "set.json"), source="arrays")
  assert fidelity_probe.main(["p", "w", "embedded", "o.json", "--source", "jpeg"]) == 2


_NO_TF_RUN = textwrap.dedent("""
    import json, sys
    class Block:  # a host without TensorFlow
      def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
          raise ImportError(name + " is not installed here")
    sys.meta_path.insert(0, Block())
    from corp_jax.tools import fidelity
    code = fidelity.main(json.loads(sys.argv[1]))
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
    print(json.dumps({"code": code, "tensorflow_modules": loaded}))
""")


@pytest.mark.slow
def test_tiny_protocol_on_arrays_runs_without_tensorflow(tmp_path):
  argv = ["--set", "embedded", "--source", "arrays", "--root", str(tmp_path / "root"),
          "--objectives", "corp_f", "--seeds", "0", "--steps", "2", "--preset", "test",
          "--linear_preset", "test", "--in_process"]
  for item in ("data.embedded_num_train=16", "data.embedded_num_test=8",
               "data.embedded_frame_size=32", "data.embedded_num_frames=8",
               "train.num_devices=2", "train.async_checkpoints=False",
               "data.aug_crop_area_min=0.3"):  # the paper's crop, cut on the host
    argv += ["--override", item]
  env = dict(os.environ, CORP_JAX_CACHE=str(tmp_path / "cache"))
  result = subprocess.run([sys.executable, "-c", _NO_TF_RUN, json.dumps(argv)],
                          capture_output=True, text=True, timeout=600, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads(result.stdout.strip().splitlines()[-1]) == {"code": 0,
                                                               "tensorflow_modules": []}
  out = tmp_path / "root" / "embedded_arrays"
  run = json.loads((out / "fidelity.json").read_text())["runs"][0]
  assert run["settings"]["source"] == "arrays" and run["probe"]["source"] == "arrays"
  assert set(run["probe"]) >= {"appearance", "motion"} and 0 <= run["order_acc"] <= 1
  config = json.loads((out / "corp_f" / "seed0" / "pretrain" / "config.json").read_text())
  assert config["data"]["source"] == "embedded_arrays"
  assert config["data"]["aug_crop_area_min"] == 0.3
  assert os.listdir(tmp_path / "cache" / "embedded") == [
      embedded.config_name(0, 16, 8, 32, 8) + "-arrays"]  # no TFRecords were written
