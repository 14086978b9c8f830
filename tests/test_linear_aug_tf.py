"""The CPU 'linear' colour mode's XLA passes (corp_jax.data.linear_aug_tf) against a NumPy
reference of clip(A blur(flip(x)) + b, 0, 1), in every branch (flip, blur on and off)."""

import itertools

import numpy as np
import pytest

from corp_jax.data import color_matrix
from corp_jax.data.augment_params import AugmentConfig, NUM_PARAM_UNIFORMS, PARAM_LAYOUT

CFG = AugmentConfig(flip_prob=0.5, color_jitter_prob=0.5, grayscale_prob=0.5, blur_prob=0.5,
                    color_mode="linear")


def _uniforms(rng, flip: bool, blur: bool, jitter: bool = True, gray: bool = False):
  u = rng.random(NUM_PARAM_UNIFORMS).astype(np.float32)
  for name, on in (("flip", flip), ("blur", blur), ("jitter", jitter), ("grayscale", gray)):
    u[PARAM_LAYOUT[name]] = 0.1 if on else 0.9
  return u


def _numpy_reference(clip, params, radius):
  """clip [T, H, W, 3] in [0, 1] (float64): flip, colour map from the mean, reflect blur."""
  x = clip[:, :, ::-1] if params["flip"] else clip
  a, b = color_matrix.clip_color_affine(np, {k: np.asarray(v, np.float64)
                                             for k, v in params.items()},
                                        x.mean(axis=(0, 1, 2)))
  if params["blur"]:
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-offsets ** 2 / (2.0 * float(params["sigma"]) ** 2))
    taps /= taps.sum()
    padded = np.pad(x, [(0, 0), (radius, radius), (radius, radius), (0, 0)], mode="reflect")
    height, width = x.shape[1:3]
    x = sum(taps[j] * padded[:, :, j:j + width] for j in range(2 * radius + 1))
    x = sum(taps[j] * x[:, j:j + height] for j in range(2 * radius + 1))
  return np.clip(x @ a.T + b, 0.0, 1.0)


@pytest.mark.parametrize("flip, blur", list(itertools.product([False, True], repeat=2)))
def test_linear_passes_equal_numpy_reference(flip, blur):
  import tensorflow as tf
  from corp_jax.data import augment_tf, linear_aug_tf
  rng = np.random.default_rng(int(flip) * 2 + int(blur))
  clip = rng.random((3, 14, 11, 3))  # H != W: catches a transposed view
  for gray in (False, True):
    u = _uniforms(rng, flip, blur, gray=gray)
    params = augment_tf.params_from_uniforms_tf(tf.constant(u), CFG)
    got = linear_aug_tf.apply_linear_augmentation_tf(
        tf.constant(clip * 255.0, tf.float32), params, 2, CFG, input_scale=255.0).numpy()
    expected = _numpy_reference(clip, {k: v.numpy() for k, v in params.items()}, 2)
    assert got.shape == clip.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_identical_frames_stay_identical_in_every_branch():
  import tensorflow as tf
  from corp_jax.data import augment_tf, linear_aug_tf
  rng = np.random.default_rng(2)
  frame = rng.random((1, 16, 16, 3))
  clip = tf.constant(np.repeat(frame, 4, axis=0), tf.float32)
  for flip, blur in itertools.product([False, True], repeat=2):
    params = augment_tf.params_from_uniforms_tf(tf.constant(_uniforms(rng, flip, blur)), CFG)
    out = linear_aug_tf.apply_linear_augmentation_tf(clip, params, 3, CFG).numpy()
    np.testing.assert_allclose(out, np.broadcast_to(out[:1], out.shape), atol=1e-6)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_static_and_dynamic_clip_length_decode_alike():
  """A static T decodes with T ops, an unknown T with map_fn: the same pixels."""
  import tensorflow as tf
  from corp_jax.data import crop, decode
  yy, xx = np.mgrid[0:40, 0:48]
  frames = [np.stack([yy * 6, xx * 5, (yy + xx + 40 * t) % 256], -1).astype(np.uint8)
            for t in range(3)]
  jpegs = tf.stack([tf.io.encode_jpeg(f) for f in frames])
  begin, size = tf.constant([4, 6, 0]), tf.constant([30, 36, 3])
  static = crop.resize_tf(decode.decode_jpeg_windows_tf(jpegs, begin, size), 16)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def dynamic(j):
    return crop.resize_tf(decode.decode_jpeg_windows_tf(j, begin, size), 16)

  np.testing.assert_array_equal(static.numpy(), dynamic(jpegs).numpy())
  assert static.shape == (3, 16, 16, 3)
