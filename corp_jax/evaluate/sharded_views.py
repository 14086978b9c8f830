"""Test-view features over many processes, cached per input file in the evaluation workdir.

Contract:
  `extract_view_features(source, feature_fn, *, cache_dir, cache_key, **eval_kwargs)` ->
  {'outputs': [N, V, F] float32, 'label': [N] int32, 'video_id': [N] int32}, rows sorted by
  video_id, the same arrays in every process.
  - Unit of work: one file of the test split (sorted file list of `source`, a pattern or a
    list of TFRecord files). Process p of P computes files p, p + P, ...; the results are
    gathered to every process. A file's videos keep the ids of the one-process pipeline
    (`corp_jax.data.pipeline`: record * num_files + file), so P processes return exactly what
    one process returns.
  - Cache: each file's result is written (atomically, through `corp_jax.io_paths`, so a
    gs:// workdir works) to CACHE_DIR/views-<i>-of-<n>.npz with `cache_key`, a string naming
    everything the features depend on (backbone checkpoint, clip geometry, views). A file
    whose cache entry exists with the same key is read, not recomputed: a restarted job
    continues where it stopped. `cache_dir=None` disables the cache.
  - `feature_fn(clips [M, T, S, S, 3] float32) -> [M, F]` runs on this process's own
    devices only (`local_mesh()`): processes work on different videos, so nothing in it may
    be a collective over all processes.
  `eval_kwargs` are those of `eval_pipeline.make_eval_dataset` (batch_size, num_clips, ...).
"""

from __future__ import annotations

import io
from typing import Callable

import jax
import numpy as np

from corp_jax import io_paths
from corp_jax.train import mesh as mesh_lib

KEYS = ("outputs", "label", "video_id")


def local_mesh() -> jax.sharding.Mesh:
  """A 1-D `data` mesh over this process's devices (for per-process work)."""
  return jax.sharding.Mesh(np.asarray(jax.local_devices()), (mesh_lib.DATA_AXIS,))


def source_files(source) -> list[str]:
  from corp_jax.data import read  # pylint: disable=g-import-not-at-top
  return read.resolve_shard_files(source, 0, 1)[0]


def cache_path(cache_dir: str, index: int, num_files: int) -> str:
  return io_paths.join(cache_dir, f"views-{index:05d}-of-{num_files:05d}.npz")


def read_npz(path: str, cache_key: str, keys=KEYS) -> dict | None:
  """The arrays `keys` of a cache file written with `cache_key`; None if absent or stale."""
  if not io_paths.exists(path):
    return None
  try:
    with np.load(io.BytesIO(io_paths.read_bytes(path))) as data:
      if str(data["cache_key"]) != cache_key:
        return None
      return {k: data[k] for k in keys}
  except (OSError, ValueError, KeyError):  # a foreign or damaged file: recompute it
    return None


def write_npz(path: str, result: dict, cache_key: str) -> None:
  """Writes a cache file atomically (a crash never leaves a partial one)."""
  buffer = io.BytesIO()
  np.savez(buffer, cache_key=np.array(cache_key), **result)
  io_paths.write_bytes(path, buffer.getvalue())


def _one_file(source, index: int, num_files: int, feature_fn, eval_kwargs) -> dict:
  from corp_jax.data import eval_pipeline  # pylint: disable=g-import-not-at-top
  # File `index` alone, with the ids it has among all `num_files` files.
  batches = eval_pipeline.make_eval_dataset(source, process_index=index,
                                            process_count=num_files, **eval_kwargs)
  result = map_views(batches, lambda clips: np.asarray(feature_fn(clips)), allow_empty=True)
  return {"outputs": result["outputs"].astype(np.float32),
          "label": result["label"].astype(np.int32),
          "video_id": result["video_id"].astype(np.int32)}


def map_views(batches, fn: Callable[[np.ndarray], np.ndarray], *,
              allow_empty: bool = False) -> dict:
  """Applies fn to every view of every real (unmasked) test video.

  Returns {'outputs': [N, V, ...], 'label': [N], 'video_id': [N]}. No video is an error unless
  `allow_empty` (one file of many may hold none); then outputs keep their rank, [0, 0, 0].
  """
  outputs, labels, ids = [], [], []
  for batch in batches:
    keep = np.asarray(batch["mask"], bool)
    clips = np.asarray(batch["clips"])[keep]
    if not len(clips):
      continue
    flat = fn(clips.reshape((-1,) + clips.shape[2:]).astype(np.float32))
    outputs.append(flat.reshape((len(clips), clips.shape[1]) + flat.shape[1:]))
    labels.append(np.asarray(batch["label"])[keep])
    ids.append(np.asarray(batch["video_id"])[keep])
  if not outputs:
    if not allow_empty:
      raise ValueError("the test split yielded no videos")
    return {"outputs": np.zeros((0, 0, 0), np.float32), "label": np.zeros((0,), np.int32),
            "video_id": np.zeros((0,), np.int32)}
  return {"outputs": np.concatenate(outputs), "label": np.concatenate(labels),
          "video_id": np.concatenate(ids)}


def _concat(parts: list[dict]) -> dict:
  parts = [p for p in parts if len(p["label"])]
  if not parts:
    raise ValueError("the test split yielded no videos")
  return {k: np.concatenate([p[k] for p in parts]) for k in KEYS}


def gather_to_all(local: dict | None) -> dict:
  """Concatenates every process's rows (any count, also none) in every process."""
  if jax.process_count() == 1:
    return local
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  count = 0 if local is None else len(local["label"])
  # Shapes first (a process with no rows has no feature shape), then the padded rows.
  shape = np.zeros(3, np.int64) if local is None else np.asarray(local["outputs"].shape)
  info = np.asarray(multihost_utils.process_allgather(np.concatenate([[count], shape])))
  counts, (_, views, dim) = info[:, 0], info[np.argmax(info[:, 0]), 1:]
  width = max(1, int(counts.max()))
  padded = {"outputs": np.zeros((width, views, dim), np.float32),
            "label": np.full((width,), -1, np.int32), "video_id": np.full((width,), -1, np.int32)}
  for key in KEYS:
    if count:
      padded[key][:count] = local[key]
  gathered = multihost_utils.process_allgather(padded)
  return {k: np.concatenate([np.asarray(gathered[k])[p, :int(n)] for p, n in enumerate(counts)])
          for k in KEYS}


def extract_view_features(source, feature_fn: Callable[[np.ndarray], np.ndarray], *,
                          cache_dir: str | None, cache_key: str, log=print,
                          **eval_kwargs) -> dict:
  """See the module docstring."""
  files = source_files(source)
  num_files = len(files)
  mine = list(range(jax.process_index(), num_files, jax.process_count()))
  parts, reused = [], 0
  for index in mine:
    path = cache_path(cache_dir, index, num_files) if cache_dir else None
    result = read_npz(path, cache_key) if path else None
    if result is None:
      result = _one_file(files, index, num_files, feature_fn, eval_kwargs)
      if path:
        write_npz(path, result, cache_key)
    else:
      reused += 1
    parts.append(result)
  if reused:
    log(f"test views: {reused} of {len(mine)} file(s) of this process read from the cache "
        f"{cache_dir}")
  local = _concat(parts) if any(len(p["label"]) for p in parts) else None
  merged = gather_to_all(local)
  if merged is None:
    raise ValueError(f"the test split {source!r} yielded no videos")
  order = np.argsort(merged["video_id"], kind="stable")
  return {k: merged[k][order] for k in KEYS}
