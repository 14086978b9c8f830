"""Table 6a ablation: contrast_only (2-way) in the CORP_m layout. Presets as configs/corp_m.py."""

from corp_jax.config_defaults import pretrain_config


def get_config(arg=None):
  return pretrain_config("contrast_only", arg)
