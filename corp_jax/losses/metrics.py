"""Pure training metrics for the CORP losses (returned inside the losses' metrics dicts).

* `contrast_top1(scores, positive_mask)`: fraction of anchors whose highest-scoring other clip is
  a positive (same video). Used by nt_xent / corp_f (cosine similarity) and corp_m (log-odds of
  "same video").
* `order_accuracy(order_logits, labels, mask)`: 2-way order accuracy on same-video pairs only;
  0.5 is chance (docs/DESIGN_NOTES.md: watch it on its own, the P1 pairs dominate pair accuracy).
* `weighted_accuracy(logits, labels, weights)`: `pair_acc`, clip pairs classified right, each
  clip pair counted once per video pair it belongs to (as the paper enumerates them).
* `all_correct_fraction(correct, considered, video_index)`: `total_acc` (paper Fig. 3), the
  fraction of video pairs whose considered clip pairs are ALL right.
* `weighted_class_fraction(labels, weights, cls)`: e.g. the share of P1 pairs (32/56 = 0.571
  for K = 4), the accuracy of a predictor that always says "different videos".

All take float/bool/int arrays and return float32 scalars; an empty mask gives 0.
"""

from typing import Any

import jax
import jax.numpy as jnp

Array = Any


def masked_mean(values: Array, mask: Array) -> Array:
  """Mean of `values` where `mask` is true (0 when the mask is empty). Same shapes."""
  mask = mask.astype(jnp.float32)
  return jnp.sum(values.astype(jnp.float32) * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def contrast_top1(scores: Array, positive_mask: Array) -> Array:
  """Top-1 retrieval accuracy.

  Args:
    scores: [..., N, N] float, scores[..., i, j] = how much j is believed to match anchor i.
    positive_mask: [..., N, N] bool, true where j is a positive of i (the diagonal is ignored).

  Returns:
    Fraction of anchors (rows with at least one positive) whose argmax over j != i is positive.
  """
  if scores.shape != positive_mask.shape or scores.ndim < 2 or scores.shape[-1] != scores.shape[-2]:
    raise ValueError(
        f"contrast_top1: scores and positive_mask must both be [..., N, N], got "
        f"{scores.shape} and {positive_mask.shape}")
  n = scores.shape[-1]
  eye = jnp.eye(n, dtype=bool)
  scores = jnp.where(eye, -jnp.inf, scores.astype(jnp.float32))
  positive_mask = positive_mask & ~eye
  best = jnp.argmax(scores, axis=-1)
  hit = jnp.take_along_axis(positive_mask, best[..., None], axis=-1)[..., 0]
  has_positive = jnp.any(positive_mask, axis=-1)
  return masked_mean(hit, has_positive)


def order_accuracy(order_logits: Array, labels: Array, mask: Array) -> Array:
  """2-way order accuracy.

  Args:
    order_logits: [..., 2] float; class 0 = first argument earlier, 1 = first argument later.
    labels: [...] int in {0, 1}.
    mask: [...] bool, the pairs to count (same-video pairs with distinct starts).
  """
  predicted = jnp.argmax(order_logits, axis=-1)
  return masked_mean(predicted == labels, mask)


def weighted_accuracy(logits: Array, labels: Array, weights: Array) -> Array:
  """sum(w * [argmax logits == label]) / sum(w); logits [..., C], labels and weights [...]."""
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  weights = weights.astype(jnp.float32)
  return jnp.sum(weights * correct) / jnp.maximum(jnp.sum(weights), 1e-12)


def weighted_class_fraction(labels: Array, weights: Array, cls: int) -> Array:
  """sum(w * [label == cls]) / sum(w); labels, weights [...]."""
  weights = weights.astype(jnp.float32)
  return jnp.sum(weights * (labels == cls)) / jnp.maximum(jnp.sum(weights), 1e-12)


def _group_video_pair_counts(correct: Array, considered: Array, video: Array):
  """One group: (video pairs all right, video pairs) for correct, considered [M, M], video [M]."""
  m = video.shape[0]
  same = video[:, None] == video[None, :]
  different = ~same
  off_diagonal = ~jnp.eye(m, dtype=bool)
  wrong = (considered & ~correct).astype(jnp.float32)
  same_f = same.astype(jnp.float32)
  # A video pair (u, v) is spoiled by a wrong pair inside u, inside v, or between u and v.
  wrong_inside_clip = jnp.sum(wrong * (same & off_diagonal), axis=1)        # [M]
  video_has_wrong_inside = (same_f @ wrong_inside_clip) > 0                  # [M], per clip's video
  wrong_between = wrong * different
  wrong_between = wrong_between + wrong_between.T                            # either direction
  pair_has_wrong_between = (same_f @ wrong_between @ same_f) > 0             # [M, M]
  spoiled = (video_has_wrong_inside[:, None] | video_has_wrong_inside[None, :]
             | pair_has_wrong_between)
  # Each unordered video pair (u, v) appears as 2 * n_u * n_v ordered different-video clip pairs.
  clips_per_video = jnp.sum(same_f, axis=1)
  share = different / (clips_per_video[:, None] * clips_per_video[None, :]) / 2.0
  return jnp.sum(share * ~spoiled), jnp.sum(share)


def all_correct_fraction(correct: Array, considered: Array, video_index: Array) -> Array:
  """total_acc: fraction of video pairs whose considered clip pairs are all classified right.

  Args:
    correct: [G, M, M] bool, clip pair (i, j) of group g classified right.
    considered: [G, M, M] bool, clip pairs that take part (false on the diagonal).
    video_index: [G, M] int, the video of each clip; video pairs are formed within a group.

  Returns:
    (video pairs with no wrong considered clip pair) / (video pairs), over all groups.
  """
  good, total = jax.vmap(_group_video_pair_counts)(correct, considered, video_index)
  return jnp.sum(good) / jnp.maximum(jnp.sum(total), 1e-12)
