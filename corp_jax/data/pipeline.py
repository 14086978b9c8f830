"""The CORP training input pipeline (tf.data): read -> parse -> sample (Eq. 3) -> decode only
the sampled frames' crop windows -> crop (resize) -> augment, as NumPy batches for one process.

The stages are modules that know nothing of configs (docs/DESIGN_NOTES.md, "Input path"):
`read`, `parse`, `sampling`, `decode`, `crop`, `augment_tf`; this module composes them and is
the one place that turns the pipeline's arguments (an `AugmentConfig` among them) into stage
arguments.

Contract (docs/CONTRACTS.md, "Batch layout"):
  `make_train_dataset(source, ...)` yields dicts of NumPy arrays, per process:
    clips    [B, K, T, S, S, 3] float32 in [0, 1] (uint8 with `accel_aug=True`: only decode,
             random resized crop and resize happen here; `augment_jax.augment_clips` does
             flip / colour / grayscale / blur on the accelerator), frames in true time order;
    starts   [B, K] int32 start frame of each clip (sampled order; the order label);
    label    [B] int32 (`label_key` of the record, -1 when absent);
    video_id [B] int32 stable id: record_index_in_file * num_files + file_index for shard
             files (unique across processes and the same every epoch), or
             index_in_shard * process_count + process_index for a tf.data source.

  Sources: a glob pattern, a list of patterns/files of TFRecord shards of
  `records.make_sequence_example` SequenceExamples, or a `tf.data.Dataset` of dicts with
  `image/encoded` [L] JPEG strings or `frames` [L, H, W, 3] uint8, plus `label` (e.g.
  `tfds_source`). Files are sorted and split per process: process p of P reads files
  p, p + P, ...; fewer files than processes is an error (a tf.data source is `shard`ed).

  Determinism and resume: the stream is a pure function of `seed`; element n of the stream
  (counting across epochs) is augmented with stateless seeds derived from (seed, n). So batch
  `step` is elements [step * B, (step + 1) * B), and `start_step=N` yields exactly batches
  N, N+1, ... of the `start_step=0` stream.
  Shard files (`record_stream.py`): epoch e reads the files in an order drawn from (seed, e),
  `cycle_length` files at a time round-robin, and orders each window of `shuffle_buffer`
  consecutive records by (seed, e, window). The position of element N * B (epoch, group of
  files, record of each file, window) is computed from the record counts, so a resumed
  stream opens only the files from that group on and skips records by their headers: no
  re-reading of what earlier steps consumed.
  A tf.data source (or `cache=True`): epoch e shuffles the file order and a `shuffle_buffer`
  buffer with seed (seed, e); a resume counts one epoch of this process (or derives it from
  `records_per_epoch`, the videos of all processes), jumps to the epoch and skips the rest
  of the way on serialized records (no JPEG decoding; at most one epoch of reading).

TensorFlow is imported lazily; GPUs are hidden from it once (`tf_runtime.hide_gpus_from_tf`).
"""

from __future__ import annotations

import os
import sys
from typing import Iterator, Optional

import numpy as np

from corp_jax.data import augment_tf
from corp_jax.data import crop
from corp_jax.data import decode
from corp_jax.data import parse
from corp_jax.data import record_stream
from corp_jax.data import records
from corp_jax.data import sampling
from corp_jax.data.augment_params import AugmentConfig
from corp_jax.data.read import SourceType, VideoSource, process_info
from corp_jax.data.tf_runtime import apply_threading_options, hide_gpus_from_tf, no_autograph

_EPOCH_SEED_MULTIPLIER = 1_000_003  # epoch seeds seed*M + e never collide for e < M


def use_tf_bfc_cpu_allocator() -> bool:
  """Asks TensorFlow for its pooling (BFC) CPU allocator: TF_CPU_ALLOCATOR_USE_BFC=true.

  With glibc malloc every batch of float32 clips over 32 MB is a fresh mmap whose page faults
  cost ~7-9 ms of system time per 16 x 224 x 224 clip (~0.8x the JPEG decoding of the clip);
  the BFC allocator reuses its pool. Process-wide, and read when TF creates its CPU allocator,
  so call it at program start; a value the user already set is kept. Returns False (and
  still sets the variable) when TensorFlow is already imported and the setting may come too
  late.
  """
  os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
  return "tensorflow" not in sys.modules


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _train_map_fn(*, seed: int, num_clips: int, clip_len: int, stride: int, crop_size: int,
                  max_tries: int, label_key: str, augment: AugmentConfig, accel_aug: bool,
                  shuffle_frames: bool = False, min_start_gap: int = 0,
                  reverse_prob: float = 0.0):
  """(global_index, (video_id, item)) -> one video's training example."""
  tf = _tf()
  crop_ranges = dict(area_range=augment.crop_area_range,
                     aspect_ratio_range=augment.crop_aspect_ratio_range)

  def fn(global_index, pair):
    video_id, item = pair
    elem = parse.element_from_item(item, label_key)
    element_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(global_index, tf.int64)])
    # Row 0 seeds the sampler; rows 1..K seed clip k's crop, rows K+1..2K its augmentation.
    seeds = tf.random.stateless_uniform([2 * num_clips + 1, 2], seed=element_seed,
                                        minval=None, maxval=None, dtype=tf.int64)
    starts = sampling.sample_clip_starts_tf(seeds[0], elem["num_frames"], clip_len, stride,
                                            num_clips, max_tries, min_start_gap)
    indices = sampling.clip_frame_indices_tf(starts, clip_len, stride, elem["num_frames"])
    if reverse_prob > 0:
      indices = sampling.reversed_video_indices_tf(indices, elem["num_frames"], seeds[0],
                                                   reverse_prob)
    if shuffle_frames:
      indices = sampling.shuffled_within_clips_tf(indices, element_seed)
    shape = decode.frame_shape_tf(elem)

    def one_clip(args):
      clip_indices, crop_seed, augment_seed = args
      begin, size = crop.sample_crop_window_tf(shape, crop_seed, **crop_ranges)
      clip = crop.resize_tf(decode.decode_window_tf(elem, clip_indices, begin, size),
                            crop_size)
      clip = tf.ensure_shape(clip, [clip_len, crop_size, crop_size, 3])
      if accel_aug:
        return crop.to_uint8_tf(clip)
      return augment_tf.augment_clip_tf(clip, augment_seed, augment)

    crop_seeds = seeds[1:1 + num_clips]
    if augment.crop_shared_across_clips:  # beyond the paper: clip 1's window for every clip
      crop_seeds = tf.repeat(seeds[1:2], num_clips, axis=0)
    # map_fn traces the per-clip graph once (not K times) and keeps clip k at position k.
    clips = tf.map_fn(one_clip, (indices, crop_seeds, seeds[1 + num_clips:]),
                      fn_output_signature=tf.TensorSpec(
                          [clip_len, crop_size, crop_size, 3],
                          tf.uint8 if accel_aug else tf.float32))
    return {"clips": clips, "starts": starts, "label": elem["label"],
            "video_id": tf.cast(video_id, tf.int32)}

  return fn


def build_train_dataset(source: SourceType, *, batch_size_per_process: int, num_clips: int = 2,
                        clip_len: int = 16, stride: int = 2, crop_size: int = 224,
                        seed: int = 0, shuffle_buffer: int = 1024,
                        label_key: str = records.LABEL_INDEX_KEY,
                        augment: AugmentConfig = AugmentConfig(), accel_aug: bool = False,
                        start_step: int = 0, process_index: Optional[int] = None,
                        process_count: Optional[int] = None,
                        max_tries: int = sampling.DEFAULT_MAX_TRIES, cache: bool = False,
                        cycle_length: int = 16, records_per_epoch: Optional[int] = None,
                        num_threads: Optional[int] = None, shuffle_frames: bool = False,
                        min_start_gap: int = 0, reverse_prob: float = 0.0):
  """The training `tf.data.Dataset` (batched, infinite). See the module docstring.

  Options beyond the paper (all off by default): `shuffle_frames`, a diagnostic control, puts
  each clip's frames in a random order (`sampling.shuffled_within_clips_tf`; `starts` still
  give the clips' true start frames); `min_start_gap` frames between clip starts on top of
  Eq. 3 (`sampling`); `reverse_prob`, the probability that a video is shown played backwards
  (every clip of it, `sampling.reversed_video_indices_tf`; `starts` and clip frames follow the
  shown video, the record's `label` is not changed).
  """
  hide_gpus_from_tf()
  tf = _tf()
  for name, value in (("batch_size_per_process", batch_size_per_process),
                      ("num_clips", num_clips), ("clip_len", clip_len), ("stride", stride),
                      ("crop_size", crop_size), ("shuffle_buffer", shuffle_buffer)):
    if int(value) != value or value < 1:
      raise ValueError(f"make_train_dataset: {name} must be a positive integer, got {value!r}")
  if start_step < 0:
    raise ValueError(f"make_train_dataset: start_step must be >= 0, got {start_step}")
  if not 0.0 <= reverse_prob <= 1.0:
    raise ValueError(f"make_train_dataset: reverse_prob (config.data.reverse_video_prob) must "
                     f"be in [0, 1], got {reverse_prob!r}")
  process_index, process_count = process_info(process_index, process_count)
  videos = VideoSource(source, process_index, process_count, cycle_length=cycle_length,
                       cache=cache)

  start_element = int(start_step) * int(batch_size_per_process)
  if videos.from_files and not cache:
    stream = record_stream.epoch_stream(
        videos.files, videos.file_ids, videos.num_files, seed=seed,
        cycle_length=cycle_length, window=int(shuffle_buffer), start=start_element)
  else:
    stream = _buffer_shuffled_stream(videos, seed, int(shuffle_buffer), start_element,
                                     records_per_epoch, process_index, process_count)
  indexed = tf.data.Dataset.zip(
      (tf.data.Dataset.range(start_element, np.iinfo(np.int64).max), stream))
  map_fn = _train_map_fn(seed=seed, num_clips=num_clips, clip_len=clip_len, stride=stride,
                         crop_size=crop_size, max_tries=max_tries, label_key=label_key,
                         augment=augment, accel_aug=accel_aug, shuffle_frames=shuffle_frames,
                         min_start_gap=min_start_gap, reverse_prob=float(reverse_prob))
  ds = indexed.map(no_autograph(map_fn), num_parallel_calls=tf.data.AUTOTUNE,
                   deterministic=True)
  ds = ds.batch(batch_size_per_process, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return apply_threading_options(ds, num_threads)


def _buffer_shuffled_stream(videos: VideoSource, seed: int, shuffle_buffer: int,
                            start_element: int, records_per_epoch: Optional[int],
                            process_index: int, process_count: int):
  """A tf.data source's (or cached records') stream: shuffle buffer, resume by skipping."""
  tf = _tf()
  first_epoch, skip = 0, start_element
  if start_element:
    if records_per_epoch is not None and not videos.from_files:
      # `shard(process_count, process_index)` gives this process every P-th video.
      epoch_size = len(range(process_index, int(records_per_epoch), process_count))
    else:
      epoch_size = videos.count()
    if epoch_size < 1:
      raise ValueError(f"make_train_dataset: no videos in {videos.description}")
    first_epoch, skip = divmod(start_element, int(epoch_size))

  def one_epoch(epoch):
    epoch_seed = tf.constant(seed, tf.int64) * _EPOCH_SEED_MULTIPLIER + epoch
    return videos.epoch(epoch_seed).shuffle(shuffle_buffer, seed=epoch_seed,
                                            reshuffle_each_iteration=False)

  stream = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(
      no_autograph(one_epoch))
  return stream.skip(skip)


def make_train_dataset(source: SourceType, **kwargs) -> Iterator[dict]:
  """Iterator of NumPy training batches (per process); arguments of `build_train_dataset`."""
  return build_train_dataset(source, **kwargs).as_numpy_iterator()


def make_linear_train_dataset(source: SourceType, *, clip_len: int = 32,
                              augment: AugmentConfig = AugmentConfig(),
                              **kwargs) -> Iterator[dict]:
  """Linear-evaluation training views (Sec. 4.1): K = 1 clip (32 frames by default), the
  pretraining augmentation without colour jitter and blur. `clips` is [B, 1, T, S, S, 3]."""
  if kwargs.pop("num_clips", 1) != 1:
    raise ValueError("make_linear_train_dataset always samples num_clips=1")
  return make_train_dataset(source, num_clips=1, clip_len=clip_len,
                            augment=augment.without_color(), **kwargs)
