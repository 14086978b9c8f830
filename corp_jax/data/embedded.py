"""The embedded procedural video data set: built on first use, no download.

Contract: `ensure_embedded_dataset(data_dir, *, seed, num_train, num_test, frame_size,
num_frames) -> dict` returns the shard patterns, file lists and metadata of the `train` and
`test` splits, building them into `data_dir/<config name>/` only if they are not already
complete. Building is deterministic: the same arguments give byte-identical shards.

Records are the project's SequenceExamples (`records.py`), one JPEG per frame:
  `clip/label/index`    the MOTION class (the order-sensitive, Something-Something-like
                        label; the default label of the embedded configs),
  `clip/label/text`     the motion class name,
  `label/appearance/index`, `label/motion/index`, `label/combined/index`
                        (combined = appearance * num_motions + motion),
  `video/filename`      `embedded/<split>/<index:06d>`, `video/fps` = FPS.
Pick a family with `records.extra_label_key(name)`, e.g. `label/appearance/index` for the
order-free, Kinetics-like label. Classes, reversal pairs and the flip-ambiguous classes are
described in `embedded_render.py` and written into each split's `NAME.metadata.json`.

Completeness: a split is complete when its metadata file exists, records this build's
configuration, and every shard it names exists. Shards are written first and the metadata
last, so a half-built split (crash, deleted shard) is removed and rebuilt. A file lock
serialises concurrent callers (e.g. two processes of a multi-host run on one machine).
"""

from __future__ import annotations

import fcntl
import glob
import os

import numpy as np

from corp_jax.data import embedded_render
from corp_jax.data import records
from corp_jax.data import shard_writer

DATASET_NAME = "corp_embedded"
FORMAT_VERSION = 1  # bump when the renderer's output changes, so old caches are not reused
FPS = 10.0
JPEG_QUALITY = 90
LABEL_FAMILIES = ("appearance", "motion", "combined")
_SPLIT_IDS = {"train": 0, "test": 1}


def config_name(seed: int, num_train: int, num_test: int, frame_size: int,
                num_frames: int) -> str:
  """Sub-directory name that identifies one build configuration."""
  return (f"{DATASET_NAME}-v{FORMAT_VERSION}-seed{seed}-train{num_train}-test{num_test}"
          f"-{frame_size}px-{num_frames}f")


def split_classes(seed: int, split: str, num_videos: int) -> tuple[np.ndarray, np.ndarray]:
  """(appearance [N], motion [N]) int arrays of a split: balanced, in a seeded random order.

  The order is shuffled so that round-robin sharding and per-process file splits still see
  every class.
  """
  num_motions = len(embedded_render.MOTION_NAMES)
  num_combined = len(embedded_render.APPEARANCE_NAMES) * num_motions
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], 1])
  combined = rng.permutation(np.arange(num_videos) % num_combined)
  return combined // num_motions, combined % num_motions


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator of one video: independent of the split size, so videos are stable."""
  return np.random.default_rng([seed, _SPLIT_IDS[split], 0, index])


def render_split(seed: int, split: str, num_videos: int, frame_size: int, num_frames: int):
  """Yields (index, appearance, motion, frames uint8 [L, H, W, 3]) for a split."""
  appearances, motions = split_classes(seed, split, num_videos)
  for index in range(num_videos):
    frames = embedded_render.render_video(
        video_rng(seed, split, index), int(appearances[index]), int(motions[index]),
        num_frames, frame_size)
    yield index, int(appearances[index]), int(motions[index]), frames


def _encode_jpeg(frame: np.ndarray) -> bytes:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  return tf.io.encode_jpeg(frame, quality=JPEG_QUALITY).numpy()


def _serialized_split(seed, split, num_videos, frame_size, num_frames):
  for index, appearance, motion, frames in render_split(
      seed, split, num_videos, frame_size, num_frames):
    example = records.make_sequence_example(
        [_encode_jpeg(frame) for frame in frames],
        label_index=motion,
        label_text=embedded_render.MOTION_NAMES[motion],
        filename=f"embedded/{split}/{index:06d}",
        fps=FPS,
        extra_labels={
            "appearance": appearance,
            "motion": motion,
            "combined": embedded_render.combined_class(appearance, motion),
        })
    # deterministic: the context map in a fixed order, so rebuilds are equal byte for byte.
    yield example.SerializeToString(deterministic=True)


def _split_metadata(config: dict, split: str, num_videos: int, num_shards: int,
                    shard_files: list[str]) -> dict:
  appearances, motions = split_classes(config["seed"], split, num_videos)
  names = embedded_render.MOTION_NAMES
  return {
      "dataset": DATASET_NAME,
      "format_version": FORMAT_VERSION,
      "config": config,
      "split": split,
      "num_examples": num_videos,
      "num_shards": num_shards,
      "shards": [os.path.basename(p) for p in shard_files],
      "frame_size": config["frame_size"],
      "num_frames": config["num_frames"],
      "fps": FPS,
      "default_label": "motion",
      "num_classes": len(names),
      "class_names": list(names),
      "label_keys": {
          "default": records.LABEL_INDEX_KEY,
          **{family: records.extra_label_key(family) for family in LABEL_FAMILIES},
      },
      "label_families": {
          "appearance": list(embedded_render.APPEARANCE_NAMES),
          "motion": list(names),
          "combined": embedded_render.combined_names(),
      },
      "reversal_pairs": [list(pair) for pair in embedded_render.REVERSAL_PAIRS],
      "reversal_pair_names": [[names[a], names[b]] for a, b in embedded_render.REVERSAL_PAIRS],
      "flip_ambiguous_motions": list(embedded_render.FLIP_AMBIGUOUS_MOTIONS),
      "class_counts": {
          "appearance": np.bincount(
              appearances, minlength=len(embedded_render.APPEARANCE_NAMES)).tolist(),
          "motion": np.bincount(motions, minlength=len(names)).tolist(),
      },
  }


def _split_is_complete(directory: str, split: str, config: dict) -> bool:
  try:
    metadata = records.read_metadata(directory, split)
  except (FileNotFoundError, ValueError):  # absent, or a torn/corrupt JSON file
    return False
  if metadata.get("config") != config:
    return False
  present = {os.path.basename(p) for p in shard_writer.complete_shards(directory, split)}
  return present == set(metadata.get("shards", ())) and bool(present)


def _remove_split(directory: str, split: str) -> None:
  """Deletes every shard, temporary and metadata file of a split, for a clean rebuild."""
  leftovers = glob.glob(os.path.join(directory, f"{split}-?????-of-?????*"))
  leftovers.append(records.metadata_path(directory, split))
  for path in leftovers:
    if os.path.exists(path):
      os.remove(path)


def _num_shards(split: str, num_videos: int) -> int:
  # Several train shards, so each process of a multi-host run gets whole files of its own.
  wanted = 8 if split == "train" else 4
  return max(1, min(wanted, num_videos))


def _split_info(directory: str, split: str) -> dict:
  metadata = records.read_metadata(directory, split)
  return {
      "pattern": shard_writer.shard_pattern(directory, split),
      "files": [os.path.join(directory, name) for name in metadata["shards"]],
      "num_examples": metadata["num_examples"],
      "metadata_path": records.metadata_path(directory, split),
  }


def ensure_embedded_dataset(data_dir: str, *, seed: int = 0, num_train: int = 512,
                            num_test: int = 128, frame_size: int = 64,
                            num_frames: int = 32) -> dict:
  """Builds the embedded data set under `data_dir` unless it is already complete.

  Returns {'directory': str, 'train': split_info, 'test': split_info, 'metadata': dict
  (the train split's metadata)}, where split_info = {'pattern': shard glob, 'files': [paths],
  'num_examples': int, 'metadata_path': str}. The label key of a family is
  `records.extra_label_key(family)`; `clip/label/index` holds the motion class.
  """
  for key, value, minimum in (("num_train", num_train, 1), ("num_test", num_test, 1),
                              ("frame_size", frame_size, 16), ("num_frames", num_frames, 2)):
    if int(value) < minimum:
      raise ValueError(f"ensure_embedded_dataset: {key} must be >= {minimum}, got {value}")
  config = {"seed": int(seed), "num_train": int(num_train), "num_test": int(num_test),
            "frame_size": int(frame_size), "num_frames": int(num_frames)}
  directory = os.path.join(os.fspath(data_dir), config_name(**config))
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, ".build.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    for split, num_videos in (("train", num_train), ("test", num_test)):
      if _split_is_complete(directory, split, config):
        continue
      _remove_split(directory, split)
      num_shards = _num_shards(split, num_videos)
      files = shard_writer.write_shards(
          directory, split,
          _serialized_split(seed, split, num_videos, frame_size, num_frames), num_shards)
      records.write_metadata(
          directory, split, _split_metadata(config, split, num_videos, num_shards, files))
  return {
      "directory": directory,
      "train": _split_info(directory, "train"),
      "test": _split_info(directory, "test"),
      "metadata": records.read_metadata(directory, "train"),
  }
