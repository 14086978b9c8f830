"""Linear evaluation of a pretrained backbone (Sec. 4.1). Presets: '' (embedded data set),
'k400', 'ssv2', 'ucf101', 'hmdb51' (transfer), 'test'.

  python -m corp_jax.main --config=configs/linear_eval.py \
      --config.pretrain_workdir=/tmp/demo_corp_f --workdir=/tmp/demo_corp_f/linear_eval
  python -m corp_jax.main --config=configs/linear_eval.py:k400 \
      --config.pretrain_workdir=/ckpt/corp_f_k400 \
      --config.data.train_pattern='/data/k400/k400_train-*' \
      --config.data.eval_pattern='/data/k400/k400_val-*' --workdir=/ckpt/corp_f_k400/linear

The model comes from the pretraining workdir's config.json; data settings of 0 mean "as in
pretraining" (clip stride, crop size; the embedded preset also takes the clip length).
Defaults and presets: corp_jax/evaluate/config_defaults.py.
"""

from corp_jax.evaluate.config_defaults import PRESETS  # pylint: disable=unused-import
from corp_jax.evaluate.config_defaults import linear_eval_config


def get_config(arg=None):
  return linear_eval_config(arg)
