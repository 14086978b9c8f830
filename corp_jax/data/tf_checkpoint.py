"""Reading a TensorFlow checkpoint's variables as NumPy arrays (TensorFlow imported here only).

Contract: `read_tf_checkpoint(path, select=None) -> {variable name: np.ndarray}` (only the
names for which `select(name)` is true, when given); `path` is a checkpoint
prefix (`.../ckpt-800`), or a directory whose `checkpoint` file (or single `*.index`) names
one. A missing or unreadable checkpoint is a ValueError naming the path and what was found.
"""

from __future__ import annotations

import glob
import os

import numpy as np


def resolve_prefix(path: str) -> str:
  """The checkpoint prefix `path` designates (see the module docstring)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if os.path.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest:
      return latest
    indexes = sorted(glob.glob(os.path.join(path, "*.index")))
    if len(indexes) == 1:
      return indexes[0][:-len(".index")]
    raise ValueError(f"{path} holds {'no' if not indexes else len(indexes)} TensorFlow "
                     f"checkpoints (*.index files: {[os.path.basename(i) for i in indexes]}); "
                     "pass a checkpoint prefix such as DIR/ckpt-800")
  if path.endswith(".index") or ".data-" in path:
    path = path.split(".data-")[0].removesuffix(".index")
  if not glob.glob(path + ".index"):
    raise ValueError(f"no TensorFlow checkpoint at {path!r} ({path}.index does not exist)")
  return path


def read_tf_checkpoint(path: str, select=None) -> dict[str, np.ndarray]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  prefix = resolve_prefix(path)
  try:
    reader = tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError(f"cannot read the TensorFlow checkpoint {prefix!r}: {e}") from e
  shapes = reader.get_variable_to_shape_map()
  return {name: np.asarray(reader.get_tensor(name)) for name in shapes
          if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and (select is None or select(name))}
