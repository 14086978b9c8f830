"""The device mesh and how batches and state are laid out on it.

One mesh axis, `data`: the batch is split over every device of every process, the train
state is replicated. Each process feeds its local slice of the global batch; `to_global`
assembles the global `jax.Array` from those slices.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def create_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over all (or the first `num_devices`) global devices."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ValueError(f"asked for {num_devices} devices, only {len(devices)} exist")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


@dataclasses.dataclass(frozen=True)
class BatchSplit:
  global_batch: int
  per_process: int
  per_device: int
  num_devices: int
  num_processes: int


def split_batch(global_batch: int, mesh: Mesh) -> BatchSplit:
  """Derives per-process and per-device batch sizes; errors when they do not divide."""
  num_devices = mesh.devices.size
  num_processes = jax.process_count()
  if global_batch % num_devices:
    raise ValueError(
        f"config.optim.batch_size={global_batch} is not divisible by the {num_devices} "
        f"devices of the mesh; choose a multiple of {num_devices}")
  if global_batch % num_processes:
    raise ValueError(
        f"config.optim.batch_size={global_batch} is not divisible by {num_processes} processes")
  return BatchSplit(global_batch, global_batch // num_processes, global_batch // num_devices,
                    num_devices, num_processes)


def to_global(local_batch: dict, mesh: Mesh) -> dict:
  """Per-process NumPy batch dict -> global jax.Arrays sharded on the data axis."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}
