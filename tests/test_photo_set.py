"""The photo evaluation set: renderer contract, deterministic build, data_prep conversion."""

import argparse
import json
import os

import numpy as np
import pytest

from corp_jax.data import photo_render
from corp_jax.tools import photo_set

pytest.importorskip("skimage")
av = pytest.importorskip("av")


def test_reversed_class_is_the_forward_video_backwards_and_static_is_still():
  for pair_start in range(0, len(photo_render.MOTION_NAMES), 2):
    forward = photo_render.render_video(np.random.default_rng(3), 1, pair_start, 6, 16)
    backward = photo_render.render_video(np.random.default_rng(3), 1, pair_start + 1, 6, 16)
    assert forward.shape == (6, 16, 16, 3) and forward.dtype == np.uint8
    np.testing.assert_array_equal(forward, backward[::-1])
    assert np.abs(np.diff(forward.astype(np.int32), axis=0)).max() > 0  # it moves
  still = photo_render.render_video(np.random.default_rng(3), 1, 0, 6, 16, static=True)
  assert (still == still[:1]).all()
  with pytest.raises(ValueError, match="motion must be"):
    photo_render.render_video(np.random.default_rng(0), 0, 10, 6, 16)


def test_photos_are_distinct_real_images():
  photos = photo_render.load_photos()
  assert len(photos) == len(photo_render.PHOTO_NAMES)
  for image in photos:
    assert min(image.shape[:2]) == photo_render.WORK_SIDE and image.std() > 0.05
  means = np.array([p.mean(axis=(0, 1)) for p in photos])
  assert len({tuple(np.round(m, 2)) for m in means}) == len(photos)


def _decoded_keyframes(path):
  with av.open(path) as container:
    return [frame.key_frame for frame in container.decode(video=0)]


def test_encoding_is_deterministic_and_keyframe_interval_is_honoured(tmp_path):
  frames = photo_render.render_video(np.random.default_rng(1), 2, 4, 12, 32)
  paths = [str(tmp_path / f"{name}.mp4") for name in ("a", "b", "all_key")]
  photo_set.encode_video(paths[0], frames)
  photo_set.encode_video(paths[1], frames)
  photo_set.encode_video(paths[2], frames, keyframe_interval=1)
  with open(paths[0], "rb") as a, open(paths[1], "rb") as b:
    assert a.read() == b.read()
  default_keys = _decoded_keyframes(paths[0])
  assert len(default_keys) == 12 and default_keys[0] and not any(default_keys[1:])
  assert all(_decoded_keyframes(paths[2]))


def _args(**overrides):
  values = dict(seed=0, num_train=6, num_test=3, num_frames=6, size=16, keyframe_interval=0,
                static=False, num_shards=2, workers=0, overwrite=False)
  values.update(overrides)
  return argparse.Namespace(**values)


def test_build_converts_through_data_prep_and_repeats_exactly(tmp_path):
  from corp_jax.evaluate import subsets
  quiet = lambda _: None
  manifest_path = photo_set.build(str(tmp_path / "a"), _args(), log=quiet)
  with open(manifest_path) as f:
    manifest = json.load(f)
  table = subsets.read_labels(manifest["train_pattern"], [manifest["label_key"]])
  assert len(table["video_id"]) == 6
  metadata = json.load(open(os.path.join(str(tmp_path / "a"), "shards", "train.metadata.json")))
  assert metadata["class_names"] == photo_set.combined_names()
  motions, photos = photo_set.split_classes(0, "train", 6)
  expected = sorted((motions * len(photo_render.PHOTO_NAMES) + photos).tolist())
  assert sorted(table[manifest["label_key"]].tolist()) == expected
  families = manifest["families"]
  combined = np.asarray(table[manifest["label_key"]])
  assert sorted(np.asarray(families["motion"]["of_label"])[combined].tolist()) == sorted(
      motions.tolist())
  assert families["motion"]["reversal_pairs"][0] == [0, 1]
  # Same arguments, another folder: the same video files and annotations.
  photo_set.write_videos(str(tmp_path / "b"), _args(), log=quiet)
  for name in ("train.csv", "test.csv"):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
  for split, count in (("train", 6), ("test", 3)):
    for index in range(count):
      rel = os.path.join("videos", split, f"{index:06d}.mp4")
      with open(tmp_path / "a" / rel, "rb") as a, open(tmp_path / "b" / rel, "rb") as b:
        assert a.read() == b.read()
  # A finished set is found; other arguments in the same folder are refused.
  assert photo_set.build(str(tmp_path / "a"), _args(), log=quiet) == manifest_path
  with pytest.raises(SystemExit, match="other arguments"):
    photo_set.build(str(tmp_path / "a"), _args(static=True), log=quiet)
