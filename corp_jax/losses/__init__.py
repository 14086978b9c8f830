"""CORP losses and metrics: pure functions of arrays (no TensorFlow, no Flax modules).

Order-class convention (docs/CONTRACTS.md): 2-way order logits, class 0 = first argument earlier,
1 = first argument later; 3-way CORP_m, 0 = P1 different videos, 1 = P2 first earlier, 2 = P3
second earlier. Every loss returns (loss, metrics dict).
"""

from corp_jax.losses.contrastive import l2_normalize
from corp_jax.losses.contrastive import nt_xent
from corp_jax.losses.corp_f import corp_f_loss
from corp_jax.losses.corp_f import order_labels
from corp_jax.losses.corp_m import check_order_weight
from corp_jax.losses.corp_m import contrast_only_loss
from corp_jax.losses.corp_m import corp_m_loss
from corp_jax.losses.corp_m import order_only_loss
from corp_jax.losses.corp_m import pair_structure

__all__ = [
    "check_order_weight", "contrast_only_loss", "corp_f_loss", "corp_m_loss", "l2_normalize",
    "nt_xent", "order_labels", "order_only_loss", "pair_structure",
]
