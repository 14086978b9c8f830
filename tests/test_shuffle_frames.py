"""The frames-shuffled-in-clip control: same frames and starts, random order inside clips."""

import numpy as np

from corp_jax.data import pipeline
from corp_jax.data.augment_params import AugmentConfig

LENGTH, SIZE = 30, 16


def _source():
  import tensorflow as tf
  # Frame f of video v is a flat grey of value 8 f + v: every pixel names its frame.
  videos = [np.stack([np.full((SIZE, SIZE, 3), 8 * f + v, np.uint8) for f in range(LENGTH)])
            for v in range(4)]
  return tf.data.Dataset.from_generator(
      lambda: ({"frames": frames, "label": np.int32(v)} for v, frames in enumerate(videos)),
      output_signature={"frames": tf.TensorSpec([None, SIZE, SIZE, 3], tf.uint8),
                        "label": tf.TensorSpec([], tf.int32)})


def _batches(shuffle_frames):
  stream = pipeline.make_train_dataset(
      _source(), batch_size_per_process=4, num_clips=2, clip_len=6, stride=3, crop_size=SIZE,
      seed=5, shuffle_buffer=4, augment=AugmentConfig(crop_area_range=(1.0, 1.0),
                                                      flip_prob=0.0).without_color(),
      accel_aug=True, process_index=0, process_count=1, shuffle_frames=shuffle_frames)
  return [next(stream) for _ in range(2)]


def test_shuffled_clips_hold_the_same_frames_in_another_order():
  plain, shuffled = _batches(False), _batches(True)
  reordered = 0
  for a, b in zip(plain, shuffled):
    np.testing.assert_array_equal(a["starts"], b["starts"])
    np.testing.assert_array_equal(a["label"], b["label"])
    frames_a = (a["clips"][..., 0].mean(axis=(-1, -2)) - a["label"][:, None, None]) / 8
    frames_b = (b["clips"][..., 0].mean(axis=(-1, -2)) - b["label"][:, None, None]) / 8
    # Unshuffled clips run forward from their start at the stride.
    expected = (a["starts"][..., None] + 3 * np.arange(6)) % LENGTH
    np.testing.assert_allclose(frames_a, expected, atol=1e-3)
    np.testing.assert_allclose(np.sort(frames_b, axis=-1), np.sort(frames_a, axis=-1), atol=1e-3)
    reordered += int(np.sum(np.any(np.abs(frames_b - frames_a) > 1e-3, axis=-1)))
  assert reordered >= 12  # of 16 clips; a 6-frame clip keeps its order with probability 1/720
