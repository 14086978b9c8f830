"""The pretraining objectives: which relation head they need and how their loss is formed.

Each objective maps the projected clips `z: [B, K, d]` and their start frames `starts: [B, K]`
to a scalar loss and a metrics dict, calling the relation head through `relate` /
`relate_all` callables (closures over the model parameters). The loss math itself lives in
`corp_jax.losses` as pure functions; this module only arranges the arrays.

  simclr        NT-Xent over 2B clips (CVRL baseline), K = 2, no head.
  corp_f        Eq. 5–6: InfoNCE + 2-way order loss on the positive pairs, K = 2.
  corp_m        Section 3.2: 3-way (P1/P2/P3) over all clip pairs of every video pair in a group.
  order_only    Table 6a: 2-way order loss on same-video pairs (CORP_m layout).
  contrast_only Table 6a: 2-way same/different-video loss on all pairs (CORP_m layout).

For the group objectives the batch is reshaped `[B, K] -> [B/g, g·K]` with g = group_size
videos per group; the train step keeps groups inside one device (the paper counts video
pairs "within each GPU"), so g must divide the per-device batch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from corp_jax import losses


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  head_classes: int  # 0 = no relation head
  fixed_num_clips: int | None  # None = any K >= 2
  grouped: bool


OBJECTIVES = {
    "simclr": Objective("simclr", 0, 2, False),
    "corp_f": Objective("corp_f", 2, 2, False),
    "corp_m": Objective("corp_m", 3, None, True),
    "order_only": Objective("order_only", 2, None, True),
    "contrast_only": Objective("contrast_only", 2, None, True),
}


def get_objective(name: str) -> Objective:
  if name not in OBJECTIVES:
    raise ValueError(f"config.objective must be one of {sorted(OBJECTIVES)}, got {name!r}")
  return OBJECTIVES[name]


def validate(objective: Objective, num_clips: int, per_device_batch: int, group_size: int):
  """Raises a clear error when K or the group size does not fit the objective."""
  if objective.fixed_num_clips is not None and num_clips != objective.fixed_num_clips:
    raise ValueError(
        f"objective {objective.name!r} needs config.data.num_clips = "
        f"{objective.fixed_num_clips}, got {num_clips}")
  if num_clips < 2:
    raise ValueError(f"config.data.num_clips must be >= 2 for {objective.name!r}, got {num_clips}")
  if objective.grouped:
    if group_size < 2:
      raise ValueError(f"config.loss.group_size must be >= 2 videos, got {group_size}")
    if per_device_batch % group_size:
      raise ValueError(
          f"config.loss.group_size={group_size} must divide the per-device batch "
          f"{per_device_batch} so that video pairs are counted within a device")


def l2_normalize(z, eps: float = 1e-12):
  z = z.astype(jnp.float32)
  return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), eps))


def relation_inputs(z):
  """What the relation head sees: √d-scaled unit vectors of z [..., d].

  Components O(1) whatever d is, so the head's products (Eq. 8) and logits do not start
  vanishingly small (a 1/d start slowed the order task, which begins at a saddle; see
  docs/DESIGN_NOTES.md). The InfoNCE part normalises z itself.
  """
  return l2_normalize(z) * jnp.sqrt(jnp.float32(z.shape[-1]))


def corp_f_order_logits(z, relate):
  """Eq. 4's order logits of CORP_f: z [B, 2, d] -> [B, 2, C] with
  order_logits[b, a] = φ(z[b, a], z[b, 1 − a]) on `relation_inputs(z)`."""
  zn = relation_inputs(z)
  return jnp.stack([relate(zn[:, 0], zn[:, 1]), relate(zn[:, 1], zn[:, 0])], axis=1)


def compute_loss(objective: Objective, z, starts, *, relate, relate_all,
                 temperature: float, group_size: int, z_reversed=None):
  """Loss and metrics of one batch. z: [B, K, d] float32; starts: [B, K] int32.

  z_reversed: optional [B, K, d] projections of the time-reversed clips (not in the paper;
  `loss.reversed_negatives`). simclr, corp_f: extra negatives of the InfoNCE term. Grouped
  objectives: each group also holds the reversed copy of each of its videos as a video of
  its own (clip order flipped), so a clip and its reversal form a different-video (P1) pair.
  """
  extra = None if z_reversed is None else z_reversed.reshape(-1, z_reversed.shape[-1])
  if objective.name == "simclr":
    return losses.nt_xent(z, temperature=temperature, extra_negatives=extra)
  if objective.name == "corp_f":  # the order label comes from starts inside
    return losses.corp_f_loss(z, starts, corp_f_order_logits(z, relate),
                              temperature=temperature, extra_negatives=extra)
  zn = relation_inputs(z)
  batch, num_clips, dim = zn.shape
  groups = batch // group_size
  zg = zn.reshape(groups, group_size * num_clips, dim)
  starts_g = starts.reshape(groups, group_size * num_clips)
  videos = group_size
  if z_reversed is not None:
    # Played backwards, a clip starting earlier ends later: negated starts keep every order.
    zg = jnp.concatenate(
        [zg, relation_inputs(z_reversed).reshape(groups, group_size * num_clips, dim)], 1)
    starts_g = jnp.concatenate([starts_g, -starts_g], 1)
    videos = 2 * group_size
  pair_logits = jax.vmap(relate_all)(zg)
  video_index = jnp.broadcast_to(
      jnp.repeat(jnp.arange(videos, dtype=jnp.int32), num_clips), (groups, videos * num_clips))
  loss_fn = {
      "corp_m": losses.corp_m_loss,
      "order_only": losses.order_only_loss,
      "contrast_only": losses.contrast_only_loss,
  }[objective.name]
  return loss_fn(pair_logits, video_index, starts_g)
