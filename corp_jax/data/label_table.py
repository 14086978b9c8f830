"""Reading the labels of a shard set without decoding frames, and record subsets by video id.

Contract:
  `read_labels(files, label_keys) -> {'video_id': [N] int32, key: [N] int32, ...}`: every
  record of the (sorted) files, with the pipeline's video ids
  (`record_index_in_file * num_files + file_index`, see corp_jax.data.pipeline), so that
  features from any pipeline can be joined with any label family by video id.
  `subset_source(files, video_ids, label_key)`: a tf.data.Dataset of those records only, a
  valid `source` for corp_jax.data.pipeline.make_train_dataset.
  `read_filenames(files) -> {video_id: filename}` ('video/filename' of every record).
Used by corp_jax.evaluate (class-balanced fine-tuning subsets, the embedded demo's label join).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _sorted_files(files: str | Sequence[str]) -> list[str]:
  """Every file of the patterns, sorted: the same order the pipeline's video ids count in."""
  from corp_jax.data import read  # pylint: disable=g-import-not-at-top
  return read.resolve_shard_files(files, 0, 1)[0]


def read_labels(files: str | Sequence[str], label_keys: Sequence[str]) -> dict:
  """Labels of every record, with pipeline video ids; reads contexts only (no JPEG decode)."""
  from corp_jax.data import tf_runtime  # pylint: disable=g-import-not-at-top
  tf_runtime.hide_gpus_from_tf()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = _sorted_files(files)
  num_files = len(files)
  spec = {key: tf.io.FixedLenFeature([], tf.int64, default_value=-1) for key in label_keys}

  def read(file_index, path):
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda j, rec: (j * num_files + file_index, rec))

  def parse(video_id, serialized):
    context, _ = tf.io.parse_single_sequence_example(serialized, context_features=spec)
    return {"video_id": video_id, **context}

  ds = tf.data.Dataset.from_tensor_slices(
      (tf.range(num_files, dtype=tf.int64), tf.constant(files)))
  ds = ds.flat_map(read).map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True).batch(4096)
  chunks = list(ds.as_numpy_iterator())
  if not chunks:
    raise ValueError(f"no records in {files}")
  return {key: np.concatenate([c[key] for c in chunks]).astype(np.int32)
          for key in ("video_id", *label_keys)}


def subset_source(files: str | Sequence[str], video_ids: np.ndarray, label_key: str):
  """tf.data.Dataset of the parsed records whose pipeline video id is in `video_ids`."""
  from corp_jax.data import records  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = _sorted_files(files)
  num_files = len(files)
  ids = tf.constant(np.unique(np.asarray(video_ids, np.int64)))
  # A hash table, not a comparison against every id: subsets of K400 hold ~24k videos.
  keep = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(ids, tf.ones_like(ids)), default_value=0)

  def read(file_index, path):
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda j, rec: (j * num_files + file_index, rec))

  def wanted(video_id, _):
    return keep.lookup(video_id) > 0

  ds = tf.data.Dataset.from_tensor_slices(
      (tf.range(num_files, dtype=tf.int64), tf.constant(files)))
  ds = ds.flat_map(read).filter(wanted)
  return ds.map(lambda _, rec: records.parse_sequence_example(rec, label_key=label_key))


def read_filenames(files: str | Sequence[str]) -> dict[int, str]:
  """{pipeline video id: 'video/filename'} of every record (contexts only, no JPEG decode)."""
  from corp_jax.data import records  # pylint: disable=g-import-not-at-top
  from corp_jax.data import tf_runtime  # pylint: disable=g-import-not-at-top
  tf_runtime.hide_gpus_from_tf()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = _sorted_files(files)
  spec = {records.FILENAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}
  names = {}
  for file_index, path in enumerate(files):
    for j, serialized in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
      context, _ = tf.io.parse_single_sequence_example(serialized, context_features=spec)
      names[j * len(files) + file_index] = context[records.FILENAME_KEY].numpy().decode()
  return names
