"""Test-view extraction sharded over processes and cached per test file
(corp_jax/evaluate/sharded_views.py): two processes on 127.0.0.1 return exactly what one
process returns, and a restarted extraction reads the cached files instead of recomputing."""

import os
import socket
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from corp_jax import io_paths
from corp_jax.evaluate import features as features_lib
from corp_jax.evaluate import sharded_views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "eval_shard_worker.py")
EVAL_KWARGS = dict(batch_size=3, num_clips=2, num_crops=1, clip_len=2, stride=1, crop_size=16)


def feature_fn():
  """A fixed, non-trivial per-clip function (channel means and spread), on local devices."""
  def fn(_, clips):
    return jnp.concatenate([clips.mean(axis=(1, 2, 3)), clips.std(axis=(1, 2, 3))], axis=-1)
  return features_lib.ChunkedApply(fn, {}, 8, sharded_views.local_mesh())


def extract(files, cache_dir, fn=None):
  return sharded_views.extract_view_features(
      files, fn or feature_fn(), cache_dir=cache_dir, cache_key="test-key", **EVAL_KWARGS)


@pytest.fixture(scope="module")
def test_files():
  from corp_jax.data import embedded  # pylint: disable=g-import-not-at-top
  from corp_jax.data import from_config  # pylint: disable=g-import-not-at-top
  info = embedded.ensure_embedded_dataset(
      from_config.embedded_cache_dir(), seed=0, num_train=32, num_test=8,
      frame_size=24, num_frames=16)
  files = info["test"]["files"]
  assert len(files) >= 3  # more files than processes: one process gets two
  return files


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_return_the_one_process_result(test_files, tmp_path):
  single = extract(test_files, None)
  assert len(single["label"]) == 8 and single["outputs"].shape == (8, 2, 6)
  assert np.all(np.diff(single["video_id"]) > 0) and np.std(single["outputs"]) > 0

  port = _free_port()
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen(
      [sys.executable, WORKER, str(i), "2", str(port), str(tmp_path / "cache"),
       str(tmp_path / f"p{i}.npz"), *test_files],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=240)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  p0, p1 = (np.load(tmp_path / f"p{i}.npz") for i in range(2))
  for key in sharded_views.KEYS:
    np.testing.assert_array_equal(p0[key], p1[key], err_msg=f"processes disagree on {key}")
  np.testing.assert_array_equal(p0["video_id"], single["video_id"])
  np.testing.assert_array_equal(p0["label"], single["label"])
  # This process spreads each chunk over 8 devices, the workers over 1: the reductions'
  # order differs, nothing else.
  np.testing.assert_allclose(p0["outputs"], single["outputs"], rtol=1e-5, atol=1e-6)
  # Each process cached its own files: 0 and 2 by process 0, 1 and 3 by process 1.
  cached = io_paths.listdir(tmp_path / "cache")
  assert cached == [f"views-{i:05d}-of-{len(test_files):05d}.npz"
                    for i in range(len(test_files))]


def test_a_restarted_extraction_reads_the_cached_files(test_files, tmp_path):
  cache = str(tmp_path / "cache")
  calls = []
  base = feature_fn()

  def counting(clips):
    calls.append(len(clips))
    return base(clips)

  first = extract(test_files, cache, counting)
  assert len(calls) == len(test_files)  # one call per file (each file fits one batch)
  # A crash after the first files: one cache file is lost, the job restarts.
  os.remove(sharded_views.cache_path(cache, 1, len(test_files)))
  calls.clear()
  second = extract(test_files, cache, counting)
  assert len(calls) == 1  # only the missing file was computed
  for key in sharded_views.KEYS:
    np.testing.assert_array_equal(second[key], first[key])
  # A cache written for other features (another checkpoint, other views) is not reused.
  calls.clear()
  sharded_views.extract_view_features(test_files, counting, cache_dir=cache,
                                      cache_key="other-key", **EVAL_KWARGS)
  assert len(calls) == len(test_files)
