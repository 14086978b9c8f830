"""The command line reports a user's mistake in a few lines without a traceback: a config
typo (full key path and the valid keys), a missing config file, a bad value, a missing
input; `--verbose` shows the traceback."""

import os
import subprocess
import sys

import pytest

from corp_jax import cli_errors
from corp_jax.config_defaults import pretrain_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, timeout=120):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "corp_jax.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _assert_short(proc, *expected):
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr and "RuntimeError" not in proc.stderr, proc.stderr
  assert len(proc.stderr.strip().splitlines()) <= 4, proc.stderr
  for text in expected:
    assert text in proc.stderr, proc.stderr


def test_config_typo_names_the_key_path_and_valid_keys():
  proc = _main("--config=configs/corp_f.py:test", "--config.optim.lrr=1")
  _assert_short(proc, "unknown config key 'config.optim.lrr'", "config.optim has no 'lrr'",
                "base_lr")
  verbose = _main("--config=configs/corp_f.py:test", "--config.optim.lrr=1", "--verbose")
  assert verbose.returncode != 0 and "Traceback" in verbose.stderr


def test_missing_config_file_names_the_path():
  proc = _main("--config=configs/no_such_config.py:test")
  _assert_short(proc, "config file 'configs/no_such_config.py' not found", "configs/corp_f.py")


def test_tfrecord_source_without_pattern_is_one_clean_error(tmp_path):
  proc = _main("--config=configs/corp_f.py:test", "--config.data.source=tfrecord",
               f"--workdir={tmp_path / 'w'}")
  _assert_short(proc, "config.data.train_pattern is required")
  assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.parametrize("dotted,expected", [
    ("optim.lrr", "config.optim has no 'lrr'; did you mean 'base_lr'"),
    ("optm.base_lr", "config has no 'optm'; did you mean 'optim'"),
    ("optim.base_lr.x", "config.optim.base_lr is a value"),
    ("optim.base_lr", None),
])
def test_describe_key_error(dotted, expected):
  problem = cli_errors.describe_key_error(pretrain_config("corp_f", "test"), dotted)
  if expected is None:
    assert problem is None
  else:
    assert expected in problem
