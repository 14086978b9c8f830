"""`config.init_from`: backbone weights from outside the run (JAX side).

Contract:
  `load_backbone(path, variant) -> (params, batch_stats, description)` (NumPy trees) from
    * a corp_jax pretraining workdir (it has checkpoints/): its latest backbone;
    * a CVRL TF2 checkpoint (Model Garden video_ssl R3D-50; prefix `DIR/ckpt-N` or its
      directory), converted by corp_jax.export.cvrl (needs TensorFlow).
  The variables are checked against ResNet3D(`variant`)'s shapes; a mismatch is a ValueError
  naming the missing, unexpected and mis-shaped variables.
  `warm_start(state, path, model_cfg, mesh) -> TrainState`: pretraining starts from those
  backbone weights (projection, head and optimizer state stay freshly initialised); used only
  when the run has no checkpoint of its own, so a resumed run is never overwritten.
  `frozen_backbone(config) -> FrozenBackbone` for the evaluation jobs (linear_eval, finetune):
  the model is `config.init_from_backbone` ('r3d50_cvrl' by default), float32; clip geometry
  comes from `config.data` (CVRL's 16 frames, stride 2, 224 pixels where it says 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from corp_jax import io_paths
from corp_jax.models import ResNet3D, get_spec
from corp_jax.train import checkpoint as ckpt_lib

# CVRL's pretraining clips (video_ssl configs): what "as in pretraining" means for its weights.
CVRL_CLIP = {"clip_len": 16, "stride": 2, "crop_size": 224}


def _abstract_backbone(variant: str):
  module = ResNet3D(variant, conv_impl="native")
  clip = jnp.zeros((1, 4, 32, 32, 3))
  abstract = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x, train=False), clip)
  return {"params": abstract["params"], "batch_stats": abstract.get("batch_stats", {})}


def load_backbone(path: str, variant: str):
  if not path:
    raise ValueError("config.init_from is empty")
  if io_paths.isdir(io_paths.join(path, "checkpoints")):
    params, stats, step = ckpt_lib.restore_backbone(path)
    description = f"corp_jax pretraining workdir {path} (step {step})"
  elif io_paths.exists(path) or io_paths.exists(path + ".index"):
    from corp_jax.export import cvrl  # pylint: disable=g-import-not-at-top
    spec = get_spec(variant)
    params, stats = cvrl.load_cvrl_backbone(path, spec)
    description = f"CVRL checkpoint {path}"
    if spec.padding != "same" or spec.bn_epsilon != 1e-3:
      print(f"note: backbone {variant!r} pads / normalises unlike CVRL's Model Garden code; "
            "'r3d50_cvrl' computes the function these weights were trained for", flush=True)
  else:
    raise FileNotFoundError(f"config.init_from={path!r} does not exist (expected a CVRL TF2 "
                            "checkpoint prefix such as DIR/ckpt-800, its directory, or a "
                            "corp_jax pretraining workdir)")
  variables = {"params": params, "batch_stats": stats}
  ckpt_lib.check_compatible(variables, _abstract_backbone(variant),
                            f"{description} (config.init_from) for backbone {variant!r}")
  to_np = lambda t: jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), t)
  return to_np(params), to_np(stats), description


def warm_start(state, path: str, model_cfg, mesh):
  """The TrainState with its backbone replaced by `path`'s, replicated like the rest."""
  from corp_jax.train import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  params, stats, description = load_backbone(path, model_cfg.backbone)
  replicated = mesh_lib.replicated(mesh)
  new_params = {**state.params, "backbone": jax.device_put(params, replicated)}
  new_stats = {**state.batch_stats, "backbone": jax.device_put(stats, replicated)}
  print(f"initialised the backbone from {description}", flush=True)
  return state.replace(params=new_params, batch_stats=new_stats)


def frozen_backbone(config):
  """A FrozenBackbone (evaluate/features.py) from config.init_from."""
  from corp_jax.evaluate import features as features_lib  # pylint: disable=g-import-not-at-top
  variant = config.get("init_from_backbone", "") or "r3d50_cvrl"
  params, stats, _ = load_backbone(config.init_from, variant)
  d = config.data
  pre = ml_collections.ConfigDict({
      "objective": "external",
      "model": {"backbone": variant, "dtype": "float32", "conv_impl": "auto",
                "stem_space_to_depth": "auto", "bn_impl": "auto", "bn_momentum": 0.9},
      "data": {key: int(d.get(key, 0) or CVRL_CLIP[key]) for key in CVRL_CLIP},
  })
  module = features_lib.backbone_module(pre.model)
  return features_lib.FrozenBackbone(module, {"params": params, "batch_stats": stats}, 0,
                                     get_spec(variant).feature_dim, pre)
