"""The CORP train step that the benchmarks time, built without TensorFlow or ml_collections.

Contract:
  `SIZES` (named model / clip / batch shapes), `NUM_CLIPS`, `HEAD_CLASSES`;
  `parse_variant('factorized+s2d+fbn') -> CorpModel keyword arguments`;
  `build_step(size, objective, dtype, conv_impl, remat, per_device_batch, num_devices, ...)`
  -> (jitted step, state, global batch, rng, mesh, model): the library's own train step
  (corp_jax/train/step.py) on a synthetic batch;
  `build_jax_bench(...) -> JaxBench`: that step compiled, with XLA's and the model's FLOPs, ready
  to be timed (`run`, `time_steps`).
Used by train_step.py, profile_step.py, hlo_check.py and end_to_end.py.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from benchmarks.lib import flop_count
from corp_jax.models import platform
from corp_jax.models.conv import CONV_IMPLS
from corp_jax.train import mesh as mesh_lib
from corp_jax.train import objectives as objectives_lib
from corp_jax.train import optim as optim_lib
from corp_jax.train import state as state_lib
from corp_jax.train import step as step_lib
from corp_jax.train.inputs import synthetic_batches
from corp_jax.train.model import CorpModel

# The benchmarks time what corp_jax.main runs: its per-platform XLA flags, set before the first
# JAX computation (XLA_FLAGS=--xla_gpu_force_conv_nhwc=false measures without).
platform.configure_xla_flags()

# batch_f / batch_m: default per-device videos for CORP_f (K = 2) and CORP_m (K = 4).
SIZES = {
    # The paper's pretraining shape, for an accelerator.
    "r3d50": dict(backbone="r3d50", clip_len=16, crop=224, projection_hidden=(2048,) * 3,
                  projection_dim=128, head_num_heads=128, batch_f=16, batch_m=8, group_size=8),
    "r3d18": dict(backbone="r3d18", clip_len=16, crop=112, projection_hidden=(2048,) * 3,
                  projection_dim=128, head_num_heads=128, batch_f=16, batch_m=8, group_size=8),
    # The CPU demo's model and clip shape (corp_jax/config_defaults.py, preset '').
    # A real-width backbone at a CPU-sized clip: conv compute dominates, not per-op overhead.
    "cpu_r3d18": dict(backbone="r3d18", clip_len=8, crop=64, projection_hidden=(512, 512),
                      projection_dim=128, head_num_heads=64, batch_f=4, batch_m=2, group_size=2),
    "cpu": dict(backbone="tiny", clip_len=8, crop=32, projection_hidden=(128, 128),
                projection_dim=64, head_num_heads=32, batch_f=16, batch_m=8, group_size=2),
    # Smallest shapes, for the smoke test.
    "smoke": dict(backbone="tiny", clip_len=4, crop=16, projection_hidden=(32,),
                  projection_dim=16, head_num_heads=8, batch_f=2, batch_m=2, group_size=2),
}
NUM_CLIPS = {"corp_f": 2, "corp_m": 4}
HEAD_CLASSES = {"corp_f": 2, "corp_m": 3}

@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """The fields of `config.optim` that make_optimizer reads (no ml_collections needed)."""
  name: str = "lars"
  base_lr: float = 1.0
  weight_decay: float = 1e-6
  momentum: float = 0.9
  trust_coefficient: float = 1e-3
  warmup_fraction: float = 0.05
  grad_clip_norm: float = 0.0


@dataclasses.dataclass
class JaxBench:
  """A compiled train step with its state and one batch, ready to be timed."""
  name: str
  compiled: object
  state: object
  batch: dict
  rng: jax.Array
  clips_per_step: int
  num_devices: int
  compile_s: float
  compiled_flops: float
  model_flops: float
  hlo_text_fn: object

  def run(self):
    self.state, metrics = self.compiled(self.state, self.batch, self.rng)
    return metrics

  def time_steps(self, steps: int) -> list:
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      jax.block_until_ready(self.run())
      times.append(time.perf_counter() - start)
    return times


def batch_size(size: dict, objective: str, batch: int | None) -> int:
  return batch or size["batch_f" if objective == "corp_f" else "batch_m"]


# Model options a --conv_impl variant can append with '+': 'factorized+s2d+fbn'.
VARIANT_OPTIONS = {"s2d": {"stem_space_to_depth": True},  # models/conv.py space-to-depth stem
                   "fbn": {"bn_impl": "fused"},            # models/batchnorm.py
                   "abn": {"bn_impl": "autodiff"}}


def parse_variant(variant: str) -> dict:
  """'factorized+s2d+fbn' -> CorpModel keyword arguments {conv_impl, stem_space_to_depth,
  bn_impl}: a conv_impl name, then any of VARIANT_OPTIONS. A named conv_impl starts from the
  plain model (no space-to-depth stem, autodiff BatchNorm) so that each option is measured on
  its own; 'auto' alone is the platform's default model (corp_jax/models/platform.py)."""
  impl, *options = variant.split("+")
  if impl not in CONV_IMPLS or any(o not in VARIANT_OPTIONS for o in options):
    raise ValueError(f"--conv_impl variant {variant!r}: expected one of {CONV_IMPLS}, "
                     f"optionally followed by +option for options in {sorted(VARIANT_OPTIONS)}")
  if impl == "auto" and not options:
    return {"conv_impl": "auto", "stem_space_to_depth": "auto", "bn_impl": "auto"}
  kwargs = {"conv_impl": impl, "stem_space_to_depth": False, "bn_impl": "autodiff"}
  for option in options:
    kwargs.update(VARIANT_OPTIONS[option])
  return kwargs


def make_model(size: dict, objective: str, dtype: str, conv_impl: str, remat: bool):
  """`conv_impl` is a variant: a conv_impl name with optional '+option's (parse_variant)."""
  return CorpModel(
      backbone=size["backbone"], dtype={"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype],
      **parse_variant(conv_impl), remat=remat, projection_hidden=size["projection_hidden"],
      projection_dim=size["projection_dim"], head_attention="decoupling",
      head_num_heads=size["head_num_heads"], head_mlp_layers=2,
      head_num_classes=HEAD_CLASSES[objective])


def create_state(model, tx, clip_shape, mesh):
  """`create_train_state` under one jit, with an 'unsafe_rbg' key.

  Run eagerly, the init compiles every op for every parameter shape separately: on the loaded
  2-core CPU that took 62 s for the tiny model, 43 s of it in 11 threefry `_normal` kernels.
  One jit of the whole init with the cheaper-to-compile rbg generator took 6.5 s (1.4 s from
  the persistent compilation cache). Only the initial values' random stream differs, which the
  timings do not depend on.
  """
  init = jax.jit(lambda key: state_lib.create_train_state(model, tx, key, clip_shape, mesh))
  return init(jax.random.key(0, impl="unsafe_rbg"))


def build_step(size: dict, objective: str, *, dtype: str, conv_impl: str, remat: bool,
               per_device_batch: int, num_devices: int | None, augment_fn=None):
  """(jitted step, state, global batch, rng, mesh, model) for the given shapes."""
  mesh = mesh_lib.create_mesh(num_devices)
  global_batch = per_device_batch * mesh.devices.size
  num_clips, group_size = NUM_CLIPS[objective], min(size["group_size"], per_device_batch)
  obj = objectives_lib.get_objective(objective)
  objectives_lib.validate(obj, num_clips, per_device_batch, group_size)
  model = make_model(size, objective, dtype, conv_impl, remat)
  tx, schedule = optim_lib.make_optimizer(OptimConfig(), global_batch, total_steps=1000)
  clip_shape = (size["clip_len"], size["crop"], size["crop"], 3)
  state = create_state(model, tx, clip_shape, mesh)
  step = step_lib.make_train_step(model, tx, schedule, obj, temperature=0.1,
                                  group_size=group_size, mesh=mesh, augment_fn=augment_fn)
  local = next(synthetic_batches(
      seed=0, start_step=0, global_batch=global_batch, process_index=0, process_count=1,
      num_clips=num_clips, clip_len=size["clip_len"], crop_size=size["crop"]))
  batch = mesh_lib.to_global({k: local[k] for k in ("clips", "starts")}, mesh)
  return step, state, batch, jax.random.key(1), mesh, model


def flops(cost) -> float:
  """The 'flops' entry of a cost analysis (a dict, or a list of dicts in older JAX)."""
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", float("nan")))


def build_jax_bench(size: dict, objective: str, *, dtype: str, conv_impl: str, remat: bool,
                    per_device_batch: int, num_devices: int | None) -> JaxBench:
  step, state, batch, rng, mesh, model = build_step(
      size, objective, dtype=dtype, conv_impl=conv_impl, remat=remat,
      per_device_batch=per_device_batch, num_devices=num_devices)
  start = time.perf_counter()
  lowered = step.lower(state, batch, rng)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  devices = mesh.devices.size
  clips = batch["clips"]
  flat_clips = jax.ShapeDtypeStruct((clips.shape[0] * clips.shape[1],) + clips.shape[2:],
                                    jnp.float32)
  # Counted from the jaxpr: XLA's cost analysis gives cuDNN convs no FLOPs (flop_count.py).
  # Remat's recomputation is not model work, so it is not in this figure.
  # The space-to-depth stem's zero-padded taps are not model work either: count without it.
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  model_flops = flop_count.model_train_flops(model.clone(stem_space_to_depth=False), variables,
                                             flat_clips) / devices
  return JaxBench(
      name=f"jax {conv_impl}{' remat' if remat else ''}", compiled=compiled, state=state,
      batch=batch, rng=rng, clips_per_step=per_device_batch * devices * NUM_CLIPS[objective],
      num_devices=devices,
      compile_s=compile_s, compiled_flops=flops(compiled.cost_analysis()),
      model_flops=model_flops, hlo_text_fn=compiled.as_text)
