"""Writing an export (JAX side): a pretraining workdir's checkpoint -> DIR of safetensors + JSON.

Contract:
  `architecture(model_cfg) -> dict`: the backbone's BackboneSpec fields (what
  torch_r3d.R3D takes) plus the input normalisation (`input_mean` 0, `input_std` 1: the JAX
  model reads clips in [0, 1] as they are).
  `write_export(out_dir, arch, backbone_params, backbone_stats, *, projection=None,
  extra=None) -> dict` writes backbone.safetensors, optionally projection.safetensors
  (`projection` = (params, batch_stats, hidden_dims, out_dim)), and config.json; returns the
  config.
  `export_pretrained(workdir, out_dir, step=None, projection=True) -> dict`.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

from corp_jax import export
from corp_jax.export import convert
from corp_jax.export import safetensors_io
from corp_jax.models import get_spec
from corp_jax.train import checkpoint as ckpt_lib

INPUT_MEAN = (0.0, 0.0, 0.0)
INPUT_STD = (1.0, 1.0, 1.0)


def architecture(model_cfg) -> dict:
  spec = dataclasses.asdict(get_spec(model_cfg.backbone))
  spec = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()}
  return {**spec, "input_mean": list(INPUT_MEAN), "input_std": list(INPUT_STD)}


def write_export(out_dir: str, arch: dict, backbone_params, backbone_stats, *,
                 projection=None, extra: dict | None = None) -> dict:
  os.makedirs(out_dir, exist_ok=True)
  state = convert.backbone_to_torch(backbone_params, backbone_stats)
  files = {"backbone": export.BACKBONE_FILE}
  safetensors_io.save_file(state, os.path.join(out_dir, export.BACKBONE_FILE),
                           metadata={"format": export.FORMAT, "module": "R3D"})
  feature_dim = int(arch["stage_widths"][-1] * (4 if arch["block"] == "bottleneck" else 1))
  head = None
  if projection is not None:
    params, stats, hidden_dims, out_dim = projection
    safetensors_io.save_file(convert.projection_to_torch(params, stats),
                             os.path.join(out_dir, export.PROJECTION_FILE),
                             metadata={"format": export.FORMAT, "module": "ProjectionMLP"})
    files["projection"] = export.PROJECTION_FILE
    head = {"hidden_dims": [int(d) for d in hidden_dims], "out_dim": int(out_dim)}
  config = {
      "format": export.FORMAT,
      "architecture": arch,
      "feature_dim": feature_dim,
      "input": {"layout": "NCTHW", "dtype": "float32", "range": [0.0, 1.0],
                "mean": arch["input_mean"], "std": arch["input_std"],
                "note": "RGB in [0, 1]; the module applies (x - mean) / std itself"},
      "projection": head,
      "files": files,
      **(extra or {}),
  }
  with open(os.path.join(out_dir, export.CONFIG_FILE), "w") as f:
    json.dump(config, f, indent=2)
  return config


def _restore_projection(workdir: str, step: int):
  """params / batch_stats of the projection MLP at `step` (NumPy, any device count)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  manager = ckpt_lib.make_manager(workdir, read_only=True, async_save=False)
  try:
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        manager.item_metadata(step))
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  finally:
    manager.close()
  if "projection" not in restored["params"]:
    raise ValueError(f"checkpoint {ckpt_lib.checkpoint_dir(workdir)}/{step} has no projection "
                     "head; export with --no_projection")
  to_np = lambda t: jax.tree_util.tree_map(np.asarray, t)
  return (to_np(restored["params"]["projection"]),
          to_np(restored["batch_stats"].get("projection", {})))


def export_pretrained(workdir: str, out_dir: str, step: int | None = None,
                      projection: bool = True) -> dict:
  from corp_jax.evaluate import features as features_lib  # pylint: disable=g-import-not-at-top
  pre = features_lib.load_pretrain_config(workdir)
  backbone = features_lib.restore_frozen_backbone(workdir, step)
  head = None
  if projection:
    params, stats = _restore_projection(workdir, backbone.step)
    head = (params, stats, tuple(pre.model.projection_hidden), pre.model.projection_dim)
  to_np = lambda t: jax.tree_util.tree_map(np.asarray, t)
  extra = {"variant": pre.model.backbone,
           "source": {"pretrain_workdir": os.path.abspath(workdir), "step": int(backbone.step),
                      "objective": pre.get("objective", "")},
           "pretraining_clip": {"clip_len": int(pre.data.clip_len),
                                "stride": int(pre.data.stride),
                                "crop_size": int(pre.data.crop_size)}}
  return write_export(out_dir, architecture(pre.model), to_np(backbone.variables["params"]),
                      to_np(backbone.variables["batch_stats"]), projection=head, extra=extra)
