"""Accelerator-side clip augmentation in pure JAX (no TensorFlow): flip, colour jitter,
grayscale, Gaussian blur, one draw per clip (Sec. 3.2).

Contract:
  `augment_clips(key, clips [B, K, T, H, W, 3] uint8 or float in [0, 1], cfg)` ->
  float32 [B, K, T, H, W, 3] in [0, 1]. Each of the B*K clips gets one parameter set (13
  uniforms from `key`, mapped by `augment_params.params_from_uniforms`, the definition the
  CPU path uses too), applied identically to its T frames.
  Jittable; `cfg` is static (a frozen, hashable `AugmentConfig`). The input is the CPU
  pipeline's `accel_aug=True` output: decoded, randomly cropped and resized uint8 clips.

  The maths equals `augment_tf.apply_augmentation_tf` for equal parameters (tested): the same
  op order (flip, jitter in a random order with clipping after each op, grayscale, blur), the
  same factor ranges, TF's grayscale weights, TF's HSV saturation/hue semantics, reflect-padded
  separable blur. See `augment_tf` for the distributions (CVRL strength 1.0).
  With `cfg.color_mode == 'linear'` the colour steps are `color_matrix`'s single affine map
  per clip (`apply_linear_augmentation`, equal to `linear_aug_tf.apply_linear_augmentation_tf`).

Imports nothing from TensorFlow or from the TF modules of this package.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from corp_jax.data import augment_params
from corp_jax.data import color_matrix
from corp_jax.data.augment_params import (AugmentConfig, GRAY_WEIGHTS, NUM_PARAM_UNIFORMS,
                                          blur_radius)

__all__ = ["AugmentConfig", "augment_clips", "apply_augmentation",
           "apply_linear_augmentation", "blur_radius", "params_from_uniforms", "sample_params"]


def _stable_argsort(x: jax.Array) -> jax.Array:
  return jnp.argsort(x, axis=-1, stable=True)


def params_from_uniforms(uniforms: jax.Array, cfg: AugmentConfig) -> dict:
  """uniforms [..., 13] in [0, 1) -> dict of per-clip parameters, each of shape [...]
  (`order` is [..., 4]): `augment_params.params_from_uniforms` on JAX arrays."""
  return augment_params.params_from_uniforms(uniforms, cfg, _stable_argsort)


def sample_params(key: jax.Array, batch_shape: tuple, cfg: AugmentConfig) -> dict:
  """One parameter set per clip: batch_shape is (B, K)."""
  uniforms = jax.random.uniform(key, (*batch_shape, NUM_PARAM_UNIFORMS), jnp.float32)
  return params_from_uniforms(uniforms, cfg)


def _per_clip(value: jax.Array) -> jax.Array:
  """[...] per-clip scalar -> [..., 1, 1, 1, 1] to broadcast over (T, H, W, C)."""
  return value[..., None, None, None, None]


def _adjust_saturation(x, factor):
  """TF's adjust_saturation (S <- clip(S * f, 0, 1) in HSV) in closed form.

  With V = max(rgb) and H fixed, every channel is c = V - S * V * g(H), so scaling S by f
  maps c -> V + f_eff (c - V) with f_eff = min(f, 1 / S) (the clip at S = 1).
  """
  v = jnp.max(x, axis=-1, keepdims=True)
  spread = v - jnp.min(x, axis=-1, keepdims=True)
  inv_s = jnp.where(spread > 0, v / jnp.where(spread > 0, spread, 1.0), jnp.inf)
  f_eff = jnp.minimum(_per_clip(factor), inv_s)
  return v + f_eff * (x - v)


def _rgb_to_hsv(x):
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  v = jnp.max(x, axis=-1)
  spread = v - jnp.min(x, axis=-1)
  safe = jnp.where(spread > 0, spread, 1.0)
  s = jnp.where(v > 0, spread / jnp.where(v > 0, v, 1.0), 0.0)
  h = jnp.where(v == r, jnp.mod((g - b) / safe, 6.0),
                jnp.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
  h = jnp.where(spread > 0, h / 6.0, 0.0)
  return h, s, v


def _hsv_to_rgb(h, s, v):
  """c_n = V - V S max(0, min(k, 4 - k, 1)), k = (n + 6H) mod 6, n = 5, 3, 1 for r, g, b."""
  n = jnp.array([5.0, 3.0, 1.0])
  k = jnp.mod(n + 6.0 * h[..., None], 6.0)
  ramp = jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
  return v[..., None] - (v * s)[..., None] * ramp


def _adjust_hue(x, delta):
  h, s, v = _rgb_to_hsv(x)
  h = jnp.mod(h + delta[..., None, None, None], 1.0)
  return _hsv_to_rgb(h, s, v)


def _jitter_op(index: int, x, params):
  if index == 0:
    return x * _per_clip(params["brightness"])
  if index == 1:
    mean = jnp.mean(x, axis=(-4, -3, -2), keepdims=True)  # per clip, per channel
    return (x - mean) * _per_clip(params["contrast"]) + mean
  if index == 2:
    return _adjust_saturation(x, params["saturation"])
  return _adjust_hue(x, params["hue"])


def _color_jitter(x, params):
  """The four jitter ops in each clip's own random order, clipping after each."""
  for position in range(4):
    which = _per_clip(params["order"][..., position])
    candidates = [_jitter_op(i, x, params) for i in range(4)]
    x = jnp.clip(jnp.select([which == i for i in range(4)], candidates), 0.0, 1.0)
  return x


def _grayscale(x):
  gray = jnp.sum(x * jnp.asarray(GRAY_WEIGHTS, x.dtype), axis=-1, keepdims=True)
  return jnp.broadcast_to(gray, x.shape)


def _gaussian_blur(x, sigma, radius: int):
  """Separable, reflect-padded blur with a per-clip sigma [...]; x [..., T, H, W, 3]."""
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  taps = jnp.exp(-jnp.square(offsets) / (2.0 * jnp.square(sigma[..., None])))
  taps = taps / jnp.sum(taps, axis=-1, keepdims=True)  # [..., 2r+1]
  height, width = x.shape[-3], x.shape[-2]
  pad = [(0, 0)] * (x.ndim - 3) + [(radius, radius), (radius, radius), (0, 0)]
  padded = jnp.pad(x, pad, mode="reflect")
  horizontal = sum(_per_clip(taps[..., j]) * padded[..., :, j:j + width, :]
                   for j in range(2 * radius + 1))
  return sum(_per_clip(taps[..., j]) * horizontal[..., j:j + height, :, :]
             for j in range(2 * radius + 1))


def apply_augmentation(x: jax.Array, params: dict, blur_radius_px: int) -> jax.Array:
  """Flip, jitter, grayscale, blur with given per-clip params.

  x: [..., T, H, W, 3] float32 in [0, 1]; params: arrays of shape [...] (order [..., 4]).
  Returns the same shape, clipped to [0, 1].
  """
  x = jnp.where(_per_clip(params["flip"]), jnp.flip(x, axis=-2), x)
  x = jnp.where(_per_clip(params["jitter"]), _color_jitter(x, params), x)
  x = jnp.where(_per_clip(params["grayscale"]), _grayscale(x), x)
  x = jnp.where(_per_clip(params["blur"]), _gaussian_blur(x, params["sigma"], blur_radius_px),
                x)
  return jnp.clip(x, 0.0, 1.0)


def apply_linear_augmentation(x: jax.Array, params: dict, blur_radius_px: int) -> jax.Array:
  """The 'linear' colour mode (`color_matrix`): clip(A blur(flip(x)) + b, 0, 1) per clip.

  x: [..., T, H, W, 3] float32 in [0, 1]; params as for `apply_augmentation`. Equals
  `linear_aug_tf.apply_linear_augmentation_tf` for equal parameters (tested).
  """
  a, b = color_matrix.clip_color_affine(jnp, params, jnp.mean(x, axis=(-4, -3, -2)))
  x = jnp.where(_per_clip(params["flip"]), jnp.flip(x, axis=-2), x)
  x = jnp.where(_per_clip(params["blur"]), _gaussian_blur(x, params["sigma"], blur_radius_px),
                x)
  # a[..., i, j]: output channel i from input channel j, broadcast over (T, H, W).
  a = a[..., None, None, None, :, :]
  y = (x[..., 0:1] * a[..., 0] + x[..., 1:2] * a[..., 1] + x[..., 2:3] * a[..., 2]
       + b[..., None, None, None, :])
  return jnp.clip(y, 0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("cfg",))
def augment_clips(key: jax.Array, clips: jax.Array,
                  cfg: AugmentConfig = AugmentConfig()) -> jax.Array:
  """Random flip / colour / grayscale / blur, one draw per clip.

  Args:
    key: a PRNG key (e.g. `jax.random.fold_in(base_key, step)`).
    clips: [B, K, T, H, W, 3] uint8 (values 0..255) or float in [0, 1]; H == W is not needed.
    cfg: static augmentation config (crop fields are ignored here: cropping is on the CPU).
  Returns:
    [B, K, T, H, W, 3] float32 in [0, 1].
  """
  if clips.ndim != 6 or clips.shape[-1] != 3:
    raise ValueError(f"augment_clips: clips must be [B, K, T, H, W, 3], got {clips.shape}")
  if clips.dtype == jnp.uint8:
    x = clips.astype(jnp.float32) / 255.0
  else:
    x = clips.astype(jnp.float32)
  params = sample_params(key, clips.shape[:2], cfg)
  radius = blur_radius(min(clips.shape[-3], clips.shape[-2]), cfg.blur_sigma_range[1])
  if cfg.color_mode == "linear":
    return apply_linear_augmentation(x, params, radius)
  return apply_augmentation(x, params, radius)
