"""End to end on the embedded data set (TFRecord path, tf.data pipeline): a short run of
each of corp_f, corp_m and simclr trains, checkpoints, resumes, and its loss goes down."""

import json
import os

import pytest

from corp_jax.train import checkpoint as ckpt_lib
from corp_jax.train import loop
from tests.train_helpers import tiny_config

pytestmark = pytest.mark.slow


def _embedded_config(objective, cache_dir, steps):
  return tiny_config(
      objective, steps=steps, source="embedded", num_devices=1,
      data__cache_dir=str(cache_dir), data__embedded_num_train=32,
      data__embedded_num_test=8, data__embedded_frame_size=24, data__embedded_num_frames=16,
      data__clip_len=4, data__crop_size=16, optim__base_lr=2.0,
      train__log_every=1, train__checkpoint_every=6)


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["loss"] for line in f]


@pytest.mark.parametrize("objective", ["corp_f", "corp_m", "simclr"])
def test_short_run_learns_checkpoints_and_resumes(tmp_path_factory, objective):
  cache = tmp_path_factory.getbasetemp() / "embedded_cache"
  workdir = str(tmp_path_factory.mktemp(objective))
  loop.pretrain(_embedded_config(objective, cache, steps=12), workdir)
  assert ckpt_lib.latest_step(workdir) == 12
  losses = _losses(workdir)
  assert len(losses) == 12
  first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
  assert last < first, f"{objective} loss did not go down: {losses}"
  # A longer run in the same workdir resumes from step 12 instead of starting over.
  _, summary = loop.pretrain(_embedded_config(objective, cache, steps=14), workdir)
  assert summary["step"] == 14 and ckpt_lib.latest_step(workdir) == 14
  assert len(_losses(workdir)) == 14
