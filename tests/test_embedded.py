"""The embedded procedural data set: renderer properties (NumPy) and the shard build (TF)."""

import os
import shutil

import numpy as np
import pytest

from corp_jax.data import embedded
from corp_jax.data import embedded_render as er
from corp_jax.data import records

TINY = dict(seed=3, num_train=6, num_test=3, frame_size=32, num_frames=6)
RISE, APPROACH, FILL, ROTATE_CW = 0, 2, 4, 6


@pytest.mark.parametrize("forward,reversed_", er.REVERSAL_PAIRS)
def test_reversed_class_is_the_forward_class_played_backwards(forward, reversed_):
  for appearance in (0, 3):
    seed = 100 * forward + appearance
    fwd = er.render_video(np.random.default_rng(seed), appearance, forward, 12, 32)
    rev = er.render_video(np.random.default_rng(seed), appearance, reversed_, 12, 32)
    assert fwd.shape == (12, 32, 32, 3) and fwd.dtype == np.uint8
    np.testing.assert_array_equal(rev, fwd[::-1])
    # The video really changes over time, so the equality above is not trivial.
    assert np.abs(fwd[0].astype(int) - fwd[-1].astype(int)).mean() > 1.0


def test_videos_are_deterministic_and_distinct():
  a = er.render_video(np.random.default_rng(7), 1, RISE, 4, 32)
  b = er.render_video(np.random.default_rng(7), 1, RISE, 4, 32)
  c = er.render_video(np.random.default_rng(8), 1, RISE, 4, 32)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a.astype(int) - c.astype(int)).mean() > 5.0  # another scene and path


def _object_colour_and_area_ratio(appearance, seed, size=64):
  # A rotating video keeps the object whole, full and at a constant size.
  frames, info = er.render_video_with_info(
      np.random.default_rng(seed), appearance, ROTATE_CW, 3, size)
  inside = info["object_mask"][0] > 0.99
  colour = frames[0][inside].mean(axis=0) / 255.0
  area_ratio = info["object_mask"][0].sum() / (np.pi * info["state"]["radius"][0] ** 2)
  return colour, area_ratio


def test_appearance_classes_differ_in_colour_and_shape():
  # Area of each shape over the area of its circumscribing radius' disk, from the SDFs.
  expected_area_ratio = {
      0: 1.0,  # disk
      1: (2 * 0.82) ** 2 / np.pi,  # square
      2: 3 * np.sqrt(3) / 4 / np.pi,  # triangle of circumradius 1
      3: 1.0 - 0.44 ** 2,  # ring 0.44..1.0
      4: (2 * 1.9 * 0.66 - 0.66 ** 2) / np.pi,  # cross of two 1.9 x 0.66 bars
  }
  colours = {}
  for appearance in range(len(er.APPEARANCE_NAMES)):
    samples = [_object_colour_and_area_ratio(appearance, seed) for seed in range(3)]
    colours[appearance] = np.array([c for c, _ in samples])
    for _, ratio in samples:
      assert ratio == pytest.approx(expected_area_ratio[appearance], abs=0.03), appearance
  centroids = {a: c.mean(axis=0) for a, c in colours.items()}
  for appearance, samples in colours.items():
    for colour in samples:  # every sample is nearest its own class' mean colour
      nearest = min(centroids, key=lambda a: np.linalg.norm(colour - centroids[a]))
      assert nearest == appearance


def _random_view(rng, size, must_contain, out=48):
  """A random resized crop (area 0.35-1, aspect 3/4-4/3) with a random horizontal flip.

  Returns a function mapping [..., H, W] arrays to [..., out, out] views (nearest
  neighbour), drawn among crops that contain every pixel of `must_contain` [H, W].
  """
  ys, xs = np.nonzero(must_contain)
  for _ in range(1000):
    area = rng.uniform(0.35, 1.0) * size * size
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    h = int(min(size, round(np.sqrt(area / aspect))))
    w = int(min(size, round(np.sqrt(area * aspect))))
    y0, x0 = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    if ys.min() >= y0 and ys.max() < y0 + h and xs.min() >= x0 and xs.max() < x0 + w:
      break
  else:
    raise AssertionError("no crop contains the object")
  rows = y0 + (np.arange(out) * h) // out
  cols = x0 + (np.arange(out) * w) // out
  flip = rng.random() < 0.5

  def view(array):
    v = array[..., rows, :][..., cols]
    return v[..., ::-1] if flip else v

  return view


def _crop_invariant_cue(motion, info, t, view):
  """A measure of the temporal phase that uses only what a cropped, flipped clip shows."""
  obj = view(info["object_mask"][t])
  if motion == RISE:  # share of the object above the horizon
    return (obj * view(info["sky_mask"].astype(np.float32))).sum() / obj.sum()
  if motion == FILL:  # share of the object's body that is filled
    return view(info["full_mask"][t]).sum() / obj.sum()
  if motion == APPROACH:  # object area in units of a landmark post's area
    posts = [view(m).sum() for m in info["landmark_masks"]]
    full_post = max(posts)  # the least cut-off post in view
    return obj.sum() / full_post
  raise ValueError(motion)


@pytest.mark.parametrize("motion", [RISE, APPROACH, FILL])
def test_temporal_cue_survives_independent_crops_and_flips(motion):
  size, length = 96, 16
  for seed in range(3):
    for reverse in (0, 1):  # the reversed class shows the same frames backwards: the cue falls
      _, info = er.render_video_with_info(
          np.random.default_rng(seed), seed % 5, motion + reverse, length, size)
      rng = np.random.default_rng(1000 + seed)
      early = int(rng.integers(0, length // 4))
      late = int(rng.integers(3 * length // 4, length))
      # Each clip gets its own crop and flip; each must keep the object (and, for APPROACH,
      # the post that serves as the ruler) in view.
      keep = (info["object_mask"][early] + info["object_mask"][late]) > 0
      if motion == APPROACH:
        keep = keep | (info["landmark_masks"][seed % len(info["landmark_masks"])] > 0)
      cue_early = _crop_invariant_cue(motion, info, early, _random_view(rng, size, keep))
      cue_late = _crop_invariant_cue(motion, info, late, _random_view(rng, size, keep))
      if reverse:
        assert cue_late < cue_early, (motion, seed, cue_early, cue_late)
      else:
        assert cue_late > cue_early, (motion, seed, cue_early, cue_late)


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("embedded_a"))
  return embedded.ensure_embedded_dataset(data_dir, **TINY)


def _shard_bytes(build):
  out = {}
  for split in ("train", "test"):
    for path in build[split]["files"]:
      with open(path, "rb") as f:
        out[f"{split}/{os.path.basename(path)}"] = f.read()
  return out


def test_build_is_deterministic(tiny_build, tmp_path):
  again = embedded.ensure_embedded_dataset(str(tmp_path), **TINY)
  assert again["directory"] != tiny_build["directory"]
  assert _shard_bytes(again) == _shard_bytes(tiny_build)
  assert len(tiny_build["train"]["files"]) == 6 and len(tiny_build["test"]["files"]) == 3


def test_records_parse_with_the_motion_label_key(tiny_build):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  metadata = tiny_build["metadata"]
  assert metadata["label_families"]["motion"] == list(er.MOTION_NAMES)
  assert metadata["reversal_pairs"] == [[0, 1], [2, 3], [4, 5], [6, 7]]
  assert len(metadata["label_families"]["combined"]) == 40
  motion_key = records.extra_label_key("motion")
  appearance_key = records.extra_label_key("appearance")
  files = tiny_build["train"]["files"]
  filenames = []
  for serialized in tf.data.TFRecordDataset(files):
    element = records.parse_sequence_example(serialized, label_key=motion_key)
    other = records.parse_sequence_example(serialized)  # clip/label/index holds motion too
    appearance = records.parse_sequence_example(serialized, label_key=appearance_key)
    assert int(element["num_frames"]) == TINY["num_frames"]
    assert int(element["label"]) == int(other["label"])
    assert 0 <= int(element["label"]) < len(er.MOTION_NAMES)
    assert 0 <= int(appearance["label"]) < len(er.APPEARANCE_NAMES)
    frame = tf.io.decode_jpeg(element[records.IMAGE_KEY][0]).numpy()
    assert frame.shape == (TINY["frame_size"], TINY["frame_size"], 3)
    filenames.append(element["filename"].numpy().decode())
  assert sorted(filenames) == [f"embedded/train/{i:06d}" for i in range(TINY["num_train"])]
  # The labels written are those of the split's class schedule.
  appearances, motions = embedded.split_classes(TINY["seed"], "train", TINY["num_train"])
  assert metadata["class_counts"]["motion"] == np.bincount(motions, minlength=8).tolist()


def test_missing_shard_triggers_a_clean_rebuild(tiny_build, tmp_path):
  data_dir = str(tmp_path / "copy")
  shutil.copytree(os.path.dirname(tiny_build["directory"]), data_dir)
  copy = embedded.ensure_embedded_dataset(data_dir, **TINY)  # complete: nothing rebuilt
  before = _shard_bytes(copy)
  victim = copy["train"]["files"][2]
  untouched = copy["test"]["files"][0]
  mtime = os.stat(untouched).st_mtime_ns
  os.remove(victim)
  with open(victim + ".tmp-12345", "wb") as f:  # a crashed writer's leftover
    f.write(b"partial")
  rebuilt = embedded.ensure_embedded_dataset(data_dir, **TINY)
  assert _shard_bytes(rebuilt) == before
  assert not os.path.exists(victim + ".tmp-12345")
  assert os.stat(untouched).st_mtime_ns == mtime  # the complete split was left alone


def test_invalid_arguments_name_the_key(tmp_path):
  with pytest.raises(ValueError, match="num_frames"):
    embedded.ensure_embedded_dataset(str(tmp_path), num_frames=1)
  with pytest.raises(ValueError, match="motion"):
    er.render_video(np.random.default_rng(0), 0, 8, 4, 32)


def test_objects_partly_outside_the_frame_render():
  """Objects whose window crosses the frame's edge (small frames make that common) render,
  with the filled part inside the object's coverage."""
  rng = np.random.default_rng(7)
  for _ in range(6):
    for motion in range(len(er.MOTION_NAMES)):
      frames, info = er.render_video_with_info(rng, 0, motion, 6, 24)
      assert frames.shape == (6, 24, 24, 3)
      assert np.all(info["full_mask"] <= info["object_mask"] + 1e-6)
