"""Class-balanced training subsets (semi-supervised fine-tuning, Sec. 4.1) and the labels of
a shard set read without decoding any frame.

Contract:
  `class_balanced_subset(labels: [N] int, fraction, seed) -> [M] int64` sorted indices into
  labels: per class c with n_c videos, max(1, round(fraction * n_c)) of them drawn without
  replacement, so class proportions are kept and every class keeps at least one video. The
  same (labels, fraction, seed) always gives the same indices; another seed another draw.
  `labels_for(video_ids, table, label_key)`: labels of video ids from a `read_labels` table.
  `read_labels`, `subset_source`: forwarded to corp_jax.data.label_table (see there).
The record-reading parts live in corp_jax.data.label_table (TensorFlow stays there).
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


def read_labels(files: str | Sequence[str], label_keys: Sequence[str]) -> dict:
  """See corp_jax.data.label_table.read_labels (TensorFlow stays in corp_jax.data)."""
  from corp_jax.data import label_table  # pylint: disable=g-import-not-at-top
  return label_table.read_labels(files, label_keys)


def subset_source(files: str | Sequence[str], video_ids: np.ndarray, label_key: str):
  """See corp_jax.data.label_table.subset_source."""
  from corp_jax.data import label_table  # pylint: disable=g-import-not-at-top
  return label_table.subset_source(files, video_ids, label_key)
