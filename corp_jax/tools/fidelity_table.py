"""The fidelity protocol's summary: mean ± sd per objective over seeds, as Markdown and JSON.

Contract: `summarize(records) -> dict` groups run records (`fidelity.run_one`) by objective
(in first-seen order) and gives, per column, the mean, the sample standard deviation
(ddof = 1; 0 with one seed) and the number of seeds that have the value. Columns:
`<family> linear`, `<family> kNN` (top-1, %), `<family> direction (linear)` for families with
reversal pairs (%), `overlapping clip pairs %` (same-video training clip pairs that share
frames, `fidelity.clip_overlap`), `order acc` (same-video, training batches), for models
with a relation head `order acc, test videos` and `order acc, train videos` (the head on the
linear probe's views of held-out and of as many training videos, `view_order`), `order leaves
chance (step)` (`fidelity.order_leaves_chance`; blank where it never does), `pretrain s`,
`probe s` (wall), `CPU s` (user + system of both subprocesses).
`markdown(summary, title) -> str` renders it, a value as `mean ± sd` (`–` where absent);
`runs_markdown(records)` lists every run.
"""

from __future__ import annotations

import math

import numpy as np


def _columns(record: dict) -> dict:
  cols = {}
  probe = record["probe"]
  for family, entry in probe.items():
    if not isinstance(entry, dict) or "linear_top1" not in entry:
      continue
    cols[f"{family} linear"] = 100.0 * entry["linear_top1"]
    cols[f"{family} kNN"] = 100.0 * entry["knn_top1"]
    if "linear_direction" in entry:
      cols[f"{family} direction (linear)"] = 100.0 * entry["linear_direction"]
  overlap = record.get("clip_overlap")
  cols["overlapping clip pairs %"] = None if not overlap else 100.0 * overlap["share"]
  cols["order acc"] = record.get("order_acc")
  views = probe.get("order_views")
  if views:
    cols["order acc, test videos"] = views["test_videos"]["accuracy"]
    cols["order acc, train videos"] = views["train_videos"]["accuracy"]
  if "order_leaves_chance" in record:
    cols["order leaves chance (step)"] = record["order_leaves_chance"]
  cols["pretrain s"] = record.get("pretrain_wall_s")
  cols["probe s"] = record.get("probe_wall_s")
  cols["CPU s"] = record.get("cpu_s")
  return cols


def _chance(records: list[dict]) -> dict:
  out = {}
  for record in records:
    for family, entry in record["probe"].items():
      if isinstance(entry, dict) and "chance" in entry:
        out[family] = entry["chance"]
  return out


def summarize(records: list[dict]) -> dict:
  groups: dict = {}
  for record in records:
    groups.setdefault(record["settings"]["objective"], []).append(_columns(record))
  names = []
  for rows in groups.values():
    for row in rows:
      names += [n for n in row if n not in names]
  table = {}
  for objective, rows in groups.items():
    table[objective] = {}
    for name in names:
      values = [r[name] for r in rows
                if r.get(name) is not None and not math.isnan(float(r[name]))]
      if values:
        table[objective][name] = {
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}
  return {"columns": names, "objectives": table, "chance": _chance(records),
          "num_runs": len(records)}


def _cell(stat: dict | None, name: str) -> str:
  if not stat:
    return "–"
  digits = 3 if name.startswith("order acc") else 0 if name.endswith((" s", "(step)")) else 1
  text = f"{stat['mean']:.{digits}f}"
  if stat["n"] > 1:
    text += f" ± {stat['sd']:.{digits}f}"
  return text


def markdown(summary: dict, title: str) -> str:
  names = summary["columns"]
  seeds = {o: max((s["n"] for s in row.values()), default=0)
           for o, row in summary["objectives"].items()}
  lines = [f"### {title}", ""]
  chance = ", ".join(f"{f} {100 * c:.1f}%" for f, c in summary["chance"].items())
  if chance:
    lines += [f"Top-1 in %, mean ± sd over seeds (chance: {chance}; direction: 50%).", ""]
  lines.append("| objective | seeds | " + " | ".join(names) + " |")
  lines.append("|---|---|" + "|".join("---" for _ in names) + "|")
  for objective, row in summary["objectives"].items():
    lines.append(f"| {objective} | {seeds[objective]} | "
                 + " | ".join(_cell(row.get(n), n) for n in names) + " |")
  return "\n".join(lines) + "\n"


def runs_markdown(records: list[dict]) -> str:
  rows = [_columns(r) for r in records]
  names = []
  for row in rows:
    names += [n for n in row if n not in names]
  lines = ["| objective | seed | " + " | ".join(names) + " | load (1 min) |",
           "|---|---|" + "|".join("---" for _ in names) + "|---|"]
  for record, row in zip(records, rows):
    cells = []
    for n in names:
      v = row.get(n)
      cells.append("–" if v is None else _cell({"mean": v, "sd": 0, "n": 1}, n))
    load = record.get("load_average_1min", {})
    loads = "/".join(f"{v:.1f}" for v in load.values())
    lines.append(f"| {record['settings']['objective']} | {record['settings']['seed']} | "
                 + " | ".join(cells) + f" | {loads} |")
  return "\n".join(lines) + "\n"
