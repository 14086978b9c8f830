"""Class-balanced training subsets (semi-supervised fine-tuning, Sec. 4.1) and the labels of
a shard set read without decoding any frame.

Contract:
  `class_balanced_subset(labels: [N] int, fraction, seed) -> [M] int64` sorted indices into
  labels: per class c with n_c videos, max(1, round(fraction * n_c)) of them drawn without
  replacement, so class proportions are kept and every class keeps at least one video. The
  same (labels, fraction, seed) always gives the same indices; another seed another draw.
  `read_labels(files, label_keys) -> {'video_id': [N] int32, key: [N] int32, ...}`: every
  record of the (sorted) files, with the pipeline's video ids
  (`record_index_in_file * num_files + file_index`, see corp_jax.data.pipeline), so that
  features from any pipeline can be joined with any label family by video id.
  `subset_source(files, video_ids, label_key)`: a tf.data.Dataset of those records only, a
  valid `source` for corp_jax.data.pipeline.make_train_dataset.
TensorFlow is imported inside the functions that read records.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def class_balanced_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Sorted indices of a class-balanced `fraction` of `labels` (see module docstring)."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or not labels.size:
    raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
  if not 0.0 < float(fraction) <= 1.0:
    raise ValueError(f"subset fraction must be in (0, 1], got {fraction!r} "
                     "(config.subset_fraction)")
  if labels.min() < 0:
    raise ValueError(f"cannot balance a subset over unlabelled videos (label {labels.min()}); "
                     "check config.label_key")
  if float(fraction) == 1.0:
    return np.arange(len(labels), dtype=np.int64)
  rng = np.random.default_rng(int(seed))
  chosen = []
  for cls in np.unique(labels):  # sorted classes: the draw order does not depend on data order
    members = np.flatnonzero(labels == cls)
    count = max(1, int(round(float(fraction) * len(members))))
    chosen.append(rng.choice(members, size=count, replace=False))
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def _sorted_files(files: str | Sequence[str]) -> list[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  patterns = [files] if isinstance(files, str) else list(files)
  matched = []
  for pattern in patterns:
    found = tf.io.gfile.glob(pattern)
    if not found:
      raise FileNotFoundError(f"no files match {pattern!r}")
    matched.extend(found)
  return sorted(set(matched))


def read_labels(files: str | Sequence[str], label_keys: Sequence[str]) -> dict:
  """Labels of every record, with pipeline video ids; reads contexts only (no JPEG decode)."""
  from corp_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  pipeline.hide_gpus_from_tf()
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


def labels_for(video_ids: np.ndarray, table: dict, label_key: str) -> np.ndarray:
  """Looks up `label_key` of each video id in a `read_labels` table: [N] int32."""
  if label_key not in table:
    raise KeyError(f"label key {label_key!r} was not read; read: "
                   f"{sorted(k for k in table if k != 'video_id')}")
  order = np.argsort(table["video_id"])
  sorted_ids = table["video_id"][order]
  video_ids = np.asarray(video_ids)
  position = np.searchsorted(sorted_ids, video_ids)
  position = np.minimum(position, len(sorted_ids) - 1)
  missing = sorted_ids[position] != video_ids
  if np.any(missing):
    raise ValueError(f"video ids {video_ids[missing][:5].tolist()} are not in the label table")
  return table[label_key][order][position]


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
