"""Relation heads for CORP: mixed attention (Eq. 1), decoupling attention (Eq. 7-8), and the
relation head phi = mlp(r) (Eq. 2 / 4). No TensorFlow; see docs/CONTRACTS.md."""

from corp_jax.heads.relation import ATTENTION_KINDS
from corp_jax.heads.relation import DecouplingAttention
from corp_jax.heads.relation import MixedAttention
from corp_jax.heads.relation import RelationHead

__all__ = ["ATTENTION_KINDS", "DecouplingAttention", "MixedAttention", "RelationHead"]
