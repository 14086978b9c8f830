"""Video backbones and projection head (Flax linen; no TensorFlow).

`ResNet3D(variant, dtype, conv_impl, bn_axis_name, bn_momentum, remat)(x: [N, T, H, W, 3],
train) -> [N, F]` float32; `ProjectionMLP(hidden_dims, out_dim, dtype, bn_axis_name,
bn_momentum)(h: [N, F], train) -> [N, d]` float32; `Conv3D` with 'native' / 'factorized' /
'auto' implementations. See docs/CONTRACTS.md.
"""

from corp_jax.models.conv import CONV_IMPLS, Conv3D, default_conv_impl, resolve_conv_impl
from corp_jax.models.projection import ProjectionMLP
from corp_jax.models.resnet3d import (VARIANTS, BackboneSpec, ResNet3D, feature_dim, get_spec)

__all__ = [
    "BackboneSpec", "CONV_IMPLS", "Conv3D", "ProjectionMLP", "ResNet3D", "VARIANTS",
    "default_conv_impl", "feature_dim", "get_spec", "resolve_conv_impl",
]
