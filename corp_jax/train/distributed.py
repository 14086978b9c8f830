"""Multi-host start-up: `jax.distributed.initialize` from flags or the launcher's environment.

Modes (`--distributed`):
  none      single process (default).
  auto      JAX's cluster detection (Cloud TPU pods, SLURM, Open MPI, Kubernetes) gives the
            coordinator address, process count and process id.
  explicit  coordinator address, process count and id from flags or the environment
            variables CORP_COORDINATOR, CORP_NUM_PROCESSES, CORP_PROCESS_ID.

GPUs per process (`--gpus_per_process`, under SLURM and Open MPI on GPU nodes):
  one   one GPU per process: the launcher starts one task per GPU (`--ntasks-per-node=8`
        with 8 GPUs); a task bound to a single GPU (`--gpus-per-task=1`) uses that one.
  node  every GPU the process sees: one task per node (`--ntasks-per-node=1`).
  auto  (default) the GPUs the node's tasks share, split evenly among them: one task per
        node gets all of them, one task per GPU gets one. A task the launcher bound to its
        own GPUs (fewer visible than SLURM_GPUS_ON_NODE) uses all it sees.
Without this, JAX gives each SLURM/Open MPI process only the GPU at its local rank, so one
task per node would train on one GPU of eight. The GPUs a process sees are counted from
CUDA_VISIBLE_DEVICES (or ROCR_/HIP_VISIBLE_DEVICES), else SLURM_GPUS_ON_NODE, else the
driver's /proc/driver/nvidia/gpus. On TPUs and without a GPU launcher JAX's defaults hold.

`resolve(...)` returns the exact keyword arguments `initialize(...)` passes to
`jax.distributed.initialize`; `--dry_run` prints them. On CPU, cross-process collectives use
gloo.
"""

from __future__ import annotations

import dataclasses
import os
import re

import jax

GPU_MODES = ("auto", "one", "node")
_VISIBLE_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
_NVIDIA_PROC = "/proc/driver/nvidia/gpus"


@dataclasses.dataclass(frozen=True)
class DistributedArgs:
  """What reaches `jax.distributed.initialize`, and where it came from."""
  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None
  local_device_ids: list[int] | None
  launcher: str  # 'slurm', 'ompi', 'tpu', ... (JAX's cluster name), or 'explicit'
  local_rank: int | None = None
  tasks_on_node: int | None = None
  visible_gpus: int | None = None

  def initialize_kwargs(self) -> dict:
    return {"coordinator_address": self.coordinator_address,
            "num_processes": self.num_processes, "process_id": self.process_id,
            "local_device_ids": self.local_device_ids}


def _jax_cluster():
  """JAX's own choice of cluster environment (the one `initialize()` would use), or None."""
  from jax._src import clusters  # pylint: disable=g-import-not-at-top
  return next((env for env in clusters.ClusterEnv._cluster_types  # pylint: disable=protected-access
               if not env.opt_in_only_method and env.is_env_present()), None)


def _expand_tasks_per_node(spec: str) -> list[int]:
  """SLURM's '4(x2),2' -> [4, 4, 2]."""
  counts = []
  for part in spec.split(","):
    match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
    if not match:
      raise ValueError(f"cannot parse SLURM tasks per node {spec!r}")
    counts += [int(match.group(1))] * int(match.group(2) or 1)
  return counts


def tasks_on_this_node(launcher: str) -> int | None:
  env = os.environ
  if launcher == "ompi" and "OMPI_COMM_WORLD_LOCAL_SIZE" in env:
    return int(env["OMPI_COMM_WORLD_LOCAL_SIZE"])
  if launcher == "slurm":
    spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    if spec:
      counts = _expand_tasks_per_node(spec)
      node = int(env.get("SLURM_NODEID", "0"))
      return counts[node] if node < len(counts) else counts[-1]
    if env.get("SLURM_NTASKS_PER_NODE"):
      return int(env["SLURM_NTASKS_PER_NODE"])
  return None


def visible_gpu_count() -> int | None:
  """GPUs this process can see (before JAX starts), or None when nothing says."""
  for name in _VISIBLE_VARS:
    value = os.environ.get(name)
    if value is not None:
      ids = [v for v in value.split(",") if v.strip() and v.strip() not in ("-1", "NoDevFiles")]
      return len(ids)
  if os.environ.get("SLURM_GPUS_ON_NODE"):
    return int(os.environ["SLURM_GPUS_ON_NODE"])
  if os.path.isdir(_NVIDIA_PROC):
    return len(os.listdir(_NVIDIA_PROC))
  return None


def choose_local_devices(mode: str, local_rank: int, tasks_on_node: int | None,
                         visible: int | None) -> list[int] | None:
  """Indices (among the visible GPUs) of this process's GPUs; None: no GPUs, JAX decides."""
  if mode not in GPU_MODES:
    raise ValueError(f"--gpus_per_process must be one of {GPU_MODES}, got {mode!r}")
  if visible == 0:
    return None
  if visible is None:
    if mode == "node":
      raise ValueError(
          "--gpus_per_process=node: cannot tell how many GPUs this node has; request them "
          "from the launcher (SLURM --gpus-per-node=N) or set CUDA_VISIBLE_DEVICES")
    return None
  node_gpus = int(os.environ.get("SLURM_GPUS_ON_NODE") or 0)
  if mode == "node" and (tasks_on_node or 1) > 1 and visible == node_gpus:
    raise ValueError(
        f"--gpus_per_process=node but {tasks_on_node} tasks share this node's {visible} "
        "GPUs: start one task per node (SLURM --ntasks-per-node=1) or use "
        "--gpus_per_process=one")
  if mode == "node" or visible == 1 or (mode == "auto" and 0 < visible < node_gpus):
    return list(range(visible))
  if mode == "one":
    if local_rank >= visible:
      raise ValueError(
          f"--gpus_per_process=one: local rank {local_rank} but only {visible} GPU(s) "
          "visible; start one task per GPU (SLURM --ntasks-per-node = --gpus-per-node)")
    return [local_rank]
  if not tasks_on_node:
    raise ValueError("--gpus_per_process=auto cannot tell how many tasks share this node; "
                     "pass --gpus_per_process=one (a task per GPU) or node (a task per node)")
  if visible % tasks_on_node:
    raise ValueError(
        f"--gpus_per_process=auto: {visible} GPUs do not split evenly among the "
        f"{tasks_on_node} tasks on this node; start 1 task per node or 1 per GPU")
  per_task = visible // tasks_on_node
  return list(range(local_rank * per_task, (local_rank + 1) * per_task))


def resolve(mode: str = "none", coordinator: str = "", num_processes: int = 0,
            process_id: int = -1, gpus_per_process: str = "auto") -> DistributedArgs | None:
  """The arguments for `jax.distributed.initialize`; None for mode 'none'. Starts nothing."""
  if mode == "none":
    return None
  if mode not in ("auto", "explicit"):
    raise ValueError(f"--distributed must be none, auto or explicit, got {mode!r}")
  if gpus_per_process not in GPU_MODES:
    raise ValueError(f"--gpus_per_process must be one of {GPU_MODES}, got {gpus_per_process!r}")
  cluster = _jax_cluster()
  launcher = cluster.name if cluster is not None else "explicit"
  local_rank = tasks = visible = local_ids = None
  if launcher in ("slurm", "ompi"):  # GPU launchers where JAX would pick one device per task
    local_rank = int(cluster.get_local_process_id())
    tasks, visible = tasks_on_this_node(launcher), visible_gpu_count()
    local_ids = choose_local_devices(gpus_per_process, local_rank, tasks, visible)
  if mode == "explicit":
    coordinator = coordinator or os.environ.get("CORP_COORDINATOR", "")
    num_processes = num_processes or int(os.environ.get("CORP_NUM_PROCESSES", "0"))
    if process_id < 0:
      process_id = int(os.environ.get("CORP_PROCESS_ID", "-1"))
    if not coordinator or num_processes < 1 or not 0 <= process_id < num_processes:
      raise ValueError(
          "--distributed=explicit needs --coordinator_address host:port, --num_processes N "
          f"and --process_id in [0, N); got {coordinator!r}, {num_processes}, {process_id}")
    launcher = "explicit"
  else:
    if cluster is None:
      raise ValueError(
          "--distributed=auto found no cluster environment (Cloud TPU, SLURM, Open MPI, "
          "Kubernetes); start the job through one, or use --distributed=explicit with "
          "--coordinator_address, --num_processes and --process_id")
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
    coordinator, num_processes, process_id, detected_ids = (
        clusters.ClusterEnv.auto_detect_unset_distributed_params(
            None, None, None, local_ids, None, 300))
    local_ids = None if detected_ids is None else list(detected_ids)
  return DistributedArgs(coordinator, num_processes, process_id, local_ids, launcher,
                         local_rank, tasks, visible)


def describe(args: DistributedArgs | None) -> dict:
  """A JSON-ready view of `resolve`'s answer (what `--dry_run` prints)."""
  if args is None:
    return {"distributed": "none"}
  return dataclasses.asdict(args) | {"initialize_kwargs": args.initialize_kwargs()}


def initialize(mode: str = "none", coordinator: str = "", num_processes: int = 0,
               process_id: int = -1, local_device_count: int = 0,
               gpus_per_process: str = "auto") -> DistributedArgs | None:
  """Starts multi-host JAX as `resolve` says; returns what was passed."""
  args = resolve(mode, coordinator, num_processes, process_id, gpus_per_process)
  if args is None:
    return None
  # Only affects the CPU client; must be set before any backend is initialised.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if local_device_count:
    jax.config.update("jax_num_cpu_devices", local_device_count)
  jax.distributed.initialize(**args.initialize_kwargs())
  return args
