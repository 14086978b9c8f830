"""Held-out order from the linear probe's views: the pair counting with stand-in heads, the
skipping of identical views, the early stop of the view reader, and the head inputs computed
from backbone features against the whole model's on a tiny pretrained CORP_m."""

import numpy as np
import pytest

from corp_jax.tools import view_order
from tests.train_helpers import tiny_config


def _clip_index_inputs(num_videos=3, num_clips=4, num_crops=2):
  """Head inputs [N, C, K, 1] whose one component is the clip's index."""
  values = np.arange(num_clips, dtype=np.float32)[None, :, None, None]
  return np.broadcast_to(values, (num_videos, num_clips, num_crops, 1)).copy()


def test_pairs_are_scored_both_ways_by_clip_gap():
  inputs = _clip_index_inputs()
  distinct = np.ones((3, 4, 4, 2), bool)
  perfect = view_order.pair_order_accuracy(inputs, distinct, lambda x, y: (y - x)[:, 0])
  # 6 pairs a < b of 4 clips, 2 crops, 3 videos, both presentations.
  assert perfect["pairs"] == 6 * 2 * 3 * 2 and perfect["accuracy"] == 1.0
  assert perfect["by_clip_gap"] == {1: 1.0, 2: 1.0, 3: 1.0}
  backwards = view_order.pair_order_accuracy(inputs, distinct, lambda x, y: (x - y)[:, 0])
  assert backwards["accuracy"] == 0.0
  first_always = view_order.pair_order_accuracy(inputs, distinct,
                                                lambda x, y: np.ones(len(x)))
  assert first_always["accuracy"] == 0.5  # (a, b) right, (b, a) wrong


def test_identical_views_are_not_pairs():
  # Video 0: clips 0 and 1 identical (a short video looping); video 1: all distinct.
  features = np.random.default_rng(0).normal(size=(2, 3, 2, 5)).astype(np.float32)
  features[0, 1] = features[0, 0]
  distinct = view_order._distinct_views(features.reshape(2, 6, 5), 3, 2)
  assert distinct.shape == (2, 3, 3, 2)
  assert not distinct[0, 0, 1].any() and distinct[0, 0, 2].all() and distinct[1].sum() == 12
  inputs = _clip_index_inputs(num_videos=2, num_clips=3)
  got = view_order.pair_order_accuracy(inputs, distinct, lambda x, y: (y - x)[:, 0])
  assert got["pairs"] == (3 + 2) * 2 * 2  # video 1: 3 pairs, video 0: 2; 2 crops; 2 ways
  nothing = view_order.pair_order_accuracy(inputs, np.zeros_like(distinct),
                                           lambda x, y: (y - x)[:, 0])
  assert nothing["pairs"] == 0 and np.isnan(nothing["accuracy"])


def test_view_reader_keeps_real_videos_and_stops_early():
  def batches():
    for lo in (0, 3):
      yield {"clips": np.full((4, 2, 1, 1, 1, 3), lo, np.float32) + np.arange(4)[
                 :, None, None, None, None, None],
             "video_id": np.array([lo, lo + 1, lo + 2, -1]), "label": np.zeros(4, int),
             "mask": np.array([True, True, True, False])}
    raise AssertionError("read past the videos asked for")

  got = view_order.first_video_views(batches(), lambda c: c.reshape(len(c), -1)[:, :1], 5)
  np.testing.assert_array_equal(got["video_id"], [0, 1, 2, 3, 4])
  assert got["outputs"].shape == (5, 2, 1)
  np.testing.assert_array_equal(got["outputs"][:, 0, 0], [0, 1, 2, 3, 4])
  with pytest.raises(ValueError, match="yielded no videos"):
    view_order.first_video_views(iter([]), lambda c: c, 3)


def test_head_inputs_from_features_match_the_whole_model(tmp_path):
  from corp_jax.evaluate import features as features_lib
  from corp_jax.train import loop
  from corp_jax.train import mesh as mesh_lib
  workdir = str(tmp_path / "pretrain")
  config = tiny_config("corp_m", steps=2, train__checkpoint_every=2)
  loop.pretrain(config, workdir)
  head = view_order.HeadOrder(workdir)
  assert head.applies
  data = head.model.config.data
  clips = np.random.default_rng(1).uniform(
      size=(6, data.clip_len, data.crop_size, data.crop_size, 3)).astype(np.float32)
  backbone = features_lib.restore_frozen_backbone(workdir)
  h = features_lib.backbone_features(backbone, 4, mesh_lib.create_mesh())(clips)
  np.testing.assert_allclose(head.model.head_inputs(h), head.model.layers(clips)["head_input"],
                             rtol=1e-4, atol=1e-4)
  # Three videos of two clips x one crop: the score is the head's own decision.
  result = head.score(h.reshape(3, 2, -1), num_clips=2, num_crops=1)
  x, y = head.model.head_inputs(h[0::2]), head.model.head_inputs(h[1::2])
  expected = np.mean(np.concatenate([head.model.earlier_score(x, y) > 0,
                                     head.model.earlier_score(y, x) < 0]))
  assert result["pairs"] == 6 and result["accuracy"] == pytest.approx(expected)
  with pytest.raises(ValueError, match="2 clips x 1 crops"):
    head.score(h.reshape(2, 3, -1), num_clips=2, num_crops=1)
