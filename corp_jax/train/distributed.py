"""Multi-host start-up: `jax.distributed.initialize` from flags or the environment.

Modes (`--distributed`):
  none      single process (default).
  auto      `jax.distributed.initialize()` with no arguments: JAX detects the cluster
            (Cloud TPU pods, SLURM, Open MPI, ...).
  explicit  coordinator address, process count and id from flags or the environment
            variables CORP_COORDINATOR, CORP_NUM_PROCESSES, CORP_PROCESS_ID.
On CPU, collectives across processes use gloo.
"""

from __future__ import annotations

import os

import jax


def initialize(mode: str = "none", coordinator: str = "", num_processes: int = 0,
               process_id: int = -1, local_device_count: int = 0) -> None:
  if mode == "none":
    return
  # Only affects the CPU client; must be set before any backend is initialised.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if local_device_count:
    jax.config.update("jax_num_cpu_devices", local_device_count)
  if mode == "auto":
    jax.distributed.initialize()
    return
  if mode != "explicit":
    raise ValueError(f"--distributed must be none, auto or explicit, got {mode!r}")
  coordinator = coordinator or os.environ.get("CORP_COORDINATOR", "")
  num_processes = num_processes or int(os.environ.get("CORP_NUM_PROCESSES", "0"))
  if process_id < 0:
    process_id = int(os.environ.get("CORP_PROCESS_ID", "-1"))
  if not coordinator or num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(
        "--distributed=explicit needs --coordinator_address host:port, --num_processes N and "
        f"--process_id in [0, N); got {coordinator!r}, {num_processes}, {process_id}")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)
