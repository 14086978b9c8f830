"""Order probe: the linear measures on features with a known answer, the frame resize, the
head's gap table with stand-in heads, and one run on a tiny embedded pretraining workdir."""

import json

import numpy as np
import pytest

from corp_jax.tools import linear_decode
from corp_jax.tools import order_probe
from corp_jax.tools import order_probe_report
from tests.train_helpers import tiny_config


def test_logistic_fit_separates_and_stays_at_chance_on_noise():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 5))
  y = (x[:, 2] > 0).astype(int)
  separable = linear_decode.binary_accuracy(x[:200], y[:200], x[200:], y[200:])
  assert separable["accuracy"] > 0.95
  noise = rng.integers(0, 2, 400)
  chance = linear_decode.binary_accuracy(x[:200], noise[:200], x[200:], noise[200:])
  assert abs(chance["accuracy"] - 0.5) < 0.12
  with pytest.raises(ValueError, match="labels must be 0 or 1"):
    linear_decode.fit_logistic(x, y + 1)


def _videos(rng, num_videos, starts, direction_in_features):
  """Clips of videos whose state rises (even class) or falls (odd class, the even one played
  backwards: the same states in reverse order)."""
  motion = np.repeat(np.arange(4), num_videos // 4)
  sign = np.where(motion % 2 == 0, 1.0, -1.0)
  time = np.tile(starts, num_videos) / starts.max()
  clip_sign = np.repeat(sign, len(starts))
  state = np.where(clip_sign > 0, time, 1.0 - time)
  feats = [state + 0.05 * rng.normal(size=len(time)), rng.normal(size=len(time))]
  if direction_in_features:
    feats.append(clip_sign + 0.3 * rng.normal(size=len(time)))
  return np.stack(feats, 1), np.repeat(motion, len(starts))


@pytest.mark.parametrize("direction_in_features", [False, True])
def test_reversal_and_order_measures_tell_state_from_direction(direction_in_features):
  rng = np.random.default_rng(1)
  starts = np.array([0, 4, 8])
  pairs_info = [order_probe.same_video_pairs(40, starts) for _ in range(2)]
  (train_f, train_m), (test_f, test_m) = (_videos(rng, 40, starts, direction_in_features)
                                          for _ in range(2))
  reversal = linear_decode.reversal_accuracy(train_f, train_m, test_f, test_m,
                                             ((0, 1), (2, 3)))
  (tr_pairs, tr_labels, _), (te_pairs, te_labels, _) = pairs_info
  agnostic = linear_decode.difference_order_accuracy(train_f, tr_pairs, tr_labels, test_f,
                                                     te_pairs, te_labels)
  in_class = np.mean([linear_decode.difference_order_accuracy(
      train_f, tr_pairs[train_m[tr_pairs[:, 0]] == m], tr_labels[train_m[tr_pairs[:, 0]] == m],
      test_f, te_pairs[test_m[te_pairs[:, 0]] == m], te_labels[test_m[te_pairs[:, 0]] == m])
      for m in range(4)])
  # The state's sign flips with the class: order is readable within a class only.
  assert in_class > 0.95 and abs(agnostic - 0.5) < 0.1
  if direction_in_features:
    assert reversal["mean"] > 0.9
  else:  # the state alone (time-averaged phase) says nothing about direction
    assert reversal["mean"] < 0.7


def test_same_video_pairs_are_ordered_pairs_of_one_video():
  pairs, labels, video = order_probe.same_video_pairs(2, np.array([0, 5]))
  np.testing.assert_array_equal(pairs, [[0, 1], [1, 0], [2, 3], [3, 2]])
  np.testing.assert_array_equal(labels, [1, 0, 1, 0])
  np.testing.assert_array_equal(video, [0, 0, 1, 1])


@pytest.mark.parametrize("size_in,size_out", [(64, 32), (40, 32), (20, 32)])
def test_resize_matches_tf_bilinear(size_in, size_out):
  import tensorflow as tf
  frames = np.random.default_rng(0).integers(0, 256, (2, size_in, size_in + 4, 3), np.uint8)
  ours = order_probe.resize_bilinear(frames, size_out)
  theirs = tf.image.resize(frames, [size_out, size_out], method="bilinear").numpy() / 255.0
  np.testing.assert_allclose(ours, theirs, atol=1e-5)


class _StandInHead:
  """head_input = the clip's first frame value (= its start); earlier_score as given."""

  def __init__(self, score):
    self.score = score

  def layers(self, clips):
    return {"head_input": clips[:, 0, 0, 0, :1].astype(np.float32)}

  def earlier_score(self, x, y):
    return self.score(x[:, 0], y[:, 0])


def test_head_order_by_gap_with_stand_in_heads():
  num_frames, videos = 12, 4
  frames = np.broadcast_to(np.arange(num_frames, dtype=np.float32)[None, :, None, None, None],
                           (videos, num_frames, 2, 2, 3))
  motion = np.array([0, 0, 1, 1])
  perfect = order_probe.head_order(_StandInHead(lambda x, y: y - x), frames, motion, 4, 2)
  assert set(perfect["by_gap"]) == set(range(1, 5))  # max start 12 - 8 = 4
  assert all(v == 1.0 for v in perfect["by_gap"].values()) and perfect["cross_video"] == 1.0
  first_always = order_probe.head_order(_StandInHead(lambda x, y: np.ones_like(x)), frames,
                                        motion, 4, 2)
  assert all(v == 0.5 for v in first_always["by_gap"].values())


def test_probe_runs_on_a_tiny_embedded_workdir(tmp_path):
  from corp_jax.train import loop
  workdir = str(tmp_path / "pretrain")
  config = tiny_config("corp_f", steps=2, source="embedded", train__checkpoint_every=2,
                       data__cache_dir=str(tmp_path / "data"), data__embedded_num_train=40,
                       data__embedded_num_test=40, data__embedded_frame_size=64,
                       data__embedded_num_frames=8, data__stride=1, data__min_start_gap=2,
                       data__reverse_video_prob=0.5, loss__reversed_negatives=True)
  loop.pretrain(config, workdir)
  result = order_probe.probe_workdir(workdir, num_train=0, num_test=0, clips_per_video=3,
                                     max_dim=16, cache_dir=str(tmp_path / "probe"))
  assert result["objective"] == "corp_f" and result["step"] == 2
  assert set(result["layers"]) == set(order_probe.LAYERS)
  assert result["layers"]["res5"]["dim"] == 64 and result["layers"]["z"]["dim"] == 16
  for layer in result["layers"].values():
    assert len(layer["reversal_per_pair"]) == 4
    assert all(0.0 <= layer[k] <= 1.0 for k in ("reversal", "diff_order", "diff_order_in_class"))
  assert set(result["head"]["by_gap"]) == {1, 2, 3, 4}  # 8 frames, 4-frame clips, stride 1
  text = order_probe_report.markdown({"corp_f": json.loads(json.dumps(result))})
  assert "| res5_time |" in text and "other video" in text and "train videos" in text
  assert set(result["head_train_videos"]["by_gap"]) == {1, 2, 3, 4}
  order_probe_report.plot({"corp_f": result}, str(tmp_path / "probe.png"))
  assert (tmp_path / "probe.png").stat().st_size > 0


def test_probe_runs_on_a_tiny_photo_array_workdir(tmp_path):
  pytest.importorskip("skimage")
  from corp_jax.data import photo_arrays  # pylint: disable=g-import-not-at-top
  from corp_jax.train import loop  # pylint: disable=g-import-not-at-top
  arrays = tmp_path / "arrays"
  # 80 videos a split: one of each (motion, photo) class, so every reversal pair is present.
  photo_arrays.write_photo_arrays(str(arrays), seed=3, num_train=80, num_test=80,
                                  num_frames=8, size=32, log=lambda _: None)
  workdir = str(tmp_path / "pretrain")
  config = tiny_config("corp_m", steps=2, source="arrays", train__checkpoint_every=2,
                       data__arrays_dir=str(arrays), data__stride=1)
  loop.pretrain(config, workdir)
  result = order_probe.probe_workdir(workdir, num_train=0, num_test=0, clips_per_video=3,
                                     max_dim=16)
  assert result["data"] == "arrays" and result["objective"] == "corp_m"
  assert result["num_train_videos"] == 80 and result["num_test_videos"] == 80
  assert result["clip"]["num_frames"] == 8
  for layer in result["layers"].values():
    assert len(layer["reversal_per_pair"]) == 5  # the photo set's five reversal pairs
  # The frames the probe sees are the training clips' resize of the stored arrays.
  frames, labels = photo_arrays.embedded_arrays.load_split(
      photo_arrays.open_arrays(str(arrays))["test"])
  got, motion, pairs = order_probe.array_split_videos(str(arrays), "test", 2, 16)
  np.testing.assert_allclose(got[1, 3], order_probe.resize_bilinear(frames[1, 3], 16))
  np.testing.assert_array_equal(motion, labels["motion"][:2])
  assert pairs == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
  with pytest.raises(FileNotFoundError, match="data.arrays_dir"):
    order_probe.array_split_videos(str(tmp_path / "none"), "test", 2, 16)
