"""The shard stream's computed position: a stream restarted at any element equals the
uninterrupted stream from there, record for record (ids and bytes); epochs visit every
record once; the round-robin arithmetic equals a simulation; record counting and metadata."""

import json
import os

import numpy as np
import pytest

from corp_jax.data import record_stream

SIZES = [5, 0, 9, 3, 7, 7, 1, 12, 4, 6, 2]  # unequal files, one empty
TOTAL = sum(SIZES)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  import tensorflow as tf
  directory = tmp_path_factory.mktemp("uneven")
  paths = []
  for index, size in enumerate(SIZES):
    path = str(directory / f"u-{index:05d}-of-{len(SIZES):05d}")
    with tf.io.TFRecordWriter(path) as writer:
      for record in range(size):
        writer.write(f"file {index} record {record};".encode() * (record + 1))
    paths.append(path)
  return paths


def _take(files, start, count, *, cycle_length, window, seed=3):
  stream = record_stream.epoch_stream(files, list(range(len(files))), len(files), seed=seed,
                                      cycle_length=cycle_length, window=window, start=start)
  return [(int(i), bytes(r)) for i, r in stream.take(count).as_numpy_iterator()]


def _simulate_round_robin(counts, offset):
  taken, order = [0] * len(counts), []
  while len(order) <= offset:
    for i, n in enumerate(counts):
      if taken[i] < n:
        order.append(i)
        taken[i] += 1
  taken = [order[:offset].count(i) for i in range(len(counts))]
  return taken, order[offset]


def test_round_robin_position_equals_simulation():
  rng = np.random.default_rng(0)
  for _ in range(40):
    counts = rng.integers(0, 9, rng.integers(1, 7)).tolist()
    if not sum(counts):
      continue
    for offset in range(sum(counts)):
      assert record_stream.round_robin_consumed(counts, offset) == _simulate_round_robin(
          counts, offset), (counts, offset)


@pytest.mark.parametrize("cycle_length,window", [(3, 5), (16, 7), (1, 1)])
def test_restarted_stream_equals_uninterrupted(files, cycle_length, window):
  reference = _take(files, 0, 2 * TOTAL + 10, cycle_length=cycle_length, window=window)
  # Both epochs list every record once, in different orders.
  first, second = reference[:TOTAL], reference[TOTAL:2 * TOTAL]
  assert len(set(first)) == TOTAL and set(first) == set(second) and first != second
  for start in (1, 4, 13, 29, TOTAL - 1, TOTAL, TOTAL + 11, 2 * TOTAL + 3):
    assert _take(files, start, 6, cycle_length=cycle_length, window=window) == \
        reference[start:start + 6], f"start {start}"


def test_video_ids_name_file_and_record(files):
  for video_id, record in _take(files, 0, TOTAL, cycle_length=4, window=6):
    index, position = video_id % len(SIZES), video_id // len(SIZES)
    assert record.startswith(f"file {index} record {position};".encode())


def test_count_records_reads_headers_and_names_a_truncated_file(files, tmp_path):
  assert [record_stream.count_records(f) for f in files] == SIZES
  truncated = tmp_path / "truncated"
  truncated.write_bytes(open(files[0], "rb").read() + b"\x05\x00\x00")
  with pytest.raises(ValueError, match=f"{truncated} is truncated after 5 records"):
    record_stream.count_records(str(truncated))


def test_counts_from_metadata_when_data_prep_wrote_them(files):
  directory = os.path.dirname(files[0])
  meta = os.path.join(directory, "u.metadata.json")
  try:
    assert record_stream.metadata_counts(files) is None
    with open(meta, "w") as f:
      json.dump({"shard_records": [s + 100 for s in SIZES]}, f)
    assert record_stream.record_counts(files[2:5]) == [s + 100 for s in SIZES[2:5]]
  finally:
    os.remove(meta)


def test_resume_benchmark_reads_a_window_where_skipping_reads_the_epoch(tmp_path):
  from benchmarks import resume_position  # pylint: disable=g-import-not-at-top
  result = resume_position.main([
      "--shards", "24", "--records", "12", "--record_kb", "16", "--processes", "2",
      "--epochs", "1", "--batch", "4", "--shuffle_buffer", "8", "--cycle_length", "4",
      "--dir", str(tmp_path)])
  read = {r["method"]: r["bytes_read"] for r in result["results"]}
  window_bytes = 8 * 16 * 1024
  # Skipping reads ~90% of an epoch (12 files x 12 records x 16 KB = 18 windows); the new
  # stream the window holding the element (and reads ahead into the next), plus headers.
  assert read["old (skip)"] > 0.8 * 12 * 12 * 16 * 1024
  for method in ("new (header scan)", "new (metadata)"):
    assert read[method] < 6 * window_bytes, (method, read)
