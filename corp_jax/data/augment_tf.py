"""The augment stage on the CPU (tf.data): per-clip flip, colour, grayscale and blur, Sec. 3.2
following CVRL [37].

Contract:
  `augment_clip_tf(frames_0_255, seed, cfg)`: the cropped, resized clip [T, S, S, 3] float32 in
  [0, 255] -> [T, S, S, 3] float32 in [0, 1]. Every random choice is drawn ONCE PER CLIP from
  the stateless `seed` and applied identically to all T frames of the clip ("the random seed
  for each frame in the same clip is set to the same", Sec. 3.2); different clips get
  different seeds and so independent draws. Outputs are a deterministic function of
  (frames, seed).

  Steps and distributions (`augment_params.AugmentConfig`; defaults are CVRL's video_ssl
  values). Step 1 is the crop stage's (`crop.sample_crop_window_tf`), steps 2-5 are here:
    1. random resized crop: area fraction U(0.3, 1), aspect ratio (w/h) in (0.5, 2) (CVRL's
       `random_crop_resize(..., (0.5, 2), (0.3, 1))`), resized bilinearly to S x S;
    2. horizontal flip, p = 0.5;
    3. colour jitter, p = 0.8, SimCLR/CVRL strength 1.0: brightness factor U(0.2, 1.8)
       (multiplicative), contrast factor U(0.2, 1.8), saturation factor U(0.2, 1.8), hue
       shift U(-0.2, 0.2), applied in a random order, clipping to [0, 1] after each;
       contrast uses the per-channel mean over the whole clip (CVRL jitters the clip as one
       image);
    4. grayscale, p = 0.2 (ITU-R 601 weights, 3 channels kept);
    5. Gaussian blur, p = 0.5 (our choice: CORP treats its K clips symmetrically, so CVRL's
       asymmetric 1.0 / 0.1 pair becomes one probability), sigma U(0.1, 2.0), separable
       kernel of radius min(S // 20, 3 * 2.0) (CVRL: kernel size S // 10), reflect padding
       (CVRL pads with zeros, which darkens borders; `blur_tf`).
  Steps 2-5 work on float32 in [0, 1] and are the same maths as `augment_jax` (tested equal
  for equal parameters), so the accelerator path can take them over: then the CPU only
  decodes + crops + resizes to uint8.

  `color_mode='linear'` replaces steps 3-4 by `color_matrix`'s one affine map of RGB per clip
  (same uniforms, same draws; no clipping between ops) and runs steps 2-5 as a few XLA passes
  (`linear_aug_tf`, which also gives their costs); `augment_jax.apply_linear_augmentation`
  is its twin. It is the fast CPU mode (~9 ms per 16 x 224 x 224 clip on one core with blur
  drawn half the time, against ~100 ms for 'cvrl', whose HSV ops dominate).

  The parameter vector: 13 uniforms per clip, mapped to parameters by
  `augment_params.params_from_uniforms` (the one definition; `params_from_uniforms_tf` and
  `augment_jax.params_from_uniforms` only supply their namespace's argsort).

TensorFlow is imported lazily inside functions.
"""

from __future__ import annotations

from corp_jax.data import augment_params
from corp_jax.data import blur_tf
from corp_jax.data import linear_aug_tf
from corp_jax.data.augment_params import (AugmentConfig, GRAY_WEIGHTS, NUM_PARAM_UNIFORMS,
                                          blur_radius)


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def params_from_uniforms_tf(uniforms, cfg: AugmentConfig) -> dict:
  """uniforms [..., 13] float32 in [0, 1) -> the clip's augmentation parameters."""
  tf = _tf()
  return augment_params.params_from_uniforms(
      uniforms, cfg, lambda x: tf.argsort(x, axis=-1, stable=True))


# ------------------------------------------------- colour, flip, grayscale, blur (float)


def _jitter_op_tf(index: int, x, params):
  tf = _tf()
  if index == 0:  # brightness: multiplicative, as SimCLR v2 / CVRL
    return x * params["brightness"]
  if index == 1:  # contrast around the clip's per-channel mean
    mean = tf.reduce_mean(x, axis=[0, 1, 2], keepdims=True)
    return (x - mean) * params["contrast"] + mean
  if index == 2:
    return tf.image.adjust_saturation(x, params["saturation"])
  return tf.image.adjust_hue(x, params["hue"])


def color_jitter_tf(x, params):
  """x [T, H, W, 3] float32 in [0, 1]; the four jitter ops in `params['order']`."""
  tf = _tf()
  for position in range(4):
    branches = [lambda i=i: _jitter_op_tf(i, x, params) for i in range(4)]
    x = tf.clip_by_value(tf.switch_case(params["order"][position], branches), 0.0, 1.0)
  return x


def grayscale_tf(x):
  tf = _tf()
  gray = tf.reduce_sum(x * tf.constant(GRAY_WEIGHTS, x.dtype), axis=-1, keepdims=True)
  return tf.tile(gray, [1, 1, 1, 3])


def apply_augmentation_tf(x, params, blur_radius_px: int, cfg: AugmentConfig | None = None):
  """Steps 2-5 with given parameters: x [T, H, W, 3] float32 [0, 1] -> same shape, [0, 1].

  With `cfg`, steps whose probability is 0 are left out of the graph (faster tracing and
  running of e.g. linear-evaluation views); the result is the same.
  """
  tf = _tf()

  def enabled(prob_name):
    return cfg is None or getattr(cfg, prob_name) > 0.0

  if enabled("flip_prob"):
    x = tf.cond(params["flip"], lambda: tf.reverse(x, axis=[2]), lambda: x)
  if enabled("color_jitter_prob"):
    x = tf.cond(params["jitter"], lambda: color_jitter_tf(x, params), lambda: x)
  if enabled("grayscale_prob"):
    x = tf.cond(params["grayscale"], lambda: grayscale_tf(x), lambda: x)
  if enabled("blur_prob"):
    x = tf.cond(params["blur"],
                lambda: blur_tf.gaussian_blur_tf(x, params["sigma"], blur_radius_px),
                lambda: x)
  return tf.clip_by_value(x, 0.0, 1.0)


def augment_clip_tf(frames_0_255, seed, cfg: AugmentConfig):
  """Draws one parameter set for the clip from `seed` [2] and applies steps 2-5 in
  `cfg.color_mode` (the same uniforms, hence the same draws, in either mode).

  frames_0_255: [T, S, S, 3] float32 in [0, 255] (the cropped, resized clip).
  Returns [T, S, S, 3] float32 in [0, 1].
  """
  tf = _tf()
  uniforms = tf.random.stateless_uniform([NUM_PARAM_UNIFORMS], seed=seed, dtype=tf.float32)
  height, width = frames_0_255.shape[1], frames_0_255.shape[2]
  if height is None or width is None:
    raise ValueError("augment_clip_tf: the clip's height and width must be static "
                     f"(got shape {frames_0_255.shape})")
  radius = blur_radius(min(height, width), cfg.blur_sigma_range[1])
  params = params_from_uniforms_tf(uniforms, cfg)
  if cfg.color_mode == "linear":
    return linear_aug_tf.apply_linear_augmentation_tf(frames_0_255, params, radius, cfg,
                                                      input_scale=255.0)
  return apply_augmentation_tf(frames_0_255 / 255.0, params, radius, cfg)
