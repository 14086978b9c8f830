"""Entry point: `python -m corp_jax.main --config=configs/corp_f.py [--workdir=DIR]`.

Parses flags, starts multi-host JAX if asked, and hands the locked config to the job the
config names (`config.job`, default pretraining). Everything else lives in library code.

The console shows the job's own progress: TensorFlow's and XLA's INFO lines are off, and
what TensorFlow's runtime writes while first imported goes to WORKDIR/startup.log, with its
ERROR lines still on the console (corp_jax/console.py).
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from corp_jax import cli_errors
from corp_jax import console

console.quiet_native_logging()  # read when TensorFlow and jaxlib load: before any import them

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a preset: configs/corp_f.py:k400",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (checkpoints, logs, reports). Default: "
    "./workdirs/<config name>[_<preset>].")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "none", ["none", "auto", "explicit"],
    "Multi-host start-up: none, auto (TPU pods, SLURM, ...) or explicit.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index.")
_LOCAL_DEVICES = flags.DEFINE_integer(
    "local_cpu_devices", 0, "CPU only: number of host devices per process (testing).")
_GPUS_PER_PROCESS = flags.DEFINE_enum(
    "gpus_per_process", "auto", ["auto", "one", "node"],
    "SLURM / Open MPI on GPUs: one (a task per GPU), node (a task per node, all its GPUs) "
    "or auto (the node's GPUs split evenly among its tasks). See docs/LAUNCHERS.md.")
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "Print the resolved multi-host arguments (what reaches "
    "jax.distributed.initialize), the config name and the workdir as JSON, then exit.")
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Show the traceback of a user error (bad flag, config value, input).")


def _default_workdir() -> str:
  """./workdirs/<config file stem>[_<preset>], e.g. workdirs/corp_f or workdirs/corp_f_k400."""
  import os  # pylint: disable=g-import-not-at-top
  spec = config_flags.get_config_filename(flags.FLAGS["config"])
  name = os.path.splitext(os.path.basename(spec))[0]
  raw = flags.FLAGS["config"].serialize()
  preset = raw.split(":", 1)[1].strip("'\"") if ":" in raw.split("=", 1)[-1] else ""
  return os.path.join("workdirs", f"{name}_{preset}" if preset else name)


def _print_dry_run(distributed) -> None:
  """What this process would start with, without starting JAX or training."""
  import json  # pylint: disable=g-import-not-at-top
  try:
    args = distributed.resolve(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value, _GPUS_PER_PROCESS.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  shown = {"config": flags.FLAGS["config"].serialize().split("=", 1)[-1],
           "job": _CONFIG.value.get("job", "pretrain"),
           "workdir": _WORKDIR.value or _default_workdir(), **distributed.describe(args)}
  # JSON, one key a line.
  print("{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in shown.items())
        + "\n}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Orbax and JAX log every checkpoint step at INFO; the job prints its own progress.
  logging.set_verbosity(logging.WARNING)
  # Before TensorFlow is imported: its pooling CPU allocator instead of a fresh mmap per
  # float batch (benchmarks/input_pipeline.py --bfc_allocator: ~+30% clips per CPU-second).
  from corp_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  pipeline.use_tf_bfc_cpu_allocator()
  # Before any JAX backend starts: the measured per-platform XLA flags (channels-last convs
  # on GPU; corp_jax/models/platform.py).
  from corp_jax.models import platform  # pylint: disable=g-import-not-at-top
  platform.configure_xla_flags()
  from corp_jax.train import distributed  # pylint: disable=g-import-not-at-top
  if _DRY_RUN.value:
    _print_dry_run(distributed)
    return
  try:
    distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value, _LOCAL_DEVICES.value, _GPUS_PER_PROCESS.value)
  except ValueError as e:  # a flag or launcher setting the user can fix
    raise app.UsageError(str(e)) from None
  from corp_jax import dispatch  # pylint: disable=g-import-not-at-top
  workdir = _WORKDIR.value or _default_workdir()
  startup = console.StartupOutput(workdir)
  startup.capture_first_import("tensorflow")  # imported later, by the data modules
  try:
    with cli_errors.user_errors(_VERBOSE.value):
      dispatch.run(_CONFIG.value, workdir)
  finally:
    startup.stop()
    startup.save()

if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=cli_errors.parse_flags)
