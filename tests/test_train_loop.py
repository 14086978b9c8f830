"""The pretraining loop on synthetic data (no TensorFlow): exact resume after a crash,
non-finite stop without a bad checkpoint, checkpoint/model mismatch errors, SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from corp_jax.train import checkpoint as ckpt_lib
from corp_jax.train import inputs as inputs_lib
from corp_jax.train import loop
from tests.train_helpers import flat_params, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _crash_after(monkeypatch, num_batches, exc=KeyboardInterrupt):
  real = inputs_lib.synthetic_batches

  def wrapped(**kw):
    it = real(**kw)
    for _ in range(num_batches):
      yield next(it)
    raise exc("simulated crash")

  monkeypatch.setattr(inputs_lib, "synthetic_batches", wrapped)


@pytest.mark.parametrize("objective", ["corp_f", "corp_m"])
def test_resume_after_crash_is_exact(tmp_path, monkeypatch, objective):
  config = tiny_config(objective, steps=4, train__checkpoint_every=2)
  full_state, _ = loop.pretrain(config, str(tmp_path / "full"))

  crashed = str(tmp_path / "crashed")
  with monkeypatch.context() as m:
    _crash_after(m, 3)  # step 3 crashes after the step-2 checkpoint was written
    with pytest.raises(KeyboardInterrupt):
      loop.pretrain(config, crashed)
  assert ckpt_lib.latest_step(crashed) == 2
  resumed_state, summary = loop.pretrain(config, crashed)
  assert summary["step"] == 4
  a, b = flat_params(full_state.params), flat_params(resumed_state.params)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  np.testing.assert_array_equal(*[
      np.concatenate([v.ravel() for v in flat_params(s.batch_stats).values()])
      for s in (full_state, resumed_state)])


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  real = inputs_lib.synthetic_batches

  def poisoned(**kw):
    for i, batch in enumerate(real(**kw)):
      if i == 2:  # the third step sees NaN clips
        batch = dict(batch, clips=np.full_like(batch["clips"], np.nan))
      yield batch

  monkeypatch.setattr(inputs_lib, "synthetic_batches", poisoned)
  config = tiny_config("corp_f", steps=6, train__checkpoint_every=2, train__log_every=3)
  workdir = str(tmp_path / "nan")
  with pytest.raises(FloatingPointError, match="non-finite loss at step 3"):
    loop.pretrain(config, workdir)
  assert ckpt_lib.latest_step(workdir) == 2
  params, stats, step = ckpt_lib.restore_backbone(workdir)
  assert step == 2
  assert all(np.isfinite(np.asarray(x)).all() for x in flat_params(params).values())


def test_checkpoint_model_mismatch_names_keys_and_shapes(tmp_path):
  workdir = str(tmp_path / "mismatch")
  loop.pretrain(tiny_config("corp_f", steps=2, train__checkpoint_every=2), workdir)
  bigger = tiny_config("corp_f", steps=4, model__projection_dim=24)
  with pytest.raises(ValueError, match=r"projection.*shape mismatches|shape mismatches.*projection"):
    loop.pretrain(bigger, workdir)


def test_batch_that_does_not_divide_devices_is_a_clear_error(tmp_path):
  config = tiny_config("corp_f", steps=1, optim__batch_size=6, num_devices=4)
  with pytest.raises(ValueError, match="batch_size=6 is not divisible by the 4 devices"):
    loop.pretrain(config, str(tmp_path / "bad"))


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path):
  workdir = str(tmp_path / "sigterm")
  cmd = [sys.executable, "-m", "corp_jax.main", "--config=configs/corp_f.py:test",
         f"--workdir={workdir}", "--config.data.source=synthetic",
         "--config.train.num_steps=100000", "--config.train.log_every=1",
         "--config.train.checkpoint_every=100000"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.time() + 240
    for line in proc.stdout:
      if line.startswith("step 3/"):
        proc.send_signal(signal.SIGTERM)
        break
      assert time.time() < deadline, "training never reached step 3"
    out = proc.communicate(timeout=120)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, out
  assert "SIGTERM: saved checkpoint at step" in out
  step = ckpt_lib.latest_step(workdir)
  assert step is not None and step >= 3


def test_backbone_restores_on_a_different_device_count(tmp_path):
  workdir = str(tmp_path / "two_devices")
  state, _ = loop.pretrain(tiny_config("corp_f", steps=2, num_devices=2), workdir)
  params, stats, step = ckpt_lib.restore_backbone(workdir)  # this process: 8 devices
  assert step == 2
  expected = flat_params(state.params["backbone"])
  got = flat_params(params)
  assert expected.keys() == got.keys()
  for k in expected:
    np.testing.assert_array_equal(expected[k], got[k], err_msg=k)
  assert flat_params(stats).keys() == flat_params(state.batch_stats["backbone"]).keys()
