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

  Shared draw -> starts logic: `starts_from_draws` (NumPy) and `starts_from_draws_tf` map the
  same float64 uniforms [max_tries, K] to the same starts, bit for bit; the samplers only add
  the random number generator (NumPy Generator / TF stateless op).
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


def min_start_gap(num_frames, clip_len: int, stride: int, num_clips: int, min_gap: int = 0):
  """max(ceil(Δ), min_gap), Δ of Eq. 3, in exact integer arithmetic; ints or integer arrays.

  Δ = min(max((L - DT) / K, 1), DT); ceil is monotone and 1, DT are integers, so
  ceil(Δ) = min(max(ceil((L - DT) / K), 1), DT).
  """
  _check_min_gap(min_gap)
  span = clip_len * stride
  excess = np.asarray(num_frames, np.int64) - span
  ceil_div = -((-excess) // num_clips)
  return np.maximum(np.minimum(np.maximum(ceil_div, 1), span), int(min_gap))


def max_clip_start(num_frames, clip_len: int, stride: int, num_clips: int):
  """Largest allowed start: L - DT, or L - 1 for looped videos (see module docstring)."""
  num_frames = np.asarray(num_frames, np.int64)
  excess = num_frames - clip_len * stride
  return np.where(excess >= num_clips - 1, excess, num_frames - 1)


def _evenly_spaced(max_start, num_clips: int):
  """floor(k * M / (K - 1)) for k = 0..K-1; [M // 2] for K = 1. Shape [K]."""
  k = np.arange(num_clips, dtype=np.int64)
  if num_clips == 1:
    return np.asarray([max_start // 2], np.int64)
  return (k * max_start) // (num_clips - 1)


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
  if k != num_clips:
    raise ValueError(f"starts_from_draws: draws have {k} columns, num_clips={num_clips}")
  if int(num_frames) < 1:
    raise ValueError(f"starts_from_draws: video has num_frames={num_frames}; need >= 1")
  max_start = int(max_clip_start(num_frames, clip_len, stride, num_clips))
  gap = int(min_start_gap(num_frames, clip_len, stride, num_clips, min_gap))
  n_values = np.float64(max_start + 1)
  tries = np.minimum(np.floor(draws * n_values).astype(np.int64), max_start)
  diffs = np.abs(tries[:, :, None] - tries[:, None, :])
  off_diagonal = ~np.eye(num_clips, dtype=bool)
  accepted = np.all((diffs >= gap) | ~off_diagonal, axis=(1, 2))
  if accepted.any():
    return tries[int(np.argmax(accepted))].astype(np.int32)
  ranks = np.argsort(np.argsort(draws[0], kind="stable"), kind="stable")
  return _evenly_spaced(max_start, num_clips)[ranks].astype(np.int32)


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
  starts = np.asarray(starts, np.int64)
  offsets = stride * np.arange(clip_len, dtype=np.int64)
  return ((starts[:, None] + offsets[None, :]) % int(num_frames)).astype(np.int32)


def uniform_clip_starts(num_frames: int, clip_len: int, stride: int,
                        num_clips: int) -> np.ndarray:
  """Evaluation starts: N evenly spaced over [0, max(L - DT, 0)]. Returns [N] int32."""
  _check_clip_args(clip_len, stride, num_clips)
  max_start = max(int(num_frames) - clip_len * stride, 0)
  return _evenly_spaced(max_start, num_clips).astype(np.int32)


# ----------------------------------------------------------------------------------------
# TensorFlow versions (usable inside tf.data map functions; same integer arithmetic).
# ----------------------------------------------------------------------------------------


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _max_start_and_gap_tf(num_frames, clip_len: int, stride: int, num_clips: int,
                          min_gap: int = 0):
  tf = _tf()
  num_frames = tf.cast(num_frames, tf.int64)
  span = tf.constant(clip_len * stride, tf.int64)
  excess = num_frames - span
  max_start = tf.where(excess >= num_clips - 1, excess, num_frames - 1)
  ceil_div = -tf.math.floordiv(-excess, tf.constant(num_clips, tf.int64))
  gap = tf.maximum(tf.minimum(tf.maximum(ceil_div, 1), span), tf.constant(min_gap, tf.int64))
  return max_start, gap


def _evenly_spaced_tf(max_start, num_clips: int):
  tf = _tf()
  if num_clips == 1:
    return tf.reshape(tf.math.floordiv(max_start, 2), [1])
  k = tf.range(num_clips, dtype=tf.int64)
  return tf.math.floordiv(k * max_start, num_clips - 1)


def starts_from_draws_tf(draws, num_frames, clip_len: int, stride: int, num_clips: int,
                         min_gap: int = 0):
  """TF twin of `starts_from_draws`: draws [max_tries, K] float64 -> [K] int32."""
  tf = _tf()
  _check_clip_args(clip_len, stride, num_clips)
  _check_min_gap(min_gap)
  draws = tf.ensure_shape(tf.cast(draws, tf.float64), [None, num_clips])
  tf.debugging.assert_positive(
      tf.cast(num_frames, tf.int64), message="starts_from_draws_tf: video has no frames")
  max_start, gap = _max_start_and_gap_tf(num_frames, clip_len, stride, num_clips, int(min_gap))
  n_values = tf.cast(max_start + 1, tf.float64)
  tries = tf.minimum(tf.cast(tf.floor(draws * n_values), tf.int64), max_start)
  diffs = tf.abs(tries[:, :, None] - tries[:, None, :])
  diagonal = tf.eye(num_clips, dtype=tf.bool)
  accepted = tf.reduce_all((diffs >= gap) | diagonal, axis=[1, 2])
  first = tf.argmax(tf.cast(accepted, tf.int32), output_type=tf.int32)
  ranks = tf.argsort(tf.argsort(draws[0], stable=True), stable=True)
  fallback = tf.gather(_evenly_spaced_tf(max_start, num_clips), ranks)
  starts = tf.where(tf.reduce_any(accepted), tries[first], fallback)
  return tf.cast(starts, tf.int32)


def sample_clip_starts_tf(seed, num_frames, clip_len: int, stride: int, num_clips: int,
                          max_tries: int = DEFAULT_MAX_TRIES, min_gap: int = 0):
  """Eq. 3 sampler (TF, stateless): seed [2] int -> [K] int32 starts in sampled order."""
  tf = _tf()
  _check_clip_args(clip_len, stride, num_clips, max_tries)
  draws = tf.random.stateless_uniform([max_tries, num_clips], seed=seed, dtype=tf.float64)
  return starts_from_draws_tf(draws, num_frames, clip_len, stride, num_clips, min_gap)


def clip_frame_indices_tf(starts, clip_len: int, stride: int, num_frames):
  """TF twin of `clip_frame_indices`: [K] starts -> [K, T] int32."""
  tf = _tf()
  _check_clip_args(clip_len, stride, 1)
  starts = tf.cast(starts, tf.int64)
  offsets = stride * tf.range(clip_len, dtype=tf.int64)
  indices = tf.math.floormod(starts[:, None] + offsets[None, :], tf.cast(num_frames, tf.int64))
  return tf.cast(indices, tf.int32)


def uniform_clip_starts_tf(num_frames, clip_len: int, stride: int, num_clips: int):
  """TF twin of `uniform_clip_starts`: [N] int32 evenly spaced evaluation starts."""
  tf = _tf()
  _check_clip_args(clip_len, stride, num_clips)
  max_start = tf.maximum(tf.cast(num_frames, tf.int64) - clip_len * stride, 0)
  return tf.cast(_evenly_spaced_tf(max_start, num_clips), tf.int32)
