"""After a crash and resume, metrics.jsonl holds each step once (the rows logged after the
restored checkpoint are cut), and the resumed TensorBoard event file tells readers to purge
the earlier files' events from the first resumed step on."""

import glob
import json
import os
import struct

import pytest

from corp_jax.train import loop
from corp_jax.train import reporting
from tests.train_helpers import tiny_config


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _events(path):
  """The Event protos of one TensorBoard event file (TFRecord framing)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  events = []
  with open(path, "rb") as f:
    data = f.read()
  offset = 0
  while offset < len(data):
    (length,) = struct.unpack("<Q", data[offset:offset + 8])
    event = event_pb2.Event()
    event.ParseFromString(data[offset + 12:offset + 12 + length])
    events.append(event)
    offset += 12 + length + 4
  return events


class _Crash(Exception):
  pass


@pytest.mark.slow
def test_crash_after_a_log_row_then_resume_logs_each_step_once(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  config = tiny_config("corp_f", steps=4, train__checkpoint_every=2, train__log_every=1)
  real_write = reporting.MetricReporter.write

  def write_then_crash(self, step, scalars):
    out = real_write(self, step, scalars)
    if step == 3:  # logged step 3; the last checkpoint is step 2
      raise _Crash()
    return out

  monkeypatch.setattr(reporting.MetricReporter, "write", write_then_crash)
  with pytest.raises(_Crash):
    loop.pretrain(config, workdir)
  assert [r["step"] for r in _rows(workdir)] == [1, 2, 3]
  crashed_step3 = _rows(workdir)[2]
  monkeypatch.setattr(reporting.MetricReporter, "write", real_write)

  _, summary = loop.pretrain(config, workdir)
  assert summary["step"] == 4
  rows = _rows(workdir)
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  assert rows[2]["loss"] == pytest.approx(crashed_step3["loss"], rel=1e-6)  # exact resume

  files = glob.glob(os.path.join(workdir, "tb", "events.out.tfevents.*"))
  assert len(files) == 2
  starts = lambda evs: [e.step for e in evs if e.HasField("session_log")
                        and e.session_log.status == e.session_log.START]
  scalar_steps = lambda evs: sorted({e.step for e in evs if e.summary.value})
  by_start = {tuple(starts(evs)): evs for evs in map(_events, files)}
  # The first run's file: purge marker at step 1 (nothing older to hide), then what its
  # writer thread got to disk before the crash (tensorboardX writes asynchronously). The
  # resumed run's: the marker at step 3, so TensorBoard hides the first file's step 3.
  assert sorted(by_start) == [(1,), (3,)], sorted(by_start)
  assert set(scalar_steps(by_start[(1,)])) <= {1, 2, 3}
  assert scalar_steps(by_start[(3,)]) == [3, 4]


def test_cut_metrics_log_drops_later_and_torn_rows(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5}\n{"step": 3, "loss": 2.0}\n'
            '{"step": 4, "lo')  # a crash in the middle of a write
  assert reporting.cut_metrics_log(path, 2) == 2
  assert [r["step"] for r in _rows(str(tmp_path))] == [1, 2]
  assert reporting.cut_metrics_log(path, 2) == 0  # nothing to cut: the file is left alone
  assert reporting.cut_metrics_log(str(tmp_path / "missing.jsonl"), 0) == 0
