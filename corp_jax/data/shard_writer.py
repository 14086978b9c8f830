"""Crash-safe sharded TFRecord writing: `NAME-00000-of-00NNN`, complete or absent.

Each shard is written to `NAME-00000-of-00NNN.tmp-<pid>` and renamed only when closed, so a
crash or Ctrl-C never leaves a partial shard that looks complete. `complete_shards` tells a
rerun which shards already exist, so it can resume; `remove_stale_temporaries` cleans up the
leftovers of an interrupted run.
"""

from __future__ import annotations

import glob
import os
import re


def shard_name(directory: str, name: str, index: int, num_shards: int) -> str:
  return os.path.join(directory, f"{name}-{index:05d}-of-{num_shards:05d}")


def shard_pattern(directory: str, name: str) -> str:
  """Glob pattern matching every complete shard of NAME (temporaries excluded)."""
  return os.path.join(directory, f"{name}-?????-of-?????")


def complete_shards(directory: str, name: str) -> list[str]:
  pat = re.compile(re.escape(name) + r"-\d{5}-of-\d{5}$")
  return sorted(p for p in glob.glob(shard_pattern(directory, name))
                if pat.match(os.path.basename(p)))


def remove_stale_temporaries(directory: str, name: str) -> int:
  stale = glob.glob(os.path.join(directory, f"{name}-?????-of-?????.tmp-*"))
  for path in stale:
    os.remove(path)
  return len(stale)


class AtomicShardWriter:
  """Writes one shard; `close()` renames it into place, `abort()` deletes it."""

  def __init__(self, final_path: str):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    self.final_path = final_path
    self.tmp_path = f"{final_path}.tmp-{os.getpid()}"
    os.makedirs(os.path.dirname(final_path) or ".", exist_ok=True)
    self._writer = tf.io.TFRecordWriter(self.tmp_path)
    self.count = 0

  def write(self, serialized: bytes) -> None:
    self._writer.write(serialized)
    self.count += 1

  def close(self) -> str:
    self._writer.close()
    os.replace(self.tmp_path, self.final_path)
    return self.final_path

  def abort(self) -> None:
    self._writer.close()
    if os.path.exists(self.tmp_path):
      os.remove(self.tmp_path)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.close()
    else:
      self.abort()
    return False


def write_shards(directory: str, name: str, serialized_records, num_shards: int) -> list[str]:
  """Writes a list of serialized records round-robin into `num_shards` atomic shards."""
  records = list(serialized_records)
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  paths = []
  for index in range(num_shards):
    with AtomicShardWriter(shard_name(directory, name, index, num_shards)) as writer:
      for record in records[index::num_shards]:
        writer.write(record)
    paths.append(writer.final_path)
  return paths
