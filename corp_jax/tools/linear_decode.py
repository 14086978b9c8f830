"""Linear decodability of labels from frozen features: pure NumPy, no JAX, no TensorFlow.

Contract:
  `fit_logistic(x [N, F], y [N] in {0, 1}, *, l2, intercept) -> (w [F], b)`: L2-regularised
  binary logistic regression, minimising mean log-loss + l2/2 * |w|^2 by Newton's method
  (float64). Features are used as given; callers standardise them.
  `binary_accuracy(train_x, train_y, test_x, test_y, *, groups, l2_grid, intercept) -> dict`:
  z-scores with the training statistics, picks l2 from `l2_grid` by 3-fold cross-validation
  over `groups` (clips of one video stay in one fold, so the choice is not made on near copies
  of the test item), refits on all training rows and returns {'accuracy', 'l2', 'n_train',
  'n_test'} on the test rows.
  `reversal_accuracy(train_f, train_motion, test_f, test_motion, pairs, ...)`: for each pair
  (a, b) of time-reversed motion classes, `binary_accuracy` of "b rather than a" on the clips of
  those two classes; returns {'per_pair': [acc...], 'mean': float}.
  `difference_order_accuracy(train_f, train_pairs, test_f, test_pairs, ...)`: order of two clips
  of one video read linearly from the difference of their features, with no intercept (the
  score is anti-symmetric, like the relation head's order term). `pairs` are [P, 2] row indices
  (i, j) with label 1 when clip i starts earlier; `labels` come separately.

Chance is 0.5 for every binary measure here.
"""

from __future__ import annotations

import numpy as np

DEFAULT_L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
_NEWTON_STEPS = 30


def _check_xy(x, y, where: str):
  x = np.asarray(x, np.float64)
  y = np.asarray(y)
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ValueError(f"{where}: need x [N, F] and y [N], got {x.shape} and {y.shape}")
  if not np.isin(y, (0, 1)).all():
    raise ValueError(f"{where}: labels must be 0 or 1, got values {np.unique(y)[:5].tolist()}")
  return x, y.astype(np.float64)


def fit_logistic(x, y, *, l2: float = 1e-2, intercept: bool = True):
  """Binary logistic regression by Newton's method; returns (w [F], b float)."""
  x, y = _check_xy(x, y, "fit_logistic")
  if l2 <= 0:
    raise ValueError(f"fit_logistic: l2 must be > 0 (keeps the problem strictly convex), got {l2}")
  n, f = x.shape
  design = np.concatenate([x, np.ones((n, 1))], 1) if intercept else x
  theta = np.zeros(design.shape[1])
  penalty = np.full(design.shape[1], l2)
  if intercept:
    penalty[-1] = 1e-8  # the intercept is not shrunk
  for _ in range(_NEWTON_STEPS):
    p = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -40, 40)))
    grad = design.T @ (p - y) / n + penalty * theta
    hessian = (design.T * (p * (1 - p))) @ design / n + np.diag(penalty)
    step = np.linalg.solve(hessian, grad)
    theta -= step
    if np.max(np.abs(step)) < 1e-8:
      break
  if intercept:
    return theta[:f], float(theta[f])
  return theta, 0.0


def _accuracy(w, b, x, y) -> float:
  return float(np.mean(((x @ w + b) > 0) == (y > 0.5)))


def _standardise(train_x, test_x):
  mean = train_x.mean(0)
  std = np.maximum(train_x.std(0), 1e-6)
  return (train_x - mean) / std, (test_x - mean) / std


def _choose_l2(x, y, groups, l2_grid, intercept: bool, folds: int = 3) -> float:
  if len(l2_grid) == 1:
    return float(l2_grid[0])
  unique = np.unique(groups)
  fold_of_group = {g: i % folds for i, g in enumerate(np.random.default_rng(0).permutation(unique))}
  fold = np.array([fold_of_group[g] for g in groups])
  scores = []
  for l2 in l2_grid:
    correct = 0
    for k in range(folds):
      held = fold == k
      if held.all() or not held.any() or len(np.unique(y[~held])) < 2:
        continue
      w, b = fit_logistic(x[~held], y[~held], l2=l2, intercept=intercept)
      correct += _accuracy(w, b, x[held], y[held]) * held.sum()
    scores.append(correct)
  return float(l2_grid[int(np.argmax(scores))])  # ties: the smallest l2 in grid order


def binary_accuracy(train_x, train_y, test_x, test_y, *, groups=None,
                    l2_grid=DEFAULT_L2_GRID, intercept: bool = True,
                    standardise: bool = True) -> dict:
  """Held-out accuracy of a linear classifier; see the module docstring."""
  train_x, train_y = _check_xy(train_x, train_y, "binary_accuracy (train)")
  test_x, test_y = _check_xy(test_x, test_y, "binary_accuracy (test)")
  if train_x.shape[1] != test_x.shape[1]:
    raise ValueError(f"binary_accuracy: train has {train_x.shape[1]} features, test "
                     f"{test_x.shape[1]}")
  if standardise:
    train_x, test_x = _standardise(train_x, test_x)
  groups = np.arange(len(train_x)) if groups is None else np.asarray(groups)
  l2 = _choose_l2(train_x, train_y, groups, tuple(l2_grid), intercept)
  w, b = fit_logistic(train_x, train_y, l2=l2, intercept=intercept)
  return {"accuracy": _accuracy(w, b, test_x, test_y), "l2": l2,
          "n_train": int(len(train_x)), "n_test": int(len(test_x))}


def reversal_accuracy(train_f, train_motion, test_f, test_motion, pairs, *,
                      train_groups=None, l2_grid=DEFAULT_L2_GRID) -> dict:
  """Per reversal pair (a, b): accuracy of telling b from a on held-out clips."""
  train_motion, test_motion = np.asarray(train_motion), np.asarray(test_motion)
  groups = np.arange(len(train_motion)) if train_groups is None else np.asarray(train_groups)
  per_pair = []
  for a, b in pairs:
    tr = np.isin(train_motion, (a, b))
    te = np.isin(test_motion, (a, b))
    if not tr.any() or not te.any():
      raise ValueError(f"reversal_accuracy: no clips of classes {(a, b)} in train "
                       f"({tr.sum()}) or test ({te.sum()})")
    result = binary_accuracy(np.asarray(train_f)[tr], (train_motion[tr] == b).astype(int),
                             np.asarray(test_f)[te], (test_motion[te] == b).astype(int),
                             groups=groups[tr], l2_grid=l2_grid)
    per_pair.append(result["accuracy"])
  return {"per_pair": per_pair, "mean": float(np.mean(per_pair))}


def difference_order_accuracy(train_f, train_pairs, train_labels, test_f, test_pairs,
                              test_labels, *, train_groups=None,
                              l2_grid=DEFAULT_L2_GRID) -> float:
  """Order of clip pairs read linearly from f_i - f_j (no intercept); held-out accuracy.

  Features are z-scored with the training clips' statistics before differencing, so the
  measure does not depend on the scale of each coordinate.
  """
  train_f, test_f = _standardise(np.asarray(train_f, np.float64), np.asarray(test_f, np.float64))
  train_pairs, test_pairs = np.asarray(train_pairs), np.asarray(test_pairs)
  train_x = train_f[train_pairs[:, 0]] - train_f[train_pairs[:, 1]]
  test_x = test_f[test_pairs[:, 0]] - test_f[test_pairs[:, 1]]
  return binary_accuracy(train_x, train_labels, test_x, test_labels, groups=train_groups,
                         l2_grid=l2_grid, intercept=False, standardise=False)["accuracy"]
