"""Training and evaluation pipelines on tiny shards whose pixels encode (video, frame).

Frame f of video v is a flat colour: R = 10 + 6 f, G = 20 + 20 v, B = 128. Flat colours
survive JPEG, any crop and any resize, so every output pixel tells which frame it came from.
"""

import numpy as np
import pytest

from corp_jax.data import eval_pipeline, pipeline, read, records, sampling, shard_writer
from corp_jax.data.augment_params import AugmentConfig

FRAME_H, FRAME_W = 40, 48
VIDEO_LENGTHS = [20, 24, 40, 33, 28, 36, 22, 30]  # 8 videos, label = video number
NO_COLOR = AugmentConfig().without_color()


def _frame(video: int, index: int) -> np.ndarray:
  frame = np.empty((FRAME_H, FRAME_W, 3), np.uint8)
  frame[..., 0] = 10 + 6 * index
  frame[..., 1] = 20 + 20 * video
  frame[..., 2] = 128
  return frame


def decode_frame_index(clip_frames: np.ndarray) -> np.ndarray:
  """[..., H, W, 3] uint8/float(0..255) -> [...] frame index (from the R channel)."""
  red = clip_frames[..., 0].astype(np.float64).mean(axis=(-1, -2))
  return np.round((red - 10.0) / 6.0).astype(np.int64)


def decode_video(clip_frames: np.ndarray) -> np.ndarray:
  green = clip_frames[..., 1].astype(np.float64).mean(axis=(-1, -2))
  return np.round((green - 20.0) / 20.0).astype(np.int64)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
  import tensorflow as tf
  directory = str(tmp_path_factory.mktemp("shards"))
  serialized = []
  for video, length in enumerate(VIDEO_LENGTHS):
    jpegs = [tf.io.encode_jpeg(_frame(video, f), quality=95).numpy() for f in range(length)]
    example = records.make_sequence_example(jpegs, label_index=video, filename=f"v{video}")
    serialized.append(example.SerializeToString())
  shard_writer.write_shards(directory, "tiny", serialized, num_shards=4)
  return directory


def _pattern(directory):
  return shard_writer.shard_pattern(directory, "tiny")


def _train(directory, **overrides):
  kwargs = dict(batch_size_per_process=3, num_clips=2, clip_len=4, stride=2, crop_size=16,
                seed=7, shuffle_buffer=8, augment=NO_COLOR, accel_aug=True,
                process_index=0, process_count=1, cycle_length=2)
  kwargs.update(overrides)
  return pipeline.make_train_dataset(_pattern(directory), **kwargs)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_train_batch_shapes_and_dtypes(shard_dir):
  batch = next(_train(shard_dir))
  assert batch["clips"].shape == (3, 2, 4, 16, 16, 3) and batch["clips"].dtype == np.uint8
  assert batch["starts"].shape == (3, 2) and batch["starts"].dtype == np.int32
  assert batch["label"].shape == (3,) and batch["label"].dtype == np.int32
  assert batch["video_id"].shape == (3,) and batch["video_id"].dtype == np.int32
  float_batch = next(_train(shard_dir, accel_aug=False, augment=AugmentConfig()))
  clips = float_batch["clips"]
  assert clips.dtype == np.float32 and clips.min() >= 0.0 and clips.max() <= 1.0


def test_train_linear_color_mode_is_deterministic_and_in_range(shard_dir):
  linear = AugmentConfig(color_mode="linear")
  first = _take(_train(shard_dir, accel_aug=False, augment=linear), 2)
  again = _take(_train(shard_dir, accel_aug=False, augment=linear), 2)
  for batch, other in zip(first, again):
    clips = batch["clips"]
    assert clips.shape == (3, 2, 4, 16, 16, 3) and clips.dtype == np.float32
    assert clips.min() >= 0.0 and clips.max() <= 1.0
    np.testing.assert_array_equal(clips, other["clips"])
    np.testing.assert_array_equal(batch["starts"], other["starts"])


def test_train_frames_match_returned_starts(shard_dir):
  for batch in _take(_train(shard_dir), 6):  # 18 videos: more than two epochs
    for b in range(3):
      video = int(batch["label"][b])
      length = VIDEO_LENGTHS[video]
      expected = sampling.clip_frame_indices(batch["starts"][b], 4, 2, length)
      np.testing.assert_array_equal(decode_frame_index(batch["clips"][b]), expected)
      assert np.all(decode_video(batch["clips"][b]) == video)
      gap = int(sampling.min_start_gap(length, 4, 2, 2))
      assert abs(int(batch["starts"][b, 0]) - int(batch["starts"][b, 1])) >= gap


def test_video_ids_are_stable_and_unique(shard_dir):
  seen = {}
  for batch in _take(_train(shard_dir, batch_size_per_process=4), 6):  # three epochs
    for video_id, label in zip(batch["video_id"], batch["label"]):
      assert seen.setdefault(int(video_id), int(label)) == int(label)
  assert len(seen) == len(VIDEO_LENGTHS)
  assert sorted(seen.values()) == list(range(len(VIDEO_LENGTHS)))


@pytest.mark.parametrize("cache", [False, True])
def test_each_epoch_visits_every_video_once(shard_dir, cache):
  batches = _take(_train(shard_dir, batch_size_per_process=4, cache=cache), 4)
  labels = np.concatenate([b["label"] for b in batches])
  assert sorted(labels[:8]) == list(range(8)) and sorted(labels[8:]) == list(range(8))
  assert not np.array_equal(labels[:8], labels[8:])  # reshuffled between epochs


def test_deterministic_and_resume_equals_skipping(shard_dir):
  # A second dataset object reproducing batches 3 and 4 of the first shows determinism too.
  reference = _take(_train(shard_dir, accel_aug=False, augment=AugmentConfig()), 5)
  # Step 3 starts mid-epoch 1 (9 of 8 videos consumed); counted and given epoch sizes agree.
  for kwargs in ({}, {"records_per_epoch": len(VIDEO_LENGTHS)}):
    resumed = _take(_train(shard_dir, accel_aug=False, augment=AugmentConfig(), start_step=3,
                           **kwargs), 2)
    for a, b in zip(reference[3:], resumed):
      for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  other_seed = next(_train(shard_dir, seed=8))
  assert not np.array_equal(other_seed["starts"], reference[0]["starts"])


def test_process_file_shards_are_disjoint_and_complete(shard_dir):
  per_process = []
  for index in range(2):
    files, ids, total = read.resolve_shard_files(_pattern(shard_dir), index, 2)
    assert total == 4 and len(files) == 2
    per_process.append(set(files))
    labels = np.concatenate([b["label"] for b in _take(
        _train(shard_dir, batch_size_per_process=4, process_index=index, process_count=2), 1)])
    assert len(set(labels.tolist())) == 4
    expected = {v for v in range(8) if v % 4 in ids}  # write_shards is round-robin
    assert set(labels.tolist()) == expected
  assert not per_process[0] & per_process[1]
  assert len(per_process[0] | per_process[1]) == 4


def test_source_errors_name_the_problem(shard_dir, tmp_path):
  with pytest.raises(ValueError, match=r"4 shard file\(s\) but there are 5 processes"):
    _train(shard_dir, process_index=0, process_count=5)
  missing = str(tmp_path / "nothing-*")
  with pytest.raises(FileNotFoundError, match="nothing-"):
    pipeline.make_train_dataset(missing, batch_size_per_process=2, process_index=0,
                                process_count=1)
  with pytest.raises(ValueError, match="process_index=2"):
    _train(shard_dir, process_index=2, process_count=2)


def test_linear_train_dataset_is_one_clip(shard_dir):
  batch = next(pipeline.make_linear_train_dataset(
      _pattern(shard_dir), batch_size_per_process=2, clip_len=4, stride=2, crop_size=16,
      seed=1, shuffle_buffer=4, process_index=0, process_count=1))
  assert batch["clips"].shape == (2, 1, 4, 16, 16, 3) and batch["starts"].shape == (2, 1)


def test_tf_dataset_source_with_decoded_frames(shard_dir):
  import tensorflow as tf
  videos = [np.stack([_frame(v, f) for f in range(n)]) for v, n in enumerate(VIDEO_LENGTHS)]
  ds = tf.data.Dataset.from_generator(
      lambda: ({"frames": frames, "label": np.int32(v)} for v, frames in enumerate(videos)),
      output_signature={"frames": tf.TensorSpec([None, FRAME_H, FRAME_W, 3], tf.uint8),
                        "label": tf.TensorSpec([], tf.int32)})
  batch = next(pipeline.make_train_dataset(
      ds, batch_size_per_process=4, num_clips=2, clip_len=4, stride=2, crop_size=16, seed=3,
      shuffle_buffer=8, augment=NO_COLOR, accel_aug=True, process_index=0, process_count=1))
  for b in range(4):
    length = VIDEO_LENGTHS[int(batch["label"][b])]
    expected = sampling.clip_frame_indices(batch["starts"][b], 4, 2, length)
    np.testing.assert_array_equal(decode_frame_index(batch["clips"][b]), expected)


def _eval(directory, **overrides):
  kwargs = dict(batch_size=3, num_clips=3, num_crops=3, clip_len=4, stride=2, crop_size=16,
                resize_short=20, output_uint8=True, process_index=0, process_count=1)
  kwargs.update(overrides)
  return list(eval_pipeline.make_eval_dataset(_pattern(directory), **kwargs))


def test_eval_covers_every_video_once_with_uniform_clips(shard_dir):
  batches = _eval(shard_dir)
  assert len(batches) == 3  # 8 videos in batches of 3, the last padded
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.tolist() == [True] * 8 + [False]
  labels = np.concatenate([b["label"] for b in batches])[mask]
  assert sorted(labels.tolist()) == list(range(8))
  for batch in batches:
    assert batch["clips"].shape == (3, 9, 4, 16, 16, 3)
    for b in np.flatnonzero(batch["mask"]):
      length = VIDEO_LENGTHS[int(batch["label"][b])]
      starts = sampling.uniform_clip_starts(length, 4, 2, 3)
      expected = np.repeat(sampling.clip_frame_indices(starts, 4, 2, length), 3, axis=0)
      np.testing.assert_array_equal(decode_frame_index(batch["clips"][b]), expected)
      spacing = np.diff(starts)
      assert starts[0] == 0 and starts[-1] == length - 8 and spacing.max() - spacing.min() <= 1


def test_eval_three_crops_span_the_long_side(shard_dir):
  import tensorflow as tf
  # A single video with a horizontal ramp: the left/centre/right crops differ in mean R.
  ramp = np.tile(np.linspace(0, 255, FRAME_W).astype(np.uint8)[None, :, None], (FRAME_H, 1, 3))
  ds = tf.data.Dataset.from_tensors({"frames": np.stack([ramp] * 10), "label": np.int32(0)})
  batch = next(eval_pipeline.make_eval_dataset(
      ds, batch_size=1, num_clips=1, num_crops=3, clip_len=4, stride=1, crop_size=16,
      resize_short=20, process_index=0, process_count=1))
  means = batch["clips"][0].mean(axis=(1, 2, 3, 4))
  assert batch["clips"].shape == (1, 3, 4, 16, 16, 3) and means[0] < means[1] < means[2]
  single = next(eval_pipeline.make_eval_dataset(
      ds, batch_size=1, single_view=True, clip_len=4, stride=1, crop_size=16,
      resize_short=20, process_index=0, process_count=1))
  assert single["clips"].shape == (1, 1, 4, 16, 16, 3)
  np.testing.assert_allclose(single["clips"][0, 0], batch["clips"][0, 1], atol=1e-6)


def test_train_min_start_gap_and_reversed_videos(shard_dir):
  # min_start_gap 9 > Eq. 3's gaps here (at most 8 = DT), so every accepted pair is >= 9
  # apart; reverse_prob 1 shows every video backwards: clip frames are L - 1 - (s + D t).
  for batch in _take(_train(shard_dir, min_start_gap=9, reverse_prob=1.0), 4):
    for b in range(3):
      video = int(batch["label"][b])
      length = VIDEO_LENGTHS[video]
      expected = length - 1 - sampling.clip_frame_indices(batch["starts"][b], 4, 2, length)
      np.testing.assert_array_equal(decode_frame_index(batch["clips"][b]), expected)
      if (int(sampling.max_clip_start(length, 4, 2, 2))) >= 9:
        assert abs(int(batch["starts"][b, 0]) - int(batch["starts"][b, 1])) >= 9
  # reverse_prob 0.5: some videos forwards, some backwards, with the same starts as prob 0.
  half = _take(_train(shard_dir, reverse_prob=0.5), 6)
  plain = _take(_train(shard_dir), 6)
  backwards = []
  for batch, reference in zip(half, plain):
    np.testing.assert_array_equal(batch["starts"], reference["starts"])
    for b in range(3):
      length = VIDEO_LENGTHS[int(batch["label"][b])]
      forwards = sampling.clip_frame_indices(batch["starts"][b], 4, 2, length)
      got = decode_frame_index(batch["clips"][b])
      backwards.append(bool(np.array_equal(got, length - 1 - forwards)))
      assert backwards[-1] or np.array_equal(got, forwards)
  assert 0 < sum(backwards) < len(backwards)
  with pytest.raises(ValueError, match="reverse_video_prob"):
    _train(shard_dir, reverse_prob=1.5)
