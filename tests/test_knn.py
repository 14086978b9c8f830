"""The k-NN probe: cosine neighbours, weighted vote, view averaging, errors."""

import numpy as np
import pytest

from corp_jax.evaluate import knn


def test_nearest_class_wins_and_scale_is_ignored():
  train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
  labels = np.array([0, 0, 1, 1])
  # Cosine: the length of a feature does not matter, its direction does.
  test = np.array([[50.0, 1.0], [0.01, 3.0]])
  predictions, scores = knn.knn_predict(train, labels, test, 2, k=2)
  np.testing.assert_array_equal(predictions, [0, 1])
  assert scores.shape == (2, 2) and scores[0, 1] == 0.0 and scores[1, 0] == 0.0
  assert knn.knn_top1(train, labels, test, np.array([0, 0]), 2, k=2) == 0.5


def test_weighted_vote_lets_closer_neighbours_outvote_more_numerous_ones():
  train = np.array([[1.0, 0.0], [0.3, 1.0], [0.3, -1.0]])
  labels = np.array([0, 1, 1])
  test = np.array([[1.0, 0.05]])
  assert knn.knn_predict(train, labels, test, 2, k=3, temperature=0.07)[0][0] == 0
  # At a high temperature the vote is nearly a count: two of class 1 beat one of class 0.
  assert knn.knn_predict(train, labels, test, 2, k=3, temperature=100.0)[0][0] == 1


def test_views_are_averaged_after_normalisation_and_k_is_capped():
  train = np.array([[1.0, 0.0], [0.0, 1.0]])
  labels = np.array([0, 1])
  # One long view at class 0, two short ones nearer class 1: the raw mean points at class 0,
  # the mean of normalised views (each view has an equal say) at class 1.
  views = np.array([[[100.0, 0.0], [0.3, 1.0], [0.3, 1.0]]])
  np.testing.assert_allclose(np.linalg.norm(knn.video_embeddings(views), axis=-1), 1.0)
  assert knn.knn_predict(train, labels, views.mean(axis=1), 2, k=50)[0][0] == 0
  assert knn.knn_predict(train, labels, views, 2, k=50)[0][0] == 1


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="labels must lie"):
    knn.knn_predict(np.ones((2, 3)), np.array([0, 5]), np.ones((1, 3)), 2)
  with pytest.raises(ValueError, match="feature sizes differ"):
    knn.knn_predict(np.ones((2, 3)), np.array([0, 1]), np.ones((1, 4)), 2)
  with pytest.raises(ValueError, match=r"\[N, F\] or \[N, V, F\]"):
    knn.knn_predict(np.ones((2, 3)), np.array([0, 1]), np.ones(3), 2)
