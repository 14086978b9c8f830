"""Per-platform speed defaults (corp_jax/models/platform.py) and the config's 'auto' values."""

import jax
import numpy as np
import pytest

from corp_jax.models import platform
from corp_jax.models.resnet3d import ResNet3D


def test_configure_xla_flags_appends_once_and_respects_the_user():
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert platform.configure_xla_flags(env) == ["--xla_gpu_force_conv_nhwc"]
  assert env["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=8 "
                              "--xla_gpu_force_conv_nhwc")
  assert platform.configure_xla_flags(env) == []  # idempotent
  assert platform.gpu_conv_nhwc_enabled(env)
  empty = {}
  platform.configure_xla_flags(empty)
  assert empty["XLA_FLAGS"] == "--xla_gpu_force_conv_nhwc"
  user_off = {"XLA_FLAGS": "--xla_gpu_force_conv_nhwc=false"}
  assert platform.configure_xla_flags(user_off) == []
  assert user_off["XLA_FLAGS"] == "--xla_gpu_force_conv_nhwc=false"
  assert not platform.gpu_conv_nhwc_enabled(user_off)
  assert not platform.gpu_conv_nhwc_enabled({})


def test_platform_defaults():
  assert platform.default_bn_impl("gpu") == "fused"
  assert platform.default_bn_impl("cpu") == platform.default_bn_impl("tpu") == "autodiff"
  assert platform.default_stem_space_to_depth("gpu")
  assert not platform.default_stem_space_to_depth("cpu")
  assert not platform.default_stem_space_to_depth("tpu")


@pytest.mark.parametrize("value,expected", [(True, True), (False, False), ("True", True),
                                            ("false", False), ("auto", False)])
def test_resolve_stem_space_to_depth_on_cpu(value, expected):
  assert jax.default_backend() == "cpu"
  assert platform.resolve_stem_space_to_depth(value) is expected


def test_resolve_stem_space_to_depth_rejects_other_values():
  with pytest.raises(ValueError, match="stem_space_to_depth='sometimes'"):
    platform.resolve_stem_space_to_depth("sometimes")


def test_auto_backbone_equals_the_explicit_cpu_choice():
  """'auto' everywhere builds, on CPU, exactly the model with the CPU winners named."""
  x = jax.random.normal(jax.random.key(0), (2, 4, 16, 16, 3))
  auto = ResNet3D("tiny")
  explicit = ResNet3D("tiny", conv_impl="factorized", bn_impl="autodiff",
                      stem_space_to_depth=False)
  variables = auto.init(jax.random.key(1), x, train=False)
  np.testing.assert_array_equal(auto.apply(variables, x, train=False),
                                explicit.apply(variables, x, train=False))
  # The GPU choice (space-to-depth stem, fused BN) keeps the parameters and the function.
  gpu_like = ResNet3D("tiny", conv_impl="factorized", bn_impl="fused", stem_space_to_depth=True)
  np.testing.assert_allclose(gpu_like.apply(variables, x, train=False),
                             explicit.apply(variables, x, train=False), rtol=1e-4, atol=1e-5)
