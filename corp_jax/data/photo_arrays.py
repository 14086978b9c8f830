"""The photo evaluation set's splits (`photo_render`) and its array form: the same videos as
`corp_jax.tools.photo_set` renders before encoding them, as uint8 NumPy arrays, with no video
codec, no files to decode and no TensorFlow (for hosts without TensorFlow or PyAV, e.g. a GPU
host).

Contract:
  `split_classes(seed, split, num_videos) -> (motion [N], photo [N])`: balanced over the
      combined classes, in a seeded order; `video_rng(seed, split, index)`: the generator of
      one video; `combined_names()`: the combined classes, motion-major (index = motion *
      num_photos + photo). The shard set and the array set both use these, so video i of a
      split is the same rendering in both (before the codec).
  `write_photo_arrays(directory, *, seed, num_train, num_test, num_frames, size, static,
      workers=0, log=print) -> dict`: writes, per split, the layout of `embedded_arrays`:
        SPLIT.frames.npy     uint8 [N, L, H, W, 3], video i rendered by
                             `photo_render.render_video(video_rng(seed, split, i), ...)`;
        SPLIT.labels.npz     int32 [N] per family: 'combined' (the default label,
                             `clip/label/index`), 'motion', 'photo';
        SPLIT.metadata.json  classes, label keys, reversal pairs, shapes, the arguments.
      Each file goes to a temporary name and is renamed, the metadata last, so a crash leaves
      no split that looks complete; a split already complete with these arguments is kept.
      `workers` > 1 renders in that many processes (the frames are identical either way).
      Returns `open_arrays(directory)`.
  `open_arrays(directory) -> dict`: {'directory', 'metadata' (train's), 'train': info,
      'test': info}, info as `embedded_arrays.ensure_embedded_arrays` gives it (readable by
      `embedded_arrays.load_split`, `array_stream`); a missing or incomplete split raises
      FileNotFoundError naming the file and the command that writes it.
Imports neither TensorFlow nor JAX.
"""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np

from corp_jax.data import embedded_arrays
from corp_jax.data import photo_render

ARRAYS_VERSION = 1
SPLITS = ("train", "test")
SPLIT_IDS = {"train": 0, "test": 1}
LABEL_KEYS = {"default": "clip/label/index", "motion": "label/motion/index",
              "photo": "label/photo/index"}


def combined_names() -> list[str]:
  return [f"{m}/{p}" for m in photo_render.MOTION_NAMES for p in photo_render.PHOTO_NAMES]


def split_classes(seed: int, split: str, num_videos: int) -> tuple[np.ndarray, np.ndarray]:
  """(motion [N], photo [N]): balanced over the combined classes, in a seeded order."""
  num_photos = len(photo_render.PHOTO_NAMES)
  num_combined = len(photo_render.MOTION_NAMES) * num_photos
  rng = np.random.default_rng([seed, SPLIT_IDS[split], 1])
  combined = rng.permutation(np.arange(num_videos) % num_combined)
  return combined // num_photos, combined % num_photos


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, SPLIT_IDS[split], 0, index])


def _arguments(seed, num_train, num_test, num_frames, size, static) -> dict:
  return {"arrays_version": ARRAYS_VERSION, "seed": int(seed), "num_train": int(num_train),
          "num_test": int(num_test), "num_frames": int(num_frames), "size": int(size),
          "static": bool(static)}


def _metadata(arguments: dict, split: str, num_videos: int) -> dict:
  motions, photos = split_classes(arguments["seed"], split, num_videos)
  return {
      "dataset": "photo" + ("_static" if arguments["static"] else ""),
      "arrays_version": ARRAYS_VERSION,
      "config": arguments,
      "split": split,
      "num_examples": int(num_videos),
      "frames_shape": [int(num_videos), arguments["num_frames"], arguments["size"],
                       arguments["size"], 3],
      "default_label": "combined",
      "label_keys": dict(LABEL_KEYS),
      "label_families": {"motion": list(photo_render.MOTION_NAMES),
                         "photo": list(photo_render.PHOTO_NAMES),
                         "combined": combined_names()},
      "reversal_pairs": [list(p) for p in photo_render.REVERSAL_PAIRS],
      "flip_ambiguous_motions": list(photo_render.FLIP_AMBIGUOUS_MOTIONS),
      "class_counts": {
          "motion": np.bincount(motions, minlength=len(photo_render.MOTION_NAMES)).tolist(),
          "photo": np.bincount(photos, minlength=len(photo_render.PHOTO_NAMES)).tolist()},
  }


def _complete(directory: str, split: str, arguments: dict | None = None) -> dict | None:
  """The split's metadata when its files are complete (and match `arguments`), else None."""
  paths = embedded_arrays.split_paths(directory, split)
  metadata = embedded_arrays.read_metadata(paths["metadata.json"])
  if not metadata or metadata.get("arrays_version") != ARRAYS_VERSION:
    return None
  if arguments is not None and metadata.get("config") != arguments:
    return None
  try:
    frames = np.load(paths["frames.npy"], mmap_mode="r")
    with np.load(paths["labels.npz"]) as labels:
      sizes = {len(labels[family]) for family in ("combined", "motion", "photo")}
  except (OSError, ValueError, KeyError):
    return None
  if (list(frames.shape) != metadata["frames_shape"] or frames.dtype != np.uint8
      or sizes != {metadata["num_examples"]}):
    return None
  return metadata


def _render_range(task) -> None:
  """Worker: renders videos [lo, hi) of a split into the memory-mapped frames file."""
  frames_path, arguments, split, num_videos, lo, hi = task
  motions, photos = split_classes(arguments["seed"], split, num_videos)
  frames = np.load(frames_path, mmap_mode="r+")
  for index in range(lo, hi):
    frames[index] = photo_render.render_video(
        video_rng(arguments["seed"], split, index), int(photos[index]), int(motions[index]),
        arguments["num_frames"], arguments["size"], static=arguments["static"])
  frames.flush()


def _write_split(directory: str, split: str, arguments: dict, num_videos: int, workers: int,
                 log) -> None:
  paths = embedded_arrays.split_paths(directory, split)
  for path in paths.values():  # the metadata first: no stale "complete" mark survives
    if os.path.exists(path):
      os.remove(path)
  metadata = _metadata(arguments, split, num_videos)
  tmp = paths["frames.npy"] + ".partial"
  frames = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                     shape=tuple(metadata["frames_shape"]))
  del frames  # header written; the workers fill the rows
  chunk = max(1, -(-num_videos // max(1, 4 * workers)))
  tasks = [(tmp, arguments, split, num_videos, lo, min(lo + chunk, num_videos))
           for lo in range(0, num_videos, chunk)]
  if workers > 1:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      for done, _ in enumerate(pool.imap_unordered(_render_range, tasks), 1):
        log(f"{split}: {min(done * chunk, num_videos)}/{num_videos} videos")
  else:
    for task in tasks:
      _render_range(task)
  os.replace(tmp, paths["frames.npy"])
  motions, photos = split_classes(arguments["seed"], split, num_videos)
  labels = {"motion": motions.astype(np.int32), "photo": photos.astype(np.int32),
            "combined": (motions * len(photo_render.PHOTO_NAMES) + photos).astype(np.int32)}
  embedded_arrays.replace_atomically(paths["labels.npz"], lambda f: np.savez(f, **labels))
  embedded_arrays.replace_atomically(
      paths["metadata.json"], lambda f: f.write(json.dumps(metadata, indent=2).encode()))


def write_photo_arrays(directory: str, *, seed: int = 0, num_train: int = 480,
                       num_test: int = 160, num_frames: int = 40, size: int = 64,
                       static: bool = False, workers: int = 0, log=print) -> dict:
  """See the module docstring."""
  for key, value, minimum in (("num_train", num_train, 1), ("num_test", num_test, 1),
                              ("num_frames", num_frames, 2), ("size", size, 16)):
    if int(value) < minimum:
      raise ValueError(f"write_photo_arrays: {key} must be >= {minimum}, got {value}")
  arguments = _arguments(seed, num_train, num_test, num_frames, size, static)
  os.makedirs(directory, exist_ok=True)
  for split, count in zip(SPLITS, (num_train, num_test)):
    if _complete(directory, split, arguments) is None:
      _write_split(directory, split, arguments, int(count), int(workers), log)
  return open_arrays(directory)


def open_arrays(directory: str) -> dict:
  """See the module docstring."""
  out = {"directory": os.path.abspath(directory)}
  for split in SPLITS:
    paths = embedded_arrays.split_paths(directory, split)
    metadata = _complete(directory, split)
    if metadata is None:
      raise FileNotFoundError(
          f"{paths['metadata.json']}: no complete '{split}' array split in {directory!r} "
          "(python -m corp_jax.tools.photo_set --out DIR --arrays writes DIR/arrays)")
    out[split] = {"split": split, "frames_path": paths["frames.npy"],
                  "labels_path": paths["labels.npz"], "num_examples": metadata["num_examples"],
                  "metadata": metadata}
  out["metadata"] = out["train"]["metadata"]
  return out
