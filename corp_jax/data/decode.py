"""The decode stage: only the frames the sampler chose, and for training only their crop
window (a JPEG decodes just the rows and columns of the window).

Contract (elements come from `parse.element_from_item`; `frame_indices` from `sampling`):
  `frame_shape_tf(elem)`: [H, W, 3] int32 of the video's frames (JPEG: from the first
      frame's header; nothing is decoded).
  `decode_frames_tf(elem, frame_indices [U])`: uint8 [U, H, W, 3], whole frames.
  `decode_window_tf(elem, frame_indices [T], begin [3], size [3])`: uint8 [T, h, w, 3], the
      window `begin`..`begin + size` of each frame (`crop.sample_crop_window_tf` draws it);
      for JPEG equal to decoding whole frames and slicing, up to chroma upsampling at the
      window's edge.
  `decode_jpeg_windows_tf(jpegs [T], begin, size)`: the same for a vector of JPEG strings.
TensorFlow is imported lazily.
"""

from __future__ import annotations

from corp_jax.data import records


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def frame_shape_tf(elem):
  """[H, W, 3] of the video's frames without decoding them all (JPEG header only)."""
  tf = _tf()
  if records.IMAGE_KEY in elem:
    return tf.io.extract_jpeg_shape(elem[records.IMAGE_KEY][0])
  return tf.shape(elem["frames"])[1:]


def decode_frames_tf(elem, frame_indices):
  """Frames at `frame_indices` [U] as uint8 [U, H, W, 3] (JPEG: decodes only those)."""
  tf = _tf()
  if records.IMAGE_KEY in elem:
    jpegs = tf.gather(elem[records.IMAGE_KEY], frame_indices)
    return tf.map_fn(lambda j: tf.io.decode_jpeg(j, channels=3), jpegs,
                     fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
  return tf.gather(elem["frames"], frame_indices)


def decode_jpeg_windows_tf(jpegs, begin, size):
  """Decodes only the window (`begin`, `size`: [3]) of each JPEG of `jpegs` [T] tf.string.
  Returns uint8 [T, h, w, 3]."""
  tf = _tf()
  window = tf.stack([begin[0], begin[1], size[0], size[1]])
  decode = lambda j: tf.io.decode_and_crop_jpeg(j, window, channels=3)  # noqa: E731
  num_frames = jpegs.shape[0] if jpegs.shape.rank == 1 else None
  if num_frames is not None:  # static T: T decode ops, no while loop (~10% cheaper)
    return tf.stack([decode(jpegs[t]) for t in range(num_frames)])
  return tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec([None, None, 3],
                                                                    tf.uint8))


def decode_window_tf(elem, frame_indices, begin, size):
  """The window of the frames at `frame_indices` [T]: uint8 [T, h, w, 3]. JPEG sources
  decode only these T frames, and only the window of each."""
  tf = _tf()
  if records.IMAGE_KEY in elem:
    jpegs = tf.gather(elem[records.IMAGE_KEY], frame_indices)
    return decode_jpeg_windows_tf(jpegs, begin, size)
  frames = tf.gather(elem["frames"], frame_indices)
  return tf.slice(frames, tf.concat([[0], begin], 0), tf.concat([[-1], size], 0))
