"""Multi-view testing and classification metrics: pure NumPy functions of arrays.

Contract:
  `average_view_probabilities(logits: [B, V, C]) -> [B, C]`: the softmax of each view,
  averaged over the V views (Sec. 4.1: "the average of softmax probabilities ... of all 30
  views"); not the softmax of averaged logits.
  `top_k_accuracy(probs: [N, C], labels: [N], k) -> float` in [0, 1].
  `confusion_matrix(predictions: [N], labels: [N], num_classes) -> [C, C]` int64, rows =
  true class, columns = predicted class.
  `per_class_accuracy(confusion: [C, C]) -> [C]` float64, NaN for classes without videos.
  `reversal_confusion(confusion, pairs) -> list of dicts`: for each (forward, reversed) class
  pair, how often each member is predicted as its partner.
Labels must lie in [0, C); anything else raises ValueError naming the value.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _check_labels(labels: np.ndarray, num_classes: int, what: str = "labels") -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"{what} must be 1-D, got shape {labels.shape}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    bad = labels[(labels < 0) | (labels >= num_classes)][0]
    raise ValueError(f"{what} must lie in [0, {num_classes}); found {int(bad)} "
                     "(is config.label_key / the number of classes right?)")
  return labels.astype(np.int64)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
  """Numerically stable softmax in float64."""
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=axis, keepdims=True)
  exp = np.exp(shifted)
  return exp / exp.sum(axis=axis, keepdims=True)


def average_view_probabilities(logits: np.ndarray) -> np.ndarray:
  """logits [B, V, C] -> mean over V of softmax(logits) -> [B, C] float64."""
  logits = np.asarray(logits)
  if logits.ndim != 3:
    raise ValueError(f"view logits must be [B, V, C], got shape {logits.shape}")
  return softmax(logits, axis=-1).mean(axis=1)


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
  """Fraction of rows whose label is among the k highest probabilities (ties: lower index)."""
  probs = np.asarray(probs)
  if probs.ndim != 2:
    raise ValueError(f"probs must be [N, C], got shape {probs.shape}")
  labels = _check_labels(labels, probs.shape[1])
  if len(labels) != len(probs):
    raise ValueError(f"{len(probs)} probability rows but {len(labels)} labels")
  if not len(labels):
    raise ValueError("top_k_accuracy of an empty evaluation set")
  k = min(int(k), probs.shape[1])
  top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
  return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """[C, C] counts: entry [t, p] = videos of true class t predicted as p."""
  labels = _check_labels(labels, num_classes)
  predictions = _check_labels(predictions, num_classes, "predictions")
  if len(labels) != len(predictions):
    raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predictions), 1)
  return matrix


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
  """Diagonal over row sums: [C] float64; NaN where a class has no test videos."""
  confusion = np.asarray(confusion)
  totals = confusion.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)


def reversal_confusion(confusion: np.ndarray, pairs: Sequence[Sequence[int]],
                       class_names: Sequence[str] | None = None) -> list[dict]:
  """For each (a, b) pair of time-reversed classes: accuracy of a and b, and the fraction of
  a's videos predicted as b (`a_as_b`) and of b's predicted as a (`b_as_a`).

  A representation blind to time order scores about 0.5 accuracy on each member and puts
  nearly all of its errors into `a_as_b` / `b_as_a`.
  """
  confusion = np.asarray(confusion)
  rows = []
  for a, b in pairs:
    a, b = int(a), int(b)
    n_a, n_b = confusion[a].sum(), confusion[b].sum()
    row = {
        "forward": a, "reversed": b,
        "forward_accuracy": float(confusion[a, a] / n_a) if n_a else float("nan"),
        "reversed_accuracy": float(confusion[b, b] / n_b) if n_b else float("nan"),
        "forward_as_reversed": float(confusion[a, b] / n_a) if n_a else float("nan"),
        "reversed_as_forward": float(confusion[b, a] / n_b) if n_b else float("nan"),
        # accuracy on the pair's videos, counting only the choice between the two classes
        "pair_accuracy": float((confusion[a, a] + confusion[b, b]) / (n_a + n_b))
                         if n_a + n_b else float("nan"),
    }
    if class_names is not None:
      row["forward_name"], row["reversed_name"] = class_names[a], class_names[b]
    rows.append(row)
  return rows


def classification_summary(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """top1, top5, confusion [C, C], per-class accuracy [C] and predictions [N] of probs."""
  predictions = np.argmax(probs, axis=1)
  confusion = confusion_matrix(predictions, labels, num_classes)
  return {
      "top1": top_k_accuracy(probs, labels, 1),
      "top5": top_k_accuracy(probs, labels, 5),
      "confusion": confusion,
      "per_class_accuracy": per_class_accuracy(confusion),
      "predictions": predictions,
  }
