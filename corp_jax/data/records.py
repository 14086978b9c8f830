"""The on-disk video record: a `tf.train.SequenceExample` per video, DMVR/CVRL compatible.

Layout (the readers of DMVR and CVRL's video_ssl read the same keys):
  sequence feature `image/encoded`: one JPEG-encoded frame per step, in time order.
  context `clip/label/index` (int64), `clip/label/text` (bytes), `video/filename` (bytes),
  optional `video/num_frames` (int64), `video/fps` (float), and extra int64 labels stored
  as `label/<name>/index` (the embedded data set uses `appearance` and `motion`).

Shards are named `NAME-00000-of-00NNN` (see `shard_writer.py`); `NAME.metadata.json` sits
beside them. TensorFlow is imported lazily so this module can be imported without it.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

IMAGE_KEY = "image/encoded"
LABEL_INDEX_KEY = "clip/label/index"
LABEL_TEXT_KEY = "clip/label/text"
FILENAME_KEY = "video/filename"
NUM_FRAMES_KEY = "video/num_frames"
FPS_KEY = "video/fps"


def extra_label_key(name: str) -> str:
  """Context key of an extra integer label, e.g. `label/motion/index`."""
  return f"label/{name}/index"


def make_sequence_example(
    jpeg_frames: Sequence[bytes],
    *,
    label_index: int = -1,
    label_text: str = "",
    filename: str = "",
    fps: float | None = None,
    extra_labels: Mapping[str, int] | None = None,
):
  """Builds the SequenceExample of one video from its JPEG-encoded frames."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if not jpeg_frames:
    raise ValueError(f"video {filename!r} has no frames; refusing to write an empty record")
  ex = tf.train.SequenceExample()
  ctx = ex.context.feature
  ctx[LABEL_INDEX_KEY].int64_list.value.append(int(label_index))
  ctx[LABEL_TEXT_KEY].bytes_list.value.append(label_text.encode("utf-8"))
  ctx[FILENAME_KEY].bytes_list.value.append(filename.encode("utf-8"))
  ctx[NUM_FRAMES_KEY].int64_list.value.append(len(jpeg_frames))
  if fps is not None:
    ctx[FPS_KEY].float_list.value.append(float(fps))
  for name, value in (extra_labels or {}).items():
    ctx[extra_label_key(name)].int64_list.value.append(int(value))
  frames = ex.feature_lists.feature_list[IMAGE_KEY]
  for jpeg in jpeg_frames:
    frames.feature.add().bytes_list.value.append(bytes(jpeg))
  return ex


def parse_sequence_example(serialized, label_key: str = LABEL_INDEX_KEY):
  """Parses one serialized record (a scalar tf.string) into the pipeline's element.

  Returns a dict: `image/encoded` tf.string [L], `num_frames` int32 scalar (from the frame
  list, never trusted from the context), `label` int32 (the value under `label_key`, -1 when
  absent), `filename` tf.string. Records written by DMVR or CVRL tools, which lack the
  optional keys, parse too.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  context_spec = {
      label_key: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
      FILENAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
  }
  sequence_spec = {IMAGE_KEY: tf.io.FixedLenSequenceFeature([], tf.string)}
  context, sequence = tf.io.parse_single_sequence_example(
      serialized, context_features=context_spec, sequence_features=sequence_spec)
  frames = sequence[IMAGE_KEY]
  return {
      IMAGE_KEY: frames,
      "num_frames": tf.shape(frames)[0],
      "label": tf.cast(context[label_key], tf.int32),
      "filename": context[FILENAME_KEY],
  }


def metadata_path(directory: str, name: str) -> str:
  return os.path.join(directory, f"{name}.metadata.json")


def write_metadata(directory: str, name: str, metadata: Mapping) -> str:
  """Writes `NAME.metadata.json` atomically (temporary file, then rename)."""
  path = metadata_path(directory, name)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(metadata, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  return path


def read_metadata(directory: str, name: str) -> dict:
  from corp_jax import io_paths  # pylint: disable=g-import-not-at-top
  path = io_paths.join(directory, f"{name}.metadata.json")
  if not io_paths.exists(path):
    raise FileNotFoundError(
        f"no metadata file {path}; write shards with data_prep.videos_to_tfrecords or "
        "pass the shard pattern directly")
  return json.loads(io_paths.read_text(path))
