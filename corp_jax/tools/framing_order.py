"""Does a relation head's order survive a change of framing? The head of a pretrained model
ordering same-video clip pairs drawn as the training stream draws them (Eq. 3 starts, K
clips a video), under three framings of the same clips:

  whole          whole frames resized to S x S (the demo recipes' input);
  shared_crop    one random resized crop window for all K clips of a video (beyond the
                 paper; `data.aug_crop_shared_across_clips`);
  per_clip_crop  one window per clip (the paper's Sec. 3.2 augmentation).

The three share the videos, the clip starts and the frames (`array_stream` draws the crop
windows after everything else), so they differ only in the framing: a head that reads
order from the framing of the clips it trained on (pixel positions, the exact scale) loses
it under a crop, one that reads what moves keeps it. Both presentations of every pair of
clips with different starts are scored, as `view_order` scores the probe's views
(`view_order.pair_order_accuracy`; the head's decision as in the training metric). Chance
is 0.5. `split='train'` takes the training videos (the stream's clips, not its exact
batches: another seed), `split='test'` the held-out ones.

Contract:
  `framing_order(workdir, *, split='train', num_videos=512, area_min=0.3, seed=1,
      step=None) -> {'objective', 'step', 'split', 'videos', 'area_min',
      'framings': {framing: {'accuracy', 'pairs'}}}` for a run pretrained on an array
      source (`data.source` 'arrays' or 'embedded_arrays'); ValueError naming
      `data.source` otherwise, or for a model without relation head.
  CLI: `python -m corp_jax.tools.framing_order WORKDIR [--split train|test] [--videos N]
      [--area_min A] [--out OUT.json]` prints one line per framing and writes the dict.
Imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from corp_jax.tools import view_order

FRAMINGS = ("whole", "shared_crop", "per_clip_crop")
_ARRAY_SOURCES = ("arrays", "embedded_arrays")
_BATCH = 64  # videos per stream batch: bounds the host memory of one batch of clips


def _crop_options(framing: str, area_min: float) -> dict:
  if framing == "whole":
    return {}
  return dict(crop_area_range=(area_min, 1.0), crop_shared=framing == "shared_crop")


def order_of_pairs(head_inputs: np.ndarray, starts: np.ndarray, earlier) -> dict:
  """head_inputs [N, K, d] of K clips a video in sampled order, starts [N, K]: the share of
  right decisions over both presentations of every pair with different starts."""
  order = np.argsort(starts, axis=1, kind="stable")
  ordered = np.take_along_axis(head_inputs, order[:, :, None], axis=1)[:, :, None]
  ordered_starts = np.take_along_axis(starts, order, axis=1)
  distinct = (ordered_starts[:, :, None] != ordered_starts[:, None, :])[..., None]
  got = view_order.pair_order_accuracy(ordered, distinct, earlier)
  return {"accuracy": got["accuracy"], "pairs": got["pairs"]}


def framing_order(workdir: str, *, split: str = "train", num_videos: int = 512,
                  area_min: float = 0.3, seed: int = 1, step: int | None = None) -> dict:
  """See the module docstring."""
  from corp_jax.data import array_stream  # pylint: disable=g-import-not-at-top
  from corp_jax.tools import order_probe  # pylint: disable=g-import-not-at-top
  from corp_jax.train import array_inputs  # pylint: disable=g-import-not-at-top
  if split not in ("train", "test"):
    raise ValueError(f"framing_order: split must be 'train' or 'test', got {split!r}")
  if not 0.0 < area_min <= 1.0:
    raise ValueError(f"framing_order: area_min must be in (0, 1], got {area_min!r}")
  model = order_probe.ProbedModel(workdir, step)
  data = model.config.data
  if data.source not in _ARRAY_SOURCES:
    raise ValueError(f"{workdir}/config.json has data.source={data.source!r}; framing_order "
                     f"reads the array sources {_ARRAY_SOURCES} (no TensorFlow)")
  if not model.has_head:
    raise ValueError(f"{workdir}: objective {model.objective!r} has no relation head to ask")
  info = array_inputs.array_split(data, split)
  num_videos = int(min(num_videos, info["num_examples"]))
  batch = min(_BATCH, num_videos)
  result = {"objective": model.objective, "step": int(model.step), "split": split,
            "videos": num_videos, "area_min": float(area_min), "framings": {}}
  for framing in FRAMINGS:
    stream = array_stream.train_batches(
        info, batch_size_per_process=batch, num_clips=int(data.num_clips),
        clip_len=int(data.clip_len), stride=int(data.stride), crop_size=int(data.crop_size),
        seed=seed, label_key=data.label_key, min_start_gap=int(data.get("min_start_gap", 0)),
        **_crop_options(framing, area_min))
    head_inputs, starts = [], []
    for _ in range(-(-num_videos // batch)):
      batch_of = next(stream)
      flat = batch_of["clips"].reshape((-1,) + batch_of["clips"].shape[2:])
      head_in = model.layers(flat)["head_input"]
      head_inputs.append(head_in.reshape(batch_of["starts"].shape + head_in.shape[-1:]))
      starts.append(batch_of["starts"])
    result["framings"][framing] = order_of_pairs(
        np.concatenate(head_inputs)[:num_videos], np.concatenate(starts)[:num_videos],
        model.earlier_score)
  return result


def main(argv) -> int:
  parser = argparse.ArgumentParser(prog="python -m corp_jax.tools.framing_order",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", help="a pretraining workdir (config.json, checkpoints)")
  parser.add_argument("--split", default="train", choices=("train", "test"))
  parser.add_argument("--videos", type=int, default=512)
  parser.add_argument("--area_min", type=float, default=0.3,
                      help="the crops' smallest area fraction (the paper: 0.3)")
  parser.add_argument("--out", default="", help="also write the result as JSON here")
  args = parser.parse_args(argv)
  result = framing_order(args.workdir, split=args.split, num_videos=args.videos,
                         area_min=args.area_min)
  for framing, got in result["framings"].items():
    print(f"{result['objective']} step {result['step']} {args.split} videos: {framing:>13} "
          f"order acc {got['accuracy']:.3f} ({got['pairs']} pairs)")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
