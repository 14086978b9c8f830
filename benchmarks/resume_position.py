"""Resuming the training stream: bytes read and seconds before the first resumed batch.

Writes a simulated shard layout (`--shards` TFRecord files of `--records` records of
`--record_kb` KB each; payloads are filler, nothing is decoded), takes the files of process
`--process_index` of `--processes`, and restarts its serialized-record stream at element
`--epochs` x (records per process) + 90% of an epoch (a late point of an epoch, where
re-reading costs most), three ways:

  old (skip)           the former resume of shard files (still that of a tf.data source):
                       file-shuffled interleave and shuffle buffer, then `skip` to the
                       element, the epoch size given (its best case: without it, one more
                       epoch is read to count the records);
  new (header scan)    `record_stream.epoch_stream` at the computed position, record counts
                       from a scan of every file's record headers;
  new (metadata)       the same with the counts from `NAME.metadata.json` (`shard_records`).

Each is built and drained for `--batch` elements (the first batch) in a fresh iterator;
bytes are this process's read bytes (`rchar` of /proc/self/io: every read(), page cache
included), seconds are wall time. The files were just written, so they come from the page
cache: a network file system or bucket makes the old method slower still, per byte.

Usage:  python -m benchmarks.resume_position [--shards 200 --records 40 --record_kb 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def _read_bytes() -> int:
  with open("/proc/self/io") as f:
    return int(next(line for line in f if line.startswith("rchar")).split()[1])


def _write_layout(directory: str, shards: int, records: int, record_bytes: int) -> list[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  payload = os.urandom(record_bytes)
  paths = []
  for index in range(shards):
    path = os.path.join(directory, f"sim-{index:05d}-of-{shards:05d}")
    with tf.io.TFRecordWriter(path) as writer:
      for record in range(records):
        writer.write(record.to_bytes(4, "little") + payload)
    paths.append(path)
  return paths


def _measure(name: str, build, batch: int) -> dict:
  before, start = _read_bytes(), time.perf_counter()
  iterator = iter(build())
  for _ in range(batch):
    next(iterator)
  seconds = time.perf_counter() - start
  read = _read_bytes() - before
  print(f"  {name:18s} {read / 2**20:10.1f} MiB read  {seconds:7.2f} s before the first "
        f"batch of {batch}", flush=True)
  return {"method": name, "bytes_read": read, "seconds": round(seconds, 3)}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shards", type=int, default=200)
  parser.add_argument("--records", type=int, default=40, help="records per shard")
  parser.add_argument("--record_kb", type=int, default=32)
  parser.add_argument("--processes", type=int, default=4)
  parser.add_argument("--process_index", type=int, default=0)
  parser.add_argument("--epochs", type=int, default=3, help="full epochs before the resume")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--shuffle_buffer", type=int, default=256)
  parser.add_argument("--cycle_length", type=int, default=16)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--dir", default="", help="layout directory (default: a temporary one)")
  args = parser.parse_args(argv)

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from corp_jax.data import pipeline, record_stream  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")

  directory = args.dir or tempfile.mkdtemp(prefix="resume_position_")
  os.makedirs(directory, exist_ok=True)
  files = _write_layout(directory, args.shards, args.records, args.record_kb * 1024)
  videos = pipeline.VideoSource(os.path.join(directory, "sim-*"), args.process_index,
                                args.processes, cycle_length=args.cycle_length)
  per_process = len(videos.files) * args.records
  start = args.epochs * per_process + int(0.9 * per_process)
  print(f"{args.shards} shards x {args.records} records x {args.record_kb} KB "
        f"({args.shards * args.records * args.record_kb / 2**10:.0f} MiB); process "
        f"{args.process_index} of {args.processes}: {len(videos.files)} files, {per_process} "
        f"records an epoch; resume at element {start} (epoch {args.epochs}, 90%)")

  def old():
    """The former resume of shard files (and today's of a tf.data source): skip to it."""
    first_epoch, skip = divmod(start, per_process)

    def one_epoch(epoch):
      epoch_seed = tf.constant(args.seed, tf.int64) * 1_000_003 + epoch
      return videos.epoch(epoch_seed).shuffle(args.shuffle_buffer, seed=epoch_seed,
                                              reshuffle_each_iteration=False)

    return tf.data.Dataset.range(first_epoch, 2**62).flat_map(one_epoch).skip(skip)

  def new(counts):
    return record_stream.epoch_stream(
        videos.files, videos.file_ids, videos.num_files, seed=args.seed,
        cycle_length=args.cycle_length, window=args.shuffle_buffer, start=start,
        counts=counts)

  results = [_measure("old (skip)", old, args.batch),
             _measure("new (header scan)",
                      lambda: new([record_stream.count_records(f) for f in videos.files]),
                      args.batch)]
  with open(os.path.join(directory, "sim.metadata.json"), "w") as f:
    json.dump({"shard_records": [args.records] * args.shards}, f)
  results.append(_measure("new (metadata)", lambda: new(record_stream.record_counts(
      videos.files)), args.batch))
  return {"layout": vars(args), "resume_element": start, "results": results}


if __name__ == "__main__":
  main()
