"""The rules that turn a job's `config.data` into the input stages' arguments, shared by
pretraining (`train.inputs`), evaluation (`evaluate.job`) and the tools. Imports neither
TensorFlow nor JAX.

Contract:
  `default_cache_dir()`: $CORP_JAX_CACHE, else ~/.cache/corp_jax.
  `embedded_cache_dir(*cache_dirs)`: where the embedded data set lives: the first non-empty
      of `cache_dirs` (e.g. the evaluation's, then its pretraining run's `cache_dir`), else
      <default cache>/embedded.
  `embedded_sizes(data, pretrain_data)`: the embedded set's sizes for an evaluation.
  `augment_config(data)`: `config.data.aug_*` -> `AugmentConfig`; ValueError naming the
      missing keys for a `data` without them.
"""

from __future__ import annotations

import os

from corp_jax.data.augment_params import AugmentConfig


def default_cache_dir() -> str:
  return os.environ.get("CORP_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                       "corp_jax"))


def embedded_cache_dir(*cache_dirs: str) -> str:
  """The first non-empty of `cache_dirs`, else <default cache>/embedded."""
  for directory in cache_dirs:
    if directory:
      return directory
  return os.path.join(default_cache_dir(), "embedded")


_AUG_KEYS = ("aug_crop_area_min", "aug_flip_prob", "aug_color_jitter_prob", "aug_color_strength",
             "aug_grayscale_prob", "aug_blur_prob", "aug_color_mode")


def embedded_sizes(data, pretrain_data) -> dict:
  """The embedded set's sizes an evaluation uses: its own `embedded_*` values, else its
  pretraining run's, else (absent from the dict) the builder's defaults."""
  sizes = {}
  for name in ("num_train", "num_test", "frame_size", "num_frames"):
    value = data.get(f"embedded_{name}", 0) or pretrain_data.get(f"embedded_{name}", 0)
    if value:
      sizes[name] = int(value)
  return sizes


def augment_config(data) -> AugmentConfig:
  """`config.data.aug_*` -> the pipeline's AugmentConfig."""
  missing = [key for key in _AUG_KEYS if key not in data]
  if missing:
    raise ValueError(f"config.data lacks {missing}: a pretraining config.json written by this "
                     "version of corp_jax has them (pretrain again, or add the values that run "
                     "used)")
  return AugmentConfig(
      crop_area_range=(data.aug_crop_area_min, 1.0),
      # .get: configs written before the option existed lack it (it was then always off).
      crop_shared_across_clips=bool(data.get("aug_crop_shared_across_clips", False)),
      flip_prob=data.aug_flip_prob,
      color_jitter_prob=data.aug_color_jitter_prob, brightness=data.aug_color_strength,
      contrast=data.aug_color_strength, saturation=data.aug_color_strength,
      hue=0.2 * data.aug_color_strength, grayscale_prob=data.aug_grayscale_prob,
      blur_prob=data.aug_blur_prob, color_mode=data.aug_color_mode)
