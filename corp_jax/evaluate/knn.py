"""k-nearest-neighbour probe on frozen features: a pure NumPy function.

Contract:
  `knn_top1(train_feats [M, F], train_labels [M], test_feats [N, F], test_labels [N], k=20,
  temperature=0.07, chunk=1024) -> float` in [0, 1]: each test feature takes the k training
  features of highest cosine similarity; class scores are the sum over those neighbours of
  exp(similarity / temperature) (the weighted vote of Wu et al. 2018, the usual k-NN monitor
  of self-supervised training); `temperature=None` counts votes instead, ties going to the
  class with the larger summed similarity. Top-1 = fraction of test rows whose best class is
  their label. `knn_predict(...) -> [N]` int64 predictions with the same arguments (no labels).
  `video_embeddings(features [N, F] or [N, V, F]) -> [N, F]`: a video of V views as the
  normalised mean of its normalised views (each view has an equal say).
Features are L2-normalised inside (float64 accumulation is not needed: float32 cosine);
k is capped at M. Bad shapes or labels raise ValueError naming them.
"""

from __future__ import annotations

import numpy as np


def _normalise(x: np.ndarray, what: str) -> np.ndarray:
  x = np.asarray(x, np.float32)
  if x.ndim != 2:
    raise ValueError(f"{what} must be [rows, F], got shape {x.shape}")
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def video_embeddings(features) -> np.ndarray:
  """[N, F] -> normalised [N, F]; [N, V, F] -> normalised mean of the normalised views."""
  features = np.asarray(features, np.float32)
  if features.ndim == 3:
    features = features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    features = features.mean(axis=1)
  return _normalise(features, "features")


def knn_predict(train_feats, train_labels, test_feats, k: int = 20,
                temperature: float | None = 0.07, chunk: int = 1024) -> np.ndarray:
  bank, queries = _normalise(train_feats, "train_feats"), _normalise(test_feats, "test_feats")
  labels = np.asarray(train_labels)
  if labels.shape != (len(bank),):
    raise ValueError(f"train_labels must be [{len(bank)}], got shape {labels.shape}")
  if bank.shape[1] != queries.shape[1]:
    raise ValueError(f"feature sizes differ: train {bank.shape[1]}, test {queries.shape[1]}")
  if not len(bank) or int(k) < 1:
    raise ValueError(f"k-NN needs training features and k >= 1 (got {len(bank)} rows, k={k})")
  if labels.min() < 0:
    raise ValueError(f"train_labels must be >= 0, found {int(labels.min())} (unlabelled data?)")
  labels = labels.astype(np.int64)
  num_classes, k = int(labels.max()) + 1, min(int(k), len(bank))
  predictions = []
  for lo in range(0, len(queries), chunk):
    sims = queries[lo:lo + chunk] @ bank.T                               # [n, M]
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]                   # [n, k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    weights = (np.ones_like(top_sims) if temperature is None
               else np.exp((top_sims - 1.0) / temperature))  # shifted: no overflow, same argmax
    scores = np.zeros((len(top), num_classes), np.float64)
    rows = np.repeat(np.arange(len(top)), k)
    np.add.at(scores, (rows, labels[top].ravel()), weights.ravel())
    if temperature is None:  # ties: the larger summed similarity
      tie_break = np.zeros_like(scores)
      np.add.at(tie_break, (rows, labels[top].ravel()), top_sims.ravel())
      scores = scores + 1e-6 * (tie_break / k)
    predictions.append(np.argmax(scores, axis=1))
  return np.concatenate(predictions) if predictions else np.zeros((0,), np.int64)


def knn_top1(train_feats, train_labels, test_feats, test_labels, k: int = 20,
             temperature: float | None = 0.07, chunk: int = 1024) -> float:
  test_labels = np.asarray(test_labels)
  if test_labels.shape != (len(np.asarray(test_feats)),):
    raise ValueError(f"test_labels must be [{len(np.asarray(test_feats))}], got shape "
                     f"{test_labels.shape}")
  if not len(test_labels):
    raise ValueError("knn_top1 of an empty test set")
  predictions = knn_predict(train_feats, train_labels, test_feats, k, temperature, chunk)
  return float(np.mean(predictions == test_labels))
