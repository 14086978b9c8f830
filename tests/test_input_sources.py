"""The data layer's config rules (`from_config`) and shard naming (`read`), which pretraining
and evaluation share."""

import json

import ml_collections
import pytest

from corp_jax import config_defaults
from corp_jax.data import from_config, read
from corp_jax.data.augment_params import AugmentConfig


@pytest.mark.parametrize("pattern, name", [
    ("/d/k400_train-?????-of-?????", "k400_train"),
    ("/d/k400_train-00003-of-00010", "k400_train"),
    ("/d/k400-train-*-of-*", "k400-train"),  # a dash inside NAME stays
    ("/d/k400-train-*", "k400-train"),
    ("/d/ucf_test_*", "ucf_test"),
    ("gs://b/d/ucf_test*", "ucf_test"),
    ("/d/video.tfrecord", None),
    ("/d/*", None),
])
def test_shard_set_name(pattern, name):
  assert read.shard_set_name(pattern) == name


def test_shard_metadata_is_read_beside_the_shards(tmp_path):
  (tmp_path / "my-set.metadata.json").write_text(json.dumps({"num_videos": 7}))
  assert read.shard_metadata(str(tmp_path / "my-set-?????-of-?????")) == {"num_videos": 7}
  assert read.shard_metadata(str(tmp_path / "my-set-*")) == {"num_videos": 7}
  assert read.shard_metadata(str(tmp_path / "other-*")) is None
  assert read.shard_metadata(str(tmp_path / "plain.tfrecord")) is None


def test_augment_config_from_the_data_config():
  data = config_defaults.pretrain_config("corp_f").data
  with data.unlocked():
    data.aug_crop_area_min, data.aug_color_strength, data.aug_blur_prob = 0.4, 0.5, 0.25
    data.aug_color_mode = "linear"
  cfg = from_config.augment_config(data)
  assert cfg.crop_area_range == (0.4, 1.0) and cfg.blur_prob == 0.25
  assert cfg.brightness == cfg.contrast == cfg.saturation == 0.5 and cfg.hue == 0.1
  assert cfg.color_mode == "linear" and cfg.flip_prob == data.aug_flip_prob
  # A config.json without the aug_* keys is not this version's: a clear error naming them.
  with pytest.raises(ValueError, match="aug_crop_area_min"):
    from_config.augment_config(ml_collections.ConfigDict({"clip_len": 8}))


def test_cache_directories(monkeypatch, tmp_path):
  monkeypatch.setenv("CORP_JAX_CACHE", str(tmp_path))
  assert from_config.default_cache_dir() == str(tmp_path)
  assert from_config.embedded_cache_dir() == str(tmp_path / "embedded")
  assert from_config.embedded_cache_dir("", "/pre/cache") == "/pre/cache"
  assert from_config.embedded_cache_dir("/mine", "/pre/cache") == "/mine"
