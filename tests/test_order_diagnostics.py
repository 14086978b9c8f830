"""corp_jax.tools.order_diagnostics: the supervised upper bounds run end to end on a tiny
embedded data set, and the motion metrics decompose the 8-way accuracy correctly."""

import jax.numpy as jnp
import numpy as np
import pytest

from corp_jax.tools import order_diagnostics
from tests.train_helpers import tiny_config


def test_motion_metrics_pair_and_direction():
  # Labels 0 (rise) and 5 (empty). Row 0: predicts 1 (right pair, wrong direction);
  # row 1: predicts 5 (right); row 2: label 5, predicts 2 (wrong pair) but within the true
  # pair (4, 5) prefers 5.
  logits = jnp.full((3, 8), -5.0)
  logits = logits.at[0, 1].set(3.0).at[0, 0].set(1.0)
  logits = logits.at[1, 5].set(3.0)
  logits = logits.at[2, 2].set(4.0).at[2, 5].set(1.0)
  labels = jnp.array([0, 5, 5])
  m = order_diagnostics.motion_metrics(logits, labels)
  np.testing.assert_allclose(float(m["acc8"]), 1 / 3)
  np.testing.assert_allclose(float(m["pair_acc4"]), 2 / 3)
  np.testing.assert_allclose(float(m["direction_acc_in_true_pair"]), 2 / 3)


@pytest.mark.slow
@pytest.mark.parametrize("mode", order_diagnostics.MODES)
def test_runs_on_embedded(tmp_path_factory, mode):
  cache = tmp_path_factory.getbasetemp() / "embedded_cache"
  config = tiny_config(
      "corp_f", source="embedded", num_devices=1, data__cache_dir=str(cache),
      data__embedded_num_train=32, data__embedded_num_test=8, data__embedded_frame_size=24,
      data__embedded_num_frames=16, data__clip_len=4, data__crop_size=16)
  lines = []
  result = order_diagnostics.run(config, mode, steps=3, batch=4, lr=1e-3, log_every=1,
                                 eval_batches=2, log=lines.append)
  assert result["mode"] == mode and len(result["train"]) == 3 and len(lines) == 4
  keys = {"motion": {"acc8", "pair_acc4", "direction_acc_in_true_pair", "loss"},
          "order": {"order_acc", "loss"}}[mode]
  assert set(result["test"]) == keys
  assert all(np.isfinite(v) for v in result["test"].values())
