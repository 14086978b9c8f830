"""Builds the photo evaluation set: real-photograph videos encoded as H.264 files, then
converted by data_prep into TFRecord shards.

  python -m corp_jax.tools.photo_set --out DIR [--seed 0] [--num_train 480] [--num_test 160]
      [--num_frames 40] [--size 64] [--keyframe_interval 0] [--static]

Writes, under DIR:
  videos/{train,test}/<index>.mp4  H.264 (libx264, yuv420p, one thread, so the bytes depend
                                   only on the arguments), `--keyframe_interval` 0 = the
                                   codec's default GOP, 1 = every frame a keyframe;
  {train,test}.csv                 data_prep `csv` annotations `path,label`, label =
                                   `<motion>/<photo>` (one combined class per video);
  class_names.txt                  the combined classes, motion-major (index = motion *
                                   num_photos + photo), passed to data_prep as --class_names;
  shards/{train,test}-*            data_prep's output (`--short_side 0`: frames kept at
                                   `--size`), with NAME.metadata.json beside them;
  set.json                         what the fidelity protocol reads: the shard patterns and,
                                   per label family (`motion`, `photo`), the class names,
                                   the family index of every combined class, and for
                                   `motion` the time-reversal pairs.
Videos and labels are a pure function of the arguments (`corp_jax/data/photo_render.py`);
classes are balanced and shuffled per split. A finished set (set.json present with the same
arguments) is left alone; `--overwrite` rebuilds it.

`--arrays` writes, instead of videos and shards, DIR/arrays/{train,test}.{frames.npy,
labels.npz,metadata.json} (`corp_jax/data/photo_arrays.py`: the same renderings before any
codec) and a set.json whose `arrays_dir` the protocol reads with `--source arrays`: the set
then builds and runs on a host without TensorFlow or PyAV (a GPU host).

Controls (`docs/FIDELITY.md`): `--static` (every frame the middle one, then encoded like the
rest), `--keyframe_interval 1` (no inter-frame coding), `--num_frames 120` (at stride 3 and
8-frame clips, Eq. 3 then keeps every two clips of a video at least 24 frames apart, so
clips never overlap, K = 2 or 4).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys

import numpy as np

from corp_jax.data import photo_arrays
from corp_jax.data import photo_render
from corp_jax.data.photo_arrays import combined_names, split_classes, video_rng

SET_FORMAT_VERSION = 1
FAMILIES = ("motion", "photo")
FPS = 10


def encode_video(path: str, frames: np.ndarray, keyframe_interval: int = 0) -> None:
  """Writes frames uint8 [L, H, W, 3] as an H.264 mp4; 0 = default GOP, n = keyframe every n."""
  import av  # pylint: disable=g-import-not-at-top
  tmp = path + ".partial.mp4"
  with av.open(tmp, "w") as container:
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = "yuv420p"
    stream.codec_context.thread_count = 1  # x264's threaded output may vary run to run
    options = {"crf": "20"}
    if keyframe_interval:
      stream.codec_context.gop_size = keyframe_interval
      options.update({"keyint": str(keyframe_interval), "keyint_min": "1"})
    stream.options = options
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  os.replace(tmp, path)


def _arguments(args) -> dict:
  out = {"version": SET_FORMAT_VERSION, "seed": args.seed, "num_train": args.num_train,
         "num_test": args.num_test, "num_frames": args.num_frames, "size": args.size,
         "keyframe_interval": args.keyframe_interval, "static": bool(args.static)}
  if getattr(args, "arrays", False):  # sets made before the option keep matching
    out["arrays"] = True
  return out


def write_videos(out: str, args, log=print) -> dict:
  """Renders and encodes both splits; writes the CSVs. Returns {split: csv path}."""
  csvs = {}
  names = combined_names()
  for split, count in (("train", args.num_train), ("test", args.num_test)):
    video_dir = os.path.join(out, "videos", split)
    os.makedirs(video_dir, exist_ok=True)
    motions, photos = split_classes(args.seed, split, count)
    rows = []
    for index in range(count):
      rel = os.path.join(split, f"{index:06d}.mp4")
      path = os.path.join(out, "videos", rel)
      if not os.path.exists(path):  # a finished file is complete (written, then renamed)
        frames = photo_render.render_video(
            video_rng(args.seed, split, index), int(photos[index]), int(motions[index]),
            args.num_frames, args.size, static=args.static)
        encode_video(path, frames, args.keyframe_interval)
      rows.append((rel, names[int(motions[index]) * len(photo_render.PHOTO_NAMES)
                              + int(photos[index])]))
      if (index + 1) % 100 == 0:
        log(f"{split}: {index + 1}/{count} videos")
    csvs[split] = os.path.join(out, f"{split}.csv")
    with open(csvs[split], "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(("path", "label"))
      writer.writerows(rows)
  return csvs


def set_manifest(out: str, args) -> dict:
  num_photos = len(photo_render.PHOTO_NAMES)
  num_combined = len(photo_render.MOTION_NAMES) * num_photos
  combined = np.arange(num_combined)
  if getattr(args, "arrays", False):
    where = {"arrays_dir": os.path.join(out, "arrays")}
  else:
    where = {"train_pattern": os.path.join(out, "shards", "train-*"),
             "test_pattern": os.path.join(out, "shards", "test-*")}
  return {
      "name": "photo" + ("_static" if args.static else ""),
      "arguments": _arguments(args),
      **where,
      "label_key": "clip/label/index",
      "families": {
          "motion": {"class_names": list(photo_render.MOTION_NAMES),
                     "of_label": (combined // num_photos).tolist(),
                     "reversal_pairs": [list(p) for p in photo_render.REVERSAL_PAIRS]},
          "photo": {"class_names": list(photo_render.PHOTO_NAMES),
                    "of_label": (combined % num_photos).tolist()},
      },
  }


def build(out: str, args, log=print) -> str:
  """Builds (or finds) the set; returns the path of set.json."""
  out = os.path.abspath(out)
  manifest_path = os.path.join(out, "set.json")
  if os.path.exists(manifest_path) and not args.overwrite:
    with open(manifest_path) as f:
      if json.load(f).get("arguments") == _arguments(args):
        log(f"{manifest_path} exists with these arguments; nothing to do (--overwrite rebuilds)")
        return manifest_path
    raise SystemExit(f"error: {manifest_path} was built with other arguments; choose another "
                     "--out or pass --overwrite")
  if args.overwrite and os.path.exists(out):
    shutil.rmtree(out)
  os.makedirs(out, exist_ok=True)
  if getattr(args, "arrays", False):
    photo_arrays.write_photo_arrays(
        os.path.join(out, "arrays"), seed=args.seed, num_train=args.num_train,
        num_test=args.num_test, num_frames=args.num_frames, size=args.size,
        static=args.static, workers=args.workers, log=log)
    return _write_manifest(manifest_path, set_manifest(out, args), log)
  from data_prep import videos_to_tfrecords  # pylint: disable=g-import-not-at-top
  csvs = write_videos(out, args, log)
  class_file = os.path.join(out, "class_names.txt")
  with open(class_file, "w") as f:
    f.write("\n".join(combined_names()) + "\n")
  for split, path in csvs.items():
    code = videos_to_tfrecords.main([
        "--video_dir", os.path.join(out, "videos"), "--annotations", path, "--format", "csv",
        "--output_dir", os.path.join(out, "shards"), "--name", split,
        "--num_shards", str(args.num_shards), "--short_side", "0",
        "--class_names", class_file, "--workers", str(args.workers), "--seed", str(args.seed)])
    if code != 0:
      raise SystemExit(f"error: data_prep failed on {path} (exit status {code})")
  return _write_manifest(manifest_path, set_manifest(out, args), log)


def _write_manifest(path: str, manifest: dict, log) -> str:
  with open(path + ".partial", "w") as f:
    json.dump(manifest, f, indent=2)
  os.replace(path + ".partial", path)
  log(f"wrote {path}")
  return path


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m corp_jax.tools.photo_set",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--num_train", type=int, default=480)
  p.add_argument("--num_test", type=int, default=160)
  p.add_argument("--num_frames", type=int, default=40)
  p.add_argument("--size", type=int, default=64, help="frame side (pixels)")
  p.add_argument("--keyframe_interval", type=int, default=0,
                 help="0 = the codec's default GOP; 1 = every frame a keyframe")
  p.add_argument("--static", action="store_true",
                 help="control: every frame of a video is its middle frame")
  p.add_argument("--num_shards", type=int, default=4)
  p.add_argument("--workers", type=int, default=0,
                 help="data_prep decoding processes (with --arrays: rendering processes)")
  p.add_argument("--arrays", action="store_true",
                 help="write the frames as NumPy arrays (DIR/arrays, no codec, no shards, "
                      "no TensorFlow or PyAV) for the protocol's --source arrays")
  p.add_argument("--overwrite", action="store_true")
  return p


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  for name in ("num_train", "num_test", "num_shards"):
    if getattr(args, name) < 1:
      print(f"error: --{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
      return 2
  if args.num_frames < 2 or args.size < 16 or args.size % 2 or args.keyframe_interval < 0:
    print("error: need --num_frames >= 2, an even --size >= 16 and --keyframe_interval >= 0",
          file=sys.stderr)
    return 2
  if args.arrays and args.keyframe_interval:
    print("error: --keyframe_interval sets the video codec, which --arrays does not use",
          file=sys.stderr)
    return 2
  build(args.out, args, log=lambda m: print(m, flush=True))
  return 0


if __name__ == "__main__":
  sys.exit(main())
