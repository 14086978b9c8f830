"""k-nearest-neighbour probe of frozen features (cosine similarity), NumPy only.

Contract:
  `knn_predict(train_features [M, F], train_labels [M], test_features [N, F] or [N, V, F],
  num_classes, k=20, temperature=0.07) -> (predictions [N] int, class scores [N, C])`.
  Features are L2-normalised; a test video with V views is represented by the normalised
  mean of its normalised view features. Each test video takes the k training features of
  highest cosine similarity and votes for their labels with weight exp(similarity /
  temperature) (the weighted vote of Wu et al., 2018, "instance discrimination"); ties go
  to the lower class index. k is capped at M.
  `knn_top1(...)` is the fraction of test videos whose prediction equals their label.
Nothing is trained, so the probe has no seed and no hyper-parameters beyond k and the
temperature: it measures what the geometry of the features already separates.
"""

from __future__ import annotations

import numpy as np

DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.07
_EPS = 1e-12


def _normalize(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def video_embeddings(features: np.ndarray) -> np.ndarray:
  """[N, F] -> normalised [N, F]; [N, V, F] -> normalised mean of normalised views."""
  features = np.asarray(features)
  if features.ndim == 3:
    return _normalize(_normalize(features).mean(axis=1))
  if features.ndim == 2:
    return _normalize(features)
  raise ValueError(f"features must be [N, F] or [N, V, F], got shape {features.shape}")


def knn_predict(train_features, train_labels, test_features, num_classes: int, *,
                k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE,
                chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
  """See the module docstring."""
  bank = video_embeddings(train_features)
  labels = np.asarray(train_labels, np.int64)
  queries = video_embeddings(test_features)
  if len(bank) != len(labels):
    raise ValueError(f"{len(bank)} training features but {len(labels)} labels")
  if len(bank) == 0:
    raise ValueError("the k-NN probe needs at least one training feature")
  if bank.shape[1] != queries.shape[1]:
    raise ValueError(f"feature sizes differ: train {bank.shape[1]}, test {queries.shape[1]}")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"training labels must lie in [0, {num_classes}); found "
                     f"[{labels.min()}, {labels.max()}]")
  if k < 1 or temperature <= 0:
    raise ValueError(f"need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
  k = min(int(k), len(bank))
  scores = np.zeros((len(queries), num_classes), np.float64)
  for lo in range(0, len(queries), chunk):
    sims = queries[lo:lo + chunk] @ bank.T  # [n, M]
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    weights = np.exp(top_sims / temperature)
    rows = np.repeat(np.arange(len(top)), k)
    np.add.at(scores[lo:lo + chunk], (rows, labels[top].ravel()), weights.ravel())
  return scores.argmax(axis=1), scores


def knn_top1(train_features, train_labels, test_features, test_labels, num_classes: int,
             **kwargs) -> float:
  predictions, _ = knn_predict(train_features, train_labels, test_features, num_classes,
                               **kwargs)
  test_labels = np.asarray(test_labels)
  if len(test_labels) != len(predictions):
    raise ValueError(f"{len(predictions)} test features but {len(test_labels)} labels")
  return float(np.mean(predictions == test_labels))
