"""Coordinated preemption: two processes on 127.0.0.1, only one receives SIGTERM; both save
the same step and exit 0, and resuming from that checkpoint ends bit-identical to a run that
was never interrupted."""

import os
import subprocess
import sys

import numpy as np
import pytest

from corp_jax.train import checkpoint as ckpt_lib
from tests.preemption_worker import TOTAL_STEPS
from tests.test_multiprocess import ROOT, _free_port

WORKER = os.path.join(ROOT, "tests", "preemption_worker.py")


def _run_pair(phase, root, timeout=300):
  """Runs both processes of PHASE; asserts both exit 0."""
  port = _free_port()
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, WORKER, str(i), str(port), phase, str(root)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  try:
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
  finally:
    for p in procs:  # no stray processes, whatever happened
      if p.poll() is None:
        p.kill()
        p.wait()
  for i, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, f"process {i} of {phase!r} exited {p.returncode}:\n{out[-3000:]}"


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  _run_pair("run", tmp_path)
  runs = [np.load(tmp_path / f"run_p{i}.npz") for i in range(2)]
  cut_steps = [int(r["cut/__step__"]) for r in runs]
  assert all(bool(r["cut/__preempted__"]) for r in runs)
  assert cut_steps[0] == cut_steps[1], f"processes stopped at different steps {cut_steps}"
  assert 0 < cut_steps[0] < TOTAL_STEPS
  assert ckpt_lib.latest_step(str(tmp_path / "cut")) == cut_steps[0]
  assert [int(r["full/__step__"]) for r in runs] == [TOTAL_STEPS] * 2

  _run_pair("resume", tmp_path)
  resumed = [np.load(tmp_path / f"resume_p{i}.npz") for i in range(2)]
  for process, (run, res) in enumerate(zip(runs, resumed)):
    assert int(res["resumed/__step__"]) == TOTAL_STEPS
    names = [k.split("/", 1)[1] for k in run.files if k.startswith("full/") and "__" not in k]
    assert names
    for name in names:
      np.testing.assert_array_equal(res[f"resumed/{name}"], run[f"full/{name}"],
                                    err_msg=f"process {process}: {name}")
