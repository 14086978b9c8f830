"""The train state and its creation, replicated over the mesh."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from corp_jax.train import mesh as mesh_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  def as_dict(self) -> dict:
    """The checkpointed pytree (plain dict, so Orbax needs no custom types)."""
    return {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
            "opt_state": self.opt_state}

  @classmethod
  def from_dict(cls, d: dict) -> "TrainState":
    return cls(step=d["step"], params=d["params"], batch_stats=d["batch_stats"],
               opt_state=d["opt_state"])


INIT_SPATIAL_SIZE = 32


def create_train_state(model, tx, rng, clip_shape, mesh) -> TrainState:
  """Initialises parameters, replicated on the mesh. clip_shape: (T, H, W, 3).

  Parameter shapes do not depend on the spatial size (global pooling), so the dummy clip is
  at most 32×32 and `init` runs eagerly: compiling a whole forward pass only to create
  parameters cost more than the train step's own compilation on CPU.
  """
  t, h, w, c = clip_shape
  dummy = jnp.zeros((1, t, min(h, INIT_SPATIAL_SIZE), min(w, INIT_SPATIAL_SIZE), c),
                    jnp.float32)
  variables = model.init(rng, dummy, method=model.init_all)
  params = variables["params"]
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats=variables.get("batch_stats", {}),
                     opt_state=tx.init(params))
  return jax.device_put(state, mesh_lib.replicated(mesh))


def count_params(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
