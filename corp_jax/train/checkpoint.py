"""Orbax checkpoints in the workdir: periodic, keep-N, asynchronous, exact resume.

Layout: `WORKDIR/checkpoints/<step>/` holds the item `state` = {'step', 'params',
'batch_stats', 'opt_state'}. Orbax writes each step to a temporary directory and renames it
on commit, so a process killed during a save leaves the previous checkpoint usable.

The backbone that evaluation jobs restore is `params['backbone']` + `batch_stats['backbone']`
of any step; `restore_backbone(workdir, step=None)` returns exactly that.

Damaged checkpoints (a truncated or zeroed file, deleted metadata: disk faults, a full disk,
a copy cut short) are found by reading the step back and comparing each array with the
sha256 that `save` stored in `checkpoints/digests/<step>.json` (single-process runs; a
zeroed run of bytes inside compressed data can decode without any error). `newest_intact_step` (resuming) and
`restore_backbone` without a step (evaluation) report such a step in one line with its cause,
move it aside to `checkpoints/corrupt-<step>-<UTC time>/` (never deleted: Orbax ignores the
name) and fall back to the newest step that reads back completely. An explicitly requested
step that is damaged raises `CorruptCheckpoint` naming it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from corp_jax import io_paths


def checkpoint_dir(workdir: str) -> str:
  return io_paths.join(io_paths.resolve(workdir), "checkpoints")


def make_manager(workdir: str, *, max_to_keep: int = 3, async_save: bool = True,
                 read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
      enable_async_checkpointing=async_save, cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


class ClosingManagers:
  """Closes the managers it tracks when the block it guards raises, so an error or Ctrl-C
  never leaves Orbax's background threads to fail at interpreter shutdown; a pending
  asynchronous save is finished first (close waits for it)."""

  def __init__(self):
    self._managers = []

  def track(self, manager: ocp.CheckpointManager) -> ocp.CheckpointManager:
    self._managers.append(manager)
    return manager

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is not None:
      for manager in self._managers:
        try:
          manager.close()
        except Exception:  # pylint: disable=broad-except
          pass  # the original error matters more than a failed close
    return False


def _digest_dir(manager: ocp.CheckpointManager) -> str:
  # A non-numeric name inside checkpoints/: Orbax neither lists nor deletes it.
  return io_paths.join(str(manager.directory), "digests")


def _digests(tree) -> dict[str, str]:
  """sha256 of each array's dtype, shape and bytes, keyed by its path."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  digests = {}
  for path, leaf in flat:
    array = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    digests[_path_name(path)] = digest.hexdigest()
  return digests


def _write_digests(manager: ocp.CheckpointManager, step: int, state_dict: dict) -> None:
  """Stores the arrays' checksums of `step`, so a read can tell silently damaged data (a
  zeroed run of bytes can decode without error). Single-process runs only: a process of a
  multi-process run does not hold whole arrays."""
  if jax.process_count() != 1:
    return
  directory = _digest_dir(manager)
  io_paths.makedirs(directory)
  kept = {str(s) for s in manager.all_steps()} | {str(step)}
  for name in io_paths.listdir(directory):
    if name.endswith(".json") and name[:-5] not in kept:
      io_paths.remove(io_paths.join(directory, name))
  io_paths.write_text(io_paths.join(directory, f"{step}.json"),  # atomic
                      json.dumps(_digests(state_dict)))


def _check_digests(manager: ocp.CheckpointManager, step: int, restored) -> None:
  path = io_paths.join(_digest_dir(manager), f"{step}.json")
  if not io_paths.exists(path):
    return  # written by a multi-process run: readability is the only check
  expected = json.loads(io_paths.read_text(path))
  actual = _digests(restored)
  damaged = sorted(k for k in expected if actual.get(k) != expected[k])
  if damaged:
    raise ValueError(f"{len(damaged)} array(s) differ from their checksums taken at save "
                     f"time (silently damaged data), e.g. {damaged[0]}")


def save(manager: ocp.CheckpointManager, step: int, state_dict: dict, *, force=False) -> bool:
  _write_digests(manager, step, state_dict)
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
  where = io_paths.join(str(manager.directory), str(step))
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


class CorruptCheckpoint(ValueError):
  """A checkpoint step whose files cannot be read back."""

  def __init__(self, directory: str, step: int, cause: str, hint: str = ""):
    self.directory, self.step, self.cause = directory, step, cause
    super().__init__(f"checkpoint step {step} ({directory}/{step}) is damaged and cannot be "
                     f"read: {cause}{hint}")


def _short_cause(error: BaseException) -> str:
  """One line saying why a read failed: the innermost storage error of the chain, without
  the long TensorStore specs Orbax wraps around it."""
  chain, seen = [], set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    chain.append(error)
    error = error.__cause__ or error.__context__
  if any("handler_registry" in str(e) for e in chain):
    # Orbax's wording for a step folder without its item: not a registration problem.
    return "its item folder (default/) is missing or empty"
  coded = [e for e in chain if re.match(r"^[A-Z_]{4,}: ", str(e))]  # e.g. DATA_LOSS: ...
  readable = [e for e in chain if isinstance(e, (ValueError, OSError))]  # JSON, file errors
  chosen = coded[-1] if coded else (readable[0] if readable else chain[0])
  text = str(chosen).strip().splitlines()[0] if str(chosen).strip() else ""
  if not coded:
    text = f"{type(chosen).__name__}: {text}" if text else type(chosen).__name__
  text = re.sub(r' in OCDBT database at local file "[^"]*"', "", text)
  text = re.sub(r"\s*\[tensorstore_spec=.*$", "", text)
  return text if len(text) <= 240 else text[:237] + "..."


def _read_whole_step(manager: ocp.CheckpointManager, step: int) -> dict:
  """Every array of `step` as saved, on this process's first device; raises when any file
  of it is missing, truncated or corrupt."""
  metadata = manager.item_metadata(step)
  leaves = jax.tree_util.tree_leaves(metadata) if metadata is not None else []
  if not leaves or not all(hasattr(m, "shape") for m in leaves):
    raise FileNotFoundError("its array metadata is missing or unreadable")
  # An explicit single-device sharding lets a checkpoint written on N devices (or hosts)
  # be restored by a process with any other device count; host memory when there is a CPU
  # backend, so checking a step costs no accelerator memory.
  try:
    device = jax.local_devices(backend="cpu")[0]
  except RuntimeError:  # JAX_PLATFORMS without cpu
    device = jax.local_devices()[0]
  sharding = jax.sharding.SingleDeviceSharding(device)
  abstract = jax.tree_util.tree_map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), metadata)
  restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  _check_digests(manager, step, restored)
  return restored


def set_aside(manager: ocp.CheckpointManager, step: int) -> str:
  """Renames `<step>/` to `corrupt-<step>-<UTC time>/` beside it; returns the new path."""
  directory = str(manager.directory)
  stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
  target = io_paths.join(directory, f"corrupt-{step}-{stamp}")
  io_paths.rename(io_paths.join(directory, str(step)), target)
  manager.reload()
  return target


def _stderr(message: str) -> None:
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


def restore_newest_intact(manager: ocp.CheckpointManager, log=_stderr):
  """(step, whole tree as saved) of the newest step that reads back, or (None, None).

  Each newer step that fails to read is reported through `log` (one line: step, cause,
  where it went) and moved aside by process 0 (other processes only skip it)."""
  directory = str(manager.directory)
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return step, _read_whole_step(manager, step)
    except Exception as e:  # pylint: disable=broad-except
      cause = _short_cause(e)
    where = "left in place"
    if jax.process_index() == 0:
      try:
        where = f"moved to {set_aside(manager, step)}"
      except OSError as e:
        where = f"left in place (cannot move it: {e.strerror})"
    else:
      manager.reload()
    older = [s for s in manager.all_steps() if s < step]
    fallback = f"using step {max(older)}" if older else "no older checkpoint left"
    log(f"checkpoint step {step} in {directory} is damaged ({cause}); {where}; {fallback}")
  return None, None


def newest_intact_step(manager: ocp.CheckpointManager, log=_stderr) -> int | None:
  """The step to resume from: the newest that reads back (see `restore_newest_intact`)."""
  return restore_newest_intact(manager, log)[0]


def latest_step(workdir: str) -> int | None:
  if not io_paths.isdir(checkpoint_dir(workdir)):
    return None
  with _QuietAbsl():
    manager = make_manager(workdir, read_only=True, async_save=False)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def restore_backbone(workdir: str, step: int | None = None,
                     log=_stderr) -> tuple[dict, dict, int]:
  """Returns (backbone params, backbone batch_stats, step) of a pretraining workdir.

  Restores without a target (NumPy arrays), so it needs neither the config nor the
  optimizer of the pretraining run. Raises FileNotFoundError naming the workdir when there
  is no checkpoint, ValueError listing the available steps when `step` is missing, and
  CorruptCheckpoint when the requested `step` is damaged. Without `step`, damaged newer steps
  are reported, moved aside and skipped (module docstring).
  """
  params, stats, step = restore_model(workdir, step, log)
  directory = checkpoint_dir(workdir)
  if "backbone" not in params:
    raise ValueError(f"checkpoint {directory}/{step} has no 'backbone' parameters; "
                     f"top-level keys: {sorted(params)}")
  return params["backbone"], stats.get("backbone", {}), int(step)


def restore_model(workdir: str, step: int | None = None,
                  log=_stderr) -> tuple[dict, dict, int]:
  """Returns (params, batch_stats, step) of the whole model (backbone, projection, head);
  errors as `restore_backbone`."""
  directory = checkpoint_dir(workdir)
  if not io_paths.isdir(directory):
    raise FileNotFoundError(f"no checkpoints in {directory}: is {workdir!r} a pretraining workdir?")
  with _QuietAbsl():
    manager = make_manager(workdir, read_only=True, async_save=False)
  try:
    steps = manager.all_steps()
    if not steps:
      raise FileNotFoundError(f"no complete checkpoint in {directory}")
    if step is None:
      # The whole tree is restored (Orbax restores a tree as saved). A damaged newest step is reported, moved aside and the previous one used.
      step, restored = restore_newest_intact(manager, log)
      if step is None:
        raise FileNotFoundError(f"no readable checkpoint in {directory}: every step was "
                                "damaged and has been moved to corrupt-<step>-<time>/")
    elif step not in steps:
      raise ValueError(f"no checkpoint for step {step} in {directory}; available: {sorted(steps)}")
    else:
      try:
        restored = _read_whole_step(manager, step)
      except Exception as e:  # pylint: disable=broad-except
        others = sorted(s for s in steps if s != step)
        raise CorruptCheckpoint(
            directory, step, _short_cause(e),
            f"; choose another step (e.g. --config.pretrain_step, available: {others}; "
            "0 = the newest readable one)") from e
  finally:
    manager.close()
  return restored["params"], restored.get("batch_stats", {}), int(step)
