"""Launcher environments -> the arguments that reach `jax.distributed.initialize`.

SLURM and Open MPI jobs are simulated by their environment variables; only
`jax.distributed.initialize` itself is replaced (by a recorder). JAX's own cluster detection
runs for real, so the coordinator address, process count and id are JAX's answers.
"""

import json
import os
import subprocess
import sys

import jax
import pytest

from corp_jax.train import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LAUNCHER_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "TPU_", "MEGASCALE_")
_OTHER_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
               "JAX_COORDINATOR_ADDRESS", "JAX_COORDINATOR_PORT", "JAX_LOCAL_DEVICE_IDS",
               "KUBERNETES_SERVICE_HOST", "CORP_COORDINATOR", "CORP_NUM_PROCESSES",
               "CORP_PROCESS_ID")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
  """No launcher variables, no GPU driver; JAX's CPU-collectives setting restored after."""
  for name in list(os.environ):
    if name.startswith(_LAUNCHER_PREFIXES) or name in _OTHER_VARS:
      monkeypatch.delenv(name)
  monkeypatch.setattr(distributed, "_NVIDIA_PROC", str(tmp_path / "no_driver"))
  previous = jax.config.jax_cpu_collectives_implementation
  yield monkeypatch
  jax.config.update("jax_cpu_collectives_implementation", previous)


def _slurm(monkeypatch, *, nodes, tasks_per_node, proc_id, gpus_on_node=8, visible=None,
           job_id=4242):
  """The variables `srun` sets for task `proc_id` of a block-distributed job."""
  variables = {
      "SLURM_JOB_ID": job_id, "SLURM_NTASKS": nodes * tasks_per_node,
      "SLURM_PROCID": proc_id, "SLURM_LOCALID": proc_id % tasks_per_node,
      "SLURM_NODEID": proc_id // tasks_per_node,
      "SLURM_STEP_NODELIST": f"gpu[017-{16 + nodes:03d}]",
      "SLURM_STEP_TASKS_PER_NODE": f"{tasks_per_node}(x{nodes})",
      "SLURM_STEP_NUM_NODES": nodes,
  }
  if gpus_on_node:
    variables["SLURM_GPUS_ON_NODE"] = gpus_on_node
  if visible is not None:
    variables["CUDA_VISIBLE_DEVICES"] = visible
  for name, value in variables.items():
    monkeypatch.setenv(name, str(value))


def _initialize_kwargs(monkeypatch, **flags):
  """Runs `distributed.initialize` with a recording `jax.distributed.initialize`."""
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  returned = distributed.initialize(**flags)
  assert len(calls) == 1 and calls[0] == returned.initialize_kwargs()
  return calls[0]


@pytest.mark.parametrize("tasks_per_node,mode", [
    (1, "auto"), (1, "node"), (8, "auto"), (8, "one"), (2, "auto"), (4, "auto")])
def test_slurm_tasks_of_a_node_split_its_gpus(clean_env, tasks_per_node, mode):
  nodes = 2
  per_node = {}
  for proc_id in range(nodes * tasks_per_node):
    _slurm(clean_env, nodes=nodes, tasks_per_node=tasks_per_node, proc_id=proc_id)
    kwargs = _initialize_kwargs(clean_env, mode="auto", gpus_per_process=mode)
    # JAX's SLURM detection: first node of the list, a port derived from the job id.
    assert kwargs["coordinator_address"] == f"gpu017:{4242 % 4096 + 65536 - 4096}"
    assert kwargs["num_processes"] == nodes * tasks_per_node
    assert kwargs["process_id"] == proc_id
    per_node.setdefault(proc_id // tasks_per_node, []).append(kwargs["local_device_ids"])
  for node, device_lists in per_node.items():
    assert all(len(ids) == 8 // tasks_per_node for ids in device_lists), device_lists
    assert sorted(sum(device_lists, [])) == list(range(8)), f"node {node}: {device_lists}"


def test_slurm_one_gpu_per_process_is_the_local_rank_and_node_takes_all(clean_env):
  _slurm(clean_env, nodes=2, tasks_per_node=8, proc_id=11)
  assert _initialize_kwargs(clean_env, mode="auto", gpus_per_process="one")[
      "local_device_ids"] == [3]
  _slurm(clean_env, nodes=2, tasks_per_node=1, proc_id=1)
  assert _initialize_kwargs(clean_env, mode="auto", gpus_per_process="one")[
      "local_device_ids"] == [0]
  assert _initialize_kwargs(clean_env, mode="auto", gpus_per_process="node")[
      "local_device_ids"] == list(range(8))


def test_slurm_task_bound_to_its_own_gpus_uses_what_it_sees(clean_env):
  # --gpus-per-task=1: SLURM shows task 5 of the node only its GPU, as CUDA device 0.
  _slurm(clean_env, nodes=1, tasks_per_node=8, proc_id=5, visible="5")
  for mode in ("auto", "one", "node"):
    assert _initialize_kwargs(clean_env, mode="auto", gpus_per_process=mode)[
        "local_device_ids"] == [0]
  # --gpus-per-task=4 with 2 tasks: each task sees its 4 GPUs and takes them all.
  _slurm(clean_env, nodes=1, tasks_per_node=2, proc_id=1, visible="4,5,6,7")
  assert _initialize_kwargs(clean_env, mode="auto")["local_device_ids"] == [0, 1, 2, 3]


def test_slurm_gpus_counted_from_cuda_visible_devices_or_the_driver(clean_env, tmp_path):
  _slurm(clean_env, nodes=1, tasks_per_node=1, proc_id=0, gpus_on_node=0, visible="0,1,2,3")
  assert _initialize_kwargs(clean_env, mode="auto")["local_device_ids"] == [0, 1, 2, 3]
  clean_env.delenv("CUDA_VISIBLE_DEVICES")
  driver = tmp_path / "driver"
  for bus in ("0000:07:00.0", "0000:0f:00.0"):
    (driver / bus).mkdir(parents=True)
  clean_env.setattr(distributed, "_NVIDIA_PROC", str(driver))
  assert _initialize_kwargs(clean_env, mode="auto")["local_device_ids"] == [0, 1]


def test_slurm_cpu_nodes_keep_jax_defaults(clean_env):
  _slurm(clean_env, nodes=2, tasks_per_node=1, proc_id=1, gpus_on_node=0, visible="")
  args = distributed.resolve("auto")
  assert args.visible_gpus == 0 and args.launcher == "slurm"
  # No GPU: JAX's own default (its SLURM local rank), which only concerns GPUs.
  assert args.local_device_ids == [0]


@pytest.mark.parametrize("layout,mode,message", [
    (dict(tasks_per_node=3), "auto", "do not split evenly"),
    (dict(tasks_per_node=8, gpus_on_node=4), "one", "local rank 5 but only 4 GPU"),
    (dict(tasks_per_node=8), "node", "8 tasks share this node's 8 GPUs"),
    (dict(tasks_per_node=1, gpus_on_node=0), "node", "cannot tell how many GPUs"),
])
def test_slurm_layouts_that_cannot_work_are_clear_errors(clean_env, layout, mode, message):
  proc_id = min(5, layout["tasks_per_node"] - 1)
  _slurm(clean_env, nodes=1, proc_id=proc_id, **layout)
  calls = []
  clean_env.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  with pytest.raises(ValueError, match=message):
    distributed.initialize("auto", gpus_per_process=mode)
  assert not calls


def test_open_mpi_one_process_per_node(clean_env):
  for name, value in {"OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.0.0.1,10.1.0.1:34911",
                      "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "2",
                      "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1",
                      "CUDA_VISIBLE_DEVICES": "0,1,2,3"}.items():
    clean_env.setenv(name, value)
  kwargs = _initialize_kwargs(clean_env, mode="auto")
  assert kwargs["coordinator_address"].startswith("10.0.0.1:")
  assert (kwargs["num_processes"], kwargs["process_id"]) == (4, 2)
  assert kwargs["local_device_ids"] == [0, 1, 2, 3]


def test_explicit_mode_and_missing_cluster(clean_env):
  assert distributed.resolve("none") is None
  kwargs = _initialize_kwargs(clean_env, mode="explicit", coordinator="10.0.0.1:1234",
                              num_processes=4, process_id=3)
  assert kwargs == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4,
                    "process_id": 3, "local_device_ids": None}
  with pytest.raises(ValueError, match="found no cluster environment"):
    distributed.resolve("auto")
  with pytest.raises(ValueError, match="needs --coordinator_address"):
    distributed.resolve("explicit", num_processes=2)


def test_dry_run_prints_the_resolved_arguments_and_trains_nothing(clean_env, tmp_path):
  _slurm(clean_env, nodes=4, tasks_per_node=1, proc_id=2)
  workdir = tmp_path / "never_written"
  cmd = [sys.executable, "-m", "corp_jax.main", "--config=configs/corp_f.py:k400",
         "--distributed=auto", "--dry_run", f"--workdir={workdir}"]
  out = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                       timeout=120, check=True).stdout
  shown = json.loads(out[out.index("{"):])
  assert shown["workdir"] == str(workdir) and shown["job"] == "pretrain"
  assert shown["launcher"] == "slurm" and shown["tasks_on_node"] == 1
  assert shown["initialize_kwargs"] == {
      "coordinator_address": f"gpu017:{4242 % 4096 + 61440}", "num_processes": 4,
      "process_id": 2, "local_device_ids": list(range(8))}
  assert not workdir.exists()
  bad = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, SLURM_STEP_TASKS_PER_NODE="3(x4)"),
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "do not split evenly among the 3 tasks" in bad.stderr
  assert "Traceback" not in bad.stderr
