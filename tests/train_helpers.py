"""Shared helpers of the pretraining tests: tiny synthetic configs and parameter access."""

import jax
import numpy as np

from corp_jax.config_defaults import pretrain_config


def tiny_config(objective="corp_f", *, steps=4, source="synthetic", num_devices=2, **overrides):
  """The 'test' preset on synthetic data (no TensorFlow), a few steps, 2 devices."""
  config = pretrain_config(objective, "test")
  with config.unlocked():
    config.data.source = source
    config.train.num_steps = steps
    config.train.num_devices = num_devices
    config.train.async_checkpoints = False
  return apply_overrides(config, **overrides)


def apply_overrides(config, **overrides):
  """Sets `a__b=value` keyword overrides on config.a.b; returns config.

  Keys must exist (the config stays locked), so a test cannot set a key the job never reads.
  """
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split("__")
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise KeyError(f"config has no key {dotted.replace('__', '.')!r}")
    node[leaf] = value
  return config


def flat_params(tree) -> dict:
  """{path: np.ndarray} of a (replicated) pytree, read from this process's first shard."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p): np.asarray(x.addressable_data(0) if hasattr(
      x, "addressable_data") else x) for p, x in flat}
