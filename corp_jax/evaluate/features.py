"""The pretrained backbone of a pretraining workdir, frozen, as a batched feature function.

Contract:
  `load_pretrain_config(workdir) -> ConfigDict` reads WORKDIR/config.json (the resolved
  pretraining config), so evaluation never repeats model settings.
  `restore_frozen_backbone(workdir, step) -> FrozenBackbone`: the ResNet3D built from that
  config and its `{'params', 'batch_stats'}` restored from checkpoint `step` (0 or None =
  latest), checked against the module's shapes (ValueError listing mismatches).
  `ChunkedApply(fn, variables, chunk_size, mesh)`: calls `fn(variables, x)` on fixed-size
  chunks of `x` [N, ...] (padded, sharded over the mesh's data axis, one compilation), and
  returns NumPy [N, ...]. `backbone_features(backbone, chunk_size, mesh)` is the
  feature function `clips [N, T, H, W, 3] -> [N, F]` float32, BatchNorm in inference mode.
  `zscore_stats(features: [N, F]) -> (mean [F], std [F])`, `zscore(features, mean, std)`:
  standardisation with training-set statistics (std floored at 1e-6 so a dead feature does
  not explode).
The frozen variables are never donated nor written: the same arrays go in and stay.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from corp_jax import io_paths
from corp_jax.models import ResNet3D
from corp_jax.train import checkpoint as ckpt_lib
from corp_jax.train import mesh as mesh_lib

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# The keys of config.model that build the backbone (every pretraining config.json has them).
_BACKBONE_KEYS = ("backbone", "dtype", "conv_impl", "stem_space_to_depth", "bn_impl",
                  "bn_momentum")
_STD_FLOOR = 1e-6


def load_pretrain_config(workdir: str) -> ml_collections.ConfigDict:
  """The pretraining config saved in WORKDIR/config.json (errors name the path)."""
  if not workdir:
    raise ValueError("config.pretrain_workdir is required: the directory of a pretraining run "
                     "(it holds config.json and checkpoints/)")
  path = io_paths.join(workdir, "config.json")
  if not io_paths.exists(path):
    raise FileNotFoundError(f"{path} not found: config.pretrain_workdir={workdir!r} is not a "
                            "pretraining workdir (run python -m corp_jax.main first)")
  try:
    raw = json.loads(io_paths.read_text(path))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON: {e}") from e
  for key in ("model", "data"):
    if key not in raw:
      raise ValueError(f"{path} has no {key!r} section; keys: {sorted(raw)}")
  return ml_collections.ConfigDict(raw)


@dataclasses.dataclass(frozen=True)
class FrozenBackbone:
  module: ResNet3D
  variables: dict  # {'params': ..., 'batch_stats': ...} as restored (NumPy)
  step: int
  feature_dim: int
  pretrain_config: ml_collections.ConfigDict


def backbone_module(model_cfg) -> ResNet3D:
  """The ResNet3D of a pretraining `config.model` (same names/attributes as CorpModel's)."""
  missing = [key for key in _BACKBONE_KEYS if key not in model_cfg]
  if missing:
    raise ValueError(f"pretraining config.model lacks {missing}: its config.json was not "
                     "written by this version of corp_jax; pretrain again (or add the keys "
                     "with the values that run used)")
  if model_cfg.dtype not in _DTYPES:
    raise ValueError(f"pretraining config.model.dtype must be one of {sorted(_DTYPES)}, "
                     f"got {model_cfg.dtype!r}")
  return ResNet3D(variant=model_cfg.backbone, dtype=_DTYPES[model_cfg.dtype],
                  conv_impl=model_cfg.conv_impl,
                  stem_space_to_depth=model_cfg.stem_space_to_depth,
                  bn_impl=model_cfg.bn_impl, bn_momentum=model_cfg.bn_momentum)


def restore_frozen_backbone(workdir: str, step: int | None = None) -> FrozenBackbone:
  """Builds and restores the backbone of a pretraining workdir (see module docstring)."""
  pre = load_pretrain_config(workdir)
  module = backbone_module(pre.model)
  params, stats, restored_step = ckpt_lib.restore_backbone(workdir, step or None)
  clip = jnp.zeros((1, pre.data.clip_len, pre.data.crop_size, pre.data.crop_size, 3))
  abstract = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x, train=False), clip)
  variables = {"params": params, "batch_stats": stats}
  ckpt_lib.check_compatible(
      variables, {"params": abstract["params"], "batch_stats": abstract.get("batch_stats", {})},
      f"{ckpt_lib.checkpoint_dir(workdir)}/{restored_step} (backbone of model "
      f"{pre.model.backbone!r} from {workdir}/config.json)")
  out = jax.eval_shape(lambda v, x: module.apply(v, x, train=False), abstract, clip)
  return FrozenBackbone(module, variables, restored_step, int(out.shape[-1]), pre)


class ChunkedApply:
  """`fn(variables, x)` on fixed-size, mesh-sharded chunks of x; NumPy in, NumPy out."""

  def __init__(self, fn: Callable[[Any, jax.Array], jax.Array], variables, chunk_size: int,
               mesh):
    devices = mesh.devices.size
    # The chunk is a multiple of the device count, so every chunk shards evenly.
    self.chunk_size = max(devices, -(-int(chunk_size) // devices) * devices)
    self._mesh = mesh
    self._variables = jax.device_put(variables, mesh_lib.replicated(mesh))
    self._fn = jax.jit(fn, in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharded(mesh)),
                       out_shardings=mesh_lib.replicated(mesh))

  def __call__(self, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    outputs = []
    for lo in range(0, len(x), self.chunk_size):
      chunk = x[lo:lo + self.chunk_size]
      present = len(chunk)
      if present < self.chunk_size:
        pad = np.zeros((self.chunk_size - present,) + chunk.shape[1:], chunk.dtype)
        chunk = np.concatenate([chunk, pad])
      sharded = jax.device_put(chunk, mesh_lib.batch_sharded(self._mesh))
      outputs.append(np.asarray(self._fn(self._variables, sharded))[:present])
    if not outputs:
      raise ValueError("ChunkedApply called on an empty batch")
    return np.concatenate(outputs)


def backbone_features(backbone: FrozenBackbone, chunk_size: int, mesh) -> ChunkedApply:
  """clips [N, T, H, W, 3] float32 in [0, 1] -> features [N, F] float32 (BN inference)."""
  module = backbone.module

  def fn(variables, clips):
    return module.apply(variables, clips.astype(jnp.float32), train=False)

  return ChunkedApply(fn, backbone.variables, chunk_size, mesh)


def zscore_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """features [N, F] -> (mean [F], std [F]) float32, accumulated in float64."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ValueError(f"z-score statistics need [N >= 2, F] features, got {features.shape}")
  mean = features.mean(axis=0)
  std = np.maximum(features.std(axis=0), _STD_FLOOR)
  return mean.astype(np.float32), std.astype(np.float32)


class RunningMoments:
  """Mean/std over streamed feature batches (float64 sums), for the non-cached path."""

  def __init__(self):
    self.count, self.total, self.total_sq = 0, 0.0, 0.0

  def update(self, features: np.ndarray) -> None:
    features = np.asarray(features, np.float64)
    self.count += len(features)
    self.total = self.total + features.sum(axis=0)
    self.total_sq = self.total_sq + np.square(features).sum(axis=0)

  def stats(self) -> tuple[np.ndarray, np.ndarray]:
    if self.count < 2:
      raise ValueError(f"z-score statistics need at least 2 features, got {self.count}")
    mean = self.total / self.count
    var = np.maximum(self.total_sq / self.count - np.square(mean), 0.0)
    return mean.astype(np.float32), np.maximum(np.sqrt(var), _STD_FLOOR).astype(np.float32)


def zscore(features, mean, std):
  """(features - mean) / std; works on NumPy and JAX arrays of shape [..., F]."""
  return (features - mean) / std
