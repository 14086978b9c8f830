"""Evaluation inputs from NumPy array splits, no TensorFlow: the embedded set's
(`data.embedded_arrays`) or those of an `arrays_dir` (`data.photo_arrays`; the evaluation
config's `data.arrays_dir`, else the pretraining run's when it trained on source 'arrays').
The twins of `job.resolve_data`, `job.train_stream`, `job.eval_stream` and
`subsets.read_labels` for a pretraining run on the embedded set.

Contract:
  `resolve_data(config, pre) -> job.EvalData`: as `job.resolve_data` for
      `config.data.source='embedded'` (sizes: the evaluation config's, else the pretraining
      run's, else the defaults; cache: the same rule), with `train_source` / `eval_source`
      the array splits' info dicts.
  `train_stream(config, data, *, batch_size, seed)`: linear-evaluation training views as
      `pipeline.make_linear_train_dataset` (K = 1, the pretraining augmentation without
      colour and blur: the random resized crop and the flip drawn per clip, as the TF
      pipeline draws them; whole frames at crop area 1, as in the demo).
  `eval_stream(config, data)`: `eval.num_clips` x `eval.num_crops` views per test video
      (`array_stream.eval_batches`).
  `read_labels(split_info, label_keys) -> {'video_id': [N], key: [N]}` as
      `subsets.read_labels` (video id = index in the split).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from corp_jax.data import array_stream
from corp_jax.data import embedded_arrays
from corp_jax.data import from_config
from corp_jax.evaluate import job as job_lib


def arrays_dir(config, pre) -> str:
  """The array-split folder of the evaluation: its own, else the pretraining run's ('' =
  the embedded set)."""
  own = config.data.get("arrays_dir", "")
  if own:
    return own
  return pre.data.get("arrays_dir", "") if pre.data.source == "arrays" else ""


def resolve_data(config, pre) -> job_lib.EvalData:
  d = config.data
  augment = from_config.augment_config(pre.data)
  folder = arrays_dir(config, pre)
  if folder:
    from corp_jax.data import photo_arrays  # pylint: disable=g-import-not-at-top
    info = photo_arrays.open_arrays(folder)
  else:
    cache = from_config.embedded_cache_dir(d.cache_dir, pre.data.get("cache_dir", ""))
    info = embedded_arrays.ensure_embedded_arrays(cache, seed=d.embedded_seed,
                                                  **from_config.embedded_sizes(d, pre.data))
  metadata = info["metadata"]
  family = embedded_arrays.label_family(metadata, config.label_key)
  return job_lib.EvalData(
      info["train"], info["test"], len(metadata["label_families"][family]),
      list(metadata["label_families"][family]), info["train"]["num_examples"],
      clip_len=d.clip_len or pre.data.clip_len, stride=d.stride or pre.data.stride,
      crop_size=d.crop_size or pre.data.crop_size, augment=augment,
      reversal_pairs=metadata["reversal_pairs"] if family == "motion" else None)


def train_stream(config, data: job_lib.EvalData, *, batch_size: int,
                 seed: int) -> Iterator[dict]:
  augment = data.augment.without_color()
  return array_stream.train_batches(
      data.train_source, batch_size_per_process=batch_size, num_clips=1,
      clip_len=data.clip_len, stride=data.stride, crop_size=data.crop_size, seed=seed,
      label_key=config.label_key, flip_prob=augment.flip_prob,
      crop_area_range=augment.crop_area_range,
      crop_aspect_ratio_range=augment.crop_aspect_ratio_range)


def eval_stream(config, data: job_lib.EvalData) -> Iterator[dict]:
  return array_stream.eval_batches(
      data.eval_source, batch_size=config.eval.batch_size, num_clips=config.eval.num_clips,
      num_crops=config.eval.num_crops, clip_len=data.clip_len, stride=data.stride,
      crop_size=data.crop_size, label_key=config.label_key)


def read_labels(split_info: dict, label_keys) -> dict:
  _, labels = embedded_arrays.load_split(split_info)
  metadata = split_info["metadata"]
  table = {"video_id": np.arange(split_info["num_examples"], dtype=np.int64)}
  for key in label_keys:
    table[key] = labels[embedded_arrays.label_family(metadata, key)].astype(np.int64)
  return table
