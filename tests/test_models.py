"""Tests for corp_jax.models: Conv3D equivalence, R3D variants, dtype policy, remat, projection.

Full-size variants are only traced with jax.eval_shape (no FLOPs); real forwards use 'tiny'.
Test data comes from NumPy and every model call is jitted through the cached helpers below:
on a busy CPU each eager jax op (random.normal included) is a separate XLA compile.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corp_jax.models import (VARIANTS, BackboneSpec, Conv3D, ProjectionMLP, ResNet3D,
                             default_conv_impl, feature_dim, resolve_conv_impl)
from corp_jax.models.conv import (conv3d_factorized, conv3d_im2col, conv3d_native,
                                  conv3d_space_to_depth, explicit_padding)

TINY_CLIPS = (2, 8, 32, 32, 3)


def _uniform(shape, seed=0):
  return np.random.RandomState(seed).uniform(size=shape).astype(np.float32)


def _normal(shape, seed=0):
  return np.random.RandomState(seed).normal(size=shape).astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _init(model, x):
  return model.init(jax.random.key(0), x, train=False)


@functools.partial(jax.jit, static_argnums=0)
def _apply_train(model, variables, x):
  """-> (output, {'batch_stats': updated})."""
  return model.apply(variables, x, train=True, mutable=["batch_stats"])


@functools.partial(jax.jit, static_argnums=0)
def _apply_eval(model, variables, x):
  return model.apply(variables, x, train=False)


@pytest.fixture(scope="module")
def tiny_variables():
  return _init(ResNet3D("tiny"), _uniform(TINY_CLIPS))


def _param_count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- Conv3D

# (input [N, T, H, W, Cin], Cout, kernel, strides, padding)
CONV_CASES = [
    ((2, 5, 9, 9, 3), 4, (3, 3, 3), (1, 1, 1), "SAME"),
    ((2, 8, 12, 12, 3), 4, (5, 7, 7), (2, 2, 2), ((2, 2), (3, 3), (3, 3))),  # R3D-50 stem
    ((2, 7, 6, 6, 4), 3, (3, 1, 1), (2, 1, 1), "SAME"),  # temporal stride 2, odd T
    ((1, 7, 5, 5, 2), 3, (5, 3, 3), (2, 1, 1), "SAME"),  # kt=5, asymmetric SAME pads
    ((2, 6, 8, 8, 4), 5, (1, 3, 3), (1, 2, 2), "SAME"),  # kt=1: one 2D conv over N*T
    ((2, 6, 7, 7, 3), 2, (3, 3, 3), (1, 1, 1), "VALID"),
    ((1, 6, 6, 6, 2), 3, (3, 3, 2), (2, 1, 2), ((0, 2), (1, 0), (1, 1))),
    ((1, 7, 13, 11, 3), 4, (5, 7, 7), (2, 2, 2), ((2, 2), (3, 3), (3, 3))),  # odd sizes: crop
    ((1, 9, 6, 7, 2), 3, (2, 1, 3), (3, 2, 2), ((1, 0), (0, 0), (2, 1))),  # kernel < stride
]
# Space-to-depth run by two inner implementations; exact for any strides (all-1 included).
_S2D = (functools.partial(conv3d_space_to_depth, inner=conv3d_native),
        functools.partial(conv3d_space_to_depth, inner=conv3d_factorized))


@pytest.mark.parametrize("shape,cout,kernel_size,strides,padding", CONV_CASES)
def test_conv_native_factorized_im2col_agree_with_gradients(shape, cout, kernel_size, strides,
                                                            padding):
  x = _normal(shape, seed=0)
  kernel = 0.3 * _normal(tuple(kernel_size) + (shape[-1], cout), seed=1)
  pads = explicit_padding(padding, shape[1:4], kernel_size, strides)

  @jax.jit  # one compile per case: outputs and VJPs of both implementations
  def outputs_and_grads(x, kernel):
    results = []
    for conv in (conv3d_native, conv3d_factorized, conv3d_im2col) + _S2D:
      y, vjp = jax.vjp(lambda a, w, conv=conv: conv(a, w, strides, pads), x, kernel)
      # A non-uniform cotangent so that every output position matters.
      results.append((y, vjp(jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape))))
    return results

  (y_n, (gx_n, gk_n)), *others = outputs_and_grads(x, kernel)
  # float32 sums reorder differently per implementation: the absolute tolerance follows the
  # size of the largest value (up to ~40 here), the relative one stays at 1e-5.
  def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5,
                               atol=1e-5 + 1e-6 * float(np.abs(want).max()))
  for y_o, (gx_o, gk_o) in others:
    assert y_n.shape == y_o.shape
    close(y_o, y_n)
    close(gx_o, gx_n)
    close(gk_o, gk_n)


def test_conv_module_parameters_are_interchangeable():
  x = _normal((2, 6, 8, 8, 3))
  native = Conv3D(4, (3, 3, 3), (2, 2, 2), "SAME", impl="native")
  factorized = Conv3D(4, (3, 3, 3), (2, 2, 2), "SAME", impl="factorized")
  variables = _init_conv(factorized, x)
  assert (jax.tree.map(jnp.shape, variables)
          == jax.tree.map(jnp.shape, jax.eval_shape(_init_conv, native, x))
          == {"params": {"kernel": (3, 3, 3, 3, 4)}})
  np.testing.assert_allclose(jax.jit(native.apply)(variables, x),
                             jax.jit(factorized.apply)(variables, x), rtol=1e-5, atol=1e-5)


@functools.partial(jax.jit, static_argnums=0)
def _init_conv(conv, x):
  return conv.init(jax.random.key(1), x)


def test_stem_space_to_depth_keeps_parameters_and_outputs(tiny_variables):
  x = _uniform(TINY_CLIPS)
  s2d = ResNet3D("tiny", stem_space_to_depth=True)
  assert (jax.tree.map(jnp.shape, jax.eval_shape(_init, s2d, x))
          == jax.tree.map(jnp.shape, tiny_variables))
  (y, stats), (y_s2d, stats_s2d) = (_apply_train(m, tiny_variables, x)
                                    for m in (ResNet3D("tiny"), s2d))
  np.testing.assert_allclose(y_s2d, y, rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               stats_s2d, stats)


def test_conv_matches_an_explicit_sum_over_taps():
  """Independent reference: a 3x1x1 conv is a weighted sum of neighbouring frames."""
  x = _normal((1, 4, 3, 3, 2), seed=0)
  kernel = _normal((3, 1, 1, 2, 2), seed=1)
  padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (0, 0), (0, 0), (0, 0)))
  expected = sum(np.einsum("nthwc,cd->nthwd", padded[:, dt:dt + 4], kernel[dt, 0, 0])
                 for dt in range(3))
  for impl in ("native", "factorized", "im2col"):
    conv = Conv3D(2, (3, 1, 1), padding="SAME", impl=impl)
    y = jax.jit(conv.apply)({"params": {"kernel": kernel}}, x)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_conv_impl_resolution_and_bad_inputs(monkeypatch):
  assert resolve_conv_impl("auto") == default_conv_impl()
  assert default_conv_impl("cpu") == "factorized"
  assert default_conv_impl("tpu") == "native"
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  assert default_conv_impl("gpu") == "factorized"  # XLA:GPU's 3D convs would be NCDHW
  monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_force_conv_nhwc")
  assert default_conv_impl("gpu") == "native"
  x = jnp.zeros((1, 4, 4, 4, 2))
  with pytest.raises(ValueError, match="conv_impl='cudnn'"):
    jax.eval_shape(_init_conv, Conv3D(2, impl="cudnn"), x)
  with pytest.raises(ValueError, match="padding='FULL'"):
    jax.eval_shape(_init_conv, Conv3D(2, (3, 3, 3), padding="FULL"), x)
  with pytest.raises(ValueError, match="kernel_size"):
    jax.eval_shape(_init_conv, Conv3D(2, (3, 3)), x)
  with pytest.raises(ValueError, match=r"\[N, T, H, W, C\]"):
    jax.eval_shape(_init_conv, Conv3D(2), jnp.zeros((4, 4, 4, 2)))
  with pytest.raises(ValueError, match="larger than padded input"):
    jax.eval_shape(_init_conv, Conv3D(2, (5, 1, 1), padding="VALID", impl="factorized"),
                   jnp.zeros((1, 3, 4, 4, 2)))


# ----------------------------------------------------------------------------- ResNet3D

def test_r3d50_has_31_7m_parameters():
  model = ResNet3D("r3d50")
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 64, 64, 3)),
                                             train=False))
  count = _param_count(shapes["params"])
  assert abs(count - 31.7e6) / 31.7e6 < 0.01, count
  # Every parameter is float32 whatever the compute dtype.
  assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("variant,expected_dim", [("r3d50", 2048), ("r3d18", 512), ("small", 128)])
def test_full_size_output_and_stage_resolution(variant, expected_dim):
  """16x224x224 -> res5 at 8x7x7 (temporal stride 2 only in the stem), pooled to F."""
  model = ResNet3D(variant)
  clips = jax.ShapeDtypeStruct((2, 16, 224, 224, 3), jnp.float32)
  last_block = f"res5_block{VARIANTS[variant].stage_depths[-1] - 1}"

  def forward(x):
    variables = model.init(jax.random.key(0), x, train=False)
    return model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                       capture_intermediates=lambda mdl, _: mdl.name == last_block)

  features, state = jax.eval_shape(forward, clips)
  assert feature_dim(variant) == expected_dim
  assert features.shape == (2, expected_dim) and features.dtype == jnp.float32
  (res5,) = state["intermediates"][last_block]["__call__"]
  assert res5.shape == (2, 8, 7, 7, expected_dim)


def test_tiny_forward_train_and_eval(tiny_variables):
  x = _uniform(TINY_CLIPS)
  model = ResNet3D("tiny")
  features, updates = _apply_train(model, tiny_variables, x)
  assert features.shape == (2, feature_dim("tiny")) and features.dtype == jnp.float32
  assert np.all(np.isfinite(features))
  # Training mode moves the running statistics; eval mode uses them and mutates nothing.
  old_mean = tiny_variables["batch_stats"]["stem_bn"]["mean"]
  assert not np.allclose(updates["batch_stats"]["stem_bn"]["mean"], old_mean)
  eval_features = _apply_eval(model, {**tiny_variables, **updates}, x)
  assert eval_features.shape == features.shape
  assert not np.allclose(eval_features, features)


def test_zero_init_last_bn_scale(tiny_variables):
  params = tiny_variables["params"]
  for stage in range(2, 6):
    block = params[f"res{stage}_block0"]
    np.testing.assert_array_equal(block["bn_b"]["scale"], 0.0)
    np.testing.assert_array_equal(block["bn_a"]["scale"], 1.0)
  # A one-stage spec keeps this extra init compile small.
  one_stage = BackboneSpec(block="bottleneck", stage_depths=(1,), stage_widths=(2,),
                           temporal_kernels=(3,), spatial_strides=(1,), stem_width=4,
                           stem_kernel=(1, 3, 3))
  params = _init(ResNet3D(one_stage, zero_init_last=False), _uniform((1, 2, 8, 8, 3)))["params"]
  np.testing.assert_array_equal(params["res2_block0"]["bn_c"]["scale"], 1.0)
  assert params["res2_block0"]["conv_a"]["kernel"].shape == (3, 1, 1, 4, 2)


def test_bfloat16_compute_keeps_float32_params_and_output(tiny_variables):
  x = _uniform(TINY_CLIPS)
  model32, model16 = ResNet3D("tiny"), ResNet3D("tiny", dtype=jnp.bfloat16)
  shapes16 = jax.eval_shape(_init, model16, x)
  assert {leaf.dtype for leaf in jax.tree.leaves(shapes16)} == {jnp.dtype(jnp.float32)}
  assert jax.tree.map(jnp.shape, shapes16) == jax.tree.map(jnp.shape, tiny_variables)
  # Non-zero last-BN scales so the residual branches contribute.
  variables = jax.tree.map(lambda a: a + 0.5, tiny_variables)
  f16, up16 = _apply_train(model16, variables, x)
  f32, _ = _apply_train(model32, variables, x)
  assert f16.dtype == jnp.float32
  assert {leaf.dtype for leaf in jax.tree.leaves(up16)} == {jnp.dtype(jnp.float32)}
  np.testing.assert_allclose(f16, f32, rtol=0.1, atol=0.1 * float(jnp.abs(f32).mean()))


@pytest.mark.slow
def test_remat_gives_same_outputs_and_gradients(tiny_variables):
  x = _uniform((2, 4, 16, 16, 3))
  plain, remat = ResNet3D("tiny"), ResNet3D("tiny", remat=True)
  assert (jax.tree.map(jnp.shape, jax.eval_shape(_init, remat, x))
          == jax.tree.map(jnp.shape, tiny_variables))
  params = jax.tree.map(lambda a: a + 0.1, tiny_variables["params"])  # wake zero-init scales

  def loss_and_grad(model):
    def loss(p):
      features, _ = model.apply({"params": p, "batch_stats": tiny_variables["batch_stats"]}, x,
                                train=True, mutable=["batch_stats"])
      return jnp.sum(features ** 2)
    return jax.value_and_grad(loss)

  # remat really is in the traced program (and only there).
  assert "remat" in str(jax.make_jaxpr(loss_and_grad(remat))(params))
  assert "remat" not in str(jax.make_jaxpr(loss_and_grad(plain))(params))
  (l_plain, g_plain), (l_remat, g_remat) = (
      jax.jit(loss_and_grad(m))(params) for m in (plain, remat))
  np.testing.assert_allclose(l_remat, l_plain, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               g_remat, g_plain)


def test_variant_validation():
  assert feature_dim("tiny") == 64
  assert feature_dim(dataclasses.replace(VARIANTS["r3d50"], stage_widths=(8, 8, 8, 16))) == 64
  with pytest.raises(ValueError, match="variant='r3d101'"):
    feature_dim("r3d101")
  with pytest.raises(ValueError, match="block='dense'"):
    BackboneSpec(block="dense", stage_depths=(1,), stage_widths=(8,), temporal_kernels=(1,),
                 spatial_strides=(1,))
  with pytest.raises(ValueError, match="equally long"):
    BackboneSpec(block="basic", stage_depths=(1, 1), stage_widths=(8,), temporal_kernels=(1,),
                 spatial_strides=(1,))
  with pytest.raises(ValueError, match="odd"):
    dataclasses.replace(VARIANTS["tiny"], temporal_kernels=(1, 1, 2, 3))
  with pytest.raises(ValueError, match=r"\[N, T, H, W, 3\]"):
    jax.eval_shape(_init, ResNet3D("tiny"), jnp.zeros((1, 4, 16, 16)))


# ----------------------------------------------------------------------------- ProjectionMLP

def test_projection_mlp_layout_and_dtypes():
  h = _normal((6, 16))
  head = ProjectionMLP(hidden_dims=(32, 32), out_dim=8)
  variables = _init(head, h)
  params = variables["params"]
  assert set(params) == {"hidden0", "bn0", "hidden1", "bn1", "output"}
  assert set(params["output"]) == {"kernel", "bias"}  # plain Dense with bias, no BN after it
  assert "bias" not in params["hidden0"]
  z, updates = _apply_train(head, variables, h)
  assert z.shape == (6, 8) and z.dtype == jnp.float32
  # Not normalised: rows are not unit vectors.
  assert not np.allclose(np.linalg.norm(z, axis=-1), 1.0, atol=1e-3)
  # A bias added to the output layer shows up unchanged in z (no normalisation after it).
  shifted = jax.tree.map(lambda a: a, variables)
  shifted["params"]["output"]["bias"] = shifted["params"]["output"]["bias"] + 3.0
  z_shifted, _ = _apply_train(head, shifted, h)
  np.testing.assert_allclose(z_shifted - z, 3.0, rtol=1e-5, atol=1e-5)
  assert set(updates["batch_stats"]) == {"bn0", "bn1"}

  z16, _ = _apply_train(ProjectionMLP((32, 32), 8, dtype=jnp.bfloat16), variables, h)
  assert z16.dtype == jnp.float32
  np.testing.assert_allclose(z16, z, rtol=0.05, atol=0.05)


def test_projection_mlp_default_is_paper_head():
  head = ProjectionMLP()
  shapes = jax.eval_shape(lambda: head.init(jax.random.key(0), jnp.zeros((2, 2048)),
                                            train=False))
  params = shapes["params"]
  assert [params[f"hidden{i}"]["kernel"].shape for i in range(3)] == [(2048, 2048)] * 3
  assert params["output"]["kernel"].shape == (2048, 128)
  with pytest.raises(ValueError, match=r"\[N, F\]"):
    jax.eval_shape(_init, head, jnp.zeros((2, 3, 4)))
