"""The pretraining job: `pretrain(config, workdir) -> (final TrainState, summary dict)`.

Builds mesh, model, optimizer and input stream from the config; resumes from the latest
checkpoint in the workdir (exactly: the input stream restarts at the restored step); runs
the jitted step; logs; saves checkpoints; stops with an error naming the step when the loss
becomes non-finite, never saving non-finite state; on SIGTERM (to any process) every
process saves the same step and exits cleanly (train/preemption.py).
"""

from __future__ import annotations

import json
import math

import jax
import numpy as np

from corp_jax import io_paths
from corp_jax.train import checkpoint as ckpt_lib
from corp_jax.train import inputs as inputs_lib
from corp_jax.train import mesh as mesh_lib
from corp_jax.train import model as model_lib
from corp_jax.train import objectives as objectives_lib
from corp_jax.train import optim as optim_lib
from corp_jax.train import preemption as preemption_lib
from corp_jax.train import reporting
from corp_jax.train import state as state_lib
from corp_jax.train import step as step_lib


def resolve_total_steps(config, num_videos: int | None) -> int:
  if config.train.num_epochs > 0:
    if not num_videos:
      raise ValueError(
          "config.train.num_epochs needs the number of training videos: set "
          "config.data.num_train_videos or write shards with a metadata file")
    return max(1, int(math.ceil(config.train.num_epochs * num_videos / config.optim.batch_size)))
  if config.train.num_steps < 1:
    raise ValueError(f"config.train.num_steps must be >= 1, got {config.train.num_steps}")
  return int(config.train.num_steps)


def _first_nonfinite(pending: list[tuple[int, dict]]):
  for step, metrics in pending:
    if not math.isfinite(float(metrics["loss"])):
      return step
  return None


def _mean_metrics(pending: list[tuple[int, dict]]) -> dict:
  keys = pending[-1][1].keys()
  return {k: float(np.mean([float(m[k]) for _, m in pending])) for k in keys}


def save_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    io_paths.write_text(io_paths.join(workdir, "config.json"),
                        config.to_json_best_effort(indent=2))


def _knn_monitor(config):
  from corp_jax.evaluate import knn_monitor  # pylint: disable=g-import-not-at-top
  return knn_monitor.KnnMonitor(config)


def pretrain(config, workdir: str):
  """Runs (or resumes) pretraining; returns (final TrainState, summary dict); the summary is
  also written to WORKDIR/summary.json."""
  with ckpt_lib.ClosingManagers() as managers:
    return _pretrain(config, workdir, managers)


def _pretrain(config, workdir: str, managers):
  workdir = io_paths.resolve(workdir)  # a local path or a URI such as gs://bucket/run
  objective = objectives_lib.get_objective(config.objective)
  mesh = mesh_lib.create_mesh(config.train.num_devices or None)
  split = mesh_lib.split_batch(config.optim.batch_size, mesh)
  order_weight = float(config.loss.get("order_weight", 1.0))
  objectives_lib.validate(objective, config.data.num_clips, split.per_device,
                          config.loss.group_size, order_weight)
  model = model_lib.model_from_config(config.model, objective.head_classes)
  inputs_lib.validate_data_config(config.data)
  save_config(config, workdir)

  manager = ckpt_lib.make_manager(workdir, max_to_keep=config.train.keep_checkpoints,
                                  async_save=config.train.async_checkpoints)
  managers.track(manager)
  start_step = ckpt_lib.newest_intact_step(manager) or 0
  train_inputs = inputs_lib.make_train_inputs(
      config, per_process_batch=split.per_process, start_step=start_step)
  total_steps = resolve_total_steps(config, train_inputs.num_videos)
  tx, schedule = optim_lib.make_optimizer(config.optim, split.global_batch, total_steps)

  rng = jax.random.PRNGKey(config.seed)
  init_rng, step_rng = jax.random.split(rng)
  clip_shape = (config.data.clip_len, config.data.crop_size, config.data.crop_size, 3)
  state = state_lib.create_train_state(model, tx, init_rng, clip_shape, mesh)
  if not start_step and config.get("init_from", ""):
    from corp_jax.export import init_from  # pylint: disable=g-import-not-at-top
    state = init_from.warm_start(state, config.init_from, config.model, mesh)
  reporter = reporting.MetricReporter(
      workdir, total_steps, clips_per_step=split.global_batch * config.data.num_clips,
      start_step=start_step, run_config=config)
  if start_step:
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        state.as_dict())
    state = state_lib.TrainState.from_dict(ckpt_lib.restore(manager, start_step, abstract))
    reporter.info(f"resumed from {ckpt_lib.checkpoint_dir(workdir)}/{start_step}")
  reporter.info(
      f"pretraining {config.objective} | backbone {config.model.backbone} "
      f"({state_lib.count_params(state.params['backbone']) / 1e6:.2f}M params) | "
      f"{split.global_batch} videos × {config.data.num_clips} clips of "
      f"{config.data.clip_len}×{config.data.crop_size}² per step on {split.num_devices} "
      f"device(s) in {split.num_processes} process(es) | steps {start_step}→{total_steps} | "
      f"workdir {workdir}")

  augment_fn = None
  if train_inputs.uint8_clips:
    from corp_jax.data import augment_jax  # pylint: disable=g-import-not-at-top
    aug_cfg = inputs_lib.augment_config(config.data)
    augment_fn = lambda key, clips: augment_jax.augment_clips(key, clips, aug_cfg)
  train_step = step_lib.make_train_step(
      model, tx, schedule, objective, temperature=config.loss.temperature,
      group_size=objectives_lib.resolve_group_size(config.loss.group_size, split.per_device),
      mesh=mesh, augment_fn=augment_fn,
      reversed_negatives=bool(config.loss.get("reversed_negatives", False)),
      order_weight=order_weight)

  pending: list[tuple[int, dict]] = []
  knn_monitor = None
  last_logged: dict = {}
  preempted = False
  step = start_step
  reporter.start(step)
  with preemption_lib.PreemptionGuard() as preemption:
    preemption.start(step)
    while step < total_steps:
      batch = mesh_lib.to_global(next(train_inputs.iterator), mesh)
      state, metrics = train_step(state, batch, step_rng)
      step += 1
      pending.append((step, metrics))
      is_last = step == total_steps
      # Asked once per step, on every process: a SIGTERM arriving later in this iteration is
      # handled at a later step, never between deciding to stop and deciding to save.
      stop = preemption.should_stop(step)
      should_save = is_last or step % config.train.checkpoint_every == 0 or stop
      if is_last or should_save or step % config.train.log_every == 0:
        pending = jax.device_get(pending)
        bad = _first_nonfinite(pending)
        if bad is not None:
          manager.wait_until_finished()
          manager.close()
          reporter.close()
          raise FloatingPointError(
              f"non-finite loss at step {bad}; stopping. The last good checkpoint "
              f"(step {manager.latest_step()}) in {ckpt_lib.checkpoint_dir(workdir)} is kept.")
        last_logged = reporter.write(step, _mean_metrics(pending))
        pending = []
      if should_save:
        ckpt_lib.save(manager, step, state.as_dict(), force=True)
      # Not after a SIGTERM: the grace period is for the checkpoint.
      if config.get("knn_every", 0) and (step % config.knn_every == 0 or is_last) and not stop:
        knn_monitor = knn_monitor or _knn_monitor(config)
        reporter.write_eval(step, *knn_monitor.run(state))
      if stop:
        preempted = True
        reporter.info(f"SIGTERM: saved checkpoint at step {step}; exiting")
        break
  manager.wait_until_finished()
  manager.close()
  reporter.close()
  summary = {
      "objective": config.objective,
      "step": step,
      "total_steps": total_steps,
      "preempted": preempted,
      "final_metrics": last_logged,
      "workdir": workdir,
      "checkpoints": ckpt_lib.checkpoint_dir(workdir),
      "backbone": "params['backbone'] + batch_stats['backbone'] of item 'state'",
  }
  if jax.process_index() == 0:
    io_paths.write_text(io_paths.join(workdir, "summary.json"), json.dumps(summary, indent=2))
  return state, summary
