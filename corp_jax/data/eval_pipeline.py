"""The evaluation input pipeline: every video exactly once, N uniform clips x C spatial crops.

Contract (docs/CONTRACTS.md): `make_eval_dataset(source, ...)` yields NumPy dicts
  clips    [B, V, T, S, S, 3] float32 in [0, 1] (uint8 with `output_uint8`), V = N * C views,
           view v = n * C + c (clip n, crop c), frames in time order;
  label    [B] int32 (-1 in padding rows);
  video_id [B] int32 (as in `pipeline`; -1 in padding rows);
  mask     [B] bool, False for the rows that pad the last batch to B.
No shuffle, no repeat: one pass over this process's files (or tf.data shard), in order.

Views (Sec. 4.1 "10 clips x 3 crops"): N clip starts evenly spaced over [0, max(L - DT, 0)]
(`sampling.uniform_clip_starts`; videos shorter than DT loop); frames resized so the short
side is `resize_short` (default S * 256 / 224, as CVRL's min_resize 256 for 224 crops), then C
crops of S x S along the long side: C = 3 gives start/centre/end (left/centre/right for
landscape frames, top/centre/bottom for portrait), C = 1 the centre; the short side is
centred. `single_view=True` is 1 centre clip x 1 centre crop. Frames shared by overlapping
clips are decoded and resized once.

Stages (as in `pipeline`): read -> parse -> sample (`sampling.uniform_clip_starts_tf`) ->
decode the clips' frames (`decode.decode_frames_tf`) -> crop (`crop.resize_short_side_tf`,
`crop.spatial_crops_tf`); no augmentation.
"""

from __future__ import annotations

from typing import Iterator, Optional

from corp_jax.data import crop
from corp_jax.data import decode
from corp_jax.data import parse
from corp_jax.data import records
from corp_jax.data import sampling
from corp_jax.data.read import SourceType, VideoSource, process_info
from corp_jax.data.tf_runtime import apply_threading_options, hide_gpus_from_tf, no_autograph


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _eval_map_fn(*, num_clips: int, num_crops: int, clip_len: int, stride: int, crop_size: int,
                 resize_short: int, label_key: str, output_uint8: bool):
  tf = _tf()

  def fn(video_id, item):
    elem = parse.element_from_item(item, label_key)
    starts = sampling.uniform_clip_starts_tf(elem["num_frames"], clip_len, stride, num_clips)
    indices = sampling.clip_frame_indices_tf(starts, clip_len, stride, elem["num_frames"])
    unique, position = tf.unique(tf.reshape(indices, [-1]))
    frames = crop.resize_short_side_tf(decode.decode_frames_tf(elem, unique), resize_short)
    frames = tf.gather(frames, position)
    clips = tf.reshape(frames, tf.concat([[num_clips, clip_len], tf.shape(frames)[1:]], 0))
    views = crop.spatial_crops_tf(clips, crop_size, num_crops)
    views = tf.ensure_shape(views, [num_clips * num_crops, clip_len, crop_size, crop_size, 3])
    views = crop.to_uint8_tf(views) if output_uint8 else views / 255.0
    return {"clips": views, "label": elem["label"], "video_id": tf.cast(video_id, tf.int32)}

  return fn


def _pad_batch_fn(batch_size: int):
  tf = _tf()

  def fn(batch):
    present = tf.shape(batch["label"])[0]
    missing = batch_size - present
    out = {"mask": tf.range(batch_size) < present}
    for key, value in batch.items():
      padding = tf.concat([[[0, missing]], tf.zeros([tf.rank(value) - 1, 2], tf.int32)], 0)
      fill = -1 if key in ("label", "video_id") else 0
      padded = tf.pad(value, padding, constant_values=tf.cast(fill, value.dtype))
      out[key] = tf.ensure_shape(padded, [batch_size] + value.shape[1:].as_list())
    return out

  return fn


def build_eval_dataset(source: SourceType, *, batch_size: int, num_clips: int = 10,
                       num_crops: int = 3, clip_len: int = 32, stride: int = 2,
                       crop_size: int = 224, resize_short: Optional[int] = None,
                       single_view: bool = False, label_key: str = records.LABEL_INDEX_KEY,
                       output_uint8: bool = False, process_index: Optional[int] = None,
                       process_count: Optional[int] = None, cycle_length: int = 4,
                       num_threads: Optional[int] = None):
  """The evaluation `tf.data.Dataset` (one pass, padded batches). See the module docstring."""
  hide_gpus_from_tf()
  tf = _tf()
  if single_view:
    num_clips, num_crops = 1, 1
  for name, value in (("batch_size", batch_size), ("num_clips", num_clips),
                      ("num_crops", num_crops), ("clip_len", clip_len), ("stride", stride),
                      ("crop_size", crop_size)):
    if int(value) != value or value < 1:
      raise ValueError(f"make_eval_dataset: {name} must be a positive integer, got {value!r}")
  if resize_short is None:
    resize_short = int(round(crop_size * 256 / 224))
  if resize_short < crop_size:
    raise ValueError(f"make_eval_dataset: resize_short={resize_short} is smaller than "
                     f"crop_size={crop_size}")
  process_index, process_count = process_info(process_index, process_count)
  videos = VideoSource(source, process_index, process_count, cycle_length=cycle_length)
  ds = videos.epoch(None)  # sorted files, deterministic interleave, no shuffle, no repeat
  map_fn = _eval_map_fn(num_clips=num_clips, num_crops=num_crops, clip_len=clip_len,
                        stride=stride, crop_size=crop_size, resize_short=resize_short,
                        label_key=label_key, output_uint8=output_uint8)
  # As in the training pipeline: Python control flow here is on static values only, so the
  # map functions are traced without autograph (seconds of start-up saved).
  ds = ds.map(no_autograph(map_fn), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=False).map(
      no_autograph(_pad_batch_fn(batch_size)))
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return apply_threading_options(ds, num_threads)


def make_eval_dataset(source: SourceType, **kwargs) -> Iterator[dict]:
  """Iterator of NumPy evaluation batches; arguments of `build_eval_dataset`."""
  return build_eval_dataset(source, **kwargs).as_numpy_iterator()
