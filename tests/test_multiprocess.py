"""Two processes on 127.0.0.1 (gloo CPU collectives), 2 host devices each, train the same
global batch as one process on one device: identical parameters in both processes, equal to
the single-device run within float tolerance (so this is also the 1-vs-4-device invariance
of the whole train step, cross-replica BatchNorm included)."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multiprocess_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run(procs_args, timeout):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, WORKER, *map(str, a)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for a in procs_args]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=timeout)[0])
  finally:
    for p in procs:  # no stray processes, whatever happened
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return outs


def test_two_processes_match_one(tmp_path):
  port = _free_port()
  shared = tmp_path / "multi"
  _run([(i, 2, port, 2, shared, tmp_path / f"p{i}.npz") for i in range(2)], timeout=420)
  _run([(0, 1, 0, 1, tmp_path / "single", tmp_path / "single.npz")], timeout=420)
  p0, p1, single = (np.load(tmp_path / f) for f in ("p0.npz", "p1.npz", "single.npz"))
  assert int(p0["__num_devices__"]) == 4 and int(single["__num_devices__"]) == 1
  assert p0.files == p1.files == single.files
  for k in (f for f in p0.files if not f.startswith("__")):
    np.testing.assert_array_equal(p0[k], p1[k], err_msg=f"processes disagree on {k}")
    np.testing.assert_allclose(p0[k], single[k], rtol=2e-4, atol=2e-5,
                               err_msg=f"multi-process vs single-process {k}")
