"""Orbax checkpoints in the workdir: periodic, keep-N, asynchronous, exact resume.

Layout: `WORKDIR/checkpoints/<step>/` holds the item `state` = {'step', 'params',
'batch_stats', 'opt_state'}. Orbax writes each step to a temporary directory and renames it
on commit, so a process killed during a save leaves the previous checkpoint usable.

The backbone that evaluation jobs restore is `params['backbone']` + `batch_stats['backbone']`
of any step; `restore_backbone(workdir, step=None)` returns exactly that.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, *, max_to_keep: int = 3, async_save: bool = True,
                 read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
      enable_async_checkpointing=async_save, cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def save(manager: ocp.CheckpointManager, step: int, state_dict: dict, *, force=False) -> bool:
  return manager.save(step, args=ocp.args.StandardSave(state_dict), force=force)


def _path_name(path) -> str:
  # Orbax metadata turns NamedTuple fields (optax states) into dict keys: compare by name.
  parts = []
  for entry in path:
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
  return "/".join(parts)


def _flat_shapes(tree) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path_name(path): tuple(getattr(leaf, "shape", np.shape(leaf)))
          for path, leaf in flat}


def check_compatible(saved_tree, target_tree, where: str) -> None:
  """Raises ValueError naming missing/unexpected keys and shape mismatches."""
  saved, target = _flat_shapes(saved_tree), _flat_shapes(target_tree)
  missing = sorted(set(target) - set(saved))
  unexpected = sorted(set(saved) - set(target))
  wrong = sorted(f"{k}: checkpoint {saved[k]} vs model {target[k]}"
                 for k in set(saved) & set(target) if saved[k] != target[k])
  if missing or unexpected or wrong:
    lines = [f"checkpoint {where} does not match the configured model:"]
    if missing:
      lines.append(f"  missing in checkpoint ({len(missing)}): " + ", ".join(missing[:10]))
    if unexpected:
      lines.append(f"  not in model ({len(unexpected)}): " + ", ".join(unexpected[:10]))
    if wrong:
      lines.append(f"  shape mismatches ({len(wrong)}): " + "; ".join(wrong[:10]))
    lines.append("  (check config.model.backbone / projection / head / objective)")
    raise ValueError("\n".join(lines))


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: dict) -> dict:
  """Restores `state` at `step` into the shardings/shapes of `abstract_state`."""
  where = os.path.join(str(manager.directory), str(step))
  check_compatible(manager.item_metadata(step), abstract_state, where)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


class _QuietAbsl:
  """Silences Orbax's read-only-manager warnings (expected when only reading)."""

  def __enter__(self):
    from absl import logging  # pylint: disable=g-import-not-at-top
    self._level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)

  def __exit__(self, *exc):
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.set_verbosity(self._level)
    return False


def latest_step(workdir: str) -> int | None:
  if not os.path.isdir(checkpoint_dir(workdir)):
    return None
  with _QuietAbsl():
    manager = make_manager(workdir, read_only=True, async_save=False)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def restore_backbone(workdir: str, step: int | None = None) -> tuple[dict, dict, int]:
  """Returns (backbone params, backbone batch_stats, step) of a pretraining workdir.

  Restores without a target (NumPy arrays), so it needs neither the config nor the
  optimizer of the pretraining run. Raises FileNotFoundError naming the workdir when there
  is no checkpoint, and ValueError listing the available steps when `step` is missing.
  """
  params, stats, step = restore_model(workdir, step)
  directory = checkpoint_dir(workdir)
  if "backbone" not in params:
    raise ValueError(f"checkpoint {directory}/{step} has no 'backbone' parameters; "
                     f"top-level keys: {sorted(params)}")
  return params["backbone"], stats.get("backbone", {}), int(step)


def restore_model(workdir: str, step: int | None = None) -> tuple[dict, dict, int]:
  """Returns (params, batch_stats, step) of the whole model (backbone, projection, head);
  errors as `restore_backbone`."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoints in {directory}: is {workdir!r} a pretraining workdir?")
  with _QuietAbsl():
    manager = make_manager(workdir, read_only=True, async_save=False)
  try:
    steps = manager.all_steps()
    if not steps:
      raise FileNotFoundError(f"no complete checkpoint in {directory}")
    if step is None:
      step = max(steps)
    elif step not in steps:
      raise ValueError(f"no checkpoint for step {step} in {directory}; available: {sorted(steps)}")
    metadata = manager.item_metadata(step)
    # The whole tree is restored (Orbax restores a tree as saved, optimizer state included).
    # An explicit single-device sharding lets a checkpoint written on N devices (or hosts)
    # be restored by a process with any other device count.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  finally:
    manager.close()
  return restored["params"], restored.get("batch_stats", {}), int(step)
