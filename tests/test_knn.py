"""The k-NN probe: cosine neighbours, weighted vote, view averaging."""

import numpy as np

from corp_jax.evaluate import knn


def test_nearest_class_wins_and_scale_is_ignored():
  train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
  labels = np.array([0, 0, 1, 1])
  # Cosine: the length of a feature does not matter, its direction does.
  test = np.array([[50.0, 1.0], [0.01, 3.0]])
  np.testing.assert_array_equal(knn.knn_predict(train, labels, test, k=2), [0, 1])
  assert knn.knn_top1(train, labels, test, np.array([0, 0]), k=2) == 0.5


def test_weighted_vote_lets_closer_neighbours_outvote_more_numerous_ones():
  train = np.array([[1.0, 0.0], [0.3, 1.0], [0.3, -1.0]])
  labels = np.array([0, 1, 1])
  test = np.array([[1.0, 0.05]])
  assert knn.knn_predict(train, labels, test, k=3, temperature=0.07)[0] == 0
  # Counting votes: two of class 1 beat one of class 0.
  assert knn.knn_predict(train, labels, test, k=3, temperature=None)[0] == 1


def test_views_are_averaged_after_normalisation():
  train = np.array([[1.0, 0.0], [0.0, 1.0]])
  labels = np.array([0, 1])
  # One long view at class 0, two short ones nearer class 1: the raw mean points at class 0,
  # the mean of normalised views (each view has an equal say) at class 1.
  views = np.array([[[100.0, 0.0], [0.3, 1.0], [0.3, 1.0]]])
  embedded = knn.video_embeddings(views)
  np.testing.assert_allclose(np.linalg.norm(embedded, axis=-1), 1.0, rtol=1e-6)
  assert knn.knn_predict(train, labels, views.mean(axis=1), k=50)[0] == 0
  assert knn.knn_predict(train, labels, embedded, k=50)[0] == 1
