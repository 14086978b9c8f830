"""Converts an `AnnotationSet` into sharded TFRecords of SequenceExamples, resumably.

`convert(annotation_set, options) -> ConversionResult`:
  1. Shard assignment is deterministic: the annotation order shuffled with `options.seed`
     (so classes listed in blocks spread over all shards), then video i goes to shard
     i % num_shards. A rerun with the same inputs therefore knows what each shard holds.
  2. Shards already finished by an earlier run (see `progress.py`) are kept; leftover
     temporaries are deleted. A finished shard with videos that failed is rewritten, so a
     rerun retries those videos (after a missing file was restored or `--video_dir` fixed)
     and their old failure records are replaced. `overwrite` clears all outputs of NAME first.
  3. Videos are decoded by `options.workers` processes (0: in this process) with a bounded
     look-ahead, and written in order by this process through `AtomicShardWriter`: a shard
     gets its final name only once complete, so Ctrl-C or a crash leaves none half-written.
     Records are serialised deterministically, so identical runs write identical bytes.
     Workers exit by themselves when this process dies (even by SIGKILL).
  4. Unusable videos (`decode.VideoSkipped`, or any other error while decoding one video)
     are skipped and listed in `NAME.report.json`; `NAME.metadata.json` is written at the end.
`ConversionResult.ok` is False when failed / total exceeds `max_failure_fraction`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from typing import Callable

from corp_jax.data import records
from corp_jax.data import shard_writer
from data_prep import decode
from data_prep import progress
from data_prep import summary
from data_prep.annotations import AnnotationSet, LabeledVideo


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
  video_dir: str
  output_dir: str
  name: str
  num_shards: int = 1
  decode_options: decode.DecodeOptions = decode.DecodeOptions()
  workers: int = 0
  max_failure_fraction: float = 0.01
  overwrite: bool = False
  seed: int = 0
  split: str | None = None

  def __post_init__(self):
    if self.num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
    if self.workers < 0:
      raise ValueError(f"workers must be >= 0, got {self.workers}")
    if not 0 <= self.max_failure_fraction <= 1:
      raise ValueError(f"max_failure_fraction must be in [0, 1], "
                       f"got {self.max_failure_fraction}")
    if not self.name or os.sep in self.name:
      raise ValueError(f"name must be a plain file name prefix, got {self.name!r}")


@dataclasses.dataclass
class ConversionResult:
  report: dict
  metadata: dict
  report_path: str
  metadata_path: str
  shard_paths: list[str]

  @property
  def ok(self) -> bool:
    return self.report["ok"]


DecodeFn = Callable[[str, decode.DecodeOptions], decode.DecodedVideo]


def assign_shards(videos, num_shards: int, seed: int) -> list[list[LabeledVideo]]:
  """Deterministic split: annotation order shuffled by `seed`, then round-robin."""
  order = list(range(len(videos)))
  random.Random(seed).shuffle(order)
  shards = [[] for _ in range(num_shards)]
  for position, video_index in enumerate(order):
    shards[position % num_shards].append(videos[video_index])
  return shards


def decode_or_skip(path: str, options: decode.DecodeOptions, decode_fn: DecodeFn):
  """Runs in a worker: ("ok", DecodedVideo) or ("skipped", kind, reason), never raises
  for a bad video, so one broken file cannot stop the run."""
  try:
    return ("ok", decode_fn(path, options))
  except decode.VideoSkipped as e:
    return ("skipped", e.kind, e.reason)
  except Exception as e:  # pylint: disable=broad-except
    return ("skipped", "decode_error", f"{type(e).__name__}: {e}")


# How often a worker checks that the converting process is still alive.
_PARENT_POLL_SECONDS = 0.2


def _exit_when_orphaned(parent_pid: int) -> None:
  while os.getppid() == parent_pid:
    time.sleep(_PARENT_POLL_SECONDS)
  os._exit(1)  # pylint: disable=protected-access


def _init_worker(parent_pid: int):
  # Ctrl-C reaches the whole process group; only the parent should react (it cleans up).
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  # A SIGKILLed parent cannot shut the pool down, and a worker blocked on the task pipe
  # would wait forever (it holds the pipe's write end itself, so no EOF comes), keeping the
  # resource tracker alive too: each worker watches its parent and exits when orphaned.
  threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True,
                   name="exit-when-orphaned").start()


def _decoded_in_order(paths, options: ConvertOptions, decode_fn: DecodeFn):
  """Yields decode_or_skip results for `paths` in order, decoding ahead in workers."""
  if options.workers == 0:
    for path in paths:
      yield decode_or_skip(path, options.decode_options, decode_fn)
    return
  # spawn: the parent holds TensorFlow, which is not safe to fork.
  executor = concurrent.futures.ProcessPoolExecutor(
      max_workers=options.workers, mp_context=multiprocessing.get_context("spawn"),
      initializer=_init_worker, initargs=(os.getpid(),))
  pending = collections.deque()
  lookahead = 4 * options.workers  # Bounds the decoded videos held in memory.
  try:
    for path in paths:
      pending.append(executor.submit(decode_or_skip, path, options.decode_options, decode_fn))
      if len(pending) >= lookahead:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
  finally:
    executor.shutdown(wait=True, cancel_futures=True)


def _write_shard(index: int, videos, results, options: ConvertOptions) -> dict:
  stats = summary.ShardStats(index)
  path = shard_writer.shard_name(options.output_dir, options.name, index, options.num_shards)
  with shard_writer.AtomicShardWriter(path) as writer:
    for video in videos:
      result = next(results)
      if result[0] == "skipped":
        stats.add_failure(video.path, video.label_text, result[1], result[2])
        continue
      decoded = result[1]
      example = records.make_sequence_example(
          decoded.jpeg_frames, label_index=video.label_index, label_text=video.label_text,
          filename=video.path, fps=decoded.fps)
      # deterministic: protobuf map order otherwise varies between processes.
      writer.write(example.SerializeToString(deterministic=True))
      stats.add_written(video.label_index, len(decoded.jpeg_frames), decoded.source_fps)
  return stats.as_dict()


def _plan(annotation_set: AnnotationSet, options: ConvertOptions) -> dict:
  return {
      "num_videos": len(annotation_set.videos),
      "videos_sha256": progress.videos_digest(annotation_set.videos),
      "class_names": list(annotation_set.class_names),
      "num_shards": options.num_shards,
      "seed": options.seed,
      "decode": dataclasses.asdict(options.decode_options),
  }


def _settings(annotation_set: AnnotationSet, options: ConvertOptions) -> dict:
  num = options.num_shards
  return {
      "name": options.name,
      "format": annotation_set.format,
      "annotations": annotation_set.source,
      "split": options.split,
      "fps": options.decode_options.fps,
      "short_side": options.decode_options.short_side,
      "jpeg_quality": options.decode_options.jpeg_quality,
      "num_shards": num,
      "shard_pattern": f"{options.name}-?????-of-{num:05d}",
      "label_key": records.LABEL_INDEX_KEY,
  }


def convert(annotation_set: AnnotationSet, options: ConvertOptions,
            decode_fn: DecodeFn = decode.decode_video,
            log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
            ) -> ConversionResult:
  """Writes the shards, report and metadata of `annotation_set` (see module docstring).

  `decode_fn` must be a module-level function when `options.workers > 0` (it is pickled).
  """
  if not annotation_set.videos:
    raise ValueError(f"no videos to convert in {annotation_set.source}")
  out, name, num = options.output_dir, options.name, options.num_shards
  os.makedirs(out, exist_ok=True)
  if options.overwrite:
    progress.clear_outputs(out, name)
  removed = shard_writer.remove_stale_temporaries(out, name)
  if removed:
    log(f"removed {removed} temporary files left by an interrupted run")
  progress.adopt_plan(out, name, _plan(annotation_set, options))

  shards = assign_shards(annotation_set.videos, num, options.seed)
  summaries = progress.finished_shards(out, name, num)
  retry = sorted(i for i, shard_summary in summaries.items() if shard_summary["failures"])
  if retry:
    failed = sum(len(summaries.pop(i)["failures"]) for i in retry)
    log(f"retrying the {failed} videos that failed in an earlier run: rewriting "
        f"{len(retry)} shard(s) {', '.join(str(i + 1) for i in retry)} (their other videos "
        f"are converted again, their old failure records dropped)")
  todo = [i for i in range(num) if i not in summaries]
  if summaries:
    log(f"resuming: keeping {len(summaries)} of {num} shards complete without failures")
  paths = [os.path.join(options.video_dir, v.path) for i in todo for v in shards[i]]
  results = _decoded_in_order(paths, options, decode_fn)
  start = time.time()
  try:
    for done, index in enumerate(todo, start=1):
      shard_summary = _write_shard(index, shards[index], results, options)
      progress.write_shard_summary(out, name, index, num, shard_summary)
      summaries[index] = shard_summary
      log(f"shard {index + 1}/{num}: {shard_summary['written']} written, "
          f"{len(shard_summary['failures'])} skipped ({done}/{len(todo)} this run, "
          f"{time.time() - start:.0f}s)")
  finally:
    results.close()  # Shuts the worker pool down, also on Ctrl-C.

  ordered = [summaries[i] for i in range(num)]
  report = summary.build_report(ordered, name=name, total=len(annotation_set.videos),
                                max_failure_fraction=options.max_failure_fraction)
  report.update(format=annotation_set.format, annotations=annotation_set.source,
                video_dir=options.video_dir)
  metadata = summary.build_metadata(ordered, class_names=annotation_set.class_names,
                                    settings=_settings(annotation_set, options))
  report_file = progress.report_path(out, name)
  progress.write_json(report_file, report)
  metadata_file = records.write_metadata(out, name, metadata)
  return ConversionResult(report=report, metadata=metadata, report_path=report_file,
                          metadata_path=metadata_file,
                          shard_paths=shard_writer.complete_shards(out, name))
