"""data_prep under faults: failed videos are retried by a rerun, identical runs write
identical bytes, and a SIGKILLed conversion leaves no worker or tracker process behind."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("av")
pytest.importorskip("tensorflow")

from corp_jax.data import shard_writer  # pylint: disable=g-import-not-at-top
from corp_jax.tools import faults
from data_prep import annotations
from data_prep import convert
from data_prep import decode
from data_prep import videos_to_tfrecords
from tests.test_data_prep import MP4, read_records, write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_mp4 = pytest.mark.skipif(MP4 is None, reason="this PyAV build has no mp4 encoder")


def _videos(video_dir, names, frames=4):
  for name in names:
    write_video(str(video_dir / name), MP4[1], frames, width=32, height=24)


def _options(video_dir, out, **kw):
  return convert.ConvertOptions(video_dir=str(video_dir), output_dir=str(out), name="t",
                                num_shards=3, max_failure_fraction=1.0,
                                decode_options=decode.DecodeOptions(short_side=16), **kw)


@needs_mp4
def test_rerun_retries_failed_videos_and_keeps_good_shards(tmp_path):
  video_dir, out = tmp_path / "videos", tmp_path / "out"
  names = [f"v{i}.mp4" for i in range(5)]
  _videos(video_dir, names[:4])  # v4.mp4 is missing in the first run
  csv = tmp_path / "a.csv"
  csv.write_text("".join(f"{n},c{i % 2}\n" for i, n in enumerate(names)))
  video_set = annotations.parse_annotations("csv", str(csv), str(video_dir))
  first = convert.convert(video_set, _options(video_dir, out), log=lambda _: None)
  assert [f["path"] for f in first.report["failures"]] == ["v4.mp4"]
  bad_shard = first.report["failures"][0]["shard"]
  shards = shard_writer.complete_shards(str(out), "t")
  before = {p: os.stat(p).st_mtime_ns for p in shards}

  _videos(video_dir, names[4:])  # the missing file is restored
  decoded, messages = [], []
  counting = lambda path, o: decoded.append(os.path.basename(path)) or decode.decode_video(path, o)
  second = convert.convert(video_set, _options(video_dir, out), decode_fn=counting,
                           log=messages.append)
  assert "v4.mp4" in decoded
  expected = [v.path for v in convert.assign_shards(video_set.videos, 3, 0)[bad_shard]]
  assert sorted(decoded) == sorted(expected)  # only the failed video's shard is redone
  assert any(f"retrying the 1 videos that failed" in m and f"shard(s) {bad_shard + 1}" in m
             for m in messages), messages
  assert second.report["failed"] == 0 and second.report["failures"] == []
  with open(out / "t.report.json") as f:
    assert json.load(f)["written"] == 5
  for path, mtime in before.items():
    if not path.endswith(f"-{bad_shard:05d}-of-00003"):
      assert os.stat(path).st_mtime_ns == mtime, f"good shard {path} was rewritten"
  assert sorted(r["filename"] for r in read_records(str(out), "t")) == names


@needs_mp4
def test_identical_runs_write_identical_shards(tmp_path):
  video_dir = tmp_path / "videos"
  _videos(video_dir, ["a.mp4", "b.mp4", "c.mp4"], frames=3)
  args = ["--video_dir", str(video_dir), "--format", "folder", "--name", "t",
          "--num_shards", "2", "--short_side", "16", "--workers", "0"]
  # One run here, one in another process: protobuf map order can differ between processes.
  assert videos_to_tfrecords.main(args + ["--output_dir", str(tmp_path / "one")]) == 0
  subprocess.run([sys.executable, "-m", "data_prep.videos_to_tfrecords", *args,
                  "--output_dir", str(tmp_path / "two")], cwd=ROOT, check=True,
                 env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, timeout=120)
  shards = [{os.path.basename(p): open(p, "rb").read()
             for p in shard_writer.complete_shards(str(tmp_path / run), "t")}
            for run in ("one", "two")]
  assert len(shards[0]) == 2 and shards[0] == shards[1]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc (Linux)")
@needs_mp4
def test_sigkill_leaves_no_worker_or_tracker_alive(tmp_path):
  video_dir = tmp_path / "videos"
  _videos(video_dir, ["a.mp4", "b.mp4"], frames=2)
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "data_prep_driver.py"),
                           str(video_dir), str(tmp_path / "out")], cwd=ROOT)
  try:
    deadline = time.time() + 60
    # The pool is up: 2 workers and the multiprocessing resource tracker.
    while len(faults.descendants(proc.pid)) < 3 and time.time() < deadline:
      time.sleep(0.2)
    children = faults.descendants(proc.pid)
    assert len(children) >= 3, "the pool never started"
    time.sleep(1.0)  # the workers are now inside the blocking decode
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while any(faults.alive(c) for c in children) and time.time() < deadline:
      time.sleep(0.1)
    survivors = [c for c in children if faults.alive(c)]
  finally:
    proc.kill()
  for pid in survivors:  # clean up before failing
    os.kill(pid, signal.SIGKILL)
  assert not survivors, f"{len(survivors)} of {len(children)} children outlived a SIGKILL"
