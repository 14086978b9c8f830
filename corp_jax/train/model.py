"""CorpModel: backbone → projection MLP → z, plus the relation head φ(z_i, z_j).

Contract:
  `__call__(clips: [N, T, H, W, 3], train) -> {'features': [N, F], 'z': [N, d]}`, float32.
  `relate(z_i, z_j) -> [..., C]` logits of φ (Eq. 2 / Eq. 4), `relate_all(z: [M, d]) -> [M, M, C]`,
  both on head inputs `corp_jax.heads.relation_inputs(z)` (the objectives apply it).
  `init_all(clips)` touches every submodule so `init` creates the whole parameter tree.
Parameters: `params['backbone']`, `params['projection']`, `params['head']` (absent when the
objective has no relation head, e.g. SimCLR); BatchNorm statistics under `batch_stats`.
The backbone subtree is what evaluation jobs restore.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from corp_jax.heads import RelationHead
from corp_jax.models import ProjectionMLP, ResNet3D


class CorpModel(nn.Module):
  """Backbone + projection + optional relation head, as in Fig. 2 of the paper."""

  backbone: str = "r3d50"
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  stem_space_to_depth: bool | str = "auto"
  bn_impl: str = "auto"
  remat: bool = False
  projection_hidden: Sequence[int] = (2048, 2048, 2048)
  projection_dim: int = 128
  head_attention: str = "decoupling"
  head_num_heads: int = 128
  head_mlp_layers: int = 2
  head_num_classes: int = 0  # 0: no relation head (SimCLR baseline).
  bn_momentum: float = 0.9

  def setup(self):
    self.backbone_net = ResNet3D(
        variant=self.backbone, dtype=self.dtype, conv_impl=self.conv_impl,
        stem_space_to_depth=self.stem_space_to_depth, bn_impl=self.bn_impl, remat=self.remat, bn_momentum=self.bn_momentum, name="backbone")
    self.projection = ProjectionMLP(
        hidden_dims=tuple(self.projection_hidden), out_dim=self.projection_dim,
        dtype=self.dtype, bn_momentum=self.bn_momentum, name="projection")
    if self.head_num_classes:
      self.head = RelationHead(
          attention=self.head_attention, num_heads=self.head_num_heads,
          mlp_layers=self.head_mlp_layers, num_classes=self.head_num_classes, name="head")

  def __call__(self, clips, train: bool):
    features = self.backbone_net(clips, train=train)
    z = self.projection(features, train=train)
    return {"features": features, "z": z}

  def embed(self, clips, train: bool = False):
    """Backbone features only: what linear evaluation uses, [N, F] float32."""
    return self.backbone_net(clips, train=train)

  def relate(self, z_i, z_j):
    """phi(z_i, z_j) on head inputs (`corp_jax.heads.relation_inputs`): [..., d] -> [..., C]."""
    return self.head(z_i, z_j)

  def relate_all(self, z):
    """phi for every ordered pair of head inputs: z [M, d] -> [M, M, C]."""
    return self.head.all_pairs(z)

  def init_all(self, clips):
    out = self(clips, train=False)
    if self.head_num_classes:
      self.relate(out["z"], out["z"])
    return out


def model_from_config(model_cfg, num_classes: int) -> CorpModel:
  """Builds CorpModel from `config.model` and the objective's number of relation classes."""
  dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
  if model_cfg.dtype not in dtypes:
    raise ValueError(f"config.model.dtype must be one of {sorted(dtypes)}, got {model_cfg.dtype!r}")
  return CorpModel(
      backbone=model_cfg.backbone,
      dtype=dtypes[model_cfg.dtype],
      conv_impl=model_cfg.conv_impl,
      stem_space_to_depth=model_cfg.get("stem_space_to_depth", False),
      bn_impl=model_cfg.get("bn_impl", "auto"),
      remat=model_cfg.remat,
      projection_hidden=tuple(model_cfg.projection_hidden),
      projection_dim=model_cfg.projection_dim,
      head_attention=model_cfg.head_attention,
      head_num_heads=model_cfg.head_num_heads,
      head_mlp_layers=model_cfg.head_mlp_layers,
      head_num_classes=num_classes,
      bn_momentum=model_cfg.bn_momentum,
  )
