"""Fault injection for the reliability checks: damage a checkpoint, find orphaned processes.

  CORRUPTIONS                      name -> fn(step_dir, rng): damages one checkpoint step
                                   the way a disk fault, a full disk or a cut copy does:
    truncate                       the largest array file cut to a random fraction;
    zero_bytes                     a random run of bytes in the largest array file zeroed;
    delete_metadata                the array metadata file (`_METADATA`) removed.
  `descendants(pid)`               live (non-zombie) processes below `pid`, from /proc.
  `alive(pid)`                     whether `pid` runs (a zombie counts as dead).
Standard library only: usable by tests and by the campaign without JAX or TensorFlow.
"""

from __future__ import annotations

import os
import random


def _files(directory: str) -> list[str]:
  found = []
  for root, _, files in os.walk(directory):
    found.extend(os.path.join(root, f) for f in files)
  return sorted(found)


def _largest_file(step_dir: str) -> str:
  files = _files(step_dir)
  if not files:
    raise FileNotFoundError(f"no files under {step_dir}")
  return max(files, key=lambda p: (os.path.getsize(p), p))


def truncate(step_dir: str, rng: random.Random) -> str:
  path = _largest_file(step_dir)
  size = os.path.getsize(path)
  keep = int(size * rng.uniform(0.1, 0.9))
  os.truncate(path, keep)
  return f"truncated {os.path.relpath(path, step_dir)} from {size} to {keep} bytes"


def zero_bytes(step_dir: str, rng: random.Random) -> str:
  path = _largest_file(step_dir)
  size = os.path.getsize(path)
  length = max(1, min(size // 4, rng.randint(16, 4096)))
  offset = rng.randrange(0, max(1, size - length))
  with open(path, "r+b") as f:
    f.seek(offset)
    f.write(b"\0" * length)
  return f"zeroed {length} bytes at offset {offset} of {os.path.relpath(path, step_dir)}"


def delete_metadata(step_dir: str, rng: random.Random) -> str:  # pylint: disable=unused-argument
  candidates = [p for p in _files(step_dir) if os.path.basename(p) == "_METADATA"]
  if not candidates:
    raise FileNotFoundError(f"no _METADATA file under {step_dir}")
  os.remove(candidates[0])
  return f"deleted {os.path.relpath(candidates[0], step_dir)}"


CORRUPTIONS = {"truncate": truncate, "zero_bytes": zero_bytes,
               "delete_metadata": delete_metadata}


def _stat(pid: int) -> list[str] | None:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()
  except OSError:
    return None


def alive(pid: int) -> bool:
  fields = _stat(pid)
  return fields is not None and fields[0] != "Z"


def descendants(pid: int) -> list[int]:
  """Pids of every live process below `pid` (Linux /proc; empty elsewhere)."""
  if not os.path.isdir("/proc"):
    return []
  children: dict[int, list[int]] = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      fields = _stat(int(entry))
      if fields is not None and fields[0] != "Z":
        children.setdefault(int(fields[1]), []).append(int(entry))
  found, todo = [], [pid]
  while todo:
    for child in children.get(todo.pop(), []):
      found.append(child)
      todo.append(child)
  return found
