"""PNG figures of an evaluation (matplotlib, Agg backend; no display needed).

Contract:
  `plot_confusion_matrix(confusion [C, C], class_names, path, title)`: row-normalised
  confusion matrix (rows = true class), counts written in the cells for C <= 30.
  `plot_per_class_accuracy(accuracy [C], class_names, path, title)`: horizontal bar chart.
  `read_metrics_jsonl(path) -> list[dict]`: the pretraining log, one JSON object per line.
  `plot_training_curves(metrics_path, out_path, title) -> list[str]`: the paper's Figure 3
  panels (cross-entropy loss, total accuracy, pair accuracy vs step) from a pretraining
  run's metrics.jsonl; the pair panel falls back to `order_acc` (CORP_f). A metric the run
  did not log (SimCLR has neither) gets an empty panel saying so. Returns the metric keys
  that were plotted.
"""

from __future__ import annotations

import io
import json
from typing import Sequence

import numpy as np

from corp_jax import io_paths

# The paper's Fig. 3 panels, each drawn when the run logged it: CORP_m logs total, order and
# pair accuracy; CORP_f's relation head sees same-video pairs only, so it logs order accuracy
# and no total or pair accuracy; SimCLR logs the loss alone.
FIGURE3_PANELS = (("loss", "Cross-entropy loss (lower is better)"),
                  ("total_acc", "Total accuracy (higher is better)"),
                  ("order_acc", "Same-video order accuracy (higher is better)"),
                  ("pair_acc", "Pair accuracy (higher is better)"))


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path: str) -> str:
  # Rendered in memory, then written through the file layer (the path may be a URI).
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
  _pyplot().close(fig)
  return io_paths.write_bytes(path, buffer.getvalue())


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], path: str,
                          title: str = "Confusion matrix") -> str:
  plt = _pyplot()
  confusion = np.asarray(confusion)
  num = len(class_names)
  if confusion.shape != (num, num):
    raise ValueError(f"confusion matrix {confusion.shape} does not match {num} class names")
  totals = confusion.sum(axis=1, keepdims=True)
  normalised = confusion / np.maximum(totals, 1)
  size = min(4 + 0.45 * num, 40)
  fig, ax = plt.subplots(figsize=(size, size))
  image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
  if num <= 60:
    ax.set_xticks(range(num), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(num), class_names, fontsize=8)
  if num <= 30:
    for t in range(num):
      for p in range(num):
        if confusion[t, p]:
          ax.text(p, t, str(int(confusion[t, p])), ha="center", va="center", fontsize=7,
                  color="white" if normalised[t, p] > 0.5 else "black")
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(title)
  return _save(fig, path)


def plot_per_class_accuracy(accuracy: np.ndarray, class_names: Sequence[str], path: str,
                            title: str = "Per-class accuracy") -> str:
  plt = _pyplot()
  accuracy = np.asarray(accuracy, np.float64)
  if len(accuracy) != len(class_names):
    raise ValueError(f"{len(accuracy)} accuracies but {len(class_names)} class names")
  fig, ax = plt.subplots(figsize=(7, 1.0 + 0.3 * len(class_names)))
  positions = np.arange(len(class_names))
  ax.barh(positions, np.nan_to_num(accuracy * 100.0), color="tab:blue")
  ax.set_yticks(positions, class_names, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlim(0, 100)
  ax.set_xlabel("top-1 accuracy (%)")
  ax.set_title(title)
  return _save(fig, path)


def read_metrics_jsonl(path: str) -> list[dict]:
  if not io_paths.exists(path):
    raise FileNotFoundError(f"no pretraining metrics log at {path}")
  rows = []
  for number, line in enumerate(io_paths.read_text(path).splitlines(), 1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{number} is not valid JSON: {e}") from e
  if not rows:
    raise ValueError(f"{path} has no logged steps")
  return rows


def plot_training_curves(metrics_path: str, out_path: str,
                         title: str = "Pretraining curves (paper Fig. 3)") -> list[str]:
  plt = _pyplot()
  rows = [r for r in read_metrics_jsonl(metrics_path) if "step" in r]
  if not rows:
    raise ValueError(f"{metrics_path} has no rows with a 'step'")
  series = []
  for key, label in FIGURE3_PANELS:
    points = [(r["step"], r[key]) for r in rows
              if r.get(key) is not None and np.isfinite(r[key])]
    if points:
      series.append((key, label, points))
  if not series:
    raise ValueError(f"{metrics_path} logs none of {[k for k, _ in FIGURE3_PANELS]}")
  fig, axes = plt.subplots(1, len(series), figsize=(3.4 * len(series) + 1, 3.6),
                           squeeze=False)
  for ax, (key, label, points) in zip(axes[0], series):
    steps, values = zip(*points)
    ax.plot(steps, values, marker="." if len(points) < 30 else None, label=key)
    ax.legend(fontsize=8)
    ax.set_title(label, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  plotted = [key for key, _, _ in series]
  fig.suptitle(title)
  _save(fig, out_path)
  return plotted
