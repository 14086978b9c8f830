"""What makes a rerun resume: the plan of a run and a summary file per finished shard.

Layout, beside the shards in the output folder:
  NAME.progress/plan.json                 the settings and a hash of the ordered video list
  NAME.progress/NAME-00003-of-00016.json  the summary of shard 3, written after the shard

A shard counts as finished only when both its final file and its summary exist (a crash
between the rename and the summary makes the rerun redo that shard, which is deterministic).
A finished shard whose summary lists failed videos is redone by the rerun (`convert.py`).
A rerun whose plan differs from the stored one (other annotations, classes, shard count,
sizes, fps, quality, seed) would mix incompatible shards, so it is refused unless
`--overwrite` clears the old outputs first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from corp_jax.data import records
from corp_jax.data import shard_writer


class ResumeConflict(ValueError):
  """The output folder holds shards of NAME made by a different plan."""


def progress_dir(output_dir: str, name: str) -> str:
  return os.path.join(output_dir, f"{name}.progress")


def report_path(output_dir: str, name: str) -> str:
  return os.path.join(output_dir, f"{name}.report.json")


def write_json(path: str, data) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def videos_digest(videos) -> str:
  """sha256 of the ordered (path, label index) list: changes when the annotations do."""
  digest = hashlib.sha256()
  for video in videos:
    digest.update(json.dumps([video.path, video.label_index]).encode("utf-8"))
  return digest.hexdigest()


def clear_outputs(output_dir: str, name: str) -> None:
  """Removes every shard of NAME (any shard count), temporaries, progress, report, metadata."""
  for path in shard_writer.complete_shards(output_dir, name):
    os.remove(path)
  shard_writer.remove_stale_temporaries(output_dir, name)
  shutil.rmtree(progress_dir(output_dir, name), ignore_errors=True)
  for path in (report_path(output_dir, name), records.metadata_path(output_dir, name)):
    if os.path.exists(path):
      os.remove(path)


def adopt_plan(output_dir: str, name: str, plan: dict) -> None:
  """Stores `plan`, or checks it equals the stored one when shards of NAME already exist."""
  directory = progress_dir(output_dir, name)
  plan_file = os.path.join(directory, "plan.json")
  existing_shards = shard_writer.complete_shards(output_dir, name)
  if os.path.exists(plan_file):
    stored = _read_json(plan_file)
    if stored != plan:
      changed = sorted(k for k in set(stored) | set(plan) if stored.get(k) != plan.get(k))
      raise ResumeConflict(
          f"{output_dir} already holds a conversion of {name!r} with different {changed} "
          f"(see {plan_file}); rerun with --overwrite to rebuild, or use another --name")
  elif existing_shards:
    raise ResumeConflict(
        f"{output_dir} holds {len(existing_shards)} shards of {name!r} but no record of how "
        f"they were made ({plan_file} is missing); rerun with --overwrite to rebuild")
  os.makedirs(directory, exist_ok=True)
  write_json(plan_file, plan)


def _summary_path(output_dir: str, name: str, index: int, num_shards: int) -> str:
  shard = os.path.basename(shard_writer.shard_name(output_dir, name, index, num_shards))
  return os.path.join(progress_dir(output_dir, name), f"{shard}.json")


def write_shard_summary(output_dir: str, name: str, index: int, num_shards: int,
                        summary: dict) -> None:
  write_json(_summary_path(output_dir, name, index, num_shards), summary)


def finished_shards(output_dir: str, name: str, num_shards: int) -> dict[int, dict]:
  """Summaries of the shards that are complete on disk, keyed by shard index."""
  finished = {}
  for index in range(num_shards):
    summary_file = _summary_path(output_dir, name, index, num_shards)
    shard_file = shard_writer.shard_name(output_dir, name, index, num_shards)
    if os.path.exists(summary_file) and os.path.exists(shard_file):
      finished[index] = _read_json(summary_file)
  return finished

