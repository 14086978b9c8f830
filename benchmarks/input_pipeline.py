"""Input-pipeline throughput in clips/s per CPU core, next to the JPEG-decode-only bound.

Writes a few synthetic videos of H x W JPEG frames (default 256 x 340, 64 frames) as shards
in a temporary directory, then measures in one run, each on a tf.data private thread pool of
`--threads` threads with single-threaded ops (so per-core figures are honest):

Each figure is items per wall second and items per CPU-second of this process (all threads),
the latter being the per-core figure that other load on a shared machine does not distort.
All streams are built first (the build time of each is printed: tracing, autograph, XLA
compilation and the first batch), then measured in `--slices` alternating slices, each on a
fresh iterator after two untimed batches, so that drifting load and allocator state hit all
figures alike.

Memory allocator: with glibc malloc, every batch of float32 clips (77 MB here) is a fresh
mmap, and faulting its pages in costs as much CPU as ~40% of the JPEG decoding (system time);
small and uint8 batches suffer less, and how much depends on the process's allocation
history. `--bfc_allocator` sets TF_CPU_ALLOCATOR_USE_BFC=true before TensorFlow starts (TF's
pooling allocator), which removes that cost from every figure, the bound included.

  decode-only bound  tf.io.decode_jpeg of every frame, nothing else: frames/s, and clips/s =
                     frames/s / T (the most a pipeline that fully decodes its frames could do);
  cpu-aug (cvrl)     the training pipeline with full CPU augmentation (Sec. 3.2): sample,
                     decode + random resized crop (only the crop window is decoded) + resize,
                     flip, colour jitter, grayscale, blur; float32 clips; CVRL's exact colour
                     ops (`color_mode='cvrl'`);
  cpu-aug (linear)   the same with `color_mode='linear'`: jitter + grayscale as one affine
                     map per clip, with flip and blur in a few XLA passes (`linear_aug_tf`);
  accel-aug          the same pipeline with `accel_aug=True`: decode + crop + resize, uint8;
  jax-aug            `augment_jax.augment_clips` on one uint8 batch on JAX's default device,
                     in both colour modes.

`--compare` also prints how far 'linear' is from 'cvrl' for equal parameters (mean and 99th
percentile of |difference| over pixels, on the synthetic clips, in units of the [0, 1] range).

Usage:  python -m benchmarks.input_pipeline --threads 1 --seconds 10 [--compare]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def _parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--threads", type=int, default=1, help="tf.data threads (= CPU cores)")
  parser.add_argument("--num_videos", type=int, default=6)
  parser.add_argument("--frames", type=int, default=64, help="frames per synthetic video")
  parser.add_argument("--height", type=int, default=256)
  parser.add_argument("--width", type=int, default=340)
  parser.add_argument("--clip_len", type=int, default=16)
  parser.add_argument("--stride", type=int, default=2)
  parser.add_argument("--num_clips", type=int, default=2)
  parser.add_argument("--crop_size", type=int, default=224)
  parser.add_argument("--batch_size", type=int, default=4)
  parser.add_argument("--seconds", type=float, default=10.0,
                      help="measuring time per figure (split into --slices alternating slices)")
  parser.add_argument("--slices", type=int, default=4)
  parser.add_argument("--bfc_allocator", action="store_true",
                      help="TF_CPU_ALLOCATOR_USE_BFC=true (see the module docstring)")
  parser.add_argument("--skip_jax", action="store_true", help="skip the JAX augmentation")
  parser.add_argument("--compare", action="store_true",
                      help="measure |linear - cvrl| for equal parameters")
  return parser.parse_args(argv)


def _synthetic_frames(rng, num_frames, height, width):
  """Smooth moving colour fields plus mild noise: JPEG sizes like real video frames."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  phase = rng.uniform(0, 2 * np.pi, 3)
  for t in range(num_frames):
    channels = [127 + 100 * np.sin(xx / (17 + 9 * c) + yy / (23 + 5 * c) + phase[c] + 0.2 * t)
                for c in range(3)]
    frame = np.stack(channels, -1) + rng.normal(0, 6, (height, width, 3))
    yield np.clip(frame, 0, 255).astype(np.uint8)


def write_videos(directory, args):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from corp_jax.data import records, shard_writer  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  serialized, all_jpegs = [], []
  for video in range(args.num_videos):
    jpegs = [tf.io.encode_jpeg(f, quality=90).numpy()
             for f in _synthetic_frames(rng, args.frames, args.height, args.width)]
    all_jpegs.extend(jpegs)
    serialized.append(records.make_sequence_example(jpegs, label_index=video)
                      .SerializeToString())
  shard_writer.write_shards(directory, "bench", serialized, num_shards=2)
  mean_kb = np.mean([len(j) for j in all_jpegs]) / 1024
  return shard_writer.shard_pattern(directory, "bench"), all_jpegs, mean_kb


def _measure_slice(dataset, items_per_step, seconds, warmup_steps=2):
  """(items, wall s, CPU s of this process) of one slice on a fresh iterator.

  CPU seconds (all threads) make the per-core figure robust to other processes' load on a
  shared machine; one iterator exists at a time, so nothing else of ours runs meanwhile.
  """
  iterator = iter(dataset)
  for _ in range(warmup_steps):
    next(iterator)
  items = 0
  wall, cpu = time.perf_counter(), time.process_time()
  while time.perf_counter() - wall < seconds:
    next(iterator)
    items += items_per_step
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  del iterator
  return items, wall, cpu


def measure_streams(streams, seconds, slices):
  """streams: {name: (dataset, items_per_step)} -> {name: (items/wall s, items/CPU s)},
  in `slices` rounds of seconds / slices per stream."""
  totals = {name: np.zeros(3) for name in streams}
  for _ in range(max(int(slices), 1)):
    for name, (dataset, per_step) in streams.items():
      totals[name] += _measure_slice(dataset, per_step, seconds / max(int(slices), 1))
  return {name: (items / wall, items / cpu) for name, (items, wall, cpu) in totals.items()}


def _built(factory):
  """(dataset, items_per_step, seconds to build it and yield its first batch)."""
  start = time.perf_counter()
  dataset, per_step = factory()
  next(iter(dataset))
  return dataset, per_step, time.perf_counter() - start


def decode_only_stream(jpegs, args):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from corp_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  ds = tf.data.Dataset.from_tensor_slices(tf.constant(jpegs)).repeat()
  ds = ds.map(lambda j: tf.io.decode_jpeg(j, channels=3), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(32).map(lambda b: tf.reduce_max(b))  # keep decoded pixels live, return little
  ds = pipeline.apply_threading_options(ds.prefetch(2), args.threads)
  return ds, 32


def pipeline_stream(pattern, args, accel_aug, color_mode="cvrl"):
  from corp_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from corp_jax.data.augment_tf import AugmentConfig  # pylint: disable=g-import-not-at-top
  ds = pipeline.build_train_dataset(
      pattern, batch_size_per_process=args.batch_size, num_clips=args.num_clips,
      clip_len=args.clip_len, stride=args.stride, crop_size=args.crop_size, seed=0,
      shuffle_buffer=args.num_videos, accel_aug=accel_aug, process_index=0, process_count=1,
      num_threads=args.threads, augment=AugmentConfig(color_mode=color_mode))
  return ds, args.batch_size * args.num_clips


def jax_clips_per_second(args, color_mode):
  import jax  # pylint: disable=g-import-not-at-top
  from corp_jax.data import augment_jax  # pylint: disable=g-import-not-at-top
  cfg = augment_jax.AugmentConfig(color_mode=color_mode)
  shape = (args.batch_size, args.num_clips, args.clip_len, args.crop_size, args.crop_size, 3)
  clips = jax.device_put(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
  key = jax.random.key(0)
  augment_jax.augment_clips(key, clips, cfg).block_until_ready()  # compile
  steps, start = 0, time.perf_counter()
  while time.perf_counter() - start < min(args.seconds, 5.0) or steps < 3:
    augment_jax.augment_clips(jax.random.fold_in(key, steps), clips, cfg).block_until_ready()
    steps += 1
  elapsed = time.perf_counter() - start
  return steps * args.batch_size * args.num_clips / elapsed, str(jax.devices()[0].platform)


def compare_modes(jpegs, args, num_clips=64, frames=4, size=112):
  """|linear - cvrl| over pixels for the same uniforms (JAX, on the synthetic frames)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from corp_jax.data import augment_jax  # pylint: disable=g-import-not-at-top
  images = [tf.image.resize(tf.io.decode_jpeg(j), [size, size]).numpy() / 255.0
            for j in jpegs[:num_clips * frames]]
  clips = jnp.asarray(np.stack(images).reshape(num_clips, frames, size, size, 3), jnp.float32)
  cfg = augment_jax.AugmentConfig()
  params = augment_jax.sample_params(jax.random.key(1), (num_clips,), cfg)
  radius = augment_jax.blur_radius(size, cfg.blur_sigma_range[1])
  rows = []
  for name, keep in (("all draws", None), ("jitter on", "jitter")):
    chosen = np.ones(num_clips, bool) if keep is None else np.asarray(params[keep])
    cvrl = augment_jax.apply_augmentation(clips, params, radius)[chosen]
    linear = augment_jax.apply_linear_augmentation(clips, params, radius)[chosen]
    diff = np.abs(np.asarray(linear) - np.asarray(cvrl))
    rows.append(f"{name} ({chosen.sum()} clips): mean {diff.mean():.4f}, "
                f"p99 {np.quantile(diff, 0.99):.4f}")
  return rows


def main(argv=None):
  args = _parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if args.bfc_allocator:
    from corp_jax.data import pipeline  # pylint: disable=g-import-not-at-top
    if not pipeline.use_tf_bfc_cpu_allocator():
      raise RuntimeError("--bfc_allocator must be set before TensorFlow is imported")
  bfc = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "").lower() in ("1", "true")
  print(f"TF CPU allocator: {'BFC' if bfc else 'default (malloc)'}")
  t_frames = args.clip_len
  print(f"load average (1, 5, 15 min): {os.getloadavg()}")
  with tempfile.TemporaryDirectory() as directory:
    pattern, jpegs, mean_kb = write_videos(directory, args)
    print(f"{args.num_videos} videos x {args.frames} frames {args.height}x{args.width} "
          f"(JPEG mean {mean_kb:.1f} KiB); clips of {t_frames} frames at stride "
          f"{args.stride}, {args.crop_size}x{args.crop_size} crops, K={args.num_clips}, "
          f"threads={args.threads}")
    factories = {"decode-only bound": lambda: decode_only_stream(jpegs, args)}
    for name, accel, mode in (("cpu-aug (cvrl)", False, "cvrl"),
                              ("cpu-aug (linear)", False, "linear"),
                              ("accel-aug pipeline", True, "cvrl")):
      factories[name] = lambda a=accel, m=mode: pipeline_stream(pattern, args, a, m)
    streams = {}
    for name, factory in factories.items():
      dataset, per_step, build_s = _built(factory)
      streams[name] = (dataset, per_step)
      print(f"built {name}: {build_s:.1f} s to the first batch")
    rates = measure_streams(streams, args.seconds, args.slices)
    frames_wall, frames_cpu = rates.pop("decode-only bound")
    figures = [(name, *rates[name]) for name in factories if name in rates]
    comparison = compare_modes(jpegs, args) if args.compare else []
  bound_wall, bound_cpu = frames_wall / t_frames, frames_cpu / t_frames
  print("figure              wall clips/s   clips per CPU-second (per core)   % of bound")
  print(f"decode-only bound   {bound_wall:12.1f}   {bound_cpu:12.1f} "
        f"({frames_cpu:.0f} frames per CPU-second)")
  for name, wall, per_cpu in figures:
    print(f"{name:19s} {wall:12.1f}   {per_cpu:12.1f}"
          f"                       {100 * per_cpu / bound_cpu:5.1f}%")
  for row in comparison:
    print(f"linear vs cvrl, {row}")
  if not args.skip_jax:
    for mode in ("cvrl", "linear"):
      jax_rate, platform = jax_clips_per_second(args, mode)
      print(f"jax-aug {mode:6s} ({platform:>4}): {jax_rate:8.1f} clips/s (flip/colour/grayscale/"
            f"blur of uint8 batches [{args.batch_size}, {args.num_clips}, {t_frames}, "
            f"{args.crop_size}, {args.crop_size}, 3])")
  print(f"load average (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
  main()
