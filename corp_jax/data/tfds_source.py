"""Videos from a prepared TensorFlow Datasets set, split across JAX processes.

Contract: `tfds_video_source(name, data_dir, split, *, video_key, label_key, process_index,
process_count) -> tf.data.Dataset` of elements
  {'frames': uint8 [L, H, W, 3], 'num_frames': int32, 'label': int32, 'filename': tf.string},
in file order (shuffling is the pipeline's job). Process p of n reads
`tfds.split_for_jax_process(split)`, i.e. `tfds.even_splits(split, n)[p]`: the n parts are
disjoint and together the whole split. Nothing is downloaded: the set must already be prepared
in `data_dir` (`tfds build` or `builder.download_and_prepare()`), else a FileNotFoundError
names the data_dir. `corp_embedded` is prepared on demand by its builder if asked for.
"""

from __future__ import annotations


def _default_process_layout() -> tuple[int, int]:
  """(index, count) of this JAX process; (0, 1) when JAX is not importable."""
  try:
    import jax  # pylint: disable=g-import-not-at-top
  except ImportError:
    return 0, 1
  return jax.process_index(), jax.process_count()


def _builder(name: str, data_dir: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if name.split("/")[0] == "corp_embedded":
    # Importing the module registers the builder with TFDS.
    from corp_jax.data import tfds_embedded  # pylint: disable=g-import-not-at-top,unused-import
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise FileNotFoundError(
        f"TFDS data set {name!r} is neither registered nor prepared in data_dir "
        f"{data_dir!r}: {str(e).splitlines()[0]}") from e
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"TFDS data set {name!r} is not prepared in data_dir {data_dir!r} (looked in "
        f"{builder.data_dir}); this source never downloads. Prepare it first, e.g. "
        f"`tfds.builder({name!r}, data_dir={data_dir!r}).download_and_prepare()` or "
        f"`tfds build {name} --data_dir={data_dir}` (for corp_embedded add "
        "`--imports corp_jax.data.tfds_embedded`).")
  return builder


def tfds_video_source(name: str, data_dir: str, split: str, *, video_key: str = "video",
                      label_key: str = "label", process_index: int | None = None,
                      process_count: int | None = None):
  """This process's share of a prepared TFDS video split; see the module docstring.

  `label_key` names an integer feature (ClassLabel); `label` is -1 when `label_key` is
  None. `filename` is the `filename` feature when the set has one, else the TFDS example id.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if process_index is None or process_count is None:
    default_index, default_count = _default_process_layout()
    process_index = default_index if process_index is None else process_index
    process_count = default_count if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"tfds_video_source: process_index {process_index} is not in "
                     f"[0, process_count={process_count})")
  builder = _builder(name, data_dir)
  features = builder.info.features
  for key in (video_key, label_key):
    if key is not None and key not in features:
      raise KeyError(f"TFDS data set {name!r} in {data_dir!r} has no feature {key!r}; "
                     f"its features are {sorted(features.keys())}")
  has_filename = "filename" in features
  subsplit = tfds.split_for_jax_process(
      split, process_index=process_index, process_count=process_count)
  dataset = builder.as_dataset(
      split=subsplit, shuffle_files=False,
      read_config=tfds.ReadConfig(add_tfds_id=not has_filename))

  def to_element(example):
    frames = example[video_key]
    label = (tf.cast(example[label_key], tf.int32) if label_key is not None
             else tf.constant(-1, tf.int32))
    return {
        "frames": frames,
        "num_frames": tf.shape(frames)[0],
        "label": label,
        "filename": example["filename"] if has_filename else example["tfds_id"],
    }

  return dataset.map(to_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
