"""CORP_m loss (Sec. 3.2) and the Table 6a ablations, computed from all-pairs logits.

Input layout: G groups (the caller reshapes the per-device batch; the paper counts video pairs
"within each GPU"), each of M clips from g videos. pair_logits[G, i, j] = phi(z_i, z_j) for every
ordered clip pair of the group, video_index[G, i] names clip i's video, starts[G, i] its start.

The paper enumerates the g(g-1)/2 video pairs of a group; a video pair with 2K clips has
4K^2 - 2K ordered clip pairs (i != j), each labelled P1 (different videos, class 0), P2 (same
video, first earlier, class 1) or P3 (same video, second earlier, class 2). The loss of a video
pair is the SUM of the cross entropies over its clip pairs; the final loss is the MEAN over all
video pairs of all groups.

Instead of looping over video pairs we weight each ordered clip pair of the group by the number
of video pairs that contain it: a different-video pair (i, j) belongs only to the video pair
{video(i), video(j)} (weight 1); a same-video pair belongs to every video pair that includes its
video, i.e. g - 1 of them (weight g - 1). Then
    loss = sum_groups sum_{i != j} w_ij CE_ij / sum_groups g(g-1)/2,
identical to the enumeration (tests/test_losses.py checks it by explicit loops). g is read
from video_index (number of distinct videos per group), so groups may have unequal K per video.
A same-video pair with equal starts has no order and gets weight 0; a group with one video has
no video pairs; if there are none at all the loss is 0.

Not in the paper: `order_weight` (`config.loss.order_weight`, 1.0 = the paper) multiplies the
same-video (P2/P3) terms, loss = different_video_loss + order_weight * same_video_loss. With K
clips per video the P1 pairs carry K/(K-1) times the total weight of the P2/P3 pairs (2x at
K = 2), so order_weight = K/(K-1) gives the two parts equal weight.
"""

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import optax

from corp_jax.losses import metrics as metrics_lib

Array = Any

P1_DIFFERENT, P2_FIRST_EARLIER, P3_SECOND_EARLIER = 0, 1, 2


def check_pair_inputs(name: str, pair_logits: Array, video_index: Array, starts: Array,
                      num_classes: int) -> None:
  """Raises ValueError unless the shapes are [G, M, M, C], [G, M], [G, M]."""
  if pair_logits.ndim != 4 or pair_logits.shape[1] != pair_logits.shape[2]:
    raise ValueError(f"{name}: pair_logits must be [G, M, M, {num_classes}], got "
                     f"{pair_logits.shape}")
  if pair_logits.shape[-1] != num_classes:
    raise ValueError(f"{name}: pair_logits needs {num_classes} classes in its last axis, got "
                     f"shape {pair_logits.shape}")
  group_shape = pair_logits.shape[:2]
  if video_index.shape != group_shape:
    raise ValueError(f"{name}: video_index must be [G, M] = {group_shape}, got "
                     f"{video_index.shape}")
  if starts.shape != group_shape:
    raise ValueError(f"{name}: starts must be [G, M] = {group_shape}, got {starts.shape}")


def pair_structure(video_index: Array, starts: Array) -> Dict[str, Array]:
  """Labels and masks of every ordered clip pair in each group.

  Args:
    video_index: [G, M] int. starts: [G, M] start frames.

  Returns:
    dict of [G, M, M] arrays: 'same_video' (i != j, same video), 'different_video',
    'ordered' (same video with distinct starts), 'first_earlier' (starts_i < starts_j),
    'labels' (3-way P1/P2/P3 as int32), and [G] 'num_videos', 'num_video_pairs' (float32).
  """
  m = video_index.shape[1]
  off_diagonal = ~jnp.eye(m, dtype=bool)
  same = video_index[:, :, None] == video_index[:, None, :]
  first_earlier = starts[:, :, None] < starts[:, None, :]
  distinct_starts = starts[:, :, None] != starts[:, None, :]
  same_video = same & off_diagonal
  # sum_i 1 / (clips of i's video) counts each video once.
  clips_per_video = jnp.sum(same, axis=2).astype(jnp.float32)
  num_videos = jnp.round(jnp.sum(1.0 / clips_per_video, axis=1))
  labels = jnp.where(same_video,
                     jnp.where(first_earlier, P2_FIRST_EARLIER, P3_SECOND_EARLIER),
                     P1_DIFFERENT).astype(jnp.int32)
  return {
      "same_video": same_video,
      "different_video": ~same,
      "ordered": same_video & distinct_starts,
      "first_earlier": first_earlier,
      "labels": labels,
      "num_videos": num_videos,
      "num_video_pairs": num_videos * (num_videos - 1) / 2,
  }


def video_pair_weights(structure: Dict[str, Array], include_different: bool,
                       same_video_mask: Array) -> Array:
  """[G, M, M] float32: how many video pairs of its group contain each clip pair.

  Different-video pairs count once (if include_different); pairs in same_video_mask count
  g - 1 times; all others 0.
  """
  same_weight = (structure["num_videos"] - 1.0)[:, None, None]
  weights = jnp.where(same_video_mask, same_weight, 0.0)
  if include_different:
    weights = weights + structure["different_video"].astype(jnp.float32)
  return weights


def check_order_weight(order_weight: float) -> None:
  """Raises ValueError unless order_weight is a finite number > 0."""
  if not isinstance(order_weight, (int, float)) or not 0.0 < float(order_weight) < float("inf"):
    raise ValueError(f"config.loss.order_weight must be a finite number > 0, got "
                     f"{order_weight!r}")


def _mean_over_video_pairs(per_pair: Array, weights: Array, structure: Dict[str, Array]):
  return jnp.sum(per_pair * weights) / jnp.maximum(jnp.sum(structure["num_video_pairs"]), 1.0)


def _shared_metrics(pair_logits, labels, weights, considered, video_index) -> Dict[str, Array]:
  correct = jnp.argmax(pair_logits, axis=-1) == labels
  return {
      "pair_acc": metrics_lib.weighted_accuracy(pair_logits, labels, weights),
      "total_acc": metrics_lib.all_correct_fraction(correct, considered, video_index),
  }


def corp_m_loss(pair_logits: Array, video_index: Array, starts: Array,
                order_weight: float = 1.0) -> Tuple[Array, Dict[str, Array]]:
  """CORP_m 3-way loss: mean over video pairs of the summed clip-pair CE (Sec. 3.2).

  Args:
    pair_logits: [G, M, M, 3], [g, i, j] = phi(z_i, z_j) (Eq. 2); classes P1, P2, P3.
    video_index: [G, M] int video of each clip. starts: [G, M] start frames.
    order_weight: factor on the P2/P3 terms (module docstring; 1.0 = the paper).

  Returns:
    (loss, metrics) with 'loss', 'different_video_loss' and 'same_video_loss' (the P1 and the
    P2/P3 parts, unweighted: loss = different + order_weight * same), 'pair_acc', 'total_acc',
    'order_acc' (P2 vs P3 logits on same-video pairs, chance 0.5), 'contrast_top1' (per clip,
    is the j != i with the highest log-odds of "same video" from its video), 'p1_fraction'.
  """
  check_pair_inputs("corp_m_loss", pair_logits, video_index, starts, 3)
  check_order_weight(order_weight)
  pair_logits = pair_logits.astype(jnp.float32)
  structure = pair_structure(video_index, starts)
  labels = structure["labels"]
  weights = video_pair_weights(structure, True, structure["ordered"])
  ce = optax.softmax_cross_entropy_with_integer_labels(pair_logits, labels)
  different = structure["different_video"]
  loss_weights = jnp.where(structure["ordered"], order_weight * weights, weights)
  loss = _mean_over_video_pairs(ce, loss_weights, structure)
  considered = different | structure["ordered"]
  same_video_log_odds = (jax.nn.logsumexp(pair_logits[..., 1:], axis=-1)
                         - pair_logits[..., P1_DIFFERENT])
  metrics = {
      "loss": loss,
      "different_video_loss": _mean_over_video_pairs(ce, weights * different, structure),
      "same_video_loss": _mean_over_video_pairs(ce, weights * ~different, structure),
      "order_acc": metrics_lib.order_accuracy(
          pair_logits[..., 1:], labels - P2_FIRST_EARLIER, structure["ordered"]),
      "contrast_top1": metrics_lib.contrast_top1(same_video_log_odds, structure["same_video"]),
      "p1_fraction": metrics_lib.weighted_class_fraction(labels, weights, P1_DIFFERENT),
  }
  metrics.update(_shared_metrics(pair_logits, labels, weights, considered, video_index))
  return loss, metrics


def order_only_loss(pair_logits: Array, video_index: Array,
                    starts: Array) -> Tuple[Array, Dict[str, Array]]:
  """Table 6a "order" ablation: 2-way order CE on same-video clip pairs only.

  Args:
    pair_logits: [G, M, M, 2]; class 0 = first clip earlier, 1 = first clip later.
    video_index, starts: [G, M] as in corp_m_loss.

  Returns:
    (loss, metrics): same video-pair weighting as corp_m_loss with the different-video pairs
    dropped; metrics 'loss', 'order_acc', 'pair_acc', 'total_acc' (over same-video pairs).
  """
  check_pair_inputs("order_only_loss", pair_logits, video_index, starts, 2)
  pair_logits = pair_logits.astype(jnp.float32)
  structure = pair_structure(video_index, starts)
  labels = (~structure["first_earlier"]).astype(jnp.int32)
  ordered = structure["ordered"]
  weights = video_pair_weights(structure, False, ordered)
  ce = optax.softmax_cross_entropy_with_integer_labels(pair_logits, labels)
  loss = _mean_over_video_pairs(ce, weights, structure)
  metrics = {"loss": loss,
             "order_acc": metrics_lib.order_accuracy(pair_logits, labels, ordered)}
  metrics.update(_shared_metrics(pair_logits, labels, weights, ordered, video_index))
  return loss, metrics


def contrast_only_loss(pair_logits: Array, video_index: Array,
                       starts: Array) -> Tuple[Array, Dict[str, Array]]:
  """Table 6a "contrast" ablation: 2-way same-video classification on all clip pairs.

  Args:
    pair_logits: [G, M, M, 2]; class 0 = different videos (P1), 1 = same video.
    video_index, starts: [G, M] as in corp_m_loss (starts are unused by the loss; equal starts
      are fine here since no order is asked).

  Returns:
    (loss, metrics): corp_m_loss's weighting over all i != j; metrics 'loss', 'pair_acc',
    'total_acc', 'contrast_top1', 'p1_fraction'.
  """
  check_pair_inputs("contrast_only_loss", pair_logits, video_index, starts, 2)
  pair_logits = pair_logits.astype(jnp.float32)
  structure = pair_structure(video_index, starts)
  same_video = structure["same_video"]
  labels = same_video.astype(jnp.int32)
  weights = video_pair_weights(structure, True, same_video)
  ce = optax.softmax_cross_entropy_with_integer_labels(pair_logits, labels)
  loss = _mean_over_video_pairs(ce, weights, structure)
  considered = same_video | structure["different_video"]
  metrics = {
      "loss": loss,
      "contrast_top1": metrics_lib.contrast_top1(
          pair_logits[..., 1] - pair_logits[..., 0], same_video),
      "p1_fraction": metrics_lib.weighted_class_fraction(labels, weights, 0),
  }
  metrics.update(_shared_metrics(pair_logits, labels, weights, considered, video_index))
  return loss, metrics
