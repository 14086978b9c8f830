"""The framing diagnostic: pair counting in sampled order with stand-in heads, and one run
on a tiny pretrained CORP_m (array source) whose three framings share videos and starts."""

import numpy as np
import pytest

from corp_jax.tools import framing_order
from tests.train_helpers import tiny_config


def test_pairs_are_ordered_by_their_starts_not_their_sampled_position():
  # Three clips a video in sampled (not time) order; the head input is the start itself.
  starts = np.array([[9, 2, 5], [0, 4, 4], [7, 3, 1]])
  inputs = starts[:, :, None].astype(np.float32)
  right = framing_order.order_of_pairs(inputs, starts, lambda x, y: (y - x)[:, 0])
  # Pairs with different starts: 3 + 2 (video 1 has two equal starts) + 3, both ways.
  assert right == {"accuracy": 1.0, "pairs": 16}
  wrong = framing_order.order_of_pairs(inputs, starts, lambda x, y: (x - y)[:, 0])
  assert wrong["accuracy"] == 0.0
  first = framing_order.order_of_pairs(inputs, starts, lambda x, y: np.ones(len(x)))
  assert first["accuracy"] == 0.5


def test_three_framings_on_a_tiny_corp_m(tmp_path):
  from corp_jax.train import loop  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "pretrain")
  config = tiny_config("corp_m", steps=2, source="embedded_arrays", train__checkpoint_every=2,
                       data__cache_dir=str(tmp_path / "data"), data__embedded_num_train=24,
                       data__embedded_num_test=16, data__embedded_frame_size=32,
                       data__embedded_num_frames=12, data__stride=1)
  loop.pretrain(config, workdir)
  result = framing_order.framing_order(workdir, split="test", num_videos=100)
  assert result["objective"] == "corp_m" and result["step"] == 2
  assert result["videos"] == 16 and result["split"] == "test"
  assert set(result["framings"]) == set(framing_order.FRAMINGS)
  pairs = {got["pairs"] for got in result["framings"].values()}
  assert len(pairs) == 1 and pairs.pop() > 0  # same videos and starts under every framing
  for got in result["framings"].values():
    assert 0.0 <= got["accuracy"] <= 1.0
  out = tmp_path / "framing.json"
  assert framing_order.main([workdir, "--videos", "8", "--out", str(out)]) == 0
  assert out.stat().st_size > 0
  with pytest.raises(ValueError, match="area_min"):
    framing_order.framing_order(workdir, area_min=0.0)


def test_a_model_without_relation_head_or_a_tf_source_is_refused(tmp_path):
  from corp_jax.train import loop  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "simclr")
  loop.pretrain(tiny_config("simclr", steps=1, train__checkpoint_every=1), workdir)
  with pytest.raises(ValueError, match="data.source='synthetic'"):
    framing_order.framing_order(workdir)
