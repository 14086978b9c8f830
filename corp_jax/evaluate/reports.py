"""The report files of an evaluation workdir.

Contract: `write_report(workdir, *, summary, class_names, config, backbone_step,
pretrain_workdir, extra) -> dict` writes
  results.json           top1, top5, per-class accuracy, confusion matrix, class names,
                         backbone step, the evaluation config, anything in `extra`;
  per_class.csv          class_index, class_name, num_videos, accuracy (accuracy in [0, 1],
                         empty for classes without test videos);
  per_class.md           the same as a Markdown table (accuracy in %), top-1/top-5 above it;
  confusion_matrix.png, per_class_accuracy.png;
  pretraining_curves.png the paper's Fig. 3 from PRETRAIN_WORKDIR/metrics.jsonl (skipped,
                         and said so in results.json, when the log is missing);
and returns {name: path}. `read_per_class_csv(path) -> list[dict]` reads per_class.csv back.
`summary` is `views.classification_summary(...)`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Sequence

import numpy as np

from corp_jax import io_paths
from corp_jax.evaluate import plots

CSV_FIELDS = ("class_index", "class_name", "num_videos", "accuracy")


def per_class_rows(summary: dict, class_names: Sequence[str]) -> list[dict]:
  counts = np.asarray(summary["confusion"]).sum(axis=1)
  return [{"class_index": i, "class_name": name, "num_videos": int(counts[i]),
           "accuracy": float(summary["per_class_accuracy"][i])}
          for i, name in enumerate(class_names)]


def write_per_class_csv(path: str, rows: list[dict]) -> str:
  f = io.StringIO(newline="")
  writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
  writer.writeheader()
  for row in rows:
    accuracy = row["accuracy"]
    writer.writerow(dict(row, accuracy="" if math.isnan(accuracy) else f"{accuracy:.6f}"))
  return io_paths.write_text(path, f.getvalue())


def read_per_class_csv(path: str) -> list[dict]:
  if not io_paths.exists(path):
    raise FileNotFoundError(f"no per-class table at {path}: is this an evaluation workdir?")
  with io.StringIO(io_paths.read_text(path), newline="") as f:
    reader = csv.DictReader(f)
    missing = set(CSV_FIELDS) - set(reader.fieldnames or ())
    if missing:
      raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    return [{"class_index": int(r["class_index"]), "class_name": r["class_name"],
             "num_videos": int(r["num_videos"]),
             "accuracy": float(r["accuracy"]) if r["accuracy"] else float("nan")}
            for r in reader]


def _percent(value: float) -> str:
  return "–" if value is None or math.isnan(value) else f"{100.0 * value:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def write_per_class_markdown(path: str, rows: list[dict], *, title: str, top1: float,
                             top5: float) -> str:
  table = markdown_table(("Class", "Videos", "Top-1 (%)"),
                         [(r["class_name"], r["num_videos"], _percent(r["accuracy"]))
                          for r in rows])
  return io_paths.write_text(
      path, f"# {title}\n\nTop-1 {_percent(top1)}%, top-5 {_percent(top5)}% "
      f"over {sum(r['num_videos'] for r in rows)} test videos.\n\n{table}")


def jsonable(value):
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return jsonable(value.tolist())
  if isinstance(value, (np.floating, float)):
    return None if math.isnan(float(value)) else float(value)
  if isinstance(value, np.integer):
    return int(value)
  return value


def write_report(workdir: str, *, summary: dict, class_names: Sequence[str], config,
                 backbone_step: int, pretrain_workdir: str, extra: dict | None = None,
                 training_curves: bool = True) -> dict:
  """Writes every report file of an evaluation into `workdir`; returns {name: path}.

  `training_curves=False` leaves out the pretraining curves (an evaluation that writes several
  reports draws them once)."""
  io_paths.makedirs(workdir)
  rows = per_class_rows(summary, class_names)
  job = config.get("job", "evaluation") if hasattr(config, "get") else "evaluation"
  # Titles name the run, not where it lives on this machine.
  run_name = io_paths.basename(io_paths.resolve(pretrain_workdir).rstrip("/")) or pretrain_workdir
  title = f"{job} of {run_name} (step {backbone_step})"
  paths = {
      "per_class_csv": write_per_class_csv(io_paths.join(workdir, "per_class.csv"), rows),
      "per_class_md": write_per_class_markdown(
          io_paths.join(workdir, "per_class.md"), rows, title=title, top1=summary["top1"],
          top5=summary["top5"]),
      "confusion_png": plots.plot_confusion_matrix(
          summary["confusion"], class_names, io_paths.join(workdir, "confusion_matrix.png"),
          title=f"{job}: top-1 {_percent(summary['top1'])}%"),
      "per_class_png": plots.plot_per_class_accuracy(
          summary["per_class_accuracy"], class_names,
          io_paths.join(workdir, "per_class_accuracy.png"), title=title),
  }
  metrics_path = io_paths.join(pretrain_workdir, "metrics.jsonl")
  curves_note = {"skipped": "drawn in another report of this evaluation"}
  if training_curves:
    try:
      curves_path = io_paths.join(workdir, "pretraining_curves.png")
      curves_note = {"plotted": plots.plot_training_curves(metrics_path, curves_path)}
      paths["pretraining_curves_png"] = curves_path
    except (FileNotFoundError, ValueError) as e:
      curves_note = {"skipped": str(e)}
  results = {
      "job": job,
      "top1": summary["top1"],
      "top5": summary["top5"],
      "num_test_videos": int(np.asarray(summary["confusion"]).sum()),
      "backbone_step": int(backbone_step),
      "pretrain_workdir": io_paths.resolve(pretrain_workdir),
      "class_names": list(class_names),
      "per_class_accuracy": {r["class_name"]: r["accuracy"] for r in rows},
      "confusion_matrix": summary["confusion"],
      "pretraining_curves": curves_note,
      "config": json.loads(config.to_json_best_effort()) if hasattr(
          config, "to_json_best_effort") else dict(config),
  }
  results.update(extra or {})
  paths["results_json"] = io_paths.write_text(io_paths.join(workdir, "results.json"),
                                              json.dumps(jsonable(results), indent=2))
  return paths
