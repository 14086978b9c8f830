"""Gaussian blur of a clip on the CPU (TensorFlow): the taps both colour modes use, and the
'cvrl' mode's separable, reflect-padded blur.

Contract:
  `gaussian_kernel_tf(sigma, radius)`: [2r+1] normalised taps exp(-d^2 / (2 sigma^2)).
  `gaussian_blur_tf(x, sigma, radius)`: x [T, H, W, 3] (static H, W) blurred along W then H
  with reflect padding, the same for every frame; `augment_jax` has the same maths.
TensorFlow is imported lazily.
"""

from __future__ import annotations

import numpy as np


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def gaussian_kernel_tf(sigma, radius: int):
  """[2r+1] normalised Gaussian taps."""
  tf = _tf()
  offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
  taps = tf.exp(-tf.square(offsets) / (2.0 * tf.square(tf.cast(sigma, tf.float32))))
  return taps / tf.reduce_sum(taps)


def reflect_blur_matrix_tf(taps, size: int, radius: int):
  """[size, size] matrix M with (M @ v)[i] = sum_j taps[j] v[reflect(i + j - radius)]: one
  1-D pass of the reflect-padded blur as a matrix product (duplicate indices at the borders
  are summed by scatter_nd, which is what reflection means)."""
  tf = _tf()
  if radius >= size:
    raise ValueError(f"blur radius {radius} must be smaller than the frame side {size}")
  source = np.arange(size)[:, None] + np.arange(-radius, radius + 1)[None, :]
  source = np.abs(source)
  source = np.where(source > size - 1, 2 * (size - 1) - source, source)
  rows = np.repeat(np.arange(size), 2 * radius + 1)
  indices = np.stack([rows, source.reshape(-1)], axis=1)
  return tf.scatter_nd(indices, tf.tile(taps, [size]), [size, size])


def gaussian_blur_tf(x, sigma, radius: int):
  """Separable Gaussian blur of x [T, H, W, 3] (static H, W) with reflect padding, the same
  for all frames. Two matrix products: TF's CPU depthwise convolution is ~3x slower."""
  tf = _tf()
  taps = gaussian_kernel_tf(sigma, radius)
  height, width = x.shape[1], x.shape[2]
  x = tf.einsum("thwc,vw->thvc", x, reflect_blur_matrix_tf(taps, width, radius))
  return tf.einsum("thwc,uh->tuwc", x, reflect_blur_matrix_tf(taps, height, radius))
