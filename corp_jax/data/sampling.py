"""Clip sampling for CORP (Sec. 3.2, Eq. 3) in NumPy and in TensorFlow, with one semantics.

Contract:
  A clip of T frames at stride (dilation) D starting at frame s covers frames
  `(s + D * t) mod L`, t = 0..T-1, of a video of L frames (`clip_frame_indices`).

  Training (`sample_clip_starts`, `sample_clip_starts_tf`): K starts are drawn independently
  and uniformly from the integers [0, max_start] and accepted when every pair satisfies
  |s_a - s_b| >= Δ, with Δ = min(max((L - DT) / K, 1), DT) (Eq. 3). Starts are integers, so
  |s_a - s_b| >= Δ  <=>  |s_a - s_b| >= ceil(Δ) = `min_start_gap`, which is computed exactly in
  integer arithmetic. A rejected draw is redrawn, up to `max_tries` draws; if none is accepted
  the deterministic fallback below is returned.

  `min_gap` (frames, default 0 = Eq. 3 alone; `config.data.min_start_gap`) raises the required
  start distance to max(ceil(Δ), min_gap). Not in the paper: Eq. 3 at the paper's K400 sizes
  (L ~ 250, T = 16, D = 2) already keeps clips apart, but on short videos its clips overlap
  (L = 32, T = 8, D = 3: starts 4-8 frames apart, each clip covering 22 frames), so the order
  of two clips can be read by matching the end of one to the start of the other. Clips do not
  share frames when min_gap >= D (T - 1) + 1. Everything below holds with g = that maximum.

  Start range: max_start = L - DT when L - DT >= K - 1 (the video holds K distinct
  non-wrapping clip starts). Otherwise the video is *looped*: max_start = L - 1 and frame
  indices wrap modulo L. For K = 1 this is exactly "videos shorter than DT are looped"; for
  K > 1 it also loops the K - 1 lengths just above DT, where the unlooped range could not hold
  K distinct starts and every clip would be the same clip. In the looped regime
  (L - DT) / K < 1, so Δ = 1: the clips must only be distinct.

  Satisfiability: integer starts in [0, M] (M = max_start) with pairwise gaps >= g exist iff
  (K - 1) * g <= M. This fails in a few narrow cases, e.g. L - DT = 5, K = 4 (g = 2 but only
  6 values 0..5 for 4 starts 2 apart), and for looped videos with L < K.

  Fallback: the evenly spaced starts floor(k * M / (K - 1)), k = 0..K-1. Consecutive values
  differ by floor((k+1)x) - floor(kx) >= floor(x) with x = M / (K - 1), and a configuration
  with gaps >= g exists iff g <= floor(x), so the fallback satisfies the rule whenever the rule
  is satisfiable. When it is not, the fallback still has the largest possible smallest gap
  (floor(x)); starts repeat only when M < K - 1 (a looped video with L < K frames).
  The fallback values are assigned to the K clip slots in the rank order of the first draw,
  so fallback clips are not always in ascending time order (a model must not learn "clip 0 is
  earlier" from the fallback).

  Order: starts are returned in sampled order (not sorted). Clips are produced in the same
  order, and the starts travel with them; nothing here reverses time inside a clip.

  Evaluation (`uniform_clip_starts`): N starts evenly spaced over [0, max(L - DT, 0)],
  floor(n * M / (N - 1)); N = 1 gives the centre clip M // 2.

  One definition for NumPy and TF: the formulas (`_max_start_and_gap`, `_evenly_spaced`,
  `_starts_from_tries`, `_frame_indices`) take an array namespace `xp`, NumPy or
  `tensorflow.experimental.numpy`, and use only integer arithmetic and comparisons, so
  `starts_from_draws` and `starts_from_draws_tf` map the same float64 uniforms [max_tries, K]
  to the same starts, bit for bit. The `_tf` functions add only argument checks that work in
  a graph; the samplers add only the random number generator (NumPy Generator / TF stateless
  op).

  Frame-index options of the training pipeline (TF only): `reversed_video_indices_tf` shows a
  video played backwards with a probability; `shuffled_within_clips_tf` puts each clip's
  frames in a random order (a diagnostic control). Neither changes the starts.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MAX_TRIES = 32


def _check_clip_args(clip_len: int, stride: int, num_clips: int, max_tries: int = 1) -> None:
  for name, value in (("clip_len", clip_len), ("stride", stride), ("num_clips", num_clips),
                      ("max_tries", max_tries)):
    if int(value) != value or value < 1:
      raise ValueError(f"sampling: {name} must be a positive integer, got {value!r}")


def _check_min_gap(min_gap) -> None:
  if int(min_gap) != min_gap or min_gap < 0:
    raise ValueError(f"sampling: min_gap (config.data.min_start_gap) must be an integer >= 0 "
                     f"frames, got {min_gap!r}")


def _max_start_and_gap(xp, num_frames, clip_len: int, stride: int, num_clips: int,
                       min_gap: int = 0):
  """(M, g) as int64: the largest start and max(ceil(Δ), min_gap) (see `min_start_gap`)."""
  num_frames = xp.asarray(num_frames, xp.int64)
  span = clip_len * stride
  excess = num_frames - span
  max_start = xp.where(excess >= num_clips - 1, excess, num_frames - 1)
  ceil_div = -((-excess) // num_clips)
  gap = xp.maximum(xp.minimum(xp.maximum(ceil_div, 1), span), int(min_gap))
  return max_start, gap


def _evenly_spaced(xp, max_start, num_clips: int):
  """floor(k * M / (K - 1)) for k = 0..K-1; [M // 2] for K = 1. Shape [K], int64."""
  if num_clips == 1:
    return xp.reshape(xp.asarray(max_start, xp.int64) // 2, [1])
  k = xp.arange(num_clips, dtype=xp.int64)
  return (k * max_start) // (num_clips - 1)


def _starts_from_tries(xp, draws, max_start, gap, num_clips: int):
  """draws [max_tries, K] float64 -> [K] int64: the first accepted try, else the fallback."""
  n_values = xp.asarray(max_start + 1, xp.float64)
  tries = xp.minimum(xp.asarray(xp.floor(draws * n_values), xp.int64), max_start)
  diffs = xp.abs(tries[:, :, None] - tries[:, None, :])
  accepted = xp.all((diffs >= gap) | xp.eye(num_clips, dtype=bool), axis=(1, 2))
  first = xp.argmax(xp.asarray(accepted, xp.int32))
  ranks = xp.argsort(xp.argsort(draws[0], kind="stable"), kind="stable")
  fallback = xp.take(_evenly_spaced(xp, max_start, num_clips), ranks)
  return xp.where(xp.any(accepted), tries[first], fallback)


def _frame_indices(xp, starts, clip_len: int, stride: int, num_frames):
  """[K] starts -> [K, T] int32 frame indices (s + D t) mod L."""
  starts = xp.asarray(starts, xp.int64)
  offsets = stride * xp.arange(clip_len, dtype=xp.int64)
  return xp.asarray((starts[:, None] + offsets[None, :]) % xp.asarray(num_frames, xp.int64),
                    xp.int32)


def min_start_gap(num_frames, clip_len: int, stride: int, num_clips: int, min_gap: int = 0):
  """max(ceil(Δ), min_gap), Δ of Eq. 3, in exact integer arithmetic; ints or integer arrays.

  Δ = min(max((L - DT) / K, 1), DT); ceil is monotone and 1, DT are integers, so
  ceil(Δ) = min(max(ceil((L - DT) / K), 1), DT).
  """
  _check_min_gap(min_gap)
  return _max_start_and_gap(np, num_frames, clip_len, stride, num_clips, min_gap)[1]


def max_clip_start(num_frames, clip_len: int, stride: int, num_clips: int):
  """Largest allowed start: L - DT, or L - 1 for looped videos (see module docstring)."""
  return _max_start_and_gap(np, num_frames, clip_len, stride, num_clips)[0]


def starts_from_draws(draws: np.ndarray, num_frames: int, clip_len: int, stride: int,
                      num_clips: int, min_gap: int = 0) -> np.ndarray:
  """Maps uniforms to clip starts: the first accepted try, else the fallback.

  Args:
    draws: [max_tries, K] float64 in [0, 1); row r is the r-th independent draw.
  Returns:
    [K] int32 starts in sampled order.
  """
  draws = np.asarray(draws, np.float64)
  max_tries, k = draws.shape
  _check_clip_args(clip_len, stride, num_clips, max_tries)
  _check_min_gap(min_gap)
  if k != num_clips:
    raise ValueError(f"starts_from_draws: draws have {k} columns, num_clips={num_clips}")
  if int(num_frames) < 1:
    raise ValueError(f"starts_from_draws: video has num_frames={num_frames}; need >= 1")
  max_start, gap = _max_start_and_gap(np, num_frames, clip_len, stride, num_clips, min_gap)
  return _starts_from_tries(np, draws, max_start, gap, num_clips).astype(np.int32)


def sample_clip_starts(rng: np.random.Generator, num_frames: int, clip_len: int, stride: int,
                       num_clips: int, max_tries: int = DEFAULT_MAX_TRIES,
                       min_gap: int = 0) -> np.ndarray:
  """Eq. 3 sampler (NumPy). Returns [K] int32 starts in sampled order."""
  _check_clip_args(clip_len, stride, num_clips, max_tries)
  draws = rng.random((max_tries, num_clips), dtype=np.float64)
  return starts_from_draws(draws, num_frames, clip_len, stride, num_clips, min_gap)


def clip_frame_indices(starts, clip_len: int, stride: int, num_frames: int) -> np.ndarray:
  """[K] starts -> [K, T] int32 frame indices (s + D t) mod L (loops short videos)."""
  _check_clip_args(clip_len, stride, 1)
  if int(num_frames) < 1:
    raise ValueError(f"clip_frame_indices: num_frames={num_frames}; need >= 1")
  return _frame_indices(np, starts, clip_len, stride, int(num_frames))


def uniform_clip_starts(num_frames: int, clip_len: int, stride: int,
                        num_clips: int) -> np.ndarray:
  """Evaluation starts: N evenly spaced over [0, max(L - DT, 0)]. Returns [N] int32."""
  _check_clip_args(clip_len, stride, num_clips)
  max_start = np.maximum(np.asarray(num_frames, np.int64) - clip_len * stride, 0)
  return _evenly_spaced(np, max_start, num_clips).astype(np.int32)


# ----------------------------------------------------------------------------------------
# TensorFlow versions (usable inside tf.data map functions; the same formulas on tf.Tensors).
# ----------------------------------------------------------------------------------------


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _tnp():
  import tensorflow.experimental.numpy as tnp  # pylint: disable=g-import-not-at-top
  return tnp


def starts_from_draws_tf(draws, num_frames, clip_len: int, stride: int, num_clips: int,
                         min_gap: int = 0):
  """TF twin of `starts_from_draws`: draws [max_tries, K] float64 -> [K] int32."""
  tf = _tf()
  _check_clip_args(clip_len, stride, num_clips)
  _check_min_gap(min_gap)
  draws = tf.ensure_shape(tf.cast(draws, tf.float64), [None, num_clips])
  tf.debugging.assert_positive(
      tf.cast(num_frames, tf.int64), message="starts_from_draws_tf: video has no frames")
  max_start, gap = _max_start_and_gap(_tnp(), num_frames, clip_len, stride, num_clips,
                                      min_gap)
  return tf.cast(_starts_from_tries(_tnp(), draws, max_start, gap, num_clips), tf.int32)


def sample_clip_starts_tf(seed, num_frames, clip_len: int, stride: int, num_clips: int,
                          max_tries: int = DEFAULT_MAX_TRIES, min_gap: int = 0):
  """Eq. 3 sampler (TF, stateless): seed [2] int -> [K] int32 starts in sampled order."""
  tf = _tf()
  _check_clip_args(clip_len, stride, num_clips, max_tries)
  draws = tf.random.stateless_uniform([max_tries, num_clips], seed=seed, dtype=tf.float64)
  return starts_from_draws_tf(draws, num_frames, clip_len, stride, num_clips, min_gap)


def clip_frame_indices_tf(starts, clip_len: int, stride: int, num_frames):
  """TF twin of `clip_frame_indices`: [K] starts -> [K, T] int32."""
  _check_clip_args(clip_len, stride, 1)
  return _frame_indices(_tnp(), starts, clip_len, stride, num_frames)


def uniform_clip_starts_tf(num_frames, clip_len: int, stride: int, num_clips: int):
  """TF twin of `uniform_clip_starts`: [N] int32 evenly spaced evaluation starts."""
  tf = _tf()
  tnp = _tnp()
  _check_clip_args(clip_len, stride, num_clips)
  max_start = tnp.maximum(tnp.asarray(num_frames, tnp.int64) - clip_len * stride, 0)
  return tf.cast(_evenly_spaced(tnp, max_start, num_clips), tf.int32)


def reversed_video_indices_tf(indices, num_frames, sampler_seed, reverse_prob: float):
  """With probability `reverse_prob` (a draw from `sampler_seed` folded with 1) the whole
  video is shown played backwards: frame f of the shown video is L - 1 - f. Starts (the
  order label) count in the shown video, so they stay as sampled. indices [K, T] int32."""
  tf = _tf()
  reverse_seed = tf.random.experimental.stateless_fold_in(sampler_seed, 1)
  backwards = tf.random.stateless_uniform([], seed=reverse_seed, dtype=tf.float64)
  return tf.where(backwards < reverse_prob, num_frames - 1 - indices, indices)


def shuffled_within_clips_tf(indices, element_seed):
  """A diagnostic control: each clip's frame indices [K, T] in its own random order.

  The clip keeps its frames and its start (the order label), but loses the direction of
  motion inside it; its own stateless seed, so the other random draws stay as they are."""
  tf = _tf()
  shuffle_seed = tf.stack([element_seed[0] * 7919 + 104729, element_seed[1]])
  keys = tf.random.stateless_uniform(tf.shape(indices), seed=shuffle_seed)
  return tf.gather(indices, tf.argsort(keys, axis=1), batch_dims=1)
