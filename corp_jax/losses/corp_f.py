"""CORP_f loss (Sec. 3.3, Eq. 5-6): (4B-2)-way classification = InfoNCE + 2-way order CE.

For anchor clip i among the 2B clips, the (4B-2) classes are (k, o) with k != i and o in
{earlier, later}; the class probability is Prob_ik(not P1) * Prob_ik(o | not P1) with
Prob_ik(not P1) from Eq. 5 and Prob_ik(o | not P1) = softmax(phi(z_i, z_k))_o (Eq. 4). Because
sum_o softmax(phi(z_i, z_k))_o = 1, the normaliser over all (k, o) is the NCE normaliser: phi of
the negatives cancels and the cross entropy splits exactly into
    -log Prob_{i,partner}(not P1) - log softmax(phi(z_i, z_partner))_{true order}      (Eq. 6).
So only the positive pairs' order logits are needed.

Conventions (docs/CONTRACTS.md): order_logits[b, a] = phi(z[b, a], z[b, 1 - a]); class 0 = the
first argument (clip a) is earlier, class 1 = it is later. The true order comes from `starts`,
never from the position a. L_total = 1/B sum_b L_b, where L_b sums the NCE and the order terms
of both directions (a = 0, 1).
"""

from typing import Any, Dict, Tuple

import jax.numpy as jnp
import optax

from corp_jax.losses import contrastive
from corp_jax.losses import metrics as metrics_lib

Array = Any


def order_labels(starts: Array) -> Tuple[Array, Array]:
  """2-way order targets from start frames.

  Args:
    starts: [B, 2] start frame of each clip.

  Returns:
    (labels [B, 2] int32, valid [B, 2] bool): labels[b, a] = 0 if clip a starts before clip
    1 - a, 1 if after; valid is false where the two starts are equal (order undefined).
  """
  other = starts[:, ::-1]
  labels = (starts > other).astype(jnp.int32)
  return labels, starts != other


def corp_f_loss(z: Array, starts: Array, order_logits: Array, temperature: float = 0.1,
                extra_negatives: Array | None = None) -> Tuple[Array, Dict[str, Array]]:
  """CORP_f loss, Eq. 6 with L_total = 1/B sum_b L_b.

  Args:
    z: [B, 2, d] projections of two clips per video (L2-normalised inside for Eq. 5).
    starts: [B, 2] start frames; the only source of the order label.
    order_logits: [B, 2, 2], order_logits[b, a] = phi(z[b, a], z[b, 1 - a]) (Eq. 4).
    temperature: tau of Eq. 5.
    extra_negatives: optional [N, d] added to every anchor's NCE denominator (not in the
      paper; `contrastive.info_nce_terms`).

  Returns:
    (loss, metrics). If starts[b, 0] == starts[b, 1], the two order terms of video b are masked
    out (its NCE terms stay) and the sum is still divided by B. metrics: 'loss', 'nce_loss' and
    'order_loss' (the two parts, summing to 'loss'), 'contrast_top1', 'order_acc' (over valid
    directions), 'order_valid_fraction'.
  """
  contrastive.check_clip_pairs(z)
  contrastive.check_temperature(temperature)
  b = z.shape[0]
  if starts.shape != (b, 2):
    raise ValueError(f"starts must have shape [B, 2] = {(b, 2)}, got {starts.shape}")
  if order_logits.shape != (b, 2, 2):
    raise ValueError(f"order_logits must have shape [B, 2, 2] = {(b, 2, 2)}, got "
                     f"{order_logits.shape}")

  nce, similarity = contrastive.info_nce_terms(z, temperature, extra_negatives)
  labels, valid = order_labels(starts)
  order_ce = optax.softmax_cross_entropy_with_integer_labels(
      order_logits.astype(jnp.float32), labels)
  order_ce = jnp.where(valid, order_ce, 0.0)  # equal starts: no order to learn

  nce_loss = jnp.sum(nce) / b
  order_loss = jnp.sum(order_ce) / b
  loss = nce_loss + order_loss
  metrics = {
      "loss": loss,
      "nce_loss": nce_loss,
      "order_loss": order_loss,
      "contrast_top1": metrics_lib.contrast_top1(similarity, contrastive.positive_mask(b)),
      "order_acc": metrics_lib.order_accuracy(order_logits, labels, valid),
      "order_valid_fraction": jnp.mean(valid.astype(jnp.float32)),
  }
  return loss, metrics
