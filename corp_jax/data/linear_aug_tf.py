"""The 'linear' colour mode on the CPU (tf.data): flip, jitter + grayscale, blur of one clip
in a few XLA-compiled passes.

Contract:
  `apply_linear_augmentation_tf(x, params, blur_radius_px, cfg=None, input_scale=1.0)`:
  x [T, H, W, 3] float32 in [0, input_scale] with a static shape, `params` the clip's
  parameters (`augment_params.params_from_uniforms`) -> [T, H, W, 3] float32 in [0, 1], equal
  (to float rounding) to clip(A blur(flip(x / input_scale)) + b, 0, 1), where (A, b) is
  `color_matrix.clip_color_affine` of the clip (`linear_color_affine_tf`) and blur is the
  reflect-padded separable Gaussian of `blur_tf` (radius `blur_radius_px`, skipped when not
  drawn). This is the maths of `augment_jax.apply_linear_augmentation` (tested equal), for
  one clip.

How the passes are arranged (ms: one 16 x 224 x 224 x 3 float32 clip, one CPU core, each
pass timed alone; the whole: ~3.5-4 ms without blur or flip, ~5 with flip, ~12-14 with blur):
  * the per-channel mean (one read, ~1.3 ms), needed by contrast before any colour op; the
    mean of a mirrored clip is the clip's, so the flip can wait for the colour pass;
  * no blur: one pass clip(A flip(x) + b) (~2.3 ms, ~3.9 with the flip);
  * blur: the colour map goes first, because the blur commutes with it (its taps sum to 1)
    and the clip comes last either way: pad(A flip(x) + b) with reflection (~5.7 ms, ~1.4
    more with the flip), the horizontal taps (~2.5 ms), the vertical taps + clip (~3 ms).
  The flip is static inside each compiled colour pass (a tf.cond picks the flipped or the
  plain variant): a data-dependent select computes both, and a separate reverse costs a
  whole extra pass (tf.reverse along W of [T, H, W, 3] alone is ~5.7 ms). Each pass is its
  own compiled function: XLA fusing the padding into the taps, or the channel-mixing colour
  map into the vertical taps, recomputes the producer per consumer and runs 2-3x slower
  (vertical taps + flip + colour in one pass measured ~22 ms per clip with blur, ~6.5
  without). Frames are viewed as [T, H, W * 3] so that taps are shifts along a
  long contiguous axis (XLA vectorises those, not loops over a size-3 minor axis); the
  final [T, H, W, 3] view is a reshape outside XLA (a clip inside XLA on the 4-D view costs
  ~3 ms more).

TensorFlow is imported lazily.
"""

from __future__ import annotations

import functools

from corp_jax.data import blur_tf
from corp_jax.data import color_matrix


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _affine(x, a, b):
  """A rgb + b per pixel of x [..., 3] as three broadcast products (a matmul with inner size 3
  runs far below memory speed in both TF and XLA)."""
  return x[..., 0:1] * a[:, 0] + x[..., 1:2] * a[:, 1] + x[..., 2:3] * a[:, 2] + b


def linear_color_affine_tf(params, mean):
  """(A [3, 3], b [3]) of the clip's jitter + grayscale; mean [3] of the input in [0, 1]."""
  import tensorflow.experimental.numpy as tnp  # pylint: disable=g-import-not-at-top
  return color_matrix.clip_color_affine(tnp, params, mean)


@functools.lru_cache(maxsize=None)
def linear_passes(radius: int) -> dict:
  """The XLA-compiled passes for blur radius `radius` (each compiled per input shape); the
  colour passes come as (unflipped, flipped) pairs with the flip static in each."""
  tf = _tf()

  def channel_mean(x):  # rows first: a column reduction over [T * H, W * 3] vectorises
    frames, height, width, _ = x.shape
    rows = tf.reduce_sum(tf.reshape(x, [frames * height, width * 3]), axis=0)
    return tf.reduce_sum(tf.reshape(rows, [width, 3]), axis=0) / (frames * height * width)

  def affine_clip(x, a, b, flip):
    x = tf.reverse(x, axis=[2]) if flip else x
    return tf.clip_by_value(_affine(x, a, b), 0.0, 1.0)

  def affine_pad(x, a, b, flip):  # reflect padding as [T, H + 2r, (W + 2r) * 3]
    frames, height, width, _ = x.shape
    x = tf.reverse(x, axis=[2]) if flip else x
    padded = tf.pad(_affine(x, a, b), [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                    mode="REFLECT")
    return tf.reshape(padded, [frames, height + 2 * radius, (width + 2 * radius) * 3])

  def horizontal(flat, taps):  # [T, H + 2r, (W + 2r) * 3] -> [T, H + 2r, W * 3]
    width3 = flat.shape[2] - 6 * radius
    return tf.add_n([taps[j] * flat[:, :, 3 * j:3 * j + width3]
                     for j in range(2 * radius + 1)])

  def vertical_clip(rows, taps):  # [T, H + 2r, W * 3] -> [T, H, W * 3] in [0, 1]
    height = rows.shape[1] - 2 * radius
    out = tf.add_n([taps[j] * rows[:, j:j + height] for j in range(2 * radius + 1)])
    return tf.clip_by_value(out, 0.0, 1.0)

  def compiled(fn):
    return tf.function(fn, jit_compile=True, autograph=False)

  return {
      "channel_mean": compiled(channel_mean),
      "affine_clip": tuple(compiled(functools.partial(affine_clip, flip=f))
                           for f in (False, True)),
      "affine_pad": tuple(compiled(functools.partial(affine_pad, flip=f))
                          for f in (False, True)),
      "horizontal": compiled(horizontal),
      "vertical_clip": compiled(vertical_clip),
  }


def apply_linear_augmentation_tf(x, params, blur_radius_px: int, cfg=None,
                                 input_scale: float = 1.0):
  """See the module docstring. With `cfg` (an `AugmentConfig`), steps whose probability is 0
  are left out of the graph (the result is the same)."""
  tf = _tf()
  if x.shape.rank != 4 or not x.shape.is_fully_defined() or x.shape[-1] != 3:
    raise ValueError(f"apply_linear_augmentation_tf needs a static [T, H, W, 3] shape, "
                     f"got {x.shape}")
  passes = linear_passes(int(blur_radius_px))
  # The mean of a mirrored clip is the mean of the clip: the flip waits for the colour pass.
  a, b = linear_color_affine_tf(params, passes["channel_mean"](x) / input_scale)
  a = a / input_scale

  def with_flip(pair, *args):
    if cfg is not None and cfg.flip_prob == 0.0:
      return pair[0](*args)
    return tf.cond(params["flip"], lambda: pair[1](*args), lambda: pair[0](*args))

  if cfg is not None and cfg.blur_prob == 0.0:
    return with_flip(passes["affine_clip"], x, a, b)

  def blurred():
    taps = blur_tf.gaussian_kernel_tf(params["sigma"], blur_radius_px)
    rows = passes["horizontal"](with_flip(passes["affine_pad"], x, a, b), taps)
    return tf.reshape(passes["vertical_clip"](rows, taps), x.shape)

  return tf.cond(params["blur"], blurred, lambda: with_flip(passes["affine_clip"], x, a, b))
