"""Same-video order on held-out videos: the relation head of a pretrained model ordering clips
of the *test* videos, from the views the linear probe already extracts.

The pretraining's own order accuracy (`order_acc` of metrics.jsonl) is measured on training
batches, so it mixes a general sense of order with order learned per training video (4,000
videos seen 80 times each in 10,000 steps of 32). This measure asks the model's relation
head to order two clips of one video it never trained on. The clips are the linear probe's
test views (`eval.num_clips` clip starts increasing with the clip index, evenly spaced over
the video, x `eval.num_crops` spatial crops; view v = clip * crops + crop): for every video,
crop and pair of clips a < b, both presentations (a, b) and (b, a). Views with identical
features (a video too short for distinct starts) are skipped. The head sees what it saw in
pretraining: the backbone feature h (BatchNorm in inference mode), the projection z, the head
input `heads.relation_inputs(z)`. Its decision is P2 against P3 for CORP_m (Eq. 4), class
"i earlier" against "j earlier" for CORP_f and order_only (Eq. 2), as in the training metric.
Chance is 0.5.

The same measure on as many *training* videos (their views made the same way) is the
comparison: far above the test figure means order was learned per video. The views are not
the training clips (fixed positions spanning the video, crops of the short side resized to
S * 256 / 224), so the figures compare models and splits, not the training metric.

Contract:
  `HeadOrder(pretrain_workdir)`: `.applies` (False for an objective without relation head);
      `.score(features [N, V, F], num_clips, num_crops) -> {'accuracy', 'pairs',
      'by_clip_gap': {gap: accuracy}}` (gap = b - a in clip indices).
  `pair_order_accuracy(head_inputs [N, C, K, d], distinct [N, C, C, K], earlier) -> dict`:
      the counting, for any `earlier(x [M, d], y [M, d]) -> [M]` (> 0: x earlier).
  `first_video_views(batches, fn, num_videos) -> {'outputs': [n, V, F], 'label', 'video_id'}`:
      `fn` on the views of the first `num_videos` real videos of an evaluation stream.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np


def pair_order_accuracy(head_inputs: np.ndarray, distinct: np.ndarray,
                        earlier: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict:
  """head_inputs [N, C, K, d] (video, clip, crop); distinct[n, a, b, k]: clips a and b of
  video n, crop k, differ. Both presentations of every distinct pair a < b are scored."""
  num_clips = head_inputs.shape[1]
  right_by_gap = {}
  for gap in range(1, num_clips):
    a = np.arange(num_clips - gap)
    b = a + gap
    keep = distinct[:, a, b, :]  # [N, P, K]
    if not keep.any():
      continue
    x = head_inputs[:, a][keep]  # [M, d]: the earlier clip
    y = head_inputs[:, b][keep]
    right = np.concatenate([np.asarray(earlier(x, y)) > 0, np.asarray(earlier(y, x)) < 0])
    right_by_gap[gap] = right
  if not right_by_gap:
    return {"accuracy": float("nan"), "pairs": 0, "by_clip_gap": {}}
  every = np.concatenate(list(right_by_gap.values()))
  return {"accuracy": float(np.mean(every)), "pairs": int(len(every)),
          "by_clip_gap": {gap: float(np.mean(r)) for gap, r in right_by_gap.items()}}


def _distinct_views(features: np.ndarray, num_clips: int, num_crops: int) -> np.ndarray:
  """[N, C, C, K]: whether clip a and clip b (same crop) of a video have different features."""
  f = features.reshape(features.shape[0], num_clips, num_crops, -1)
  diff = np.abs(f[:, :, None] - f[:, None, :]).max(-1)  # [N, C, C, K]
  scale = np.abs(f).max(-1)[:, :, None] + np.abs(f).max(-1)[:, None, :]
  return diff > 1e-6 * np.maximum(scale, 1e-12)


class HeadOrder:
  """The relation head of a pretraining workdir, applied to backbone features."""

  def __init__(self, pretrain_workdir: str, step: int | None = None):
    from corp_jax.tools import order_probe  # pylint: disable=g-import-not-at-top
    self.model = order_probe.ProbedModel(pretrain_workdir, step)
    self.applies = self.model.has_head

  def score(self, features: np.ndarray, num_clips: int, num_crops: int) -> dict:
    """features [N, V, F] of V = num_clips * num_crops views per video (module docstring)."""
    features = np.asarray(features, np.float32)
    if features.ndim != 3 or features.shape[1] != num_clips * num_crops:
      raise ValueError(f"features must be [videos, {num_clips} clips x {num_crops} crops, "
                       f"F], got shape {features.shape}")
    if num_clips < 2:
      raise ValueError(f"ordering clips needs eval.num_clips >= 2, got {num_clips}")
    n = features.shape[0]
    head_in = self.model.head_inputs(features.reshape(n * num_clips * num_crops, -1))
    head_in = head_in.reshape(n, num_clips, num_crops, -1)
    return pair_order_accuracy(head_in, _distinct_views(features, num_clips, num_crops),
                               self.model.earlier_score)


def first_video_views(batches: Iterator[dict], fn: Callable[[np.ndarray], np.ndarray],
                      num_videos: int) -> dict:
  """`sharded_views.map_views` (fn on every view of every real video) over the first
  `num_videos` real videos of an evaluation stream; reads no batch past the one holding the
  last of them."""
  from corp_jax.evaluate import sharded_views  # pylint: disable=g-import-not-at-top

  def leading_batches():
    have = 0
    for batch in batches:
      yield batch
      have += int(np.sum(batch["mask"]))
      if have >= num_videos:
        return

  views = sharded_views.map_views(leading_batches(), fn)
  return {key: value[:num_videos] for key, value in views.items()}
