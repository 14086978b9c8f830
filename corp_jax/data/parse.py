"""The parse stage: one video's record or tf.data element -> the pipeline's element.

Contract:
  `element_from_item(item, label_key)`: `item` is a serialized `records` SequenceExample
  (scalar tf.string, parsed by `records.parse_sequence_example`) or an element dict of a
  tf.data source (`tfds_source`) -> a dict with the frames' source, either `image/encoded`
  [L] JPEG strings or `frames` [L, H, W, 3] uint8 (nothing is decoded here), plus
  `num_frames` int32 (L, counted from the frames) and `label` int32 (-1 when absent).
  An element with neither frame key is a ValueError naming the keys it has.
TensorFlow is imported lazily.
"""

from __future__ import annotations

from typing import Mapping

from corp_jax.data import records


def element_from_item(item, label_key: str) -> dict:
  """A serialized record or an element dict -> {frames source, num_frames, label}."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if isinstance(item, Mapping):
    elem = dict(item)
  else:
    elem = records.parse_sequence_example(item, label_key=label_key)
  if records.IMAGE_KEY in elem:
    elem["num_frames"] = tf.shape(elem[records.IMAGE_KEY])[0]
  elif "frames" in elem:
    elem["num_frames"] = tf.shape(elem["frames"])[0]
  else:
    raise ValueError(f"video element has neither {records.IMAGE_KEY!r} nor 'frames'; "
                     f"keys: {sorted(elem)}")
  elem["label"] = tf.cast(elem.get("label", tf.constant(-1)), tf.int32)
  return elem
