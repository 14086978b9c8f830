"""How the input pipelines run TensorFlow: off the accelerators, without autograph, with
deterministic (optionally private, single-threaded-op) thread pools.

Contract:
  `hide_gpus_from_tf()`: TensorFlow sees no GPU (JAX owns them); idempotent.
  `no_autograph(fn)`: `fn` traced as plain Python by tf.data.
  `apply_threading_options(ds, num_threads, deterministic=True)`: the dataset with these
  options.
TensorFlow is imported lazily.
"""

from __future__ import annotations

from typing import Optional

_GPUS_HIDDEN = False


def hide_gpus_from_tf() -> None:
  """Keeps TensorFlow off the accelerators (JAX owns them). Idempotent."""
  global _GPUS_HIDDEN
  if _GPUS_HIDDEN:
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF already initialised its devices; it then keeps what it has
    pass
  _GPUS_HIDDEN = True


def no_autograph(fn):
  """tf.data traces map functions through autograph, which converts every Python function
  they call (seconds of start-up for the augmentation graph). Ours have Python control flow
  only on static values, so they are traced as plain Python."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.autograph.experimental.do_not_convert(fn)


def apply_threading_options(ds, num_threads: Optional[int], deterministic: bool = True):
  """Sets determinism and (optionally) a private thread pool of `num_threads` threads with
  single-threaded ops, so that throughput per core is measurable."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  options = tf.data.Options()
  options.deterministic = deterministic
  if num_threads:
    options.threading.private_threadpool_size = int(num_threads)
    options.threading.max_intra_op_parallelism = 1
  return ds.with_options(options)
