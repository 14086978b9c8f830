"""Every config file and preset loads, is locked, and has consistent values."""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest

from corp_jax import config_defaults
from corp_jax.config_defaults import PRESETS
from corp_jax.evaluate import config_defaults as eval_defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                      if not p.endswith("__init__.py"))


def _load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _presets(module):
  return getattr(module, "PRESETS", PRESETS)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_every_config_and_preset_loads(path):
  module = _load(path)
  for preset in _presets(module):
    config = module.get_config(preset or None)
    assert config.is_locked
    with pytest.raises(AttributeError):
      config.no_such_key = 1  # typos are rejected


def test_unknown_preset_is_a_clear_error():
  module = _load(os.path.join(ROOT, "configs", "corp_f.py"))
  with pytest.raises(ValueError, match="unknown preset 'k401'"):
    module.get_config("k401")


def test_paper_recipes():
  corp_f = _load(os.path.join(ROOT, "configs", "corp_f.py")).get_config("k400")
  corp_m = _load(os.path.join(ROOT, "configs", "corp_m.py")).get_config("ssv2")
  assert (corp_f.optim.batch_size, corp_f.data.num_clips, corp_f.data.stride) == (512, 2, 2)
  assert (corp_m.optim.batch_size, corp_m.data.num_clips, corp_m.data.stride) == (64, 4, 1)
  for c in (corp_f, corp_m):
    assert c.model.backbone == "r3d50"
    assert (c.data.clip_len, c.data.crop_size) == (16, 224)
    assert c.optim.name == "lars" and c.optim.momentum == 0.9
    assert c.optim.weight_decay == 1e-6 and c.optim.warmup_fraction == 0.05
    assert c.train.num_epochs == 800
    assert c.data.source == "tfrecord" and c.data.train_pattern == ""
    # One crop window per clip (Sec. 3.2); the shared window is a diagnostic beyond the paper.
    assert c.data.aug_crop_area_min == 0.3 and not c.data.aug_crop_shared_across_clips


def test_configs_read_the_objective_table():
  from corp_jax import config_defaults
  from corp_jax.train import objectives
  assert sorted(config_defaults.OBJECTIVES) == sorted(objectives.OBJECTIVES)
  for name, objective in objectives.OBJECTIVES.items():
    for preset in ("", "k400"):
      config = config_defaults.pretrain_config(name, preset)
      # The paper presets sample the objective's K (4 for CORP_m); the demo K = 2 for all.
      assert config.data.num_clips == (objective.default_num_clips if preset else 2)
      assert config.optim.base_lr == (1.0 if preset else 0.5 if objective.grouped else 0.2)
      if preset == "k400":  # the paper's batches: 64 for grouped objectives, 512 otherwise
        assert config.optim.batch_size == (64 if objective.grouped else 512)
      else:  # the demo clips the summed pair losses of the grouped objectives
        assert (config.optim.grad_clip_norm > 0) == objective.grouped
  with pytest.raises(ValueError, match="objective must be one of"):
    config_defaults.pretrain_config("corp_x")


def test_config_defaults_and_objectives_import_without_tensorflow():
  code = ("import sys; import corp_jax.config_defaults, corp_jax.train.objectives, "
          "corp_jax.train.step, corp_jax.train.model; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("job", ["linear_eval", "finetune"])
def test_evaluation_config_files_equal_the_package_defaults(job):
  module = _load(os.path.join(ROOT, "configs", f"{job}.py"))
  package_fn = getattr(eval_defaults, f"{job}_config")
  assert tuple(module.PRESETS) == eval_defaults.PRESETS
  for preset in eval_defaults.PRESETS:
    from_file = module.get_config(preset or None).to_dict()
    assert from_file == package_fn(preset or None).to_dict(), preset
    assert from_file == eval_defaults.eval_config(job, preset).to_dict(), preset
    assert from_file["job"] == job


def test_unknown_evaluation_job_is_a_clear_error():
  with pytest.raises(ValueError, match="job must be one of"):
    eval_defaults.eval_config("pretrain", "")


def test_a_group_size_that_does_not_divide_the_device_batch_names_the_fix():
  from corp_jax.train import objectives
  corp_m = objectives.get_objective("corp_m")
  objectives.validate(corp_m, num_clips=2, per_device_batch=16, group_size=8)
  with pytest.raises(ValueError, match=r"group_size=8 must divide the per-device batch 4.*"
                                       r"multiple of 8 x the number of devices"):
    objectives.validate(corp_m, num_clips=2, per_device_batch=4, group_size=8)


def test_group_size_zero_is_the_whole_per_device_batch():
  from corp_jax.train import objectives
  assert objectives.resolve_group_size(0, 32) == 32
  assert objectives.resolve_group_size(8, 32) == 8
  demo = config_defaults.pretrain_config("corp_m")
  assert demo.loss.group_size == 0  # the demo's recipe: one group per device
  assert objectives.resolve_group_size(demo.loss.group_size, demo.optim.batch_size) == 32
  assert config_defaults.pretrain_config("corp_m", "k400").loss.group_size == 8
  corp_m = objectives.get_objective("corp_m")
  objectives.validate(corp_m, num_clips=2, per_device_batch=4, group_size=0)
  with pytest.raises(ValueError, match=r"group_size must be >= 2 videos, got 1 \(0 = the "
                                       r"per-device batch, 1 here\)"):
    objectives.validate(corp_m, num_clips=2, per_device_batch=1, group_size=0)
  for bad in (-1, 2.5, True):
    with pytest.raises(ValueError, match=r"config.loss.group_size must be an integer >= 2, or 0"):
      objectives.resolve_group_size(bad, 32)
