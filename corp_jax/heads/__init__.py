"""Relation heads for CORP: what the head sees (`relation_inputs`), mixed attention (Eq. 1),
decoupling attention (Eq. 7-8), and the relation head phi = mlp(r) (Eq. 2 / 4). No TensorFlow;
see docs/CONTRACTS.md."""

from corp_jax.heads.relation import ATTENTION_KINDS
from corp_jax.heads.relation import DecouplingAttention
from corp_jax.heads.relation import MixedAttention
from corp_jax.heads.relation import RelationHead
from corp_jax.heads.relation import corp_f_order_logits
from corp_jax.heads.relation import group_pair_logits
from corp_jax.heads.relation import relation_inputs

__all__ = ["ATTENTION_KINDS", "DecouplingAttention", "MixedAttention", "RelationHead",
           "corp_f_order_logits", "group_pair_logits", "relation_inputs"]
