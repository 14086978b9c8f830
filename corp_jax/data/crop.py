"""The crop stage: where each clip is cut out of its frames, and the resize to S x S.

Contract:
  Training (one window per clip, shared by its T frames):
    `sample_crop_window_tf(image_shape, seed, area_range, aspect_ratio_range)` -> (begin [3],
        size [3]) of a random resized crop (area fraction in `area_range`, aspect ratio w/h
        in `aspect_ratio_range`, as CVRL's `random_crop_resize`), a function of `seed` [2];
        the decode stage then decodes only this window (`decode.decode_window_tf`);
    `resize_tf(frames, crop_size)`: [T, h, w, 3] -> float32 [T, S, S, 3] in [0, 255]
        (bilinear).
  Evaluation (fixed views):
    `resize_short_side_tf(frames, resize_short)`: float32 frames whose short side is
        `resize_short`;
    `spatial_crops_tf(clips, crop_size, num_crops)`: C crops of S x S evenly spaced along
        the long side (C = 3: start/centre/end; C = 1: centre), centred on the short side.
  `to_uint8_tf(frames)`: resized float [0, 255] -> uint8, rounded half up.
TensorFlow is imported lazily.
"""

from __future__ import annotations

from typing import Tuple


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def sample_crop_window_tf(image_shape, seed, area_range: Tuple[float, float],
                          aspect_ratio_range: Tuple[float, float]):
  """Random resized crop window for a frame of `image_shape` [H, W, C]: (begin [3], size [3])."""
  tf = _tf()
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.cast(image_shape, tf.int32), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed, min_object_covered=0.0, aspect_ratio_range=aspect_ratio_range,
      area_range=area_range, max_attempts=10, use_image_if_no_bounding_boxes=True)
  return begin, size


def resize_tf(frames, crop_size: int):
  """[T, h, w, 3] (any dtype) -> float32 [T, S, S, 3] in the input's range, bilinear."""
  return _tf().image.resize(frames, [crop_size, crop_size], method="bilinear")


def to_uint8_tf(frames):
  """Bilinear-resized float [0, 255] -> uint8 rounded half up (the accelerator path's input).

  A bilinear resize is a convex combination of uint8 pixels, so frames + 0.5 lies in
  [0.5, 255.5) and truncating cast is exact rounding without a clip pass (which costs as much
  as a quarter of the JPEG decode at 224 x 224 x 16).
  """
  tf = _tf()
  return tf.cast(frames + 0.5, tf.uint8)


def resize_short_side_tf(frames, resize_short: int):
  """[U, H, W, 3] -> float32 [U, H', W', 3] with min(H', W') = resize_short."""
  tf = _tf()
  shape = tf.shape(frames)
  height, width = tf.cast(shape[1], tf.float64), tf.cast(shape[2], tf.float64)
  scale = resize_short / tf.minimum(height, width)
  new_size = tf.cast(tf.round(tf.stack([height * scale, width * scale])), tf.int32)
  new_size = tf.maximum(new_size, resize_short)  # rounding must not go below the short side
  return tf.image.resize(frames, new_size, method="bilinear")


def spatial_crops_tf(clips, crop_size: int, num_crops: int):
  """clips [N, T, H', W', 3] -> [N * C, T, S, S, 3], crop c at the c-th of C evenly spaced
  offsets along the long side, centred on the short side."""
  tf = _tf()
  height, width = tf.shape(clips)[2], tf.shape(clips)[3]
  landscape = width >= height
  long_excess = tf.where(landscape, width, height) - crop_size
  short_offset = (tf.where(landscape, height, width) - crop_size) // 2
  views = []
  for c in range(num_crops):
    along = long_excess // 2 if num_crops == 1 else (c * long_excess) // (num_crops - 1)
    top = tf.where(landscape, short_offset, along)
    left = tf.where(landscape, along, short_offset)
    views.append(clips[:, :, top:top + crop_size, left:left + crop_size, :])
  views = tf.stack(views, axis=1)  # [N, C, T, S, S, 3]
  return tf.reshape(views, tf.concat([[-1], tf.shape(views)[2:]], 0))
