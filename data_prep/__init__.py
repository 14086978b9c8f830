"""data_prep: real videos + annotations in, sharded TFRecords (one SequenceExample per video) out.

Run `python -m data_prep.videos_to_tfrecords --help`. The parts:
  entries.py      the annotation record type, the error type, video file discovery.
  formats.py      readers for CSV, Kinetics, Something-Something V2, UCF101 and HMDB51 files.
  annotations.py  class-name files, duplicate checks, label indices: `parse_annotations`.
  decode.py       PyAV decoding, resizing, fps resampling, JPEG encoding of one video.
  progress.py     the plan fingerprint and per-shard summaries that make reruns resume.
  summary.py      the run report (`NAME.report.json`) and metadata (`NAME.metadata.json`).
  convert.py      shard assignment, worker processes, atomic shard writing: `convert`.

Nothing here imports TensorFlow at module level, so decoding workers stay light.
"""
