"""Video backbones and projection head (Flax linen; no TensorFlow).

`ResNet3D(variant, dtype, conv_impl, bn_axis_name, bn_momentum, remat, stem_space_to_depth,
bn_impl)(x: [N, T, H, W, 3], train) -> [N, F]` float32; `ProjectionMLP(hidden_dims, out_dim,
dtype, bn_axis_name, bn_momentum)(h: [N, F], train) -> [N, d]` float32; `Conv3D` with 'native' /
'factorized' / 'im2col' / 'auto' implementations; `BatchNormAct` (BatchNorm + residual + ReLU,
flax BatchNorm's variables, 'autodiff' / 'fused' backward). See docs/CONTRACTS.md.
"""

from corp_jax.models.batchnorm import BN_IMPLS, BatchNormAct, default_bn_impl, resolve_bn_impl
from corp_jax.models.conv import CONV_IMPLS, Conv3D, default_conv_impl, resolve_conv_impl
from corp_jax.models.projection import ProjectionMLP
from corp_jax.models.resnet3d import (VARIANTS, BackboneSpec, ResNet3D, feature_dim, get_spec)

__all__ = [
    "BN_IMPLS", "BackboneSpec", "BatchNormAct", "CONV_IMPLS", "Conv3D", "ProjectionMLP",
    "ResNet3D", "VARIANTS", "default_bn_impl", "default_conv_impl", "feature_dim", "get_spec",
    "resolve_bn_impl", "resolve_conv_impl",
]
