"""Training inputs from `config.data`: embedded, TFRecord, TFDS or synthetic batches.

Yields per-process NumPy batch dicts as in docs/CONTRACTS.md. The stream is a deterministic
function of (seed, step), so `start_step` resumes it exactly. TensorFlow is imported only
when a TF-based source is chosen (inside corp_jax.data).

  embedded   the procedural data set, built on first use under `config.data.cache_dir`.
  tfrecord   shards written by data_prep (`config.data.train_pattern`, required).
  tfds       a TFDS video data set prepared in `config.data.tfds_data_dir`.
  synthetic  random clips from NumPy, no TensorFlow: for tests, benchmarks, multi-host checks.
  embedded_arrays
             the embedded videos rendered to NumPy arrays, no TensorFlow (`array_inputs`):
             whole frames resized to crop_size; flip / colour / blur on the accelerator.
  arrays     a folder of array splits (`config.data.arrays_dir`, e.g. the photo set written
             by `corp_jax.tools.photo_set --arrays`), read as `embedded_arrays` is.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

# The config -> input-stage rules are the data layer's (evaluation uses them too); the train
# loop takes `augment_config` from here.
from corp_jax.data.from_config import augment_config, embedded_cache_dir

SOURCES = ("embedded", "tfrecord", "tfds", "synthetic", "embedded_arrays", "arrays")
ARRAY_SOURCES = ("embedded_arrays", "arrays")


@dataclasses.dataclass(frozen=True)
class TrainInputs:
  iterator: Iterator[dict]
  num_videos: int | None  # videos in the training split, when known (for epochs)
  uint8_clips: bool  # True when the accelerator does the colour augmentation


def synthetic_batches(*, seed: int, start_step: int, global_batch: int, process_index: int,
                      process_count: int, num_clips: int, clip_len: int, crop_size: int,
                      max_start: int = 64) -> Iterator[dict]:
  """Random but learnable clips: each video is a fixed pattern; brightness grows with time.

  The global batch of step s is drawn from `default_rng([seed, s])`; process p yields rows
  [p·B/P, (p+1)·B/P) of it, so any number of processes sees the same global batch.
  """
  per_process = global_batch // process_count
  lo = process_index * per_process
  step = start_step
  while True:
    rng = np.random.default_rng([seed, step])
    patterns = rng.uniform(0.0, 0.6, (global_batch, 1, 1, crop_size, crop_size, 3))
    starts = np.stack([np.sort(rng.choice(max_start, num_clips, replace=False))
                       for _ in range(global_batch)])
    perm = rng.permuted(np.tile(np.arange(num_clips), (global_batch, 1)), axis=1)
    starts = np.take_along_axis(starts, perm, axis=1)  # clip order != time order
    frames = starts[:, :, None] + np.arange(clip_len)[None, None, :]
    ramp = (frames / (max_start + clip_len) * 0.4)[..., None, None, None]
    clips = np.clip(patterns + ramp, 0.0, 1.0).astype(np.float32)
    yield {
        "clips": clips[lo:lo + per_process],
        "starts": starts[lo:lo + per_process].astype(np.int32),
        "label": np.full((per_process,), -1, np.int32),
        "video_id": np.arange(lo, lo + per_process, dtype=np.int32),
    }
    step += 1


def validate_data_config(data) -> None:
  """Raises ValueError naming the key when `config.data` cannot name a training source;
  cheap (opens nothing), so a job checks it before creating any output."""
  if data.source not in SOURCES:
    raise ValueError(f"config.data.source must be one of {SOURCES}, got {data.source!r}")
  if data.source == "tfrecord" and not data.train_pattern:
    raise ValueError(
        "config.data.train_pattern is required for config.data.source='tfrecord', e.g. "
        "--config.data.train_pattern='/data/k400/k400_train-*' (shards from "
        "python -m data_prep.videos_to_tfrecords)")
  if data.source == "tfds" and not data.tfds_name:
    raise ValueError("config.data.tfds_name is required for config.data.source='tfds'")
  if data.source in ARRAY_SOURCES:
    from corp_jax.train import array_inputs  # pylint: disable=g-import-not-at-top
    array_inputs.validate(data)


def make_train_inputs(config, *, per_process_batch: int, start_step: int) -> TrainInputs:
  """Builds the per-process training stream described by `config.data`."""
  import jax  # pylint: disable=g-import-not-at-top

  data = config.data
  validate_data_config(data)
  if data.source == "synthetic":
    it = synthetic_batches(
        seed=config.seed, start_step=start_step,
        global_batch=per_process_batch * jax.process_count(),
        process_index=jax.process_index(), process_count=jax.process_count(),
        num_clips=data.num_clips, clip_len=data.clip_len, crop_size=data.crop_size)
    return TrainInputs(it, None, False)
  if data.source in ARRAY_SOURCES:
    from corp_jax.train import array_inputs  # pylint: disable=g-import-not-at-top
    return array_inputs.make_train_inputs(config, per_process_batch=per_process_batch,
                                          start_step=start_step)

  from corp_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  num_videos = data.num_train_videos or None
  label_key = data.label_key
  if data.source == "embedded":
    info = embedded_dataset(data)
    num_videos = info["train"]["num_examples"]
    source = info["train"]["files"]
  elif data.source == "tfrecord":
    source = data.train_pattern
    num_videos = num_videos or _videos_from_metadata(data.train_pattern)
  else:  # tfds
    from corp_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
    source = tfds_source.tfds_video_source(
        data.tfds_name, data.tfds_data_dir, data.tfds_split, label_key=data.tfds_label_key)
    label_key = "label"
  it = pipeline.make_train_dataset(
      source,
      batch_size_per_process=per_process_batch,
      num_clips=data.num_clips, clip_len=data.clip_len, stride=data.stride,
      crop_size=data.crop_size, seed=config.seed, shuffle_buffer=data.shuffle_buffer,
      label_key=label_key, augment=augment_config(data), accel_aug=bool(data.accel_aug),
      start_step=start_step, records_per_epoch=num_videos,
      shuffle_frames=bool(data.get("shuffle_frames_in_clip", False)),
      min_start_gap=int(data.get("min_start_gap", 0)),
      reverse_prob=float(data.get("reverse_video_prob", 0.0)))
  return TrainInputs(it, num_videos, bool(data.accel_aug))


def embedded_dataset(data) -> dict:
  """Builds (first use) or finds the embedded data set sized by `config.data.embedded_*`."""
  from corp_jax.data import embedded  # pylint: disable=g-import-not-at-top
  return embedded.ensure_embedded_dataset(
      embedded_cache_dir(data.cache_dir),
      num_train=data.embedded_num_train, num_test=data.embedded_num_test,
      frame_size=data.embedded_frame_size, num_frames=data.embedded_num_frames)


def _videos_from_metadata(pattern: str) -> int | None:
  """num_videos from NAME.metadata.json beside the shards of `pattern`, when there is one."""
  from corp_jax.data import read  # pylint: disable=g-import-not-at-top
  metadata = read.shard_metadata(pattern) or {}
  return int(metadata.get("num_videos", 0)) or None
