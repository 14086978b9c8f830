"""The array training stream (`data.source=arrays` / `embedded_arrays`) with and without its
kept resizes (`data.arrays_cache_mb`), side by side in one run.

Builds (or reuses) a photo array set, then times `array_stream.train_batches` at the demo's
geometry (32 videos a batch, K = 2 clips of 8 frames at stride 3, 32 x 32 crops) in
alternating slices, off / on, each on a fresh stream after one untimed epoch for the cached
one (so that it reads kept resizes, as after the first epoch of a run). Prints batches per
wall second and per CPU-second of this process (the figure that other load on a shared
machine distorts least) and the ratio. The clips are bit-identical either way
(tests/test_embedded_arrays.py).

  python -m benchmarks.array_stream --arrays_dir DIR/arrays     # a set built by photo_set
  python -m benchmarks.array_stream --num_train 256             # builds a set in a temp dir
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--arrays_dir", default="", help="an array set (photo_set --arrays: DIR/arrays)")
  p.add_argument("--num_train", type=int, default=256, help="videos of a set built here")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--crop_size", type=int, default=32)
  p.add_argument("--cache_mb", type=float, default=4096.0)
  p.add_argument("--batches", type=int, default=20, help="batches per timed slice")
  p.add_argument("--slices", type=int, default=3)
  return p.parse_args(argv)


def _time(stream, batches: int) -> tuple[float, float]:
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(stream)
  return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> dict:
  from corp_jax.data import array_stream  # pylint: disable=g-import-not-at-top
  from corp_jax.data import photo_arrays  # pylint: disable=g-import-not-at-top
  args = _parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    directory = args.arrays_dir
    if not directory:
      directory = os.path.join(tmp, "arrays")
      photo_arrays.write_photo_arrays(directory, num_train=args.num_train, num_test=1,
                                      log=lambda _: None)
    split = photo_arrays.open_arrays(directory)["train"]
    epoch = -(-split["num_examples"] // args.batch)
    common = dict(batch_size_per_process=args.batch, num_clips=2, clip_len=8, stride=3,
                  crop_size=args.crop_size, seed=0, label_key="clip/label/index")
    figures = {"off": [], "on": []}
    for _ in range(args.slices):
      for name, cache_mb in (("off", 0.0), ("on", args.cache_mb)):
        stream = array_stream.train_batches(split, cache_mb=cache_mb, **common)
        for _ in range(epoch if cache_mb else 1):  # untimed: fills the kept resizes
          next(stream)
        figures[name].append(_time(stream, args.batches))
  result = {}
  for name, runs in figures.items():
    wall = sum(w for w, _ in runs)
    cpu = sum(c for _, c in runs)
    n = args.batches * len(runs)
    result[name] = {"batches_per_s": n / wall, "batches_per_cpu_s": n / max(cpu, 1e-9)}
    print(f"kept resizes {name:3s}: {result[name]['batches_per_s']:7.2f} batches/s, "
          f"{result[name]['batches_per_cpu_s']:7.2f} batches per CPU-second "
          f"({split['num_examples']} videos, batch {args.batch}, crop {args.crop_size})")
  ratio = result["on"]["batches_per_cpu_s"] / result["off"]["batches_per_cpu_s"]
  result["ratio_per_cpu_s"] = ratio
  print(f"on / off, per CPU-second: {ratio:.2f}x (load average {os.getloadavg()[0]:.1f})")
  return result


if __name__ == "__main__":
  main()
