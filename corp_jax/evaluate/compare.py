"""Side-by-side per-class accuracy of several evaluation workdirs (the paper's Table 7).

  python -m corp_jax.evaluate.compare EVAL_DIR... --out DIR [--names A B ...] [--sort spread]

Each EVAL_DIR is the workdir of a linear_eval / finetune job (or a demo family directory):
it holds per_class.csv and results.json. Writes DIR/comparison.csv (class_index, class_name,
num_videos, one accuracy column per run in [0, 1], spread = max - min) and
DIR/comparison.md (accuracies in %, overall top-1/top-5 rows first). `--sort spread` puts
the classes where the runs differ most on top (the temporal classes of Table 7).
Contract: `compare_runs(run_dirs, names) -> dict(names, rows, overall)` raises ValueError
naming the directory whose classes differ from the first run's.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from typing import Sequence

from corp_jax import io_paths
from corp_jax.evaluate import reports

SORT_KEYS = ("index", "name", "spread")


def _default_names(run_dirs: Sequence[str]) -> list[str]:
  names = [io_paths.basename(d) for d in run_dirs]
  if len(set(names)) < len(names):  # e.g. several .../linear_eval: add the parent directory
    names = [f"{io_paths.basename(io_paths.dirname(d.rstrip('/')))}/{n}"
             for d, n in zip(run_dirs, names)]
  return names


def compare_runs(run_dirs: Sequence[str], names: Sequence[str] | None = None) -> dict:
  if not run_dirs:
    raise ValueError("give at least one evaluation workdir")
  names = list(names) if names else _default_names(run_dirs)
  if len(names) != len(run_dirs):
    raise ValueError(f"{len(names)} names for {len(run_dirs)} runs")
  tables, overall = [], []
  for run_dir in run_dirs:
    tables.append(reports.read_per_class_csv(io_paths.join(run_dir, "per_class.csv")))
    results = json.loads(io_paths.read_text(io_paths.join(run_dir, "results.json")))
    overall.append({"top1": results.get("top1"), "top5": results.get("top5")})
  reference = [(r["class_index"], r["class_name"]) for r in tables[0]]
  for run_dir, table in zip(run_dirs[1:], tables[1:]):
    classes = [(r["class_index"], r["class_name"]) for r in table]
    if classes != reference:
      raise ValueError(f"{run_dir}/per_class.csv has other classes than "
                       f"{run_dirs[0]}/per_class.csv: they were not evaluated on the same "
                       "label set")
  rows = []
  for position, (index, name) in enumerate(reference):
    accuracies = [table[position]["accuracy"] for table in tables]
    finite = [a for a in accuracies if not math.isnan(a)]
    rows.append({"class_index": index, "class_name": name,
                 "num_videos": tables[0][position]["num_videos"], "accuracies": accuracies,
                 "spread": max(finite) - min(finite) if finite else float("nan")})
  return {"names": names, "rows": rows, "overall": overall}


def sort_rows(rows: list[dict], key: str) -> list[dict]:
  if key not in SORT_KEYS:
    raise ValueError(f"--sort must be one of {SORT_KEYS}, got {key!r}")
  if key == "name":
    return sorted(rows, key=lambda r: r["class_name"])
  if key == "spread":
    return sorted(rows, key=lambda r: -r["spread"] if not math.isnan(r["spread"]) else 1.0)
  return sorted(rows, key=lambda r: r["class_index"])


def _pct(value) -> str:
  return "–" if value is None or math.isnan(value) else f"{100.0 * value:.1f}"


def write_comparison(run_dirs: Sequence[str], out_dir: str, names: Sequence[str] | None = None,
                     sort: str = "index") -> dict:
  """Writes comparison.csv and comparison.md into out_dir; returns {name: path}."""
  table = compare_runs(run_dirs, names)
  rows = sort_rows(table["rows"], sort)
  csv_text = io.StringIO(newline="")
  writer = csv.writer(csv_text)
  writer.writerow(["class_index", "class_name", "num_videos", *table["names"], "spread"])
  for r in rows:
    writer.writerow([r["class_index"], r["class_name"], r["num_videos"],
                     *("" if math.isnan(a) else f"{a:.6f}" for a in r["accuracies"]),
                     "" if math.isnan(r["spread"]) else f"{r['spread']:.6f}"])
  csv_path = io_paths.write_text(io_paths.join(out_dir, "comparison.csv"), csv_text.getvalue())
  header = ("Category", *table["names"])
  md_rows = [("**top-1 (all classes)**", *(_pct(o["top1"]) for o in table["overall"])),
             ("**top-5 (all classes)**", *(_pct(o["top5"]) for o in table["overall"]))]
  md_rows += [(r["class_name"], *(_pct(a) for a in r["accuracies"])) for r in rows]
  md_path = io_paths.write_text(
      io_paths.join(out_dir, "comparison.md"), "# Per-class accuracy (%)\n\n" + "\n".join(
          f"- {n}: `{io_paths.resolve(d)}`" for n, d in zip(table["names"], run_dirs))
      + "\n\n" + reports.markdown_table(header, md_rows))
  return {"csv": csv_path, "markdown": md_path}


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("run_dirs", nargs="+", help="evaluation workdirs (with per_class.csv)")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--names", nargs="+", help="column names (default: directory names)")
  parser.add_argument("--sort", default="index", choices=SORT_KEYS)
  args = parser.parse_args(argv)
  paths = write_comparison(args.run_dirs, args.out, args.names, args.sort)
  print(io_paths.read_text(paths["markdown"]))
  print(f"wrote {paths['csv']} and {paths['markdown']}")


if __name__ == "__main__":
  main()
