"""Eq. 3 clip sampling: hand-worked cases, the offset rule as a property, NumPy == TF."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from corp_jax.data import sampling


def paper_delta(L, T, D, K):
  """Eq. 3 exactly as printed: Δ = min(max((L - DT) / K, 1), DT)."""
  return min(max((L - D * T) / K, 1.0), float(D * T))


def test_hand_worked_accept_second_try_keeps_sampled_order():
  # L=100, T=4, D=2, K=2: DT=8, starts in [0, 92] (93 values), Δ = min(46, 8) = 8.
  # Try 0: floor(0.10*93)=9, floor(0.15*93)=13, |9-13| = 4 < 8: rejected.
  # Try 1: floor(0.50*93)=46, floor(0.20*93)=18, |46-18| = 28 >= 8: accepted, not sorted.
  draws = np.array([[0.10, 0.15], [0.50, 0.20]])
  starts = sampling.starts_from_draws(draws, 100, 4, 2, 2)
  np.testing.assert_array_equal(starts, [46, 18])
  np.testing.assert_array_equal(sampling.clip_frame_indices(starts, 4, 2, 100),
                                [[46, 48, 50, 52], [18, 20, 22, 24]])


def test_hand_worked_looped_short_video():
  # L=5 < DT=8: looped, starts in [0, 4], Δ = 1 (distinct starts), indices mod 5.
  # Try 0: floor(0.3*5)=1 twice: rejected. Try 1: floor(0.9*5)=4, floor(0.1*5)=0.
  draws = np.array([[0.3, 0.3], [0.9, 0.1]])
  starts = sampling.starts_from_draws(draws, 5, 4, 2, 2)
  np.testing.assert_array_equal(starts, [4, 0])
  np.testing.assert_array_equal(sampling.clip_frame_indices(starts, 4, 2, 5),
                                [[4, 1, 3, 0], [0, 2, 4, 1]])


def test_hand_worked_fallbacks():
  # All tries rejected (satisfiable case): evenly spaced [0, 92], in the rank order of try 0.
  draws = np.array([[0.12, 0.10], [0.2, 0.2]])  # 11, 9 and 18, 18: both rejected
  np.testing.assert_array_equal(sampling.starts_from_draws(draws, 100, 4, 2, 2), [92, 0])
  # L=13, T=4, D=2, K=4: starts in [0, 5], Δ = 5/4 -> gap 2; 4 starts 2 apart need 0..6, so
  # the rule cannot hold. Fallback floor(k*5/3) = 0, 1, 3, 5 assigned by rank of try 0.
  draws = np.array([[0.7, 0.1, 0.4, 0.9]])
  np.testing.assert_array_equal(sampling.starts_from_draws(draws, 13, 4, 2, 4), [3, 0, 1, 5])


def test_min_gap_and_range_match_the_paper():
  assert sampling.min_start_gap(100, 4, 2, 2) == 8      # Δ = min(46, 8)
  assert sampling.min_start_gap(40, 4, 2, 4) == 8       # Δ = min(8, 8)
  assert sampling.min_start_gap(30, 4, 2, 4) == 6       # Δ = 22/4 = 5.5 -> 6
  assert sampling.min_start_gap(10, 4, 2, 4) == 1       # Δ = max(0.5, 1)
  assert sampling.max_clip_start(100, 4, 2, 2) == 92
  assert sampling.max_clip_start(8, 4, 2, 2) == 7       # L = DT, K = 2: looped
  assert sampling.max_clip_start(8, 4, 2, 1) == 0       # K = 1: one non-wrapping clip


def test_uniform_clip_starts():
  np.testing.assert_array_equal(sampling.uniform_clip_starts(100, 4, 2, 5), [0, 23, 46, 69, 92])
  np.testing.assert_array_equal(sampling.uniform_clip_starts(100, 4, 2, 1), [46])
  np.testing.assert_array_equal(sampling.uniform_clip_starts(5, 4, 2, 3), [0, 0, 0])


@settings(max_examples=300, deadline=None)
@given(L=st.integers(1, 300), T=st.integers(1, 16), D=st.integers(1, 4), K=st.integers(1, 5),
       max_tries=st.sampled_from([1, 2, 32]), seed=st.integers(0, 2**31))
def test_offset_rule_property(L, T, D, K, max_tries, seed):
  starts = sampling.sample_clip_starts(np.random.default_rng(seed), L, T, D, K, max_tries)
  max_start = int(sampling.max_clip_start(L, T, D, K))
  gap = int(sampling.min_start_gap(L, T, D, K))
  assert starts.shape == (K,) and starts.dtype == np.int32
  assert np.all((starts >= 0) & (starts <= max_start))
  indices = sampling.clip_frame_indices(starts, T, D, L)
  assert indices.shape == (K, T) and np.all((indices >= 0) & (indices < L))
  if L >= D * T + K - 1:  # no looping needed: clips never wrap
    np.testing.assert_array_equal(indices, starts[:, None] + D * np.arange(T))
  satisfiable = (K - 1) * gap <= max_start
  if satisfiable:  # holds even with max_tries=1, i.e. for the fallback
    pairwise = np.abs(starts[:, None].astype(int) - starts[None, :])
    off_diagonal = ~np.eye(K, dtype=bool)
    assert np.all(pairwise[off_diagonal] >= paper_delta(L, T, D, K))
  elif max_start >= K - 1:
    assert len(set(starts.tolist())) == K  # best effort still gives distinct clips


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="clip_len"):
    sampling.sample_clip_starts(np.random.default_rng(0), 10, 0, 1, 2)
  with pytest.raises(ValueError, match="num_frames=0"):
    sampling.starts_from_draws(np.zeros((1, 2)), 0, 4, 1, 2)
  with pytest.raises(ValueError, match="num_clips=3"):
    sampling.starts_from_draws(np.zeros((1, 2)), 10, 4, 1, 3)


def test_numpy_and_tf_agree_on_the_same_draws():
  import tensorflow as tf
  rng = np.random.default_rng(0)
  cases = [(int(rng.integers(1, 120)), int(rng.integers(1, 9)), int(rng.integers(1, 4)),
            int(rng.integers(1, 5))) for _ in range(16)]
  cases += [(100, 4, 2, 2), (13, 4, 2, 4), (5, 4, 2, 2), (8, 4, 2, 2), (1, 3, 2, 3)]
  # max_tries 1..4 (small) exercises the fallback often.
  draws = [rng.random((1 + i % 4, K)) for i, (_, _, _, K) in enumerate(cases)]

  @tf.function
  def tf_path(all_draws):  # one graph for all cases (L is a tensor, as in tf.data)
    outputs = []
    for (L, T, D, K), case_draws in zip(cases, all_draws):
      length = tf.constant(L)
      starts = sampling.starts_from_draws_tf(case_draws, length, T, D, K)
      outputs.append((starts, sampling.clip_frame_indices_tf(starts, T, D, length),
                      sampling.uniform_clip_starts_tf(length, T, D, K)))
    return outputs

  for (L, T, D, K), case_draws, (starts, indices, uniform) in zip(
      cases, draws, tf_path([tf.constant(d) for d in draws])):
    expected = sampling.starts_from_draws(case_draws, L, T, D, K)
    np.testing.assert_array_equal(starts.numpy(), expected, err_msg=str((L, T, D, K)))
    np.testing.assert_array_equal(indices.numpy(),
                                  sampling.clip_frame_indices(expected, T, D, L))
    np.testing.assert_array_equal(uniform.numpy(), sampling.uniform_clip_starts(L, T, D, K))
  # The stateless TF sampler is the shared logic applied to its own stateless draws.
  seed = tf.constant([3, 4], tf.int64)
  stateless = tf.random.stateless_uniform([32, 3], seed=seed, dtype=tf.float64).numpy()
  np.testing.assert_array_equal(sampling.sample_clip_starts_tf(seed, 90, 8, 2, 3).numpy(),
                                sampling.starts_from_draws(stateless, 90, 8, 2, 3))


def test_min_gap_raises_the_offset_with_exact_starts():
  # L=32, T=8, D=3 (the embedded demo): DT=24, starts in [0, 8], Eq. 3 gap ceil(8/2) = 4.
  assert sampling.min_start_gap(32, 8, 3, 2) == 4
  assert sampling.min_start_gap(32, 8, 3, 2, min_gap=6) == 6
  assert sampling.min_start_gap(32, 8, 3, 2, min_gap=2) == 4  # never below Eq. 3
  # 9 start values. Try 0: floor(0.1*9)=0, floor(0.6*9)=5, |0-5| = 5: Eq. 3 accepts it, a
  # minimum gap of 6 rejects it. Try 1: floor(0.95*9)=8, floor(0.2*9)=1: 7 >= 6, accepted.
  draws = np.array([[0.1, 0.6], [0.95, 0.2]])
  np.testing.assert_array_equal(sampling.starts_from_draws(draws, 32, 8, 3, 2), [0, 5])
  starts = sampling.starts_from_draws(draws, 32, 8, 3, 2, min_gap=6)
  np.testing.assert_array_equal(starts, [8, 1])
  np.testing.assert_array_equal(sampling.clip_frame_indices(starts, 8, 3, 32),
                                [[8, 11, 14, 17, 20, 23, 26, 29], [1, 4, 7, 10, 13, 16, 19, 22]])
  # L=64, T=8, D=3: starts in [0, 40]; min_gap 22 = D(T-1)+1, so clips share no frame.
  # Try 0: floor(0.3*41)=12, floor(0.7*41)=28: 16 < 22, rejected; try 1: 2 and 36, accepted.
  draws = np.array([[0.3, 0.7], [0.05, 0.9]])
  starts = sampling.starts_from_draws(draws, 64, 8, 3, 2, min_gap=22)
  np.testing.assert_array_equal(starts, [2, 36])
  indices = sampling.clip_frame_indices(starts, 8, 3, 64)
  assert not set(indices[0]) & set(indices[1])
  # Unsatisfiable (gap 9 > max start 8): the evenly spaced fallback 0, 8 in try-0 rank order.
  np.testing.assert_array_equal(
      sampling.starts_from_draws(np.array([[0.9, 0.1]]), 32, 8, 3, 2, min_gap=9), [8, 0])
  with pytest.raises(ValueError, match="min_start_gap"):
    sampling.min_start_gap(32, 8, 3, 2, min_gap=-1)


@settings(max_examples=100, deadline=None)
@given(L=st.integers(1, 200), T=st.integers(1, 10), D=st.integers(1, 4), K=st.integers(2, 4),
       min_gap=st.integers(0, 40), seed=st.integers(0, 2**31))
def test_min_gap_property(L, T, D, K, min_gap, seed):
  starts = sampling.sample_clip_starts(np.random.default_rng(seed), L, T, D, K, min_gap=min_gap)
  max_start = int(sampling.max_clip_start(L, T, D, K))
  gap = int(sampling.min_start_gap(L, T, D, K, min_gap))
  assert gap >= min_gap and np.all((starts >= 0) & (starts <= max_start))
  if (K - 1) * gap <= max_start:
    pairwise = np.abs(starts[:, None].astype(int) - starts[None, :])
    assert np.all(pairwise[~np.eye(K, dtype=bool)] >= max(min_gap, paper_delta(L, T, D, K)))


def test_numpy_and_tf_agree_with_min_gap():
  import tensorflow as tf
  rng = np.random.default_rng(1)
  for L, T, D, K, min_gap in [(32, 8, 3, 2, 6), (64, 8, 3, 2, 22), (64, 8, 3, 4, 12),
                              (32, 8, 3, 2, 9), (50, 4, 2, 3, 0)]:
    draws = rng.random((3, K))
    expected = sampling.starts_from_draws(draws, L, T, D, K, min_gap)
    got = sampling.starts_from_draws_tf(tf.constant(draws), tf.constant(L), T, D, K, min_gap)
    np.testing.assert_array_equal(got.numpy(), expected, err_msg=str((L, T, D, K, min_gap)))
