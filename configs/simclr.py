"""simclr pretraining. Presets: '' (embedded demo), 'long' (the demo on
4,096 videos for 2,000 steps), 'k400', 'ssv2', 'test'.

  python -m corp_jax.main --config=configs/simclr.py --workdir=/tmp/simclr
  python -m corp_jax.main --config=configs/simclr.py:k400 \
      --config.data.train_pattern='/data/k400/k400_train-*' --workdir=gs://bucket/simclr_k400
"""

from corp_jax.config_defaults import pretrain_config


def get_config(arg=None):
  return pretrain_config("simclr", arg)
