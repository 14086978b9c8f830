"""Command: a folder of videos + an annotation file -> sharded TFRecords for corp_jax.

  python -m data_prep.videos_to_tfrecords --video_dir DIR --annotations FILE \
      --format {csv,kinetics,ssv2,ucf101,hmdb51,folder} --output_dir OUT --name NAME \
      [--num_shards N] [--short_side 256] [--fps F] [--jpeg_quality 90] [--workers W] \
      [--max_failure_fraction 0.01] [--class_names FILE] [--split S] [--overwrite]

Writes OUT/NAME-00000-of-0000N ... (one SequenceExample per video, see
corp_jax/data/records.py), OUT/NAME.metadata.json, OUT/NAME.report.json and
OUT/NAME.progress/ (what lets a rerun of the same command resume: it keeps the complete
shards and rewrites those holding a video that failed, so that video is tried again).
Annotation files must be UTF-8. Exit status: 0 when
the share of skipped videos is within --max_failure_fraction, 1 when above it, 2 for a
usage or annotation error (the message names the file and line), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys

from data_prep import annotations
from data_prep import convert
from data_prep import decode
from data_prep import progress
from data_prep import summary
from data_prep.entries import AnnotationError


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m data_prep.videos_to_tfrecords",
      description="Convert videos and their annotations into sharded TFRecords "
                  "(SequenceExample, one JPEG per frame).")
  parser.add_argument("--video_dir", required=True, help="folder holding the video files")
  parser.add_argument("--annotations", help="annotation file (for hmdb51, and ucf101 with "
                      "--split: the folder of split files); not used with --format folder")
  parser.add_argument("--format", required=True, choices=annotations.FORMATS,
                      help="annotation format; 'folder' = every video under --video_dir, "
                      "unlabelled (label -1), for pretraining")
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--name", required=True, help="shard name prefix, e.g. k400_train")
  parser.add_argument("--num_shards", type=int, default=16)
  parser.add_argument("--short_side", type=int, default=256,
                      help="resize so the short side has this many pixels (even; 0 keeps "
                      "the source size)")
  parser.add_argument("--fps", type=float, default=None,
                      help="resample to this frame rate by timestamp (default: keep)")
  parser.add_argument("--jpeg_quality", type=int, default=90)
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="decoding processes (0 decodes in the main process)")
  parser.add_argument("--max_failure_fraction", type=float, default=0.01,
                      help="exit with status 1 when more than this share of videos fail")
  parser.add_argument("--min_decoded_fraction", type=float, default=0.5,
                      help="a video decoding fewer than this share of the frames its "
                      "container declares counts as truncated (0 disables)")
  parser.add_argument("--class_names", help="file fixing the class order (names per line, "
                      "'index name' lines, JSON list or name->index, or a NAME.metadata.json)")
  parser.add_argument("--split", help="kinetics: value of the split column to keep; "
                      "ucf101/hmdb51: train1..3 or test1..3")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the deterministic video-to-shard assignment")
  parser.add_argument("--overwrite", action="store_true",
                      help="delete earlier outputs of --name and rebuild (default: resume)")
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    decode_options = decode.DecodeOptions(
        short_side=args.short_side, fps=args.fps, jpeg_quality=args.jpeg_quality,
        min_decoded_fraction=args.min_decoded_fraction)
    options = convert.ConvertOptions(
        video_dir=args.video_dir, output_dir=args.output_dir, name=args.name,
        num_shards=args.num_shards, decode_options=decode_options, workers=args.workers,
        max_failure_fraction=args.max_failure_fraction, overwrite=args.overwrite,
        seed=args.seed, split=args.split)
    annotation_set = annotations.parse_annotations(
        args.format, args.annotations, args.video_dir, split=args.split,
        class_names=args.class_names)
    print(f"{len(annotation_set.videos)} videos, {len(annotation_set.class_names)} classes "
          f"from {annotation_set.source}", file=sys.stderr, flush=True)
    result = convert.convert(annotation_set, options)
  except (AnnotationError, progress.ResumeConflict, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"\ninterrupted: complete shards are kept, partial ones deleted; rerun the same "
          f"command to resume", file=sys.stderr)
    return 130
  print(summary.format_report(result.report))
  print(f"wrote {len(result.shard_paths)} shards, {result.metadata_path}, {result.report_path}")
  if result.report["failed"]:
    print(f"{result.report['failed']} videos failed (listed in {result.report_path}); after "
          "fixing them (or --video_dir), rerun the same command: only their shards are "
          "redone (--overwrite rebuilds everything)")
  return 0 if result.ok else 1


if __name__ == "__main__":
  sys.exit(main())
