"""The pretraining objectives: one table, each entry carrying its loss and what that loss needs.

An `Objective` maps the projected clips `z: [B, K, d]` and their start frames `starts: [B, K]`
to a scalar loss and a metrics dict (`Objective.loss`), calling the relation head through
`relate` / `relate_all` callables (closures over the model parameters). The loss math lives in
`corp_jax.losses` as pure functions and what the head sees in `corp_jax.heads`; this module
only arranges the arrays. The configs (`corp_jax/config_defaults.py`) read their objective
names, default K and grouping from `OBJECTIVES`.

  simclr        NT-Xent over 2B clips (CVRL baseline), K = 2, no head.
  corp_f        Eq. 5–6: InfoNCE + 2-way order loss on the positive pairs, K = 2.
  corp_m        Section 3.2: 3-way (P1/P2/P3) over all clip pairs of every video pair in a group.
  order_only    Table 6a: 2-way order loss on same-video pairs (CORP_m layout).
  contrast_only Table 6a: 2-way same/different-video loss on all pairs (CORP_m layout).

For the group objectives the batch is reshaped `[B, K] -> [B/g, g·K]` with g = group_size
videos per group; the train step keeps groups inside one device (the paper counts video
pairs "within each GPU"), so g must divide the per-device batch. `config.loss.group_size = 0`
means the whole per-device batch, the paper's "within each GPU" read literally
(`resolve_group_size`).

Not in the paper: `z_reversed` (optional [B, K, d], the projections of the time-reversed clips,
`loss.reversed_negatives`). simclr, corp_f: extra negatives of the InfoNCE term. Grouped
objectives: each group also holds the reversed copy of each of its videos as a video of its
own (clip order flipped), so a clip and its reversal form a different-video (P1) pair. Also
not in the paper: `order_weight` (`loss.order_weight`), CORP_m's factor on its P2/P3 terms.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp

from corp_jax import heads
from corp_jax import losses

# loss(z, starts, *, relate, relate_all, temperature, group_size, z_reversed, order_weight)
#   -> (loss, metrics)
LossFn = Callable[..., tuple]


def _flat_negatives(z_reversed):
  return None if z_reversed is None else z_reversed.reshape(-1, z_reversed.shape[-1])


def _simclr_loss(z, starts, *, relate, relate_all, temperature, group_size, z_reversed,
                 order_weight):
  del starts, relate, relate_all, group_size, order_weight  # no order, no head
  return losses.nt_xent(z, temperature=temperature, extra_negatives=_flat_negatives(z_reversed))


def _corp_f_loss(z, starts, *, relate, relate_all, temperature, group_size, z_reversed,
                 order_weight):
  del relate_all, group_size, order_weight  # validate() allows only 1.0 here
  # The order label comes from starts inside the loss, never from the clip's position.
  return losses.corp_f_loss(z, starts, heads.corp_f_order_logits(z, relate),
                            temperature=temperature,
                            extra_negatives=_flat_negatives(z_reversed))


def _grouped(pair_loss: Callable, weighs_order: bool = False) -> LossFn:
  """A loss over groups of g videos: `pair_loss(pair_logits [G, M, M, C], video_index, starts)`
  (plus `order_weight=` if weighs_order)."""

  def loss(z, starts, *, relate, relate_all, temperature, group_size, z_reversed, order_weight):
    del relate, temperature
    batch, num_clips, dim = z.shape
    groups = batch // group_size
    zg = z.reshape(groups, group_size * num_clips, dim)
    starts_g = starts.reshape(groups, group_size * num_clips)
    videos = group_size
    if z_reversed is not None:
      # Played backwards, a clip starting earlier ends later: negated starts keep every order.
      zg = jnp.concatenate([zg, z_reversed.reshape(groups, group_size * num_clips, dim)], 1)
      starts_g = jnp.concatenate([starts_g, -starts_g], 1)
      videos = 2 * group_size
    video_index = jnp.broadcast_to(
        jnp.repeat(jnp.arange(videos, dtype=jnp.int32), num_clips), (groups, videos * num_clips))
    extra = {"order_weight": order_weight} if weighs_order else {}
    return pair_loss(heads.group_pair_logits(zg, relate_all), video_index, starts_g, **extra)

  return loss


@dataclasses.dataclass(frozen=True)
class Objective:
  """One pretraining objective.

  Attributes:
    name: the value of `config.objective`.
    loss: `(z, starts, *, relate, relate_all, temperature, group_size, z_reversed,
      order_weight) -> (loss, metrics)`; see `compute_loss`.
    head_classes: C, the relation head's number of classes; 0 = no relation head.
    default_num_clips: K of the paper presets (`config.data.num_clips`; the demo uses 2).
    fixed_num_clips: True if K must be exactly `default_num_clips`; False: any K >= 2.
    grouped: True if the loss counts video pairs in groups of `config.loss.group_size` videos.
    weighs_order: True if `config.loss.order_weight` (P2/P3 against P1) applies.
  """
  name: str
  loss: LossFn
  head_classes: int
  default_num_clips: int
  fixed_num_clips: bool
  grouped: bool
  weighs_order: bool = False

  @property
  def uses_relation_head(self) -> bool:
    return self.head_classes > 0


def _grouped_objective(name: str, pair_loss: Callable, head_classes: int,
                       weighs_order: bool = False) -> Objective:
  """A Section 3.2-layout objective: groups of videos, K = 4 in the paper presets."""
  return Objective(name, _grouped(pair_loss, weighs_order), head_classes=head_classes,
                   default_num_clips=4, fixed_num_clips=False, grouped=True,
                   weighs_order=weighs_order)


OBJECTIVES = {
    o.name: o for o in (
        Objective("simclr", _simclr_loss, head_classes=0, default_num_clips=2,
                  fixed_num_clips=True, grouped=False),
        Objective("corp_f", _corp_f_loss, head_classes=2, default_num_clips=2,
                  fixed_num_clips=True, grouped=False),
        _grouped_objective("corp_m", losses.corp_m_loss, head_classes=3, weighs_order=True),
        _grouped_objective("order_only", losses.order_only_loss, head_classes=2),
        _grouped_objective("contrast_only", losses.contrast_only_loss, head_classes=2),
    )
}


def get_objective(name: str) -> Objective:
  if name not in OBJECTIVES:
    raise ValueError(f"config.objective must be one of {sorted(OBJECTIVES)}, got {name!r}")
  return OBJECTIVES[name]


def resolve_group_size(group_size: int, per_device_batch: int) -> int:
  """g, the videos per group: `config.loss.group_size`, with 0 = the whole per-device batch.

  Raises ValueError for a group size that is not an integer >= 0.
  """
  if isinstance(group_size, bool) or int(group_size) != group_size or group_size < 0:
    raise ValueError(f"config.loss.group_size must be an integer >= 2, or 0 for the whole "
                     f"per-device batch, got {group_size!r}")
  return int(group_size) or int(per_device_batch)


def validate(objective: Objective, num_clips: int, per_device_batch: int, group_size: int,
             order_weight: float = 1.0):
  """Raises a clear error when K, the group size or the order weight does not fit.

  group_size as in the config (0 = the whole per-device batch, `resolve_group_size`).
  """
  losses.check_order_weight(order_weight)
  if order_weight != 1.0 and not objective.weighs_order:
    raise ValueError(
        f"config.loss.order_weight={order_weight} weighs CORP_m's P2/P3 pairs against P1; "
        f"objective {objective.name!r} has no such balance, keep it at 1.0")
  if objective.fixed_num_clips and num_clips != objective.default_num_clips:
    raise ValueError(
        f"objective {objective.name!r} needs config.data.num_clips = "
        f"{objective.default_num_clips}, got {num_clips}")
  if num_clips < 2:
    raise ValueError(f"config.data.num_clips must be >= 2 for {objective.name!r}, got {num_clips}")
  if objective.grouped:
    configured = group_size
    group_size = resolve_group_size(group_size, per_device_batch)
    if group_size < 2:
      raise ValueError(f"config.loss.group_size must be >= 2 videos, got {group_size}"
                       + (f" (0 = the per-device batch, {per_device_batch} here)"
                          if configured == 0 else ""))
    if per_device_batch % group_size:
      raise ValueError(
          f"config.loss.group_size={group_size} must divide the per-device batch "
          f"{per_device_batch} so that video pairs are counted within a device; use a "
          f"--config.optim.batch_size that is a multiple of {group_size} x the number of devices, "
          f"or a smaller --config.loss.group_size")


def compute_loss(objective: Objective, z, starts, *, relate, relate_all,
                 temperature: float, group_size: int, z_reversed=None,
                 order_weight: float = 1.0):
  """Loss and metrics of one batch. z: [B, K, d] float32; starts: [B, K] int32.

  relate(z_i, z_j) -> [..., C] and relate_all(z: [M, d]) -> [M, M, C] apply the relation head
  to head inputs (`corp_jax.heads.relation_inputs`); objectives without a head ignore them.
  z_reversed: optional [B, K, d], see the module docstring. order_weight: CORP_m's factor on
  its P2/P3 terms (`corp_jax.losses.corp_m`; 1.0 = the paper).
  """
  return objective.loss(z, starts, relate=relate, relate_all=relate_all,
                        temperature=temperature, group_size=group_size, z_reversed=z_reversed,
                        order_weight=order_weight)
