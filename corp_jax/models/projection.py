"""Nonlinear projection head g: h -> z (paper Sec. 3.1: 3 hidden layers of 2048).

Contract (docs/CONTRACTS.md):
  `ProjectionMLP(hidden_dims=(2048, 2048, 2048), out_dim=128, dtype, bn_axis_name, bn_momentum)`;
  `__call__(h: [N, F], train: bool) -> z: [N, out_dim]` float32.
Hidden layers are Dense (no bias; BN follows) -> BatchNorm -> ReLU; the last layer is a plain
Dense with bias and no BN and no normalisation. Keeping the bias matters for the order task:
z needs a component of consistent sign so that the anti-symmetric relation term
Px*Qy - Qx*Py does not flip sign from video to video (docs/DESIGN_NOTES.md, "Why the order task is
slow to start"); losses that want unit vectors (NT-Xent) normalise z themselves.
Parameters are float32; computation runs in `dtype`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class ProjectionMLP(nn.Module):
  """MLP projection head; see the module docstring.

  Attributes:
    hidden_dims: widths of the Dense+BN+ReLU hidden layers (may be empty: a linear head).
    out_dim: d, the size of z.
    dtype: compute dtype (float32 or bfloat16); parameters stay float32.
    bn_axis_name: mapped axis for BN statistics inside shard_map (None under SPMD jit).
    bn_momentum: running-average decay of the BN statistics.
  """
  hidden_dims: Sequence[int] = (2048, 2048, 2048)
  out_dim: int = 128
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    """h: [N, F] -> z: [N, out_dim] float32."""
    if h.ndim != 2:
      raise ValueError(f"ProjectionMLP: expected features of shape [N, F], got {h.shape}")
    if self.out_dim < 1 or any(int(d) < 1 for d in self.hidden_dims):
      raise ValueError(f"ProjectionMLP: hidden_dims={tuple(self.hidden_dims)} and "
                       f"out_dim={self.out_dim} must be positive")
    x = h.astype(self.dtype)
    for i, width in enumerate(self.hidden_dims):
      x = nn.Dense(width, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                   name=f"hidden{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5,
                       dtype=self.dtype, param_dtype=jnp.float32, axis_name=self.bn_axis_name,
                       name=f"bn{i}")(x)
      x = nn.relu(x)
    z = nn.Dense(self.out_dim, use_bias=True, dtype=self.dtype, param_dtype=jnp.float32,
                 name="output")(x)
    return z.astype(jnp.float32)
