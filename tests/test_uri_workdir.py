"""Workdirs as URIs: the pretraining job and a linear evaluation with gs:// workdirs, against
a GCS API server on 127.0.0.1 (tests/gcs_emulator.py). Every output lands in the store and
nothing on local disk (no folder named 'gs:')."""

import json
import os

import pytest

from corp_jax import io_paths
from corp_jax import dispatch
from corp_jax.evaluate.config_defaults import linear_eval_config
from corp_jax.train import checkpoint as ckpt_lib
from tests.gcs_emulator import gcs_bucket, list_objects  # pylint: disable=unused-import
from tests.train_helpers import apply_overrides, tiny_config

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _linear_eval_config(**overrides):
  return apply_overrides(linear_eval_config("test"), **overrides)


def _local_files(root) -> set:
  return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_pretrain_and_linear_eval_in_a_gcs_workdir(gcs_bucket, tmp_path, monkeypatch, capsys):
  run_dir = tmp_path / "cwd"
  run_dir.mkdir()
  monkeypatch.chdir(run_dir)
  workdir = f"{gcs_bucket}/runs/corp_f"
  config = tiny_config("corp_f", steps=2, train__checkpoint_every=2, train__log_every=1)
  summary = dispatch.run(config, workdir + "/")
  assert summary["step"] == 2 and summary["workdir"] == workdir
  assert ckpt_lib.latest_step(workdir) == 2

  eval_dir = f"{workdir}/linear"
  # The input data (the embedded data set's local cache) stays local; outputs go to the store.
  results = dispatch.run(_linear_eval_config(pretrain_workdir=workdir), eval_dir)
  assert results["backbone_step"] == 2 and 0.0 <= results["top1"] <= 1.0
  assert results["pretrain_workdir"] == workdir

  objects = set(list_objects(gcs_bucket))
  expected = ["config.json", "summary.json", "metrics.jsonl",
              "checkpoints/2/_CHECKPOINT_METADATA", "linear/results.json",
              "linear/per_class.csv", "linear/per_class.md", "linear/confusion_matrix.png",
              "linear/per_class_accuracy.png", "linear/pretraining_curves.png",
              "linear/train_log.jsonl"]
  missing = [name for name in expected if f"runs/corp_f/{name}" not in objects]
  assert not missing, (missing, sorted(objects))
  assert any(o.startswith("runs/corp_f/tb/events.out.tfevents") for o in objects)
  assert any(o.startswith("runs/corp_f/linear/features/") for o in objects), sorted(objects)
  rows = [json.loads(line) for line in
          io_paths.read_text(f"{workdir}/metrics.jsonl").splitlines()]
  assert [r["step"] for r in rows] == [1, 2]
  png = io_paths.read_bytes(f"{eval_dir}/confusion_matrix.png")
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  # Nothing was written on local disk (the input cache and XLA's are elsewhere).
  assert _local_files(run_dir) == set(), _local_files(run_dir)
  assert not os.path.exists(os.path.join(ROOT, "gs:"))

  # The evaluation stopped after some test files: rerun, the cached features are reused.
  views = sorted(o for o in objects if o.startswith("runs/corp_f/linear/features/test/"))
  assert len(views) >= 2, views
  io_paths.remove(f"{gcs_bucket}/{views[0]}")
  capsys.readouterr()
  again = dispatch.run(_linear_eval_config(pretrain_workdir=workdir), eval_dir)
  printed = capsys.readouterr().out
  assert f"{len(views) - 1} of {len(views)} file(s)" in printed, printed
  assert "training-view features read from the cache" in printed, printed
  assert again["top1"] == results["top1"] and again["top5"] == results["top5"]
  assert again["confusion_matrix"] == results["confusion_matrix"]
