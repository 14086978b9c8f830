"""The CORP training input pipeline (tf.data): parse -> sample (Eq. 3) -> decode only the
sampled frames -> per-clip augmentation -> NumPy batches for one process.

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

TensorFlow is imported lazily; GPUs are hidden from it once (`hide_gpus_from_tf`).
"""

from __future__ import annotations

import os
import sys
from typing import Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from corp_jax.data import record_stream
from corp_jax.data import records
from corp_jax.data import sampling
from corp_jax.data.augment_tf import AugmentConfig

SourceType = Union[str, Sequence[str], "tf.data.Dataset"]  # noqa: F821
_EPOCH_SEED_MULTIPLIER = 1_000_003  # epoch seeds seed*M + e never collide for e < M
_GPUS_HIDDEN = False


def hide_gpus_from_tf() -> None:
  """Keeps TensorFlow off the accelerators (JAX owns them). Idempotent."""
  global _GPUS_HIDDEN
  if _GPUS_HIDDEN:
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF already initialised its devices; it then keeps what it has
    pass
  _GPUS_HIDDEN = True


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


def no_autograph(fn):
  """tf.data traces map functions through autograph, which converts every Python function
  they call (seconds of start-up for the augmentation graph). Ours have Python control flow
  only on static values, so they are traced as plain Python."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.autograph.experimental.do_not_convert(fn)


def process_info(process_index: Optional[int], process_count: Optional[int]) -> tuple:
  """(index, count), defaulting to jax.process_index() / jax.process_count()."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"invalid process_index={process_index} for process_count={process_count}")
  return int(process_index), int(process_count)


def resolve_shard_files(source: Union[str, Sequence[str]], process_index: int,
                        process_count: int) -> tuple:
  """Glob + sort + split per process. Returns (my_files, my_file_ids, num_files_total)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  patterns = [source] if isinstance(source, str) else list(source)
  if not patterns:
    raise ValueError("input source is an empty list of files/patterns")
  files = []
  for pattern in patterns:
    matched = tf.io.gfile.glob(pattern)
    if not matched:
      raise FileNotFoundError(f"no files match the input pattern {pattern!r}")
    files.extend(matched)
  files = sorted(set(files))
  if len(files) < process_count:
    raise ValueError(
        f"input {patterns!r} has {len(files)} shard file(s) but there are {process_count} "
        "processes; each process needs at least one file: write more shards "
        "(data_prep --num_shards) or run fewer processes")
  ids = list(range(process_index, len(files), process_count))
  return [files[i] for i in ids], ids, len(files)


def _is_tf_dataset(source) -> bool:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return isinstance(source, tf.data.Dataset)


class VideoSource:
  """One process's videos as a stream of (video_id int32, item), item being a serialized
  record (tf.string) or an element dict. `epoch(epoch_seed)` gives one (shuffled-file) pass."""

  def __init__(self, source: SourceType, process_index: int, process_count: int, *,
               cycle_length: int = 16, cache: bool = False):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self.cycle_length = max(int(cycle_length), 1)
    if _is_tf_dataset(source):
      self.from_files = False
      base = source.shard(process_count, process_index).enumerate()
      base = base.map(lambda i, elem: (tf.cast(i * process_count + process_index, tf.int32),
                                       elem))
      self._base = base.cache() if cache else base
      self.description = f"tf.data source (shard {process_index} of {process_count})"
    else:
      self.from_files = True
      self.files, file_ids, self.num_files = resolve_shard_files(
          source, process_index, process_count)
      self.file_ids = file_ids
      self._file_ds = tf.data.Dataset.from_tensor_slices(
          (tf.constant(file_ids, tf.int64), tf.constant(self.files)))
      self._base = self._interleave(self._file_ds).cache() if cache else None
      self.description = f"{len(self.files)} of {self.num_files} files from {source!r}"

  def _read_file(self, file_id, path):
    tf = self._tf
    num_files = self.num_files
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda j, rec: (tf.cast(j * num_files + file_id, tf.int32), rec))

  def _interleave(self, file_ds):
    return file_ds.interleave(no_autograph(self._read_file),
                              cycle_length=min(self.cycle_length, len(self.files)),
                              block_length=1, num_parallel_calls=self._tf.data.AUTOTUNE,
                              deterministic=True)

  def epoch(self, epoch_seed=None):
    """One pass over the videos; files in an order drawn from `epoch_seed` (int64 tensor),
    or in sorted order when it is None (evaluation) or the records are cached."""
    if self._base is not None:
      return self._base
    files = self._file_ds
    if epoch_seed is not None:
      files = files.shuffle(len(self.files), seed=epoch_seed, reshuffle_each_iteration=False)
    return self._interleave(files)

  def count(self) -> int:
    """Videos in one epoch of this process (reads the records once, decodes nothing)."""
    tf = self._tf
    data = self._base if self._base is not None else self._interleave(self._file_ds)
    return int(data.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def element_from_item(item, label_key: str) -> dict:
  """A serialized record or an element dict -> {frames source, num_frames, label}."""
  tf = _tf()
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


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def frame_shape_tf(elem):
  """[H, W, 3] of the video's frames without decoding them all (JPEG header only)."""
  tf = _tf()
  if records.IMAGE_KEY in elem:
    return tf.io.extract_jpeg_shape(elem[records.IMAGE_KEY][0])
  return tf.shape(elem["frames"])[1:]


def cropped_clip_tf(elem, frame_indices, begin, size, crop_size: int):
  """The clip's frames [T] cropped to the window and resized: float32 [T, S, S, 3] in
  [0, 255]. JPEG sources decode only these T frames, and only the crop window of each."""
  from corp_jax.data import augment_tf  # pylint: disable=g-import-not-at-top
  tf = _tf()
  if records.IMAGE_KEY in elem:
    jpegs = tf.gather(elem[records.IMAGE_KEY], frame_indices)
    return augment_tf.decode_crop_resize_jpeg_tf(jpegs, begin, size, crop_size)
  frames = tf.gather(elem["frames"], frame_indices)
  return augment_tf.crop_resize_frames_tf(frames, begin, size, crop_size)


def _train_map_fn(*, seed: int, num_clips: int, clip_len: int, stride: int, crop_size: int,
                  max_tries: int, label_key: str, augment: AugmentConfig, accel_aug: bool,
                  shuffle_frames: bool = False, min_start_gap: int = 0,
                  reverse_prob: float = 0.0):
  """(global_index, (video_id, item)) -> one video's training example."""
  from corp_jax.data import augment_tf  # pylint: disable=g-import-not-at-top
  tf = _tf()

  def fn(global_index, pair):
    video_id, item = pair
    elem = element_from_item(item, label_key)
    element_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(global_index, tf.int64)])
    # Row 0 seeds the sampler; rows 1..K seed clip k's crop, rows K+1..2K its augmentation.
    seeds = tf.random.stateless_uniform([2 * num_clips + 1, 2], seed=element_seed,
                                        minval=None, maxval=None, dtype=tf.int64)
    starts = sampling.sample_clip_starts_tf(seeds[0], elem["num_frames"], clip_len, stride,
                                            num_clips, max_tries, min_start_gap)
    indices = sampling.clip_frame_indices_tf(starts, clip_len, stride, elem["num_frames"])
    if reverse_prob > 0:
      # The whole video played backwards: frame f of the shown video is L - 1 - f. Starts
      # (the order label) count in the shown video, so they stay as sampled.
      reverse_seed = tf.random.experimental.stateless_fold_in(seeds[0], 1)
      backwards = tf.random.stateless_uniform([], seed=reverse_seed, dtype=tf.float64)
      indices = tf.where(backwards < reverse_prob, elem["num_frames"] - 1 - indices, indices)
    if shuffle_frames:
      indices = shuffled_within_clips_tf(indices, element_seed)
    shape = frame_shape_tf(elem)

    def one_clip(args):
      clip_indices, crop_seed, augment_seed = args
      begin, size = augment_tf.sample_crop_window_tf(shape, crop_seed, augment)
      clip = cropped_clip_tf(elem, clip_indices, begin, size, crop_size)
      clip = tf.ensure_shape(clip, [clip_len, crop_size, crop_size, 3])
      if accel_aug:
        return augment_tf.to_uint8_tf(clip)
      return augment_tf.augment_clip_tf(clip, augment_seed, augment)

    # map_fn traces the per-clip graph once (not K times) and keeps clip k at position k.
    clips = tf.map_fn(one_clip, (indices, seeds[1:1 + num_clips], seeds[1 + num_clips:]),
                      fn_output_signature=tf.TensorSpec(
                          [clip_len, crop_size, crop_size, 3],
                          tf.uint8 if accel_aug else tf.float32))
    return {"clips": clips, "starts": starts, "label": elem["label"],
            "video_id": tf.cast(video_id, tf.int32)}

  return fn


def shuffled_within_clips_tf(indices, element_seed):
  """A diagnostic control: each clip's frame indices [K, T] in its own random order.

  The clip keeps its frames and its start (the order label), but loses the direction of
  motion inside it; its own stateless seed, so the other random draws stay as they are."""
  tf = _tf()
  shuffle_seed = tf.stack([element_seed[0] * 7919 + 104729, element_seed[1]])
  keys = tf.random.stateless_uniform(tf.shape(indices), seed=shuffle_seed)
  return tf.gather(indices, tf.argsort(keys, axis=1), batch_dims=1)


def apply_threading_options(ds, num_threads: Optional[int], deterministic: bool = True):
  """Sets determinism and (optionally) a private thread pool of `num_threads` threads with
  single-threaded ops, so that throughput per core is measurable."""
  tf = _tf()
  options = tf.data.Options()
  options.deterministic = deterministic
  if num_threads:
    options.threading.private_threadpool_size = int(num_threads)
    options.threading.max_intra_op_parallelism = 1
  return ds.with_options(options)


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
  each clip's frames in a random order (`shuffled_within_clips_tf`; `starts` still give the
  clips' true start frames); `min_start_gap` frames between clip starts on top of Eq. 3
  (`sampling`); `reverse_prob`, the probability that a video is shown played backwards (every
  clip of it; `starts` and clip frames follow the shown video, the record's `label` is not
  changed).
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
