"""The training order of one process's TFRecord shards, and where it stands at any element.

Contract. Process p's files (see `read.resolve_shard_files`) hold n_f records each.
Epoch e of the process:
  1. files in the order `epoch_file_order(seed, e, num_files)` (a permutation from NumPy's
     PCG64 bit stream, stable across NumPy versions);
  2. consecutive groups of `cycle_length` files; each group is read round-robin, one record
     per file in turn, a file that runs out dropping out of the turn;
  3. consecutive windows of `window` records (the last one of the epoch may be shorter) are
     each put in an order drawn from (seed, e, window index).
The stream is epoch 0, 1, 2, ... and yields (video_id, serialized record); video_id is
record_index_in_file * num_files_total + file_index, as in `pipeline`.

Because steps 1-3 depend only on (seed, e) and the record counts, element k of the stream
has a position that is computed, not read: epoch k // N (N = sum n_f), then the group, the
records each file of that group has given, and the window (`locate`). `epoch_stream(...,
start=k)` restarts there: the files before that group are not opened; each file of the
group starts at its record through `TFRecordDataset.skip`, which reads record headers, not
records; then the window containing k is read and its first elements dropped. Record
counts come from `NAME.metadata.json`'s `shard_records` when data_prep wrote it, else from
a scan of the record headers (`count_records`: 12 bytes a record, payloads skipped).

TensorFlow is imported lazily.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
from typing import Sequence

import numpy as np

_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_FOOTER = 4  # uint32 masked CRC of the data
_READ_BUFFER = 256 * 1024  # tf.data.TFRecordDataset's default


def epoch_file_order(seed: int, epoch: int, num_files: int) -> np.ndarray:
  """The permutation of the process's files in epoch `epoch`."""
  entropy = [int(seed) % 2**64, int(epoch), 0x5EED]  # SeedSequence takes non-negative ints
  keys = np.random.PCG64(np.random.SeedSequence(entropy)).random_raw(num_files)
  return np.argsort(keys, kind="stable")


def _is_local(path: str) -> bool:
  return "://" not in path or path.startswith("file://")


def count_records(path: str) -> int:
  """Records in a TFRecord file, from its record headers (payloads are skipped)."""
  if _is_local(path):
    opened = open(path.removeprefix("file://"), "rb", buffering=0)  # pylint: disable=consider-using-with
  else:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    opened = tf.io.gfile.GFile(path, "rb")
  count = 0
  with opened as f:
    while True:
      header = f.read(_HEADER)
      if not header:
        return count
      if len(header) < _HEADER:
        raise ValueError(f"TFRecord file {path} is truncated after {count} records")
      (length,) = struct.unpack("<Q", header[:8])
      f.seek(length + _FOOTER, 1)
      count += 1


def metadata_counts(files: Sequence[str]) -> list[int] | None:
  """Per-file record counts from `NAME.metadata.json` beside `NAME-xxxxx-of-yyyyy` shards
  (its `shard_records`, one count per shard index), or None when it does not say."""
  cache: dict[str, list | None] = {}
  counts = []
  for path in files:
    match = re.fullmatch(r"(.*)-(\d{5})-of-(\d{5})", os.path.basename(path))
    if not match:
      return None
    meta = os.path.join(os.path.dirname(path), f"{match.group(1)}.metadata.json")
    if meta not in cache:
      cache[meta] = _read_shard_records(meta, int(match.group(3)))
    if cache[meta] is None:
      return None
    counts.append(int(cache[meta][int(match.group(2))]))
  return counts


def _read_shard_records(meta: str, num_shards: int) -> list | None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(meta):
    return None
  with tf.io.gfile.GFile(meta) as f:
    shard_records = json.load(f).get("shard_records")
  return shard_records if shard_records and len(shard_records) == num_shards else None


def record_counts(files: Sequence[str]) -> list[int]:
  counts = metadata_counts(files)
  return counts if counts is not None else [count_records(f) for f in files]


@dataclasses.dataclass(frozen=True)
class Position:
  """Where element `start` of a process's stream lies (see the module docstring)."""
  epoch: int
  window: int  # index of the window holding the element, within the epoch
  drop: int  # elements of that window before the element
  group: int  # the group holding the window's first element
  group_files: list  # indices (into the process's files) of that group, in reading turn
  group_skips: list  # records each of those files has already given


def round_robin_consumed(counts: Sequence[int], offset: int) -> tuple[list[int], int]:
  """Files read round-robin, one record each in turn, a finished file dropping out: after
  `offset` records, (records taken from each file, index of the file whose turn is next)."""
  counts = np.asarray(counts, np.int64)
  if not 0 <= offset < counts.sum():
    raise ValueError(f"offset {offset} outside a group of {int(counts.sum())} records")
  full_rounds = 0
  for t in np.unique(counts):  # full rounds = the largest t with sum(min(n, t)) <= offset
    if np.minimum(counts, t).sum() <= offset:
      full_rounds = int(t)
  # Between two distinct counts every further round adds the files still going.
  taken = np.minimum(counts, full_rounds)
  going = counts > full_rounds
  extra_rounds = (offset - int(taken.sum())) // int(going.sum())
  full_rounds += extra_rounds
  taken = np.minimum(counts, full_rounds)
  rest = offset - int(taken.sum())
  active = np.flatnonzero(counts > full_rounds)
  taken[active[:rest]] += 1
  return taken.tolist(), int(active[rest])


def locate(start: int, counts: Sequence[int], *, seed: int, cycle_length: int,
           window: int) -> Position:
  """The position of element `start` of the stream (see the module docstring)."""
  counts = np.asarray(counts, np.int64)
  per_epoch = int(counts.sum())
  if per_epoch < 1:
    raise ValueError("the process's files hold no records")
  epoch, within = divmod(int(start), per_epoch)
  window_index, drop = divmod(within, window)
  first = window_index * window  # the window is re-read from its first element
  order = epoch_file_order(seed, epoch, len(counts))
  group_sizes = [int(counts[order[g:g + cycle_length]].sum())
                 for g in range(0, len(order), cycle_length)]
  ends = np.cumsum(group_sizes)
  group = int(np.searchsorted(ends, first, side="right"))
  members = order[group * cycle_length:(group + 1) * cycle_length]
  offset = first - (int(ends[group - 1]) if group else 0)
  taken, turn = round_robin_consumed(counts[members], offset)
  rotation = list(range(turn, len(members))) + list(range(turn))
  return Position(epoch, window_index, drop, group, [int(members[i]) for i in rotation],
                  [int(taken[i]) for i in rotation])


def epoch_stream(files: Sequence[str], file_ids: Sequence[int], num_files_total: int, *,
                 seed: int, cycle_length: int, window: int, start: int = 0,
                 counts: Sequence[int] | None = None):
  """The infinite `tf.data.Dataset` of (video_id int32, record) from element `start` on."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from corp_jax.data.tf_runtime import no_autograph  # pylint: disable=g-import-not-at-top
  cycle_length = max(1, min(int(cycle_length), len(files)))
  paths = tf.constant(list(files))
  ids = tf.constant(list(file_ids), tf.int64)
  num_groups = -(-len(files) // cycle_length)

  def read_file(path, file_id, skip):
    # Skipping reads record headers only, but through the read buffer (256 KB by default):
    # a file entered mid-way is read unbuffered, one read per header and per record.
    buffer_size = tf.where(skip > 0, tf.constant(0, tf.int64), _READ_BUFFER)
    records = tf.data.TFRecordDataset(path, buffer_size=buffer_size).skip(skip)
    return records.enumerate(start=skip).map(
        lambda j, rec: (tf.cast(j * num_files_total + file_id, tf.int32), rec))

  def read_group(members, skips):
    return tf.data.Dataset.from_tensor_slices(
        (tf.gather(paths, members), tf.gather(ids, members), skips)).interleave(
            no_autograph(read_file), cycle_length=cycle_length, block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def order_of(epoch):
    order = tf.numpy_function(lambda e: epoch_file_order(seed, int(e), len(files)),
                              [epoch], tf.int64, stateful=False)
    return tf.reshape(order, [len(files)])

  def groups(epoch, first_group):
    order = order_of(epoch)

    def one_group(g):
      members = order[g * cycle_length:(g + 1) * cycle_length]
      return read_group(members, tf.zeros_like(members))

    return tf.data.Dataset.range(first_group, num_groups).flat_map(no_autograph(one_group))

  def shuffled_windows(records, epoch, first_window):
    epoch_seed = tf.cast(epoch, tf.int64) + tf.constant(seed, tf.int64) * 1_000_003

    def permute(w, window_records):
      video_ids, items = window_records
      keys = tf.random.stateless_uniform(tf.shape(video_ids), seed=tf.stack([epoch_seed, w]))
      perm = tf.argsort(keys, stable=True)
      return tf.gather(video_ids, perm), tf.gather(items, perm)

    windows = records.batch(window).enumerate(start=first_window)
    return windows.map(no_autograph(permute)).prefetch(1).unbatch()

  def full_epoch(epoch):
    return shuffled_windows(groups(epoch, 0), epoch, 0)

  if start == 0:
    return tf.data.Dataset.range(0, np.iinfo(np.int64).max).flat_map(no_autograph(full_epoch))
  if counts is None:
    counts = record_counts(files)
  pos = locate(start, counts, seed=seed, cycle_length=cycle_length, window=window)
  first_group = read_group(tf.constant(pos.group_files, tf.int64),
                           tf.constant(pos.group_skips, tf.int64))
  rest = first_group.concatenate(groups(tf.constant(pos.epoch, tf.int64), pos.group + 1))
  resumed = shuffled_windows(rest, pos.epoch, pos.window).skip(pos.drop)
  later = tf.data.Dataset.range(pos.epoch + 1, np.iinfo(np.int64).max).flat_map(
      no_autograph(full_epoch))
  return resumed.concatenate(later)
