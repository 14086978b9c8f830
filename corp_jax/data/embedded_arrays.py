"""The embedded data set as uint8 NumPy arrays: the same videos as `embedded.py` (same
renderer, seeds, classes and order), without JPEG and without TensorFlow.

Contract: `ensure_embedded_arrays(data_dir, *, seed, num_train, num_test, frame_size,
num_frames) -> dict` returns the `train` and `test` splits of
`data_dir/<embedded.config_name(...)>-arrays/`, rendering them only if they are not
already there with these arguments:
  SPLIT.frames.npy     uint8 [N, L, H, W, 3], video i = `embedded.render_split`'s video i
                       (the TFRecord split's record with video id i);
  SPLIT.labels.npz     int32 [N] per label family ('appearance', 'motion', 'combined');
  SPLIT.metadata.json  the metadata of the TFRecord split (classes, label keys, reversal
                       pairs; `embedded.py`) without its shard list, plus 'arrays_version'.
Each file is written to a temporary name and renamed, the metadata last; a split is
complete when its metadata records this build's configuration and both array files exist
with the recorded shapes, otherwise it is rendered again. A file lock serialises callers.
`load_split(split_info) -> (frames, labels)`: the frames memory-mapped (read-only) and the
labels dict (every family the labels file holds: it also reads `photo_arrays` splits). `label_family(metadata, label_key)`: the family a record label key names
('clip/label/index' is the motion class). `split_paths`, `replace_atomically` and
`read_metadata` are the layout's file helpers (also used by `photo_arrays`).
Imports neither TensorFlow nor JAX.
"""

from __future__ import annotations

import fcntl
import json
import os

import numpy as np

from corp_jax.data import embedded
from corp_jax.data import embedded_render

ARRAYS_VERSION = 1  # bump when the array layout changes, so old caches are rebuilt
_SPLITS = ("train", "test")


def split_paths(directory: str, split: str) -> dict:
  return {name: os.path.join(directory, f"{split}.{name}")
          for name in ("frames.npy", "labels.npz", "metadata.json")}


def replace_atomically(path: str, write) -> None:
  tmp = path + ".partial"
  with open(tmp, "wb") as f:
    write(f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_metadata(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (FileNotFoundError, ValueError):  # absent, or torn
    return None


def _split_is_complete(directory: str, split: str, config: dict) -> bool:
  paths = split_paths(directory, split)
  metadata = read_metadata(paths["metadata.json"])
  if (not metadata or metadata.get("config") != config
      or metadata.get("arrays_version") != ARRAYS_VERSION):
    return False
  try:
    frames = np.load(paths["frames.npy"], mmap_mode="r")
    with np.load(paths["labels.npz"]) as labels:
      sizes = {family: len(labels[family]) for family in embedded.LABEL_FAMILIES}
  except (OSError, ValueError, KeyError):
    return False
  return (list(frames.shape) == metadata["frames_shape"] and frames.dtype == np.uint8
          and set(sizes.values()) == {metadata["num_examples"]})


def _render_split(directory: str, split: str, config: dict, num_videos: int) -> None:
  paths = split_paths(directory, split)
  for path in paths.values():  # the metadata first: a crash leaves no stale "complete" mark
    if os.path.exists(path):
      os.remove(path)
  size, length = config["frame_size"], config["num_frames"]
  shape = (num_videos, length, size, size, 3)
  tmp = paths["frames.npy"] + ".partial"
  frames = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
  labels = {family: np.zeros(num_videos, np.int32) for family in embedded.LABEL_FAMILIES}
  for index, appearance, motion, video in embedded.render_split(
      config["seed"], split, num_videos, size, length):
    frames[index] = video
    labels["appearance"][index] = appearance
    labels["motion"][index] = motion
  # combined = appearance * num_motions + motion (`embedded_render.combined_class`)
  labels["combined"] = labels["appearance"] * len(embedded_render.MOTION_NAMES) + labels["motion"]
  frames.flush()
  del frames
  os.replace(tmp, paths["frames.npy"])
  replace_atomically(paths["labels.npz"], lambda f: np.savez(f, **labels))
  # The TFRecord split's metadata (classes, label keys, pairs), without its shard list.
  metadata = embedded._split_metadata(  # pylint: disable=protected-access
      config, split, num_videos, 0, [])
  for key in ("num_shards", "shards"):
    metadata.pop(key)
  metadata.update(arrays_version=ARRAYS_VERSION, frames_shape=list(shape),
                  files={k: os.path.basename(v) for k, v in paths.items()})
  replace_atomically(paths["metadata.json"],
                      lambda f: f.write(json.dumps(metadata, indent=2).encode()))


def ensure_embedded_arrays(data_dir: str, *, seed: int = 0, num_train: int = 512,
                           num_test: int = 128, frame_size: int = 64,
                           num_frames: int = 32) -> dict:
  """Renders (first use) or finds the array splits. Returns {'directory', 'metadata' (the
  train split's), 'train': info, 'test': info}, info = {'split', 'frames_path',
  'labels_path', 'num_examples', 'metadata'}."""
  for key, value, minimum in (("num_train", num_train, 1), ("num_test", num_test, 1),
                              ("frame_size", frame_size, 16), ("num_frames", num_frames, 2)):
    if int(value) < minimum:
      raise ValueError(f"ensure_embedded_arrays: {key} must be >= {minimum}, got {value} "
                       f"(config.data.embedded_{key})")
  config = {"seed": int(seed), "num_train": int(num_train), "num_test": int(num_test),
            "frame_size": int(frame_size), "num_frames": int(num_frames)}
  directory = os.path.join(os.fspath(data_dir), embedded.config_name(**config) + "-arrays")
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, ".build.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    for split, num_videos in zip(_SPLITS, (num_train, num_test)):
      if not _split_is_complete(directory, split, config):
        _render_split(directory, split, config, int(num_videos))
  out = {"directory": directory}
  for split in _SPLITS:
    paths = split_paths(directory, split)
    metadata = read_metadata(paths["metadata.json"])
    out[split] = {"split": split, "frames_path": paths["frames.npy"],
                  "labels_path": paths["labels.npz"], "num_examples": metadata["num_examples"],
                  "metadata": metadata}
  out["metadata"] = out["train"]["metadata"]
  return out


def load_split(info: dict) -> tuple[np.ndarray, dict]:
  """(frames uint8 [N, L, H, W, 3] memory-mapped read-only, {family: int32 [N]})."""
  frames = np.load(info["frames_path"], mmap_mode="r")
  with np.load(info["labels_path"]) as data:
    labels = {family: data[family] for family in data.files}  # any array set's families
  return frames, labels


def label_family(metadata: dict, label_key: str) -> str:
  """The label family a record label key names, e.g. 'label/appearance/index' ->
  'appearance'; the default key 'clip/label/index' is the motion class."""
  keys = metadata["label_keys"]
  if label_key == keys["default"]:
    return metadata["default_label"]
  for family, key in keys.items():
    if family != "default" and key == label_key:
      return family
  raise ValueError(f"label key {label_key!r} is not a label of the embedded data set "
                   f"(config.data.label_key / config.label_key); choose one of "
                   f"{sorted(set(keys.values()))}")
