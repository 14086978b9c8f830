"""Feature extraction: `python -m corp_jax.extract --pretrain_workdir=W --data=PATTERN --out=F.npz`.

Writes F.npz with `video_id` [N] int32, `label` [N] int32 (-1 where the shards have none),
`filename` [N] (the source video's file name as the shards recorded it), and
`features`: [N, F] float32, the backbone features averaged over the N clips x C crops views
(`--num_clips`, `--num_crops`, default 4 x 3), or [N, V, F] every view with `--all_views`;
plus `info` (a JSON string: workdir, step, views, clip geometry, data pattern). The views and
the backbone are exactly the evaluation jobs' (corp_jax/data/eval_pipeline.py,
corp_jax/evaluate/features.py: BatchNorm in inference mode). PATTERN is a glob of TFRecord
shards written by data_prep, `videos:DIR` (every video file under DIR, converted first by
data_prep's decoder into shards under `--work_dir`, default F.npz's name + '.shards'), or
`embedded:train` / `embedded:test` for the embedded data set of the run's size. Clip length, stride and crop size default to the pretraining run's.
`extract_features(...) -> dict` is the same as a function.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np


def videos_to_shards(video_dir: str, work_dir: str) -> list:
  """data_prep's conversion of every video under video_dir (unlabelled) -> shard files."""
  from data_prep import videos_to_tfrecords  # pylint: disable=g-import-not-at-top
  status = videos_to_tfrecords.main([
      "--video_dir", video_dir, "--format", "folder", "--output_dir", work_dir,
      "--name", "videos", "--num_shards", "1", "--workers", "0"])
  if status != 0:
    raise ValueError(f"converting the videos in {video_dir!r} failed (data_prep exit status "
                     f"{status}; its messages above say why)")
  return sorted(glob.glob(os.path.join(work_dir, "videos-*-of-*")))


def resolve_source(data: str, pre, work_dir: str = "") -> list | str:
  """Files of PATTERN, converted videos of 'videos:DIR', or an embedded split."""
  if data.startswith("videos:"):
    video_dir = data.split(":", 1)[1]
    if not os.path.isdir(video_dir):
      raise FileNotFoundError(f"--data={data!r}: {video_dir!r} is not a directory")
    return videos_to_shards(video_dir, work_dir)
  if data.startswith("embedded:"):
    split = data.split(":", 1)[1]
    if split not in ("train", "test"):
      raise ValueError(f"--data={data!r}: use embedded:train or embedded:test")
    from corp_jax.train import inputs  # pylint: disable=g-import-not-at-top
    return inputs.embedded_dataset(pre.data)[split]["files"]
  files = sorted(glob.glob(data))
  if not files:
    raise FileNotFoundError(f"--data={data!r} matches no files (a glob of TFRecord shards, "
                            "e.g. '/data/ucf101/ucf101_test-*')")
  return files


def extract_features(backbone, source, *, num_clips: int = 4, num_crops: int = 3,
                     clip_len: int, stride: int, crop_size: int, batch_size: int = 8,
                     label_key: str = "clip/label/index", all_views: bool = False,
                     feature_chunk: int = 64) -> dict:
  """{'video_id', 'label', 'features'} of every video in `source` (see module docstring)."""
  from corp_jax.data import eval_pipeline  # pylint: disable=g-import-not-at-top
  from corp_jax.evaluate import features as features_lib  # pylint: disable=g-import-not-at-top
  from corp_jax.evaluate import job as job_lib  # pylint: disable=g-import-not-at-top
  from corp_jax.train import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  feature_fn = features_lib.backbone_features(backbone, feature_chunk, mesh_lib.create_mesh())
  batches = eval_pipeline.make_eval_dataset(
      source, batch_size=batch_size, num_clips=num_clips, num_crops=num_crops,
      clip_len=clip_len, stride=stride, crop_size=crop_size, label_key=label_key)
  out = job_lib.map_views(batches, feature_fn)
  views = np.asarray(out["outputs"], np.float32)
  from corp_jax.data import label_table  # pylint: disable=g-import-not-at-top
  names = label_table.read_filenames(source) if not hasattr(source, "element_spec") else {}
  return {"video_id": out["video_id"].astype(np.int32), "label": out["label"].astype(np.int32),
          "filename": np.asarray([names.get(int(i), "") for i in out["video_id"]]),
          "features": views if all_views else views.mean(axis=1)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m corp_jax.extract",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--pretrain_workdir", required=True)
  parser.add_argument("--step", type=int, default=0, help="checkpoint step (0 = latest)")
  parser.add_argument("--data", required=True,
                      help="glob of TFRecord shards, videos:DIR, or embedded:train / "
                      "embedded:test")
  parser.add_argument("--out", required=True, help="output .npz file")
  parser.add_argument("--num_clips", type=int, default=4)
  parser.add_argument("--num_crops", type=int, default=3)
  parser.add_argument("--all_views", action="store_true", help="keep [N, V, F], not the mean")
  parser.add_argument("--clip_len", type=int, default=0, help="0 = the pretraining run's")
  parser.add_argument("--stride", type=int, default=0, help="0 = the pretraining run's")
  parser.add_argument("--crop_size", type=int, default=0, help="0 = the pretraining run's")
  parser.add_argument("--batch_size", type=int, default=8, help="videos per input batch")
  parser.add_argument("--label_key", default="clip/label/index")
  parser.add_argument("--work_dir", default="",
                      help="videos:DIR only: where the converted shards go (default OUT.shards)")
  args = parser.parse_args(argv)
  from corp_jax.evaluate import features as features_lib  # pylint: disable=g-import-not-at-top
  try:
    backbone = features_lib.restore_frozen_backbone(args.pretrain_workdir, args.step or None)
    pre = backbone.pretrain_config
    geometry = {"clip_len": args.clip_len or int(pre.data.clip_len),
                "stride": args.stride or int(pre.data.stride),
                "crop_size": args.crop_size or int(pre.data.crop_size)}
    result = extract_features(
        backbone, resolve_source(args.data, pre, args.work_dir or args.out + ".shards"),
        num_clips=args.num_clips,
        num_crops=args.num_crops, batch_size=args.batch_size, label_key=args.label_key,
        all_views=args.all_views, **geometry)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  info = {"pretrain_workdir": os.path.abspath(args.pretrain_workdir), "step": backbone.step,
          "data": args.data, "num_clips": args.num_clips, "num_crops": args.num_crops,
          "all_views": args.all_views, "label_key": args.label_key, **geometry}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  np.savez(args.out, info=json.dumps(info), **result)
  print(f"wrote {args.out}: {len(result['video_id'])} videos, features "
        f"{tuple(result['features'].shape)} (step {backbone.step})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
