"""Per-clip augmentation: one draw per clip, identical across its frames, TF == JAX maths."""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corp_jax.data import augment_jax, color_matrix
from corp_jax.data.augment_params import AugmentConfig, NUM_PARAM_UNIFORMS

EVERYTHING_ON = AugmentConfig(flip_prob=1.0, color_jitter_prob=1.0, grayscale_prob=0.0,
                              blur_prob=1.0)


def _static_video(rng, batch, clips, frames, size=12):
  """[B, K, T, S, S, 3] uint8 where every frame of every clip is the same random image."""
  image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
  return np.broadcast_to(image, (batch, clips, frames, size, size, 3)).copy()


def test_jax_same_draw_for_all_frames_different_across_clips():
  clips = _static_video(np.random.default_rng(0), 2, 3, 4)
  out = np.asarray(augment_jax.augment_clips(jax.random.key(0), clips, EVERYTHING_ON))
  assert out.shape == clips.shape and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 1.0
  np.testing.assert_array_equal(out, np.broadcast_to(out[:, :, :1], out.shape))  # within clip
  flat = out[:, :, 0].reshape(6, -1)
  for a in range(6):
    for b in range(a + 1, 6):
      assert np.abs(flat[a] - flat[b]).max() > 1e-3, (a, b)  # independent draws per clip


def test_jax_uint8_and_float_inputs_agree_and_key_matters():
  # Same shape and config as the test above: reuses its compiled function for uint8.
  clips = np.random.default_rng(1).integers(0, 256, (2, 3, 4, 12, 12, 3), dtype=np.uint8)
  key = jax.random.key(3)
  from_uint8 = augment_jax.augment_clips(key, clips, EVERYTHING_ON)
  from_float = augment_jax.augment_clips(key, jnp.asarray(clips, jnp.float32) / 255.0,
                                         EVERYTHING_ON)
  np.testing.assert_allclose(from_uint8, from_float, atol=1e-6)
  other = augment_jax.augment_clips(jax.random.key(4), clips, EVERYTHING_ON)
  assert not np.allclose(from_uint8, other)
  with pytest.raises(ValueError, match="B, K, T, H, W, 3"):
    augment_jax.augment_clips(key, clips[0])


def test_jax_parameter_frequencies_follow_the_config():
  cfg = AugmentConfig()
  params = jax.jit(augment_jax.sample_params, static_argnums=(1, 2))(
      jax.random.key(0), (100, 40), cfg)
  for name, prob in (("flip", 0.5), ("jitter", 0.8), ("grayscale", 0.2), ("blur", 0.5)):
    assert abs(float(jnp.mean(params[name])) - prob) < 0.03, name
  assert float(params["brightness"].min()) >= 0.2 and float(params["brightness"].max()) <= 1.8
  assert float(jnp.abs(params["hue"]).max()) <= 0.2
  assert float(params["sigma"].min()) >= 0.1 and float(params["sigma"].max()) <= 2.0
  orders = np.sort(np.asarray(params["order"]), axis=-1)
  assert np.all(orders == np.arange(4))  # each order is a permutation


def test_tf_jax_and_numpy_map_uniforms_to_the_same_parameters():
  import tensorflow as tf
  from corp_jax.data import augment_params, augment_tf
  cfg = AugmentConfig(flip_prob=0.3, color_jitter_prob=0.6, brightness=0.5, contrast=0.7,
                      saturation=0.9, hue=0.1, grayscale_prob=0.4, blur_prob=0.5,
                      blur_sigma_range=(0.2, 1.5))
  uniforms = np.random.default_rng(11).random((16, NUM_PARAM_UNIFORMS)).astype(np.float32)
  uniforms[0, 6:10] = 0.25  # ties in the order uniforms: a stable sort keeps index order
  from_jax = augment_jax.params_from_uniforms(jnp.asarray(uniforms), cfg)
  from_numpy = augment_params.params_from_uniforms(
      uniforms, cfg, lambda x: np.argsort(x, axis=-1, kind="stable"))
  for row in range(len(uniforms)):
    from_tf = augment_tf.params_from_uniforms_tf(tf.constant(uniforms[row]), cfg)
    assert set(from_tf) == set(from_jax) == set(from_numpy) == set(augment_params.PARAM_LAYOUT)
    for name in from_tf:
      np.testing.assert_array_equal(from_tf[name].numpy(), np.asarray(from_jax[name])[row],
                                    err_msg=name)
      np.testing.assert_array_equal(from_tf[name].numpy(), from_numpy[name][row], err_msg=name)
  np.testing.assert_array_equal(np.asarray(from_jax["order"])[0], [0, 1, 2, 3])
  # The ranges: u = 0 and u -> 1 give the ends of each CVRL range.
  ends = augment_params.params_from_uniforms(
      np.array([[0.0] * 13, [1.0] * 13]), cfg, lambda x: np.argsort(x, axis=-1, kind="stable"))
  np.testing.assert_allclose(ends["brightness"], [0.5, 1.5])
  np.testing.assert_allclose(ends["hue"], [-0.1, 0.1])
  np.testing.assert_allclose(ends["sigma"], [0.2, 1.5])
  np.testing.assert_array_equal(ends["flip"], [True, False])


def test_tf_and_jax_apply_the_same_maths():
  import tensorflow as tf
  from corp_jax.data import augment_tf
  rng = np.random.default_rng(2)
  cfg = AugmentConfig(flip_prob=0.5, color_jitter_prob=0.5, grayscale_prob=0.5, blur_prob=0.5)
  clip = rng.random((3, 12, 10, 3)).astype(np.float32)
  uniforms = rng.random((8, NUM_PARAM_UNIFORMS)).astype(np.float32)
  uniforms[:, [0, 1, 10, 11]] = rng.random((8, 4)) < 0.5  # each step on and off

  @tf.function
  def tf_path(all_uniforms):
    return tf.stack([augment_tf.apply_augmentation_tf(
        tf.constant(clip), augment_tf.params_from_uniforms_tf(u, cfg), 2)
                     for u in tf.unstack(all_uniforms)])

  expected = tf_path(tf.constant(uniforms)).numpy()
  @jax.jit
  def jax_path(all_uniforms):
    params = augment_jax.params_from_uniforms(all_uniforms, cfg)
    return augment_jax.apply_augmentation(jnp.broadcast_to(clip, (8, *clip.shape)), params, 2)

  got = jax_path(jnp.asarray(uniforms))
  np.testing.assert_allclose(np.asarray(got), expected, atol=2e-5)


def test_tf_clip_augmentation_is_consistent_in_time_and_seeded():
  import tensorflow as tf
  from corp_jax.data import augment_tf
  clip = _static_video(np.random.default_rng(3), 1, 1, 4, size=16)[0, 0].astype(np.float32)

  @tf.function
  def augment(seed):
    return augment_tf.augment_clip_tf(tf.constant(clip), seed, EVERYTHING_ON)

  out = augment(tf.constant([1, 2], tf.int64)).numpy()
  assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
  np.testing.assert_array_equal(out, np.broadcast_to(out[:1], out.shape))
  np.testing.assert_array_equal(out, augment(tf.constant([1, 2], tf.int64)).numpy())
  assert np.abs(out - augment(tf.constant([1, 3], tf.int64)).numpy()).max() > 1e-3


def test_tf_crop_window_shared_by_all_frames():
  import tensorflow as tf
  from corp_jax.data import crop, decode, records
  # A smooth image: JPEG chroma upsampling at a crop edge differs slightly from a full decode.
  yy, xx = np.mgrid[0:40, 0:48]
  image = np.stack([yy * 6, xx * 5, 255 - xx * 3], -1).astype(np.uint8)
  jpegs = tf.stack([tf.io.encode_jpeg(image)] * 3)
  cfg = AugmentConfig()
  for seed in range(4):
    begin, size = crop.sample_crop_window_tf([40, 48, 3], [seed, 9], cfg.crop_area_range,
                                             cfg.crop_aspect_ratio_range)
    area = float(size[0] * size[1]) / (40 * 48)
    assert 0.25 <= area <= 1.0 and np.all(begin.numpy() + size.numpy() <= [40, 48, 3])
    out = crop.resize_tf(decode.decode_window_tf({records.IMAGE_KEY: jpegs}, [0, 1, 2], begin,
                                                 size), 16).numpy()
    assert out.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(out, np.broadcast_to(out[:1], out.shape))
    frames = tf.io.decode_jpeg(jpegs[0])[None]
    sliced = crop.resize_tf(decode.decode_window_tf({"frames": frames}, [0], begin, size),
                            16).numpy()
    np.testing.assert_allclose(out[0], sliced[0], atol=3.0)  # fused decode+crop ~ slice


def test_config_validation_and_linear_views():
  with pytest.raises(ValueError, match="flip_prob"):
    AugmentConfig(flip_prob=1.5)
  with pytest.raises(ValueError, match="crop_area_range"):
    AugmentConfig(crop_area_range=(0.0, 1.0))
  linear = AugmentConfig().without_color()
  assert linear.color_jitter_prob == linear.blur_prob == linear.grayscale_prob == 0.0
  assert linear.flip_prob == 0.5 and linear.crop_area_range == (0.3, 1.0)


def test_jax_side_modules_import_without_tensorflow():
  code = ("import sys; import corp_jax.data.augment_jax, corp_jax.data.sampling, "
          "corp_jax.data.augment_params, corp_jax.data.from_config; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; "
          "tf_modules = [m for m in ('augment_tf', 'linear_aug_tf', 'blur_tf') "
          "              if 'corp_jax.data.' + m in sys.modules]; "
          "assert not tf_modules, f'TF modules imported: {tf_modules}'")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]


# ------------------------------------------------------------- 'linear' colour mode

LINEAR_ON = dataclasses.replace(EVERYTHING_ON, color_mode="linear")


def _np_params(uniforms, cfg):
  return {k: np.asarray(v) for k, v in augment_jax.params_from_uniforms(
      jnp.asarray(uniforms), cfg).items()}


def _sequential_linear_ops(image, params):
  """The linear ops one after another, no clipping: the reference for the matrix product."""
  gray = lambda x: np.broadcast_to(x @ np.asarray(color_matrix.GRAY_WEIGHTS)[:, None], x.shape)
  x = image.astype(np.float64)
  if params["jitter"]:
    for op in params["order"]:
      if op == 0:
        x = x * params["brightness"]
      elif op == 1:
        mean = x.mean(axis=(0, 1, 2))
        x = (x - mean) * params["contrast"] + mean
      elif op == 2:
        x = params["saturation"] * x + (1 - params["saturation"]) * gray(x)
      else:
        yiq = x @ color_matrix.RGB_TO_YIQ.T
        theta = 2 * np.pi * params["hue"]
        i, q = yiq[..., 1].copy(), yiq[..., 2].copy()
        yiq[..., 1], yiq[..., 2] = np.cos(theta) * i + np.sin(theta) * q, \
            -np.sin(theta) * i + np.cos(theta) * q
        x = yiq @ color_matrix.YIQ_TO_RGB.T
  return gray(x) if params["grayscale"] else x


def test_linear_matrix_equals_sequential_ops_without_clipping():
  rng = np.random.default_rng(5)
  cfg = AugmentConfig(color_jitter_prob=0.9, grayscale_prob=0.3, color_mode="linear")
  for _ in range(12):
    image = rng.random((2, 5, 6, 3))
    params = _np_params(rng.random(NUM_PARAM_UNIFORMS).astype(np.float32), cfg)
    a, b = color_matrix.clip_color_affine(np, params, image.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(image @ a.T + b, _sequential_linear_ops(image, params),
                               atol=1e-5)


def test_linear_hue_turns_red_towards_yellow_and_keeps_gray():
  hue = color_matrix.hue_matrix(np, np.float32(1 / 12))
  red = hue @ np.array([1.0, 0.0, 0.0])
  assert red[1] > 0 > red[2]
  np.testing.assert_allclose(np.asarray(color_matrix.GRAY_WEIGHTS) @ hue,
                             color_matrix.GRAY_WEIGHTS, atol=1e-6)


def test_linear_identity_when_strengths_are_zero():
  import tensorflow as tf
  from corp_jax.data import augment_tf
  cfg = AugmentConfig(flip_prob=0.0, color_jitter_prob=1.0, brightness=0.0, contrast=0.0,
                      saturation=0.0, hue=0.0, grayscale_prob=0.0, blur_prob=0.0,
                      color_mode="linear")
  clip = np.random.default_rng(6).integers(0, 256, (1, 1, 3, 10, 12, 3), dtype=np.uint8)
  out = augment_jax.augment_clips(jax.random.key(0), clips=clip, cfg=cfg)
  np.testing.assert_allclose(np.asarray(out), clip / 255.0, atol=1e-6)
  out_tf = augment_tf.augment_clip_tf(tf.constant(clip[0, 0], tf.float32), [1, 2], cfg)
  np.testing.assert_allclose(out_tf.numpy(), clip[0, 0] / 255.0, atol=1e-6)


def test_linear_jax_same_draw_for_all_frames_different_across_clips():
  clips = _static_video(np.random.default_rng(7), 2, 3, 4)
  out = np.asarray(augment_jax.augment_clips(jax.random.key(0), clips, LINEAR_ON))
  assert out.shape == clips.shape and out.min() >= 0.0 and out.max() <= 1.0
  np.testing.assert_allclose(out, np.broadcast_to(out[:, :, :1], out.shape), atol=1e-6)
  flat = out[:, :, 0].reshape(6, -1)
  for first in range(6):
    for second in range(first + 1, 6):
      assert np.abs(flat[first] - flat[second]).max() > 1e-3, (first, second)


def test_linear_tf_and_jax_apply_the_same_maths():
  import tensorflow as tf
  from corp_jax.data import augment_tf, linear_aug_tf
  rng = np.random.default_rng(8)
  cfg = AugmentConfig(flip_prob=0.5, color_jitter_prob=0.5, grayscale_prob=0.5,
                      blur_prob=0.5, color_mode="linear")
  clip = rng.random((3, 12, 10, 3)).astype(np.float32)
  uniforms = rng.random((6, NUM_PARAM_UNIFORMS)).astype(np.float32)
  uniforms[:, [0, 1, 10, 11]] = rng.random((6, 4)) < 0.5

  @tf.function
  def tf_path(u):
    return linear_aug_tf.apply_linear_augmentation_tf(
        tf.constant(clip) * 255.0, augment_tf.params_from_uniforms_tf(u, cfg), 2, cfg,
        input_scale=255.0)

  expected = np.stack([tf_path(tf.constant(u)).numpy() for u in uniforms])
  got = jax.jit(lambda u: augment_jax.apply_linear_augmentation(
      jnp.broadcast_to(clip, (6, *clip.shape)), augment_jax.params_from_uniforms(u, cfg), 2))(
          jnp.asarray(uniforms))
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
  assert expected.min() >= 0.0 and expected.max() <= 1.0


def test_linear_tf_clip_augmentation_in_tf_data_is_consistent_in_time():
  import tensorflow as tf
  from corp_jax.data import augment_tf
  clip = _static_video(np.random.default_rng(9), 1, 1, 4, size=16)[0, 0].astype(np.float32)
  ds = tf.data.Dataset.range(3).map(lambda i: augment_tf.augment_clip_tf(
      tf.constant(clip), tf.stack([i, tf.constant(5, tf.int64)]), LINEAR_ON))
  outs = list(ds.as_numpy_iterator())
  for out in outs:
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out, np.broadcast_to(out[:1], out.shape), atol=1e-6)
  assert np.abs(outs[0] - outs[1]).max() > 1e-3
  with pytest.raises(ValueError, match="color_mode"):
    AugmentConfig(color_mode="hsv")
