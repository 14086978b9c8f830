"""Where a pretrained model keeps its order knowledge, on the data set it was trained on.

For each pretraining workdir (simclr, corp_f, corp_m, ...) the model is restored whole
(backbone, projection, relation head) and run, BatchNorm in inference mode, on clips of the
videos of its data set, whole frame resized to the crop size, no augmentation, no TensorFlow:
the embedded videos (`data.source=embedded` or `embedded_arrays`, rendered by `embedded_render`, the JPEG step of
the stored shards skipped) or the array splits of a photo set (`data.source=arrays`, read
from `data.arrays_dir`, as `array_stream` feeds them). Linear probes are trained on clips of
the *train* split and scored on the *test* split.

Layers: `stem`, `res2`..`res5` (globally average-pooled; `res5` is the feature h that linear
evaluation uses), `res5_time` (pooled over space only, the time steps concatenated: what a
linear read-out could use if the global time average were not taken), `z` (projection) and
`head_input` (√d-scaled unit z, what the relation head sees). Layers wider than `max_dim`
are reduced to their top principal components of the training clips.

Measures (chance 0.5 for all):
  reversal        each motion class against its time-reversal partner (a class and its
                  partner show the same frames in opposite order), mean over the pairs:
                  direction knowledge in ONE clip.
  diff_order      order of two clips of one video from f_i - f_j, one linear map for all
                  videos (a consistent-sign, content-free cue: drift of anything monotone).
  diff_order_in_class  the same, fitted per motion class and averaged: state that changes
                  monotonically within a class (height, size, fill, angle), readable only
                  when the class (hence the direction) is known.
  head             the relation head's own order decision on same-video test clips, by
                  start gap in frames (training gaps are Eq. 3's), and `cross_video`: the
                  head on two clips of *different* videos of the same motion class, which
                  continuity between the clips cannot solve and a sense of direction can.
  head_train_videos     the same on as many training videos: far above `head` means order
                  was learned per video (memorised), not as a sense of direction.

  python -m corp_jax.tools.order_probe --pretrain_workdir=workdirs/simclr \
      --pretrain_workdir=workdirs/corp_f --pretrain_workdir=workdirs/corp_m --out=workdirs/probe

Writes OUT/order_probe.json, OUT/order_probe.md and OUT/order_probe.png; prints the table.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from corp_jax.data import array_frames
from corp_jax.data import embedded
from corp_jax.data import embedded_arrays
from corp_jax.data import embedded_render
from corp_jax.data import sampling
from corp_jax import heads
from corp_jax.evaluate import features as features_lib
from corp_jax.models import resnet3d
from corp_jax.tools import linear_decode
from corp_jax.train import checkpoint as ckpt_lib
from corp_jax.train import model as model_lib
from corp_jax.train import objectives as objectives_lib

LAYERS = ("stem", "res2", "res3", "res4", "res5", "res5_time", "z", "head_input")
_CHUNK = 128


def resize_bilinear(frames: np.ndarray, size: int) -> np.ndarray:
  """uint8 [..., H, W, 3] -> float32 [..., size, size, 3] in [0, 1]: the training clips'
  resize (`array_frames.resize_bilinear`, the sampling grid of `tf.image.resize(...,
  'bilinear')`)."""
  resized = array_frames.resize_bilinear(frames, size, size) / np.float32(255.0)
  return np.clip(resized, 0.0, 1.0)


def render_videos(pre_data, split: str, num_videos: int, crop_size: int, seed: int = 0):
  """The first `num_videos` videos of a pretraining run's embedded split, exactly as
  `embedded.ensure_embedded_dataset` renders them (before JPEG): (frames float32
  [N, L, S, S, 3], motion [N], appearance [N])."""
  split_size = int(pre_data[f"embedded_num_{split}"])
  appearances, motions = embedded.split_classes(seed, split, split_size)
  frames = []
  for index in range(num_videos):
    video = embedded_render.render_video(
        embedded.video_rng(seed, split, index), int(appearances[index]), int(motions[index]),
        int(pre_data.embedded_num_frames), int(pre_data.embedded_frame_size))
    frames.append(resize_bilinear(video, crop_size))
  return np.stack(frames), motions[:num_videos], appearances[:num_videos]


def _in_chunks(fn, x: np.ndarray):
  """fn on zero-padded chunks of `_CHUNK` rows of x (one compiled shape), the rows of its
  outputs (an array or a dict of arrays) kept and concatenated, as NumPy."""
  parts = []
  for lo in range(0, len(x), _CHUNK):
    chunk = x[lo:lo + _CHUNK]
    pad = _CHUNK - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    got = jax.device_get(fn(jnp.asarray(chunk)))
    parts.append(jax.tree_util.tree_map(lambda a, n=len(chunk) - pad: np.asarray(a)[:n], got))
  return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)


class ProbedModel:
  """A pretraining workdir's model, returning every probed layer for a batch of clips."""

  def __init__(self, workdir: str, step: int | None = None):
    self.config = features_lib.load_pretrain_config(workdir)
    params, stats, self.step = ckpt_lib.restore_model(workdir, step or None)
    objective = objectives_lib.get_objective(self.config.objective)
    self.has_head = objective.uses_relation_head
    self.objective = objective.name
    self.module = model_lib.model_from_config(self.config.model, objective.head_classes)
    self.variables = {"params": params, "batch_stats": stats}
    spec = resnet3d.get_spec(self.config.model.backbone)
    self._stage_blocks = {f"res{s + 2}": f"res{s + 2}_block{d - 1}"
                          for s, d in enumerate(spec.stage_depths)}
    self._forward = jax.jit(self._layers)
    self._relate = jax.jit(lambda v, x, y: self.module.apply(
        {"params": v["params"]}, x, y, method=self.module.relate))
    self._head_inputs = jax.jit(lambda v, h: heads.relation_inputs(self.module.apply(
        v, h.astype(jnp.float32), method=lambda m, f: m.projection(f, train=False))))

  def _layers(self, variables, clips):
    wanted = set(self._stage_blocks.values()) | {"stem_bn"}
    out, state = self.module.apply(
        variables, clips, train=False, mutable=["intermediates"],
        capture_intermediates=lambda mdl, method: method == "__call__" and mdl.name in wanted)
    captured = state["intermediates"]["backbone"]
    pooled = lambda a: jnp.mean(a.astype(jnp.float32), axis=(1, 2, 3))  # noqa: E731
    layers = {"stem": pooled(captured["stem_bn"]["__call__"][0])}
    for stage, block in self._stage_blocks.items():
      layers[stage] = pooled(captured[block]["__call__"][0])
    res5 = captured[self._stage_blocks["res5"]]["__call__"][0].astype(jnp.float32)
    layers["res5_time"] = jnp.mean(res5, axis=(2, 3)).reshape(res5.shape[0], -1)
    layers["z"] = out["z"]
    layers["head_input"] = heads.relation_inputs(out["z"])
    return layers

  def layers(self, clips: np.ndarray) -> dict:
    """clips [N, T, S, S, 3] float32 -> {layer: [N, F] float32 NumPy}."""
    return _in_chunks(lambda c: self._forward(self.variables, c), clips)

  def head_inputs(self, features: np.ndarray) -> np.ndarray:
    """Backbone features h [N, F] -> the relation head's inputs [N, d] float32: the
    projection (BatchNorm in inference mode), then `heads.relation_inputs`, as in `layers`."""
    return _in_chunks(lambda h: self._head_inputs(self.variables, h),
                      np.asarray(features, np.float32))

  def earlier_score(self, head_in_i: np.ndarray, head_in_j: np.ndarray) -> np.ndarray:
    """> 0 where the head says clip i is earlier than clip j; [N] float32."""
    logits = np.asarray(self._relate(self.variables, jnp.asarray(head_in_i),
                                     jnp.asarray(head_in_j)), np.float32)
    if self.objective == "corp_m":  # classes P1 (other video), P2 (i earlier), P3 (j earlier)
      return logits[:, 1] - logits[:, 2]
    return logits[:, 0] - logits[:, 1]  # corp_f / order_only: class 0 = i earlier


def gather_clips(frames: np.ndarray, starts: np.ndarray, clip_len: int, stride: int):
  """frames [N, L, ...], starts [S] -> clips [N * S, T, ...] (video-major) and their starts."""
  n, num_frames = frames.shape[:2]
  index = sampling.clip_frame_indices(starts, clip_len, stride, num_frames)  # [S, T]
  clips = frames[:, index]  # [N, S, T, ...]
  return clips.reshape((n * len(starts),) + clips.shape[2:]), np.tile(starts, n)


def _reduce(train: np.ndarray, test: np.ndarray, max_dim: int):
  if train.shape[1] <= max_dim:
    return train, test
  mean = train.mean(0)
  _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
  basis = vt[:max_dim].T
  return (train - mean) @ basis, (test - mean) @ basis


def same_video_pairs(num_videos: int, starts: np.ndarray):
  """All ordered pairs (i, j), i != j, of clips of one video (rows video-major), their
  labels (1 = i starts earlier) and video index."""
  s = len(starts)
  a, b = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
  keep = starts[a.ravel()] != starts[b.ravel()]
  a, b = a.ravel()[keep], b.ravel()[keep]
  offsets = np.arange(num_videos)[:, None] * s
  pairs = np.stack([(offsets + a).ravel(), (offsets + b).ravel()], 1)
  labels = np.tile((starts[a] < starts[b]).astype(int), num_videos)
  return pairs, labels, np.repeat(np.arange(num_videos), len(a))


def probe_layers(train_layers, test_layers, train_meta, test_meta, pairs_info, *,
                 reversal_pairs, max_dim: int) -> dict:
  """The linear measures of every layer (see the module docstring)."""
  (tr_pairs, tr_labels, tr_pair_video), (te_pairs, te_labels, te_pair_video) = pairs_info
  results = {}
  for layer in LAYERS:
    train_f, test_f = _reduce(train_layers[layer], test_layers[layer], max_dim)
    rev = linear_decode.reversal_accuracy(
        train_f, train_meta["motion"], test_f, test_meta["motion"], reversal_pairs,
        train_groups=train_meta["video"])
    diff = linear_decode.difference_order_accuracy(
        train_f, tr_pairs, tr_labels, test_f, te_pairs, te_labels, train_groups=tr_pair_video)
    in_class = []
    for motion in np.unique(train_meta["motion"]):
      tr = train_meta["motion"][tr_pairs[:, 0]] == motion
      te = test_meta["motion"][te_pairs[:, 0]] == motion
      in_class.append(linear_decode.difference_order_accuracy(
          train_f, tr_pairs[tr], tr_labels[tr], test_f, te_pairs[te], te_labels[te],
          train_groups=tr_pair_video[tr]))
    results[layer] = {"dim": int(train_layers[layer].shape[1]), "reversal": rev["mean"],
                      "reversal_per_pair": rev["per_pair"], "diff_order": diff,
                      "diff_order_in_class": float(np.mean(in_class))}
  return results


def head_order(model: ProbedModel, frames, motion, clip_len: int, stride: int) -> dict:
  """The head's order accuracy on same-video clips by start gap, and across videos."""
  num_frames = frames.shape[1]
  max_start = int(sampling.max_clip_start(num_frames, clip_len, stride, 2))
  starts = np.arange(max_start + 1)
  clips, _ = gather_clips(frames, starts, clip_len, stride)
  head_in = model.layers(clips)["head_input"].reshape(len(frames), len(starts), -1)
  by_gap = {}
  for gap in range(1, max_start + 1):
    i = starts[:-gap]
    x, y = head_in[:, i].reshape(-1, head_in.shape[-1]), head_in[:, i + gap].reshape(
        -1, head_in.shape[-1])
    right = np.concatenate([model.earlier_score(x, y) > 0, model.earlier_score(y, x) < 0])
    by_gap[gap] = float(np.mean(right))
  # Another video of the same motion class: the next one of that class in the split.
  partner = np.empty(len(frames), int)
  for m in np.unique(motion):
    members = np.flatnonzero(motion == m)
    partner[members] = np.roll(members, -1)
  early, late = starts[: (len(starts) + 1) // 2 - 1], starts[(len(starts) + 1) // 2:]
  grid = np.array([(a, b) for a in early for b in late])
  x = head_in[:, grid[:, 0]].reshape(-1, head_in.shape[-1])
  y = head_in[partner][:, grid[:, 1]].reshape(-1, head_in.shape[-1])
  cross = np.concatenate([model.earlier_score(x, y) > 0, model.earlier_score(y, x) < 0])
  return {"by_gap": by_gap, "cross_video": float(np.mean(cross)),
          "cross_video_min_gap": int(grid[:, 1].min() - grid[:, 0].max())}


def _cached_videos(pre_data, split, num_videos, crop_size, cache_dir, log):
  """`render_videos`, kept as float16 in `cache_dir` (rendering costs ~0.1 s per video)."""
  split_size = int(pre_data[f"embedded_num_{split}"])
  name = (f"{embedded.DATASET_NAME}-v{embedded.FORMAT_VERSION}-{split}{split_size}"
          f"-first{num_videos}"
          f"-{int(pre_data.embedded_frame_size)}px-{int(pre_data.embedded_num_frames)}f"
          f"-crop{crop_size}.npz")
  path = os.path.join(cache_dir, name) if cache_dir else ""
  if path and os.path.exists(path):
    with np.load(path) as f:
      return f["frames"].astype(np.float32), f["motion"], f["appearance"]
  t0 = time.time()
  frames, motion, appearance = render_videos(pre_data, split, num_videos, crop_size)
  log(f"  rendered {num_videos} {split} videos in {time.time() - t0:.0f}s")
  if path:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, frames=frames.astype(np.float16), motion=motion, appearance=appearance)
    os.replace(tmp, path)
  return frames, motion, appearance


def array_split_videos(arrays_dir: str, split: str, num_videos: int, crop_size: int):
  """The first `num_videos` videos of an array set's split (`photo_set --arrays`), each
  frame resized to the crop size as `array_stream` does it: (frames float32 [N, L, S, S, 3]
  in [0, 1], motion [N], reversal pairs of the motion family)."""
  paths = embedded_arrays.split_paths(arrays_dir, split)
  metadata = embedded_arrays.read_metadata(paths["metadata.json"])
  if metadata is None:
    raise FileNotFoundError(f"{paths['metadata.json']}: no complete '{split}' array split "
                            f"in {arrays_dir!r} (data.arrays_dir of the pretraining config)")
  info = {"frames_path": paths["frames.npy"], "labels_path": paths["labels.npz"]}
  frames, labels = embedded_arrays.load_split(info)
  if "motion" not in labels or not metadata.get("reversal_pairs"):
    raise ValueError(f"{arrays_dir}: the order probe needs a 'motion' label family with "
                     f"time-reversal pairs; this set has {sorted(labels)}")
  num_videos = min(num_videos or len(frames), len(frames))
  clips = [resize_bilinear(frames[i], crop_size) for i in range(num_videos)]
  pairs = tuple(tuple(int(c) for c in pair) for pair in metadata["reversal_pairs"])
  return np.stack(clips).astype(np.float32), labels["motion"][:num_videos], pairs


def _videos(data, split: str, num_videos: int, cache_dir: str, log):
  """(frames, motion, reversal pairs) of the pretraining data set's split."""
  if data.source == "arrays":
    return array_split_videos(data.arrays_dir, split, num_videos, data.crop_size)
  frames, motion, _ = _cached_videos(data, split, num_videos, data.crop_size, cache_dir, log)
  return frames, motion, embedded_render.REVERSAL_PAIRS


def probe_workdir(workdir: str, *, num_train: int, num_test: int, clips_per_video: int,
                  max_dim: int, step: int | None = None, cache_dir: str = "",
                  log=print) -> dict:
  """All measures of one pretraining workdir (see the module docstring)."""
  t0 = time.time()
  model = ProbedModel(workdir, step)
  data = model.config.data
  if data.source not in ("embedded", "embedded_arrays", "arrays"):
    raise ValueError(f"{workdir}/config.json has data.source={data.source!r}; the order probe "
                     "needs the embedded data set or a photo array set (data.source=arrays): "
                     "their motion classes come in reversal pairs")
  if clips_per_video < 2:
    raise ValueError(f"clips_per_video must be >= 2 (pairs of clips), got {clips_per_video}")
  if data.source != "arrays":  # the embedded set, as shards or as its arrays
    num_train = min(num_train or data.embedded_num_train, data.embedded_num_train)
    num_test = min(num_test or data.embedded_num_test, data.embedded_num_test)
  split_data = {}
  for split, n in (("train", num_train), ("test", num_test)):
    frames, motion, reversal_pairs = _videos(data, split, n, cache_dir, log)
    n = len(frames)
    starts = sampling.uniform_clip_starts(frames.shape[1], data.clip_len, data.stride,
                                          clips_per_video)
    if len(np.unique(starts)) < 2:
      raise ValueError(f"videos of {frames.shape[1]} frames hold one clip of {data.clip_len} "
                       f"frames at stride {data.stride}: no clip pairs to order")
    clips, _ = gather_clips(frames, starts, data.clip_len, data.stride)
    meta = {"motion": np.repeat(motion, len(starts)),
            "video": np.repeat(np.arange(n), len(starts))}
    split_data[split] = (frames, motion, model.layers(clips), meta,
                         same_video_pairs(n, starts))
  tr, te = split_data["train"], split_data["test"]
  num_train, num_test = len(tr[0]), len(te[0])
  result = {
      "workdir": workdir, "objective": model.objective, "step": model.step,
      "data": data.source, "num_train_videos": num_train, "num_test_videos": num_test,
      "clip": {"clip_len": data.clip_len, "stride": data.stride,
               "num_frames": int(tr[0].shape[1])},
      "layers": probe_layers(tr[2], te[2], tr[3], te[3], (tr[4], te[4]),
                             reversal_pairs=reversal_pairs, max_dim=max_dim),
  }
  if model.has_head:
    result["head"] = head_order(model, te[0], te[1], data.clip_len, data.stride)
    # The same on videos the model trained on (as many as the test split): a gap between the
    # two says the order was learned per video rather than as a sense of direction.
    seen = slice(0, min(num_test, num_train))
    result["head_train_videos"] = head_order(model, tr[0][seen], tr[1][seen], data.clip_len,
                                             data.stride)
  result["wall_s"] = time.time() - t0
  return result


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from corp_jax.tools import order_probe_report  # pylint: disable=g-import-not-at-top
  order_probe_report.define_flags()
  app.run(order_probe_report.main)
