"""corp_m pretraining. Presets: '' (embedded demo), 'long' (the demo on
4,096 videos for 2,000 steps), 'k400', 'ssv2', 'test'.

  python -m corp_jax.main --config=configs/corp_m.py --workdir=/tmp/corp_m
  python -m corp_jax.main --config=configs/corp_m.py:k400 \
      --config.data.train_pattern='/data/k400/k400_train-*' --workdir=gs://bucket/corp_m_k400
"""

from corp_jax.config_defaults import pretrain_config


def get_config(arg=None):
  return pretrain_config("corp_m", arg)
