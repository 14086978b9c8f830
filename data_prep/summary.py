"""Per-shard statistics, and the run's report and metadata built from them.

`ShardStats` accumulates what one shard wrote and skipped; `as_dict()` is the JSON summary
that `progress.py` stores. `build_report` and `build_metadata` combine the summaries of all
shards (of this run and of resumed earlier runs) into:

  NAME.report.json    total, written, failed, failure_fraction, the tolerance, ok, failure
                      counts by kind, and every failed video with its kind and reason.
  NAME.metadata.json  class_names, num_classes, num_videos (written), num_failed,
                      class_counts (written videos per class name; unlabelled videos under
                      "<unlabelled>"), fps (the resampling rate, or null when the source rate
                      was kept), source_fps and frames_per_video as {min, mean, max},
                      short_side, jpeg_quality, format, split, num_shards, shard_pattern,
                      shard_records (videos written to each shard, in shard order).
"""

from __future__ import annotations

import collections

UNLABELLED = "<unlabelled>"


class ShardStats:
  """Counts for one shard: written videos per label index, frame and fps ranges, failures."""

  def __init__(self, index: int):
    self.index = index
    self.written = 0
    self.class_counts: collections.Counter = collections.Counter()
    self.frames = {"min": None, "max": None, "sum": 0}
    self.source_fps = {"min": None, "max": None, "sum": 0.0, "count": 0}
    self.failures: list[dict] = []

  @staticmethod
  def _extend(stat: dict, value) -> None:
    stat["min"] = value if stat["min"] is None else min(stat["min"], value)
    stat["max"] = value if stat["max"] is None else max(stat["max"], value)
    stat["sum"] += value

  def add_written(self, label_index: int, num_frames: int, source_fps: float | None) -> None:
    self.written += 1
    self.class_counts[label_index] += 1
    self._extend(self.frames, num_frames)
    if source_fps:
      self._extend(self.source_fps, source_fps)
      self.source_fps["count"] += 1

  def add_failure(self, path: str, label: str, kind: str, reason: str) -> None:
    self.failures.append({"path": path, "label": label, "kind": kind, "reason": reason,
                          "shard": self.index})

  def as_dict(self) -> dict:
    return {"shard": self.index, "written": self.written,
            "class_counts": {str(k): v for k, v in sorted(self.class_counts.items())},
            "frames": dict(self.frames), "source_fps": dict(self.source_fps),
            "failures": list(self.failures)}


def _range(parts: list[dict], count_of) -> dict:
  """{min, mean, max} over per-shard {min, max, sum} dicts; None when nothing was counted."""
  parts = [(p, count_of(p)) for p in parts if p["min"] is not None]
  total = sum(count for _, count in parts)
  if not total:
    return {"min": None, "mean": None, "max": None}
  return {"min": min(p["min"] for p, _ in parts),
          "mean": round(sum(p["sum"] for p, _ in parts) / total, 4),
          "max": max(p["max"] for p, _ in parts)}


def build_report(summaries: list[dict], *, name: str, total: int,
                 max_failure_fraction: float) -> dict:
  written = sum(s["written"] for s in summaries)
  failures = sorted((f for s in summaries for f in s["failures"]), key=lambda f: f["path"])
  fraction = len(failures) / total if total else 0.0
  return {
      "name": name,
      "total": total,
      "written": written,
      "failed": len(failures),
      "failure_fraction": round(fraction, 6),
      "max_failure_fraction": max_failure_fraction,
      "ok": written > 0 and fraction <= max_failure_fraction,
      "failures_by_kind": dict(collections.Counter(f["kind"] for f in failures)),
      "failures": failures,
  }


def build_metadata(summaries: list[dict], *, class_names, settings: dict) -> dict:
  counts = collections.Counter()
  for summary in summaries:
    for index, count in summary["class_counts"].items():
      counts[int(index)] += count
  class_counts = {class_names[i] if i >= 0 else UNLABELLED: c for i, c in sorted(counts.items())}
  metadata = dict(settings)
  metadata.update({
      "class_names": list(class_names),
      "num_classes": len(class_names),
      "num_videos": sum(s["written"] for s in summaries),
      "num_failed": sum(len(s["failures"]) for s in summaries),
      # Records of each shard, in shard order: a resumed training stream finds its position
      # from these without scanning the shards.
      "shard_records": [s["written"] for s in summaries],
      "class_counts": class_counts,
      "frames_per_video": _frames_range(summaries),
      "source_fps": _range([s["source_fps"] for s in summaries], lambda p: p["count"]),
  })
  return metadata


def _frames_range(summaries: list[dict]) -> dict:
  return _range([dict(s["frames"], count=s["written"]) for s in summaries],
                lambda p: p["count"])


def format_report(report: dict, max_listed: int = 20) -> str:
  """A few lines for the terminal: counts, failures by kind, the first failed videos."""
  lines = [f"{report['name']}: {report['written']} of {report['total']} videos written, "
           f"{report['failed']} failed ({report['failure_fraction']:.2%}; tolerance "
           f"{report['max_failure_fraction']:.2%}) -> {'OK' if report['ok'] else 'FAILED'}"]
  for kind, count in sorted(report["failures_by_kind"].items()):
    lines.append(f"  {kind}: {count}")
  for failure in report["failures"][:max_listed]:
    lines.append(f"  skipped {failure['path']}: {failure['reason']}")
  if report["failed"] > max_listed:
    lines.append(f"  ... and {report['failed'] - max_listed} more (see the report file)")
  return "\n".join(lines)
