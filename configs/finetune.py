"""Semi-supervised fine-tuning (Sec. 4.1) and fine-tuning transfer. Presets as
configs/linear_eval.py: '' (embedded), 'k400', 'ssv2', 'ucf101', 'hmdb51', 'test'.

All layers start from the pretrained backbone and train (BatchNorm in training mode) on a
class-balanced `subset_fraction` of the training videos (0.1 by default; the paper also
uses 0.01; 1.0 for the transfer presets), drawn reproducibly from `subset_seed`.
Initial learning rate 0.2, otherwise as linear evaluation.

  python -m corp_jax.main --config=configs/finetune.py:k400 --config.subset_fraction=0.01 \
      --config.pretrain_workdir=/ckpt/corp_f_k400 \
      --config.data.train_pattern='/data/k400/k400_train-*' \
      --config.data.eval_pattern='/data/k400/k400_val-*' --workdir=/ckpt/corp_f_k400/ft1

Defaults and presets: corp_jax/evaluate/config_defaults.py.
"""

from corp_jax.evaluate.config_defaults import PRESETS  # pylint: disable=unused-import
from corp_jax.evaluate.config_defaults import finetune_config


def get_config(arg=None):
  return finetune_config(arg)
