"""The read stage: which videos this process reads, as a stream of (video_id, item).

Contract:
  `process_info(index, count)`: (index, count), defaulting to JAX's process index / count.
  `resolve_shard_files(source, index, count)`: glob + sort a pattern or list of patterns;
      process p of P takes files p, p + P, ...; returns (files, file ids, number of files).
      A pattern matching nothing, or fewer files than processes, is an error naming it.
  `VideoSource(source, index, count, cycle_length=, cache=)`: one process's videos, from
      shard files or a `tf.data.Dataset` (sharded by process); `epoch(seed)` is one pass of
      (video_id int32, item), item a serialized record or an element dict. Video ids as in
      `pipeline`'s batch contract.
  Shard naming (`shard_writer`): `DIR/NAME-00000-of-00NNN`, with `DIR/NAME.metadata.json`
  beside them. `shard_set_name(pattern)` is NAME for a pattern of such shards (the shard
  suffix or a trailing glob removed), `shard_metadata(pattern)` the metadata dict or None.
TensorFlow is imported lazily.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence, Union

from corp_jax.data.tf_runtime import no_autograph

SourceType = Union[str, Sequence[str], "tf.data.Dataset"]  # noqa: F821
# NAME-00000-of-00010, NAME-?????-of-?????, NAME-*-of-*
_SHARD_SUFFIX = re.compile(r"-[?*0-9]+-of-[?*0-9]+$")


def process_info(process_index: Optional[int], process_count: Optional[int]) -> tuple:
  """(index, count), defaulting to jax.process_index() / jax.process_count()."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"invalid process_index={process_index} for process_count={process_count}")
  return int(process_index), int(process_count)


def resolve_shard_files(source: Union[str, Sequence[str]], process_index: int,
                        process_count: int) -> tuple:
  """Glob + sort + split per process. Returns (my_files, my_file_ids, num_files_total)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  patterns = [source] if isinstance(source, str) else list(source)
  if not patterns:
    raise ValueError("input source is an empty list of files/patterns")
  files = []
  for pattern in patterns:
    matched = tf.io.gfile.glob(pattern)
    if not matched:
      raise FileNotFoundError(f"no files match the input pattern {pattern!r}")
    files.extend(matched)
  files = sorted(set(files))
  if len(files) < process_count:
    raise ValueError(
        f"input {patterns!r} has {len(files)} shard file(s) but there are {process_count} "
        "processes; each process needs at least one file: write more shards "
        "(data_prep --num_shards) or run fewer processes")
  ids = list(range(process_index, len(files), process_count))
  return [files[i] for i in ids], ids, len(files)


def shard_set_name(pattern: str) -> str | None:
  """NAME of shards `DIR/NAME-00000-of-00NNN` from a pattern or file of them: the shard
  suffix (`-00000-of-00010`, `-?????-of-?????`, `-*-of-*`) or a trailing glob (`NAME-*`,
  `NAME_*`, `NAME*`) removed. None when the pattern has neither."""
  from corp_jax import io_paths  # pylint: disable=g-import-not-at-top
  base = io_paths.basename(pattern)
  name = _SHARD_SUFFIX.sub("", base)
  if name == base:
    if not base.endswith(("*", "?")):
      return None
    name = base.rstrip("*?")
  return name.rstrip("-_") or None


def shard_metadata(pattern: str) -> dict | None:
  """NAME.metadata.json beside the shards of `pattern` (data_prep writes it), or None."""
  from corp_jax import io_paths  # pylint: disable=g-import-not-at-top
  from corp_jax.data import records  # pylint: disable=g-import-not-at-top
  name = shard_set_name(pattern)
  if name is None:
    return None
  try:
    return records.read_metadata(io_paths.dirname(pattern), name)
  except FileNotFoundError:
    return None


def _is_tf_dataset(source) -> bool:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return isinstance(source, tf.data.Dataset)

class VideoSource:
  """One process's videos as a stream of (video_id int32, item), item being a serialized
  record (tf.string) or an element dict. `epoch(epoch_seed)` gives one (shuffled-file) pass."""

  def __init__(self, source: SourceType, process_index: int, process_count: int, *,
               cycle_length: int = 16, cache: bool = False):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self.cycle_length = max(int(cycle_length), 1)
    if _is_tf_dataset(source):
      self.from_files = False
      base = source.shard(process_count, process_index).enumerate()
      base = base.map(lambda i, elem: (tf.cast(i * process_count + process_index, tf.int32),
                                       elem))
      self._base = base.cache() if cache else base
      self.description = f"tf.data source (shard {process_index} of {process_count})"
    else:
      self.from_files = True
      self.files, file_ids, self.num_files = resolve_shard_files(
          source, process_index, process_count)
      self.file_ids = file_ids
      self._file_ds = tf.data.Dataset.from_tensor_slices(
          (tf.constant(file_ids, tf.int64), tf.constant(self.files)))
      self._base = self._interleave(self._file_ds).cache() if cache else None
      self.description = f"{len(self.files)} of {self.num_files} files from {source!r}"

  def _read_file(self, file_id, path):
    tf = self._tf
    num_files = self.num_files
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda j, rec: (tf.cast(j * num_files + file_id, tf.int32), rec))

  def _interleave(self, file_ds):
    return file_ds.interleave(no_autograph(self._read_file),
                              cycle_length=min(self.cycle_length, len(self.files)),
                              block_length=1, num_parallel_calls=self._tf.data.AUTOTUNE,
                              deterministic=True)

  def epoch(self, epoch_seed=None):
    """One pass over the videos; files in an order drawn from `epoch_seed` (int64 tensor),
    or in sorted order when it is None (evaluation) or the records are cached."""
    if self._base is not None:
      return self._base
    files = self._file_ds
    if epoch_seed is not None:
      files = files.shuffle(len(self.files), seed=epoch_seed, reshuffle_each_iteration=False)
    return self._interleave(files)

  def count(self) -> int:
    """Videos in one epoch of this process (reads the records once, decodes nothing)."""
    tf = self._tf
    data = self._base if self._base is not None else self._interleave(self._file_ds)
    return int(data.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


