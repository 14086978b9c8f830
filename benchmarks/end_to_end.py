"""Train-loop throughput with the real input pipeline vs the train step alone, in one run.

For the pretraining config (corp_jax/config_defaults.py `pretrain_config(objective, preset)`,
by default the embedded data set and the CPU demo model) and each `accel_aug` setting it prints
clips/s of:
  step only   the jitted train step on one pipeline batch held on the device (no input work);
  input only  `next()` on the input iterator (tf.data: sample, decode, crop, augment, batch);
  loop        what corp_jax/train/loop.py does per step: next batch -> to_global -> step, with
              JAX's asynchronous dispatch overlapping the step and the next batch.
A loop at 90% of the step alone or better is compute-bound. Below that, `verdict` tells two cases
apart: INPUT-BOUND when the pipeline alone is slower than the step (more input workers or
accel_aug would help), CONTENDED when each alone is faster than the loop, i.e. they compete for
the same host cores (on the CPU backend XLA's step and tf.data share them; the serial estimate
1 / (1/step + 1/input) is printed next to it).
With accel_aug the CPU only decodes and crops (uint8), and the colour/blur/flip augmentation runs
inside the jitted step (corp_jax/data/augment_jax.py).

Needs TensorFlow and ml_collections (the input pipeline and the config), so it runs where the
data pipeline runs; benchmarks/train_step.py measures the step alone without them.

Usage:
  python -m benchmarks.end_to_end --objective corp_f --steps 20
  python -m benchmarks.end_to_end --preset test --batch 8 --accel_aug off,on
"""

from __future__ import annotations

import argparse
import time

import jax

from corp_jax import config_defaults
from corp_jax.train import inputs as inputs_lib
from corp_jax.train import mesh as mesh_lib
from corp_jax.train import model as model_lib
from corp_jax.train import objectives as objectives_lib
from corp_jax.train import optim as optim_lib
from corp_jax.train import step as step_lib
from benchmarks.lib.step_builder import create_state


def build(config, num_devices: int):
  """(jitted step, state, input iterator, mesh, rng, clips per step) as loop.py builds them."""
  objective = objectives_lib.get_objective(config.objective)
  mesh = mesh_lib.create_mesh(num_devices or None)
  split = mesh_lib.split_batch(config.optim.batch_size, mesh)
  objectives_lib.validate(objective, config.data.num_clips, split.per_device,
                          config.loss.group_size)
  model = model_lib.model_from_config(config.model, objective.head_classes)
  train_inputs = inputs_lib.make_train_inputs(config, per_process_batch=split.per_process,
                                              start_step=0)
  tx, schedule = optim_lib.make_optimizer(config.optim, split.global_batch, total_steps=1000)
  clip_shape = (config.data.clip_len, config.data.crop_size, config.data.crop_size, 3)
  state = create_state(model, tx, clip_shape, mesh)  # jitted init: see train_step.py
  augment_fn = None
  if train_inputs.uint8_clips:
    from corp_jax.data import augment_jax  # pylint: disable=g-import-not-at-top
    aug_cfg = inputs_lib.augment_config(config.data)
    augment_fn = lambda key, clips: augment_jax.augment_clips(key, clips, aug_cfg)
  step = step_lib.make_train_step(model, tx, schedule, objective,
                                  temperature=config.loss.temperature,
                                  group_size=objectives_lib.resolve_group_size(
                                      config.loss.group_size, split.per_device), mesh=mesh,
                                  augment_fn=augment_fn)
  clips_per_step = split.global_batch * config.data.num_clips
  return step, state, train_inputs.iterator, mesh, jax.random.key(1), clips_per_step


def measure(config, steps: int, warmup: int, num_devices: int) -> dict:
  """clips/s of step only, input only and the loop, for one config."""
  step, state, iterator, mesh, rng, clips_per_step = build(config, num_devices)
  start = time.perf_counter()
  batch = mesh_lib.to_global(next(iterator), mesh)
  for _ in range(warmup):
    state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start

  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, mesh_lib.to_global(next(iterator), mesh), rng)
  jax.block_until_ready(metrics)
  loop_s = time.perf_counter() - start

  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)
  step_s = time.perf_counter() - start

  start = time.perf_counter()
  for _ in range(steps):
    jax.block_until_ready(mesh_lib.to_global(next(iterator), mesh))
  input_s = time.perf_counter() - start
  return dict(compile_and_warmup_s=compile_s, clips_per_step=clips_per_step,
              step_only=steps * clips_per_step / step_s,
              input_only=steps * clips_per_step / input_s,
              loop=steps * clips_per_step / loop_s,
              clips_dtype=str(batch["clips"].dtype))


def verdict(step_only: float, input_only: float, loop: float) -> str:
  """Names what limits the loop, from the three clips/s figures (module docstring)."""
  if loop >= 0.9 * step_only:
    return "compute-bound"
  if input_only < step_only:
    return "INPUT-BOUND: the pipeline alone is slower than the step"
  serial = 1.0 / (1.0 / step_only + 1.0 / input_only)
  return (f"CONTENDED: step and input each run faster alone and share the host's cores "
          f"(serial estimate {serial:.1f} clips/s)")


def make_config(args, accel_aug: bool):
  config = config_defaults.pretrain_config(args.objective, args.preset)
  config.data.accel_aug = accel_aug
  if args.batch:
    config.optim.batch_size = args.batch
  if args.conv_impl:
    config.model.conv_impl = args.conv_impl
  if args.clip_len:
    config.data.clip_len = args.clip_len
  if args.crop_size:
    config.data.crop_size = args.crop_size
  return config


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--objective", default="corp_f", choices=config_defaults.OBJECTIVES)
  p.add_argument("--preset", default="", choices=config_defaults.PRESETS,
                 help="'' = the CPU demo (embedded data set, tiny R3D)")
  p.add_argument("--batch", type=int, default=0, help="global videos per step (0: preset's)")
  p.add_argument("--conv_impl", default="", choices=("", "native", "factorized", "auto"))
  p.add_argument("--clip_len", type=int, default=0)
  p.add_argument("--crop_size", type=int, default=0)
  p.add_argument("--accel_aug", default="off,on", help="comma list of off, on")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--num_devices", type=int, default=0, help="0: all devices")
  return p.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  settings = {"off": False, "on": True}
  results = {}
  print(f"jax {jax.__version__} backend={jax.default_backend()} devices={jax.device_count()}",
        flush=True)
  for name in args.accel_aug.split(","):
    if name not in settings:
      raise ValueError(f"--accel_aug: {name!r} is not one of off, on")
    config = make_config(args, settings[name])
    r = measure(config, args.steps, args.warmup, args.num_devices)
    limit = verdict(r["step_only"], r["input_only"], r["loop"])
    print(f"{config.objective} accel_aug={name} | {config.model.backbone} "
          f"{config.data.clip_len}x{config.data.crop_size}^2 | {r['clips_per_step']} clips/step "
          f"({r['clips_dtype']} from the pipeline) | compile+warm-up "
          f"{r['compile_and_warmup_s']:.1f}s", flush=True)
    print(f"  clips/s: step only {r['step_only']:8.1f} | input only {r['input_only']:8.1f} | "
          f"loop {r['loop']:8.1f} ({100 * r['loop'] / r['step_only']:.0f}% of step only: "
          f"{limit})", flush=True)
    results[name] = dict(r, verdict=limit)
  return results


if __name__ == "__main__":
  main()
