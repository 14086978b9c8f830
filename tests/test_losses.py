"""CORP losses and metrics against independent NumPy brute force (Eq. 5-6, Sec. 3.2, Table 6a)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corp_jax import losses
from corp_jax.losses import metrics as metrics_lib


# Jitted once per input shape and reused: op-by-op (eager) execution compiles every primitive
# for every new shape, which costs far more than one fused compile on a small shared CPU. The
# tests below deliberately reuse a few shapes (G = 2 groups; B = 4 videos for CORP_f).
_nt_xent = jax.jit(losses.nt_xent, static_argnames="temperature")
_corp_f = jax.jit(losses.corp_f_loss, static_argnames="temperature")
_corp_m = jax.jit(losses.corp_m_loss)
_order_only = jax.jit(losses.order_only_loss)
_contrast_only = jax.jit(losses.contrast_only_loss)
_pair_structure = jax.jit(losses.pair_structure)


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  shifted = x - x.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _normalize(z):
  z = np.asarray(z, np.float64)
  return z / np.linalg.norm(z, axis=-1, keepdims=True)


def _rng(seed):
  return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- NT-Xent


def test_nt_xent_matches_numpy():
  rng = _rng(0)
  b, d, tau = 5, 6, 0.2
  z = rng.normal(size=(b, 2, d)).astype(np.float32)
  flat = _normalize(z.reshape(2 * b, d))
  expected = 0.0
  hits = 0
  for i in range(2 * b):
    others = [k for k in range(2 * b) if k != i]
    sims = np.array([flat[i] @ flat[k] / tau for k in others])
    partner = i + 1 if i % 2 == 0 else i - 1
    expected += -(_log_softmax(sims)[others.index(partner)])
    hits += others[int(np.argmax(sims))] == partner
  loss, metrics = _nt_xent(jnp.asarray(z), temperature=tau)
  np.testing.assert_allclose(loss, expected / (2 * b), rtol=1e-5)
  np.testing.assert_allclose(metrics["contrast_top1"], hits / (2 * b))


def test_nt_xent_rejects_bad_inputs():
  with pytest.raises(ValueError, match=r"z must have shape \[B, 2, d\]"):
    losses.nt_xent(jnp.ones((4, 3, 8)))
  with pytest.raises(ValueError, match="temperature"):
    losses.nt_xent(jnp.ones((4, 2, 8)), temperature=0.0)


# ----------------------------------------------------------------------------- CORP_f


def _corp_f_inputs(seed, b=4, d=6):
  rng = _rng(seed)
  z = rng.normal(size=(b, 2, d)).astype(np.float32)
  starts = np.stack([rng.permutation(50)[:2] for _ in range(b)]).astype(np.int32)
  phi_all = rng.normal(size=(2 * b, 2 * b, 2)).astype(np.float32)  # phi for EVERY ordered pair
  order_logits = np.stack([np.stack([phi_all[2 * v, 2 * v + 1], phi_all[2 * v + 1, 2 * v]])
                           for v in range(b)])
  return z, starts, phi_all, order_logits


def _corp_f_brute_force(z, starts, phi_all, tau):
  """(4B-2)-way CE: anchor i over classes (k, o), k != i, o in {earlier, later}."""
  b = z.shape[0]
  flat = _normalize(z.reshape(2 * b, -1))
  flat_starts = starts.reshape(-1)
  total = 0.0
  for i in range(2 * b):
    partner = i ^ 1
    classes, logits = [], []
    for k in range(2 * b):
      if k == i:
        continue
      for o in (0, 1):  # 0: i earlier than k, 1: i later than k
        classes.append((k, o))
        logits.append(flat[i] @ flat[k] / tau + _log_softmax(phi_all[i, k])[o])
    assert len(classes) == 4 * b - 2
    true_order = 0 if flat_starts[i] < flat_starts[partner] else 1
    total += -_log_softmax(np.array(logits))[classes.index((partner, true_order))]
  return total / b


@pytest.mark.parametrize("seed", [0, 1])
def test_corp_f_equals_4b_minus_2_way_cross_entropy(seed):
  """The decomposition of Eq. 6 equals the full (4B-2)-way CE with phi of all pairs.

  sum_o softmax(phi(z_i, z_k))_o = 1, so the negatives' phi drops out of the normaliser: the
  brute force uses random phi for negatives and still agrees.
  """
  z, starts, phi_all, order_logits = _corp_f_inputs(seed)
  tau = 0.1
  loss, metrics = _corp_f(jnp.asarray(z), jnp.asarray(starts), jnp.asarray(order_logits),
                           temperature=tau)
  expected = _corp_f_brute_force(z, starts, phi_all, tau)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["nce_loss"] + metrics["order_loss"], loss, rtol=1e-6)
  # Different phi on the negatives: same brute-force value (the cancellation), same loss.
  phi_other = _rng(seed + 10).normal(size=phi_all.shape).astype(np.float32)
  for v in range(z.shape[0]):
    phi_other[2 * v, 2 * v + 1] = phi_all[2 * v, 2 * v + 1]
    phi_other[2 * v + 1, 2 * v] = phi_all[2 * v + 1, 2 * v]
  np.testing.assert_allclose(_corp_f_brute_force(z, starts, phi_other, tau), expected, rtol=1e-9)
  # The order part alone is the 2-way CE on the positives, the NCE part twice nt_xent.
  labels = (starts > starts[:, ::-1]).astype(int)
  order_ce = -np.take_along_axis(_log_softmax(order_logits), labels[..., None], -1).sum()
  np.testing.assert_allclose(metrics["order_loss"], order_ce / z.shape[0], rtol=1e-5)
  np.testing.assert_allclose(metrics["nce_loss"], 2 * _nt_xent(jnp.asarray(z), temperature=tau)[0],
                             rtol=1e-5)


def test_corp_f_order_label_comes_from_starts_not_position():
  z, starts, _, order_logits = _corp_f_inputs(2)
  starts[:, 0], starts[:, 1] = 30, 10  # every first clip is LATER
  loss_a, m_a = _corp_f(z, starts, order_logits)
  loss_b, m_b = _corp_f(z, starts[:, ::-1], order_logits)
  np.testing.assert_allclose(m_a["nce_loss"], m_b["nce_loss"], rtol=1e-6)
  labels = np.ones((4, 2), int)
  labels[:, 1] = 0
  expected = -np.take_along_axis(_log_softmax(order_logits), labels[..., None], -1).sum() / 4
  np.testing.assert_allclose(m_a["order_loss"], expected, rtol=1e-5)
  assert abs(float(loss_a) - float(loss_b)) > 1e-3


def test_corp_f_invariant_to_batch_permutation_and_clip_swap():
  z, starts, _, order_logits = _corp_f_inputs(3)
  loss, _ = _corp_f(z, starts, order_logits)
  perm = _rng(7).permutation(4)
  loss_perm, _ = _corp_f(z[perm], starts[perm], order_logits[perm])
  np.testing.assert_allclose(loss_perm, loss, rtol=1e-6)
  # Swap the two clips of videos 0 and 3 with their starts; order_logits[b, a] =
  # phi(z[b, a], z[b, 1 - a]), so the swapped video's rows swap too.
  z_s, starts_s, logits_s = z.copy(), starts.copy(), order_logits.copy()
  for v in (0, 3):
    z_s[v], starts_s[v], logits_s[v] = z[v, ::-1], starts[v, ::-1], order_logits[v, ::-1]
  loss_swap, _ = _corp_f(z_s, starts_s, logits_s)
  np.testing.assert_allclose(loss_swap, loss, rtol=1e-6)


def test_corp_f_masks_order_term_when_starts_equal():
  z, starts, _, order_logits = _corp_f_inputs(4)
  starts[1] = (7, 7)
  loss, metrics = _corp_f(z, starts, order_logits)
  changed = order_logits.copy()
  changed[1] = 100.0 * _rng(1).normal(size=(2, 2))
  loss_changed, _ = _corp_f(z, starts, changed)
  np.testing.assert_allclose(loss_changed, loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["order_valid_fraction"], 0.75)
  keep = np.array([0, 2, 3])
  labels = (starts[keep] > starts[keep][:, ::-1]).astype(int)
  expected = -np.take_along_axis(_log_softmax(order_logits[keep]), labels[..., None], -1).sum()
  np.testing.assert_allclose(metrics["order_loss"], expected / 4, rtol=1e-5)


def test_corp_f_metrics_on_hand_made_inputs():
  b = 4
  base = np.eye(b, 6, dtype=np.float32)
  z = np.stack([base, base], axis=1)  # each clip identical to its partner, videos orthogonal
  starts = np.array([[0, 5], [9, 2], [3, 4], [8, 1]], np.int32)
  labels = (starts > starts[:, ::-1]).astype(int)
  perfect = np.where(np.eye(2)[labels] > 0, 5.0, -5.0).astype(np.float32)
  _, m = _corp_f(z, starts, perfect)
  assert float(m["contrast_top1"]) == 1.0 and float(m["order_acc"]) == 1.0
  _, m_flipped = _corp_f(z, starts, perfect[..., ::-1])
  assert float(m_flipped["order_acc"]) == 0.0
  assert float(m_flipped["order_loss"]) > float(m["order_loss"])


def test_corp_f_rejects_bad_shapes():
  z = jnp.ones((4, 2, 8))
  with pytest.raises(ValueError, match="starts"):
    losses.corp_f_loss(z, jnp.zeros((4, 3)), jnp.zeros((4, 2, 2)))
  with pytest.raises(ValueError, match="order_logits"):
    losses.corp_f_loss(z, jnp.zeros((4, 2)), jnp.zeros((4, 2, 3)))


# ----------------------------------------------------------------------------- CORP_m


def _corp_m_inputs(seed, groups, g, k, num_classes=3):
  """Random logits; clips of a group in shuffled order; distinct starts within a video."""
  rng = _rng(seed)
  m = g * k
  video_index = np.stack([rng.permutation(np.repeat(np.arange(g) + 10 * gr, k))
                          for gr in range(groups)]).astype(np.int32)
  starts = np.zeros((groups, m), np.int32)
  for gr in range(groups):
    for v in np.unique(video_index[gr]):
      members = np.flatnonzero(video_index[gr] == v)
      starts[gr, members] = rng.permutation(100)[:len(members)]
  logits = rng.normal(size=(groups, m, m, num_classes)).astype(np.float32)
  return logits, video_index, starts


def _enumerate_video_pairs(logits, video_index, starts, label_fn):
  """Explicit loops over video pairs and their ordered clip pairs.

  label_fn(same_video, first_earlier) -> label or None (pair not used).
  Returns (mean over video pairs of summed CE, per-video-pair lists of (label, logits)).
  """
  video_pairs = []
  for gr in range(logits.shape[0]):
    videos = sorted(set(video_index[gr].tolist()))
    for u, v in itertools.combinations(videos, 2):
      clips = [i for i in range(logits.shape[1]) if video_index[gr, i] in (u, v)]
      pairs = []
      for i in clips:
        for j in clips:
          if i == j:
            continue
          label = label_fn(video_index[gr, i] == video_index[gr, j], starts[gr, i] < starts[gr, j])
          pairs.append((label, logits[gr, i, j]))
      video_pairs.append(pairs)
  per_video_pair = [sum(-_log_softmax(lg)[lab] for lab, lg in pairs if lab is not None)
                    for pairs in video_pairs]
  return float(np.mean(per_video_pair)), video_pairs


def _corp_m_label(same, first_earlier):
  return 0 if not same else (1 if first_earlier else 2)


@pytest.mark.parametrize("g", [2, 3])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_corp_m_equals_enumeration(g, k):
  logits, video_index, starts = _corp_m_inputs(10 * g + k, groups=2, g=g, k=k)
  expected, video_pairs = _enumerate_video_pairs(logits, video_index, starts, _corp_m_label)
  assert len(video_pairs) == 2 * g * (g - 1) // 2
  assert all(len(p) == 4 * k * k - 2 * k for p in video_pairs)
  loss, metrics = _corp_m(logits, video_index, starts)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["different_video_loss"] + metrics["same_video_loss"], loss,
                             rtol=1e-5)
  # Metrics from the same enumeration.
  correct = [[int(np.argmax(lg)) == lab for lab, lg in pairs] for pairs in video_pairs]
  np.testing.assert_allclose(metrics["pair_acc"], np.mean(sum(correct, [])), rtol=1e-5)
  np.testing.assert_allclose(metrics["total_acc"], np.mean([all(c) for c in correct]), atol=1e-6)
  labels = [lab for pairs in video_pairs for lab, _ in pairs]
  np.testing.assert_allclose(metrics["p1_fraction"], np.mean(np.array(labels) == 0), rtol=1e-5)
  # Structure labels match the enumeration's convention.
  structure = _pair_structure(jnp.asarray(video_index), jnp.asarray(starts))
  gr, i, j = 1, 0, 1
  assert int(structure["labels"][gr, i, j]) == _corp_m_label(
      video_index[gr, i] == video_index[gr, j], starts[gr, i] < starts[gr, j])
  np.testing.assert_array_equal(structure["num_videos"], [g, g])


@pytest.mark.parametrize("k", [2, 3])
def test_corp_m_order_weight_scales_only_the_same_video_terms(k):
  """loss(w) = P1 part + w * P2/P3 part, each from the explicit enumeration; w = K/(K-1)
  gives the two parts equal total weight."""
  g = 3
  logits, video_index, starts = _corp_m_inputs(7 + k, groups=2, g=g, k=k)
  p1_only = lambda same, first: None if same else 0
  same_only = lambda same, first: None if not same else (1 if first else 2)
  expected_p1, pairs = _enumerate_video_pairs(logits, video_index, starts, p1_only)
  expected_same, _ = _enumerate_video_pairs(logits, video_index, starts, same_only)
  for weight in (1.0, 2.5, k / (k - 1)):
    loss, metrics = jax.jit(losses.corp_m_loss, static_argnums=3)(
        logits, video_index, starts, weight)
    np.testing.assert_allclose(loss, expected_p1 + weight * expected_same, rtol=1e-5)
    np.testing.assert_allclose(metrics["different_video_loss"], expected_p1, rtol=1e-5)
    np.testing.assert_allclose(metrics["same_video_loss"], expected_same, rtol=1e-5)
  labels = np.array([lab for p in pairs for lab, _ in p])
  num_same = sum(1 for p in pairs for lab, _ in p if lab is None)
  # Equal total weight at w = K/(K-1): P1 pairs are K/(K-1) times the same-video pairs.
  np.testing.assert_allclose(np.sum(labels == 0) / num_same, k / (k - 1))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), "2"])
def test_corp_m_order_weight_must_be_a_positive_number(bad):
  logits, video_index, starts = _corp_m_inputs(0, groups=1, g=2, k=2)
  with pytest.raises(ValueError, match="config.loss.order_weight must be a finite number > 0"):
    losses.corp_m_loss(logits, video_index, starts, bad)


def test_corp_m_total_acc_with_some_perfect_video_pairs():
  """Perfect logits, then one wrong pair inside one video of group 0: its 2 video pairs fail."""
  logits, video_index, starts = _corp_m_inputs(5, groups=2, g=3, k=2)
  structure = _pair_structure(jnp.asarray(video_index), jnp.asarray(starts))
  perfect = 4.0 * np.eye(3, dtype=np.float32)[np.asarray(structure["labels"])]
  _, m = _corp_m(perfect, video_index, starts)
  for key in ("pair_acc", "total_acc", "order_acc", "contrast_top1"):
    assert float(m[key]) == 1.0, key
  clips_of_0 = np.flatnonzero(video_index[0] == video_index[0, 0])
  spoiled = perfect.copy()
  spoiled[0, clips_of_0[0], clips_of_0[1]] = spoiled[0, clips_of_0[0], clips_of_0[1], [0, 2, 1]]
  _, m_spoiled = _corp_m(spoiled, video_index, starts)
  _, video_pairs = _enumerate_video_pairs(spoiled, video_index, starts, _corp_m_label)
  all_right = [all(int(np.argmax(lg)) == lab for lab, lg in p) for p in video_pairs]
  assert sum(all_right) == 1 + 3  # group 0: the pair without the spoiled video; group 1: all
  np.testing.assert_allclose(m_spoiled["total_acc"], 4 / 6, rtol=1e-6)
  assert float(m_spoiled["pair_acc"]) < 1.0


def test_corp_m_metrics_flipped_order_and_always_p1():
  logits, video_index, starts = _corp_m_inputs(6, groups=2, g=2, k=4)
  labels = np.asarray(_pair_structure(jnp.asarray(video_index),
                                            jnp.asarray(starts))["labels"])
  perfect = 4.0 * np.eye(3, dtype=np.float32)[labels]
  flipped = perfect[..., [0, 2, 1]]
  _, m = _corp_m(flipped, video_index, starts)
  assert float(m["order_acc"]) == 0.0 and float(m["total_acc"]) == 0.0
  np.testing.assert_allclose(m["p1_fraction"], 32 / 56, rtol=1e-6)  # docs/DESIGN_NOTES.md, K = 4
  np.testing.assert_allclose(m["pair_acc"], 32 / 56, rtol=1e-6)
  always_p1 = np.zeros_like(perfect)
  always_p1[..., 0] = 1.0
  _, m_p1 = _corp_m(always_p1, video_index, starts)
  np.testing.assert_allclose(m_p1["pair_acc"], 32 / 56, rtol=1e-6)


def test_corp_m_equal_starts_in_a_video_are_excluded():
  logits, video_index, starts = _corp_m_inputs(7, groups=2, g=2, k=3)
  clips = np.flatnonzero(video_index[0] == video_index[0, 0])
  starts[0, clips[1]] = starts[0, clips[0]]
  loss, metrics = _corp_m(logits, video_index, starts)
  expected = 0.0  # g = 2: one video pair per group, every clip pair of the group is in it
  for gr, i, j in itertools.product(range(2), range(6), range(6)):
    same = video_index[gr, i] == video_index[gr, j]
    if i == j or (same and starts[gr, i] == starts[gr, j]):
      continue
    expected += -_log_softmax(logits[gr, i, j])[_corp_m_label(same, starts[gr, i] < starts[gr, j])]
  np.testing.assert_allclose(loss, expected / 2, rtol=1e-5)
  assert np.isfinite(float(metrics["total_acc"]))


def test_corp_m_rejects_bad_shapes():
  logits, video_index, starts = _corp_m_inputs(8, groups=1, g=2, k=2)
  with pytest.raises(ValueError, match="3 classes"):
    losses.corp_m_loss(logits[..., :2], video_index, starts)
  with pytest.raises(ValueError, match="video_index"):
    losses.corp_m_loss(logits, video_index[:, :3], starts)
  with pytest.raises(ValueError, match="starts"):
    losses.corp_m_loss(logits, video_index, starts[None])
  with pytest.raises(ValueError, match="pair_logits"):
    losses.corp_m_loss(logits[:, :3], video_index, starts)


# ----------------------------------------------------------------------------- Table 6a


@pytest.mark.parametrize("g, k", [(2, 3), (3, 2)])
def test_order_only_equals_enumeration(g, k):
  logits, video_index, starts = _corp_m_inputs(20 + k, groups=2, g=g, k=k, num_classes=2)
  label_fn = lambda same, first_earlier: (0 if first_earlier else 1) if same else None
  expected, video_pairs = _enumerate_video_pairs(logits, video_index, starts, label_fn)
  loss, metrics = _order_only(logits, video_index, starts)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  used = [(lab, lg) for pairs in video_pairs for lab, lg in pairs if lab is not None]
  np.testing.assert_allclose(metrics["pair_acc"],
                             np.mean([np.argmax(lg) == lab for lab, lg in used]), rtol=1e-5)


@pytest.mark.parametrize("g, k", [(2, 3), (3, 2)])
def test_contrast_only_equals_enumeration(g, k):
  logits, video_index, starts = _corp_m_inputs(30 + k, groups=2, g=g, k=k, num_classes=2)
  label_fn = lambda same, first_earlier: 1 if same else 0
  expected, video_pairs = _enumerate_video_pairs(logits, video_index, starts, label_fn)
  loss, metrics = _contrast_only(logits, video_index, starts)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  correct = [[int(np.argmax(lg)) == lab for lab, lg in pairs] for pairs in video_pairs]
  np.testing.assert_allclose(metrics["total_acc"], np.mean([all(c) for c in correct]), atol=1e-6)


def test_ablation_metrics_on_perfect_and_flipped_logits():
  _, video_index, starts = _corp_m_inputs(9, groups=2, g=3, k=2)
  s = _pair_structure(jnp.asarray(video_index), jnp.asarray(starts))
  order_labels = 1 - np.asarray(s["first_earlier"]).astype(int)
  perfect_order = 3.0 * np.eye(2, dtype=np.float32)[order_labels]
  _, m = _order_only(perfect_order, video_index, starts)
  assert float(m["order_acc"]) == 1.0 and float(m["total_acc"]) == 1.0
  _, m = _order_only(perfect_order[..., ::-1], video_index, starts)
  assert float(m["order_acc"]) == 0.0 and float(m["total_acc"]) == 0.0
  same_labels = np.asarray(s["same_video"]).astype(int)
  perfect_same = 3.0 * np.eye(2, dtype=np.float32)[same_labels]
  _, m = _contrast_only(perfect_same, video_index, starts)
  assert float(m["pair_acc"]) == 1.0 and float(m["contrast_top1"]) == 1.0
  np.testing.assert_allclose(m["p1_fraction"], 8 / 12, rtol=1e-6)  # K = 2: 2K^2 = 8 of 4K^2 - 2K


def test_contrast_top1_metric_by_hand():
  scores = jnp.array([[9.0, 1.0, 2.0], [0.0, 9.0, 3.0], [5.0, 4.0, 9.0]])
  positives = jnp.array([[False, True, False], [True, False, False], [False, True, False]])
  # Row 0: best other is 2 (not positive); row 1: best other is 2 (no); row 2: best is 0 (no).
  assert float(metrics_lib.contrast_top1(scores, positives)) == 0.0
  positives = positives.at[0, 2].set(True)
  np.testing.assert_allclose(metrics_lib.contrast_top1(scores, positives), 1 / 3)


def test_extra_negatives_enter_every_nce_denominator():
  from corp_jax.losses import contrastive
  rng = np.random.default_rng(0)
  z = rng.normal(size=(3, 2, 5)).astype(np.float32)
  extra = rng.normal(size=(4, 5)).astype(np.float32)
  nce, _ = contrastive.info_nce_terms(jnp.asarray(z), 0.5, jnp.asarray(extra))
  flat = z.reshape(6, 5) / np.linalg.norm(z.reshape(6, 5), axis=1, keepdims=True)
  unit_extra = extra / np.linalg.norm(extra, axis=1, keepdims=True)
  for i in range(6):
    others = [flat[i] @ flat[k] / 0.5 for k in range(6) if k != i]
    others += [flat[i] @ e / 0.5 for e in unit_extra]
    expected = -(flat[i] @ flat[i ^ 1] / 0.5) + np.log(np.sum(np.exp(others)))
    np.testing.assert_allclose(nce.reshape(6)[i], expected, rtol=1e-5)
  plain, _ = contrastive.info_nce_terms(jnp.asarray(z), 0.5)
  assert np.all(np.asarray(nce) > np.asarray(plain))  # more negatives, larger loss


def test_grouped_objective_puts_reversed_clips_in_the_group_as_other_videos():
  from corp_jax.heads import relation
  from corp_jax.losses import corp_m as corp_m_lib
  from corp_jax.train import objectives
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(2, 2, 4)), jnp.float32)  # one group of 2 videos, K = 2
  z_rev = jnp.asarray(rng.normal(size=(2, 2, 4)), jnp.float32)
  starts = jnp.asarray([[5, 1], [0, 9]], jnp.int32)

  def relate_all(zz):  # logits that depend on the clips, so the labels matter
    return jnp.stack([zz @ zz.T, zz[:, :1] - zz[:, 1][None], zz[:, 2:3] * zz[:, 3][None]], -1)

  loss, _ = objectives.compute_loss(
      objectives.get_objective("corp_m"), z, starts, relate=None, relate_all=relate_all,
      temperature=0.1, group_size=2, z_reversed=z_rev)
  # The group: 2 videos + their 2 reversed copies (videos 2 and 3), 2 clips each. Reversed
  # clips keep their slot with the start negated: the clip that starts later forwards comes
  # first backwards.
  group = jnp.concatenate([relation.relation_inputs(z).reshape(4, 4),
                           relation.relation_inputs(z_rev).reshape(4, 4)])
  expected, _ = corp_m_lib.corp_m_loss(
      relate_all(group)[None], jnp.asarray([[0, 0, 1, 1, 2, 2, 3, 3]]),
      jnp.asarray([[5, 1, 0, 9, -5, -1, 0, -9]]))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  plain, _ = objectives.compute_loss(
      objectives.get_objective("corp_m"), z, starts, relate=None, relate_all=relate_all,
      temperature=0.1, group_size=2)
  assert not np.allclose(plain, loss)


def test_order_weight_reaches_the_corp_m_loss_and_only_corp_m_accepts_it():
  from corp_jax.train import objectives
  rng = np.random.default_rng(1)
  z = jnp.asarray(rng.normal(size=(4, 2, 4)), jnp.float32)  # two groups of 2 videos, K = 2
  starts = jnp.asarray([[5, 1], [0, 9], [3, 7], [8, 2]], jnp.int32)

  def relate_all(zz):
    return jnp.stack([zz @ zz.T, zz[:, :1] - zz[:, 1][None], zz[:, 2:3] * zz[:, 3][None]], -1)

  corp_m = objectives.get_objective("corp_m")
  run = lambda w: objectives.compute_loss(corp_m, z, starts, relate=None, relate_all=relate_all,
                                          temperature=0.1, group_size=2, order_weight=w)
  _, m = run(1.0)
  loss3, _ = run(3.0)
  np.testing.assert_allclose(loss3, m["different_video_loss"] + 3.0 * m["same_video_loss"],
                             rtol=1e-5)
  objectives.validate(corp_m, num_clips=2, per_device_batch=8, group_size=2, order_weight=2.0)
  for name in ("simclr", "corp_f", "order_only", "contrast_only"):
    objectives.validate(objectives.get_objective(name), 2, 8, 2, order_weight=1.0)
    with pytest.raises(ValueError, match=f"order_weight=2.0 .*{name!r} has no such balance"):
      objectives.validate(objectives.get_objective(name), 2, 8, 2, order_weight=2.0)
