"""InfoNCE over 2B clips (SimCLR / CVRL NT-Xent) and the pieces CORP_f reuses.

Layout: z [B, 2, d] holds two clips per video; clip (b, a) is flattened to row 2b + a, so the
positive of row r is row r ^ 1. z is L2-normalised inside, similarities are divided by the
temperature tau (0.1, Sec. 3.3 after CVRL) and the anchor itself is excluded (Eq. 5: k != i).

`nt_xent` returns the SimCLR mean over the 2B anchors; CORP_f (Eq. 6) instead sums both
directions per video and divides by B, i.e. its NCE part is twice `nt_xent`.
"""

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import optax

from corp_jax.losses import metrics as metrics_lib

Array = Any


def l2_normalize(z: Array, axis: int = -1, eps: float = 1e-12) -> Array:
  """z / max(||z||, eps) along `axis` (eps keeps the gradient finite at z = 0).

  The one unit-vector map of the package: the InfoNCE similarities (Eq. 5) and the relation
  head's inputs (`corp_jax.heads.relation.relation_inputs`) both use it.
  """
  squared_norm = jnp.sum(jnp.square(z), axis=axis, keepdims=True)
  return z * jax.lax.rsqrt(jnp.maximum(squared_norm, eps * eps))


def check_clip_pairs(z: Array, name: str = "z") -> None:
  """Raises ValueError unless z has shape [B, 2, d]."""
  if z.ndim != 3 or z.shape[1] != 2:
    raise ValueError(f"{name} must have shape [B, 2, d] (two clips per video), got {z.shape}")
  if z.shape[0] < 2:
    raise ValueError(f"{name} needs at least 2 videos for negatives, got B={z.shape[0]}")


def check_temperature(temperature: Any) -> None:
  """Raises ValueError unless temperature is a positive number (traced values pass through)."""
  if isinstance(temperature, jax.core.Tracer):
    return
  try:
    positive = float(temperature) > 0
  except (TypeError, ValueError):
    positive = False
  if not positive:
    raise ValueError(f"temperature must be a positive number, got {temperature!r}")


def similarity_logits(z: Array, temperature: float) -> Array:
  """Cosine similarities over 2B clips: z [B, 2, d] -> [2B, 2B] float32, z_i.z_k / tau.

  The diagonal (k = i) is -inf so that it drops out of every softmax (Eq. 5).
  """
  b, _, d = z.shape
  flat = l2_normalize(z.astype(jnp.float32).reshape(2 * b, d))
  logits = flat @ flat.T / temperature
  return jnp.where(jnp.eye(2 * b, dtype=bool), -jnp.inf, logits)


def positive_mask(num_videos: int) -> Array:
  """[2B, 2B] bool, true at (r, r ^ 1): the other clip of the same video."""
  rows = jnp.arange(2 * num_videos)
  return rows[None, :] == (rows ^ 1)[:, None]


def info_nce_terms(z: Array, temperature: float,
                   extra_negatives: Array | None = None) -> Tuple[Array, Array]:
  """Per-anchor -log Prob_{i, partner}(not P1) of Eq. 5.

  Args:
    z: [B, 2, d] projections (any scale; normalised here).
    temperature: tau.
    extra_negatives: optional [N, d] projections added to every anchor's denominator (not in
      the paper; e.g. the time-reversed copies of the clips, `loss.reversed_negatives`).

  Returns:
    (nce [B, 2] float32 with nce[b, a] the term of anchor (b, a), logits [2B, 2B]).
  """
  b = z.shape[0]
  logits = similarity_logits(z, temperature)
  candidates = logits  # the anchor itself is already excluded: -inf on the diagonal
  if extra_negatives is not None:
    anchors = l2_normalize(z.astype(jnp.float32).reshape(2 * b, -1))
    extra = anchors @ l2_normalize(extra_negatives.astype(jnp.float32)).T / temperature
    candidates = jnp.concatenate([logits, extra], axis=1)
  partner = jnp.arange(2 * b) ^ 1
  nce = optax.softmax_cross_entropy_with_integer_labels(candidates, partner)
  return nce.reshape(b, 2), logits


def nt_xent(z: Array, temperature: float = 0.1,
            extra_negatives: Array | None = None) -> Tuple[Array, Dict[str, Array]]:
  """SimCLR/CVRL InfoNCE loss over 2B clips.

  Args:
    z: [B, 2, d] projections of two clips per video (normalised inside).
    temperature: tau.

  Returns:
    (loss, metrics): loss = mean over the 2B anchors of -log softmax_k(z_i.z_k / tau)[partner];
    metrics {'loss', 'nce_loss', 'contrast_top1'}.
  """
  check_clip_pairs(z)
  check_temperature(temperature)
  nce, logits = info_nce_terms(z, temperature, extra_negatives)
  loss = jnp.mean(nce)
  top1 = metrics_lib.contrast_top1(logits, positive_mask(z.shape[0]))
  return loss, {"loss": loss, "nce_loss": loss, "contrast_top1": top1}
