"""Training and evaluation batches from the embedded array splits (`embedded_arrays`) in
NumPy: the `pipeline` / `eval_pipeline` batch layout without TensorFlow.

Contract:
  `train_batches(split_info, *, batch_size_per_process, num_clips, clip_len, stride,
      crop_size, seed, label_key, start_step=0, ...)` yields, per process, the batches of
      `pipeline.make_train_dataset` (docs/CONTRACTS.md): clips [B, K, T, S, S, 3] float32 in
      [0, 1] (uint8 with `output_uint8`, for the accelerator's augmentation), starts [B, K]
      int32 (Eq. 3, `sampling.starts_from_draws`, sampled order), label [B] int32 (the
      `label_key` family), video_id [B] int32 (the video's index in the split: the id the
      TFRecord pipeline gives the same video).
    Each clip is the whole frame resized to S x S (`array_frames.resize_bilinear`, TF's
    resize), i.e. the TF pipeline with crop area 1, or with `crop_area_range` below 1 a
    random resized crop: one window per clip, shared by its T frames, drawn as the TF
    pipeline draws it (`array_frames.sample_crop_window`: the same distribution, not the
    same numbers), then resized to S x S (`crop_shared=True`, beyond the paper: clip 1's
    window cut from every clip of the video); `flip_prob` flips clips horizontally; no colour
    or blur here (the train step's `augment_jax` does them on uint8 clips). Options as in
    `pipeline`: `min_start_gap`, `reverse_prob` (the whole video played backwards, starts
    kept), `shuffle_frames` (each clip's frames in a random order).
    Determinism and resume: the global stream is a pure function of `seed`. Element n
    (counting across epochs) shows video perm_e[n mod N] of the permutation of epoch
    e = n // N drawn from default_rng([seed, 0, e]), with its random draws from
    default_rng([seed, 1, n]) in a fixed order (Eq. 3 uniforms [max_tries, K], reversal,
    frame order, flips, then the crop windows of clips 1..K when cropping (clip 1's only
    with `crop_shared`, so clip 1's window is the same either way): the earlier
    draws, and so the clips' frames, do not depend on the crop setting). Batch `step`
    holds elements [step * G, (step + 1) * G), G = B * P the global batch, and process p
    yields rows [p B, (p + 1) B) of it: `start_step=N` yields exactly batches N, N+1, ...
    of the `start_step=0` stream, for any number of processes.
    `cache_mb` > 0 keeps the whole-frame resize of each video it meets (float32, up to that
    many megabytes per process), so a video is resized once rather than on every visit
    (on the 4,000-video photo set the resize was most of the stream's time); the resize is
    per frame, so the clips are bit-identical with or without it (cropped clips are cut
    from the frames on every visit and do not use it).
  `cropped_clip_pixels(video, indices [K, T], windows [K x (top, left, h, w)], crop_size,
      flips, output_uint8)`: clip k cut to window k, then resized to S x S.
  `clip_pixels(video, indices [K, T], crop_size, flips, output_uint8)`: the clips of one
      video at given frame indices (also what tests compare with the TF pipeline).
  `eval_batches(split_info, *, batch_size, num_clips, num_crops, clip_len, stride, crop_size,
      label_key, resize_short=None)` yields `eval_pipeline.make_eval_dataset`'s batches:
      clips [B, V, T, S, S, 3] float32 in [0, 1] (`array_frames.eval_views`), label, video_id
      and mask, every video once in index order, the last batch padded (label and video_id
      -1, mask False).
Imports neither TensorFlow nor JAX.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from corp_jax.data import array_frames
from corp_jax.data import embedded_arrays
from corp_jax.data import sampling


def _positive(name: str, value) -> None:
  if int(value) != value or value < 1:
    raise ValueError(f"array_stream: {name} must be a positive integer, got {value!r}")


def _check_crop_ranges(area_range, aspect_ratio_range) -> None:
  lo, hi = (float(v) for v in area_range)
  if not 0.0 < lo <= hi <= 1.0:
    raise ValueError(f"array_stream: crop_area_range (config.data.aug_crop_area_min, 1) must "
                     f"satisfy 0 < min <= max <= 1, got {tuple(area_range)!r}")
  lo, hi = (float(v) for v in aspect_ratio_range)
  if not 0.0 < lo <= hi:
    raise ValueError(f"array_stream: crop_aspect_ratio_range must satisfy 0 < min <= max, "
                     f"got {tuple(aspect_ratio_range)!r}")


def clip_pixels(video: np.ndarray, indices: np.ndarray, crop_size: int,
                flips: Optional[np.ndarray] = None, output_uint8: bool = False) -> np.ndarray:
  """video [L, H, W, 3] uint8, indices [K, T] -> [K, T, S, S, 3] (float32 [0, 1] or uint8)."""
  frames = np.asarray(video[np.asarray(indices).reshape(-1)])
  resized = array_frames.resize_bilinear(frames, crop_size, crop_size)
  return _finish_clips(resized, indices.shape, flips, output_uint8)


def cropped_clip_pixels(video: np.ndarray, indices: np.ndarray, windows, crop_size: int,
                        flips: Optional[np.ndarray] = None,
                        output_uint8: bool = False) -> np.ndarray:
  """video [L, H, W, 3] uint8, indices [K, T], K windows -> [K, T, S, S, 3]."""
  indices = np.asarray(indices)
  resized = [array_frames.resize_bilinear(
      np.asarray(video[clip_indices, top:top + height, left:left + width]), crop_size,
      crop_size) for clip_indices, (top, left, height, width) in zip(indices, windows)]
  return _finish_clips(np.concatenate(resized), indices.shape, flips, output_uint8)


class ResizedVideos:
  """The videos of a split resized to S x S whole-frame (float32 in [0, 255]), each kept on
  first use while the total stays within `budget_bytes`; `clips(video, indices, ...)` is
  `clip_pixels(frames[video], indices, ...)`, from the kept resize when there is one."""

  def __init__(self, frames: np.ndarray, crop_size: int, budget_bytes: int):
    self.frames = frames
    self.crop_size = int(crop_size)
    per_video = frames.shape[1] * self.crop_size ** 2 * frames.shape[-1] * 4
    self.capacity = int(min(frames.shape[0], max(int(budget_bytes), 0) // per_video))
    self._kept: dict = {}

  def clips(self, video: int, indices: np.ndarray, flips: Optional[np.ndarray] = None,
            output_uint8: bool = False) -> np.ndarray:
    kept = self._kept.get(video)
    if kept is None and len(self._kept) < self.capacity:
      kept = array_frames.resize_bilinear(np.asarray(self.frames[video]), self.crop_size,
                                          self.crop_size)
      self._kept[video] = kept
    if kept is None:
      return clip_pixels(self.frames[video], indices, self.crop_size, flips, output_uint8)
    resized = kept[np.asarray(indices).reshape(-1)]  # a copy: the kept frames stay as they are
    return _finish_clips(resized, indices.shape, flips, output_uint8)


def _finish_clips(resized: np.ndarray, shape, flips, output_uint8: bool) -> np.ndarray:
  """Resized frames [K * T, S, S, 3] -> clips [K, T, S, S, 3]: flips, then the output type."""
  num_clips, clip_len = shape
  clips = resized.reshape((num_clips, clip_len) + resized.shape[1:])
  if flips is not None and np.any(flips):
    clips[flips] = clips[flips][:, :, :, ::-1]
  if output_uint8:
    return array_frames.to_uint8(clips)
  return np.clip(clips / np.float32(255.0), 0.0, 1.0)


def _element_indices(rng: np.random.Generator, num_frames: int, *, num_clips: int,
                     clip_len: int, stride: int, max_tries: int, min_start_gap: int,
                     reverse_prob: float, shuffle_frames: bool, flip_prob: float,
                     frame_shape, crop_area_range, crop_aspect_ratio_range,
                     crop_shared: bool = False):
  """(starts [K], frame indices [K, T], flips [K], crop windows or None) of one element;
  draws in a fixed order."""
  draws = rng.random((max_tries, num_clips), dtype=np.float64)
  backwards = rng.random() < reverse_prob
  order_keys = rng.random((num_clips, clip_len))
  flips = rng.random(num_clips) < flip_prob
  windows = None
  if crop_area_range[0] < 1.0:
    windows = [array_frames.sample_crop_window(rng, frame_shape[0], frame_shape[1],
                                               crop_area_range, crop_aspect_ratio_range)
               for _ in range(1 if crop_shared else num_clips)]
    if crop_shared:
      windows = windows * num_clips
  starts = sampling.starts_from_draws(draws, num_frames, clip_len, stride, num_clips,
                                      min_start_gap)
  indices = sampling.clip_frame_indices(starts, clip_len, stride, num_frames)
  if backwards:  # the shown video is played backwards; starts count in the shown video
    indices = num_frames - 1 - indices
  if shuffle_frames:
    indices = np.take_along_axis(indices, np.argsort(order_keys, axis=1, kind="stable"), 1)
  return starts, indices, flips, windows


def train_batches(split_info: dict, *, batch_size_per_process: int, num_clips: int,
                  clip_len: int, stride: int, crop_size: int, seed: int, label_key: str,
                  start_step: int = 0, process_index: int = 0, process_count: int = 1,
                  max_tries: int = sampling.DEFAULT_MAX_TRIES, min_start_gap: int = 0,
                  reverse_prob: float = 0.0, shuffle_frames: bool = False,
                  flip_prob: float = 0.0, output_uint8: bool = False,
                  cache_mb: float = 0.0, crop_area_range=(1.0, 1.0),
                  crop_aspect_ratio_range=(0.5, 2.0),
                  crop_shared: bool = False) -> Iterator[dict]:
  """The training stream of one process (infinite); see the module docstring."""
  for name, value in (("batch_size_per_process", batch_size_per_process),
                      ("num_clips", num_clips), ("clip_len", clip_len), ("stride", stride),
                      ("crop_size", crop_size), ("process_count", process_count)):
    _positive(name, value)
  if start_step < 0:
    raise ValueError(f"array_stream: start_step must be >= 0, got {start_step}")
  if not 0 <= process_index < process_count:
    raise ValueError(f"array_stream: invalid process_index={process_index} for "
                     f"process_count={process_count}")
  if not 0.0 <= reverse_prob <= 1.0:
    raise ValueError(f"array_stream: reverse_prob (config.data.reverse_video_prob) must be "
                     f"in [0, 1], got {reverse_prob!r}")
  if cache_mb < 0:
    raise ValueError(f"array_stream: cache_mb (config.data.arrays_cache_mb) must be >= 0, "
                     f"got {cache_mb!r}")
  _check_crop_ranges(crop_area_range, crop_aspect_ratio_range)
  frames, labels = embedded_arrays.load_split(split_info)
  label = labels[embedded_arrays.label_family(split_info["metadata"], label_key)]
  num_videos, num_frames = frames.shape[0], frames.shape[1]
  resized = ResizedVideos(frames, crop_size, int(cache_mb * 2 ** 20))
  global_batch = batch_size_per_process * process_count
  options = dict(num_clips=num_clips, clip_len=clip_len, stride=stride, max_tries=max_tries,
                 min_start_gap=min_start_gap, reverse_prob=reverse_prob,
                 shuffle_frames=shuffle_frames, flip_prob=flip_prob,
                 frame_shape=frames.shape[2:4], crop_area_range=tuple(crop_area_range),
                 crop_aspect_ratio_range=tuple(crop_aspect_ratio_range),
                 crop_shared=bool(crop_shared))
  epoch_order = {}

  def video_of(element: int) -> int:
    epoch, position = divmod(element, num_videos)
    if epoch not in epoch_order:
      epoch_order.clear()
      epoch_order[epoch] = np.random.default_rng([seed, 0, epoch]).permutation(num_videos)
    return int(epoch_order[epoch][position])

  step = int(start_step)
  while True:
    first = step * global_batch + process_index * batch_size_per_process
    videos, starts, clips, flips = [], [], [], []
    for element in range(first, first + batch_size_per_process):
      video = video_of(element)
      s, indices, f, windows = _element_indices(np.random.default_rng([seed, 1, element]),
                                                num_frames, **options)
      videos.append(video)
      starts.append(s)
      if windows is None:
        clips.append(resized.clips(video, indices, f, output_uint8))
      else:
        clips.append(cropped_clip_pixels(frames[video], indices, windows, crop_size, f,
                                         output_uint8))
    yield {"clips": np.stack(clips), "starts": np.stack(starts).astype(np.int32),
           "label": label[videos].astype(np.int32),
           "video_id": np.asarray(videos, np.int32)}
    step += 1


def eval_batches(split_info: dict, *, batch_size: int, num_clips: int, num_crops: int,
                 clip_len: int, stride: int, crop_size: int, label_key: str,
                 resize_short: Optional[int] = None) -> Iterator[dict]:
  """Every video of the split once, in index order; see the module docstring."""
  for name, value in (("batch_size", batch_size), ("num_clips", num_clips),
                      ("num_crops", num_crops), ("clip_len", clip_len), ("stride", stride),
                      ("crop_size", crop_size)):
    _positive(name, value)
  frames, labels = embedded_arrays.load_split(split_info)
  label = labels[embedded_arrays.label_family(split_info["metadata"], label_key)]
  views = dict(num_clips=num_clips, num_crops=num_crops, clip_len=clip_len, stride=stride,
               crop_size=crop_size, resize_short=resize_short)
  for lo in range(0, frames.shape[0], batch_size):
    ids = np.arange(lo, min(lo + batch_size, frames.shape[0]))
    clips = np.stack([array_frames.eval_views(np.asarray(frames[i]), **views) for i in ids])
    missing = batch_size - len(ids)
    yield {"clips": np.concatenate([clips, np.zeros((missing,) + clips.shape[1:],
                                                    clips.dtype)]),
           "label": np.concatenate([label[ids], np.full(missing, -1)]).astype(np.int32),
           "video_id": np.concatenate([ids, np.full(missing, -1)]).astype(np.int32),
           "mask": np.arange(batch_size) < len(ids)}
