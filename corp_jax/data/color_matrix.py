"""The 'linear' colour mode: colour jitter + grayscale of a clip as ONE affine map of RGB.

Contract:
  `clip_color_affine(xp, params, mean)` -> (A [..., 3, 3], b [..., 3]) such that the clip's
  colour jitter (in its drawn order) followed by grayscale is `rgb -> A @ rgb + b`, for RGB in
  [0, 1]. `params` are the per-clip parameters of `augment_params.params_from_uniforms`
  (shape [...], `order` [..., 4]); `mean` [..., 3] is the per-channel mean of the clip
  *before* any colour op.
  `xp` is an array namespace: `numpy`, `jax.numpy` or `tensorflow.experimental.numpy`, so
  the NumPy reference, the TF (CPU) and the JAX (accelerator) paths share this one source.

  The four jitter ops and grayscale, each an affine map of RGB:
    brightness f:  rgb -> f rgb                                 (as CVRL: multiplicative)
    contrast f:    rgb -> f rgb + (1 - f) m, m the clip's per-channel mean (over T, H, W) at
                   that point of the chain, as in the 'cvrl' path (not torchvision's mean
                   gray); m = A m0 + b is known analytically from the mean m0 of the input,
                   because the mean of an affine map is the affine map of the mean;
    saturation f:  rgb -> f rgb + (1 - f) gray(rgb), gray = GRAY_WEIGHTS . rgb (TF's weights);
    hue delta:     rotation by 2 pi delta around the luma axis in YIQ space (luma = gray),
                   the standard linear approximation of an HSV hue shift; the sign makes
                   delta > 0 turn red towards yellow, as HSV hue + delta does;
    grayscale:     rgb -> gray(rgb) in all three channels.
  Composing them in the drawn order is a product of matrices, so the whole chain costs one
  pass over the pixels, with one clip to [0, 1] at the end.

  How this differs from the 'cvrl' path (TF's adjust_saturation / adjust_hue in HSV, a clip
  after every op): HSV saturation keeps max(rgb) and scales the spread; HSV hue is a
  piecewise-linear turn of the colour hexagon, not a rotation; and without intermediate clips
  an out-of-range value can come back into range in a later op. `benchmarks/input_pipeline.py
  --compare` measures the difference on clips with equal parameters.
"""

from __future__ import annotations

import numpy as np

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale; luma of YIQ below
# RGB -> YIQ (NTSC) with TF's grayscale weights as the luma row, so that a hue rotation
# leaves exactly the gray that saturation and grayscale use unchanged.
RGB_TO_YIQ = np.array([GRAY_WEIGHTS, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312)],
                      np.float64)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)
GRAY_MATRIX = np.tile(np.asarray(GRAY_WEIGHTS, np.float64)[None, :], (3, 1))  # rows = w
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")  # op index -> name (PARAM order)


def _const(xp, value):
  return xp.asarray(np.asarray(value, np.float32))


def _scalar_matrix(xp, factor):
  """f I for per-clip factors [...] -> [..., 3, 3]."""
  return factor[..., None, None] * _const(xp, np.eye(3))


def saturation_matrix(xp, factor):
  """Blend with the grayscale image: f I + (1 - f) G."""
  f = factor[..., None, None]
  return f * _const(xp, np.eye(3)) + (1.0 - f) * _const(xp, GRAY_MATRIX)


def hue_matrix(xp, delta):
  """YIQ rotation by 2 pi delta around the luma axis: [...] -> [..., 3, 3]."""
  theta = 2.0 * np.pi * delta
  cos, sin = xp.cos(theta)[..., None, None], xp.sin(theta)[..., None, None]
  # (I, Q) -> (c I + s Q, -s I + c Q): with delta > 0 red turns towards yellow (HSV's way).
  rotation = (_const(xp, np.diag([1.0, 0.0, 0.0])) + cos * _const(xp, np.diag([0.0, 1.0, 1.0]))
              + sin * _const(xp, [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]))
  return xp.matmul(xp.matmul(_const(xp, YIQ_TO_RGB), rotation), _const(xp, RGB_TO_YIQ))


def _matvec(xp, matrix, vector):
  return xp.sum(matrix * vector[..., None, :], axis=-1)


def _apply_op(xp, index: int, state, params, mean):
  """One jitter op composed after the affine map `state` = (A, b) of the input."""
  a, b = state
  if index == 1:  # contrast: f (A x + b) + (1 - f) (A m0 + b) = f A x + b + (1 - f) A m0
    f = params["contrast"]
    return f[..., None, None] * a, b + (1.0 - f)[..., None] * _matvec(xp, a, mean)
  if index == 0:
    op = _scalar_matrix(xp, params["brightness"])
  elif index == 2:
    op = saturation_matrix(xp, params["saturation"])
  else:
    op = hue_matrix(xp, params["hue"])
  return xp.matmul(op, a), _matvec(xp, op, b)


def _select(xp, condition, if_true, if_false):
  """Per-clip choice between two (A, b) states; condition [...] bool."""
  return (xp.where(condition[..., None, None], if_true[0], if_false[0]),
          xp.where(condition[..., None], if_true[1], if_false[1]))


def clip_color_affine(xp, params: dict, mean):
  """(A [..., 3, 3], b [..., 3]) of jitter (if drawn, in drawn order) then grayscale (if
  drawn); see the module docstring. mean: [..., 3] per-channel mean of the input in [0, 1]."""
  mean = xp.asarray(mean)
  batch_shape = tuple(mean.shape[:-1])
  identity = (xp.zeros(batch_shape + (3, 3), mean.dtype) + _const(xp, np.eye(3)),
              xp.zeros(batch_shape + (3,), mean.dtype))
  state = identity
  for position in range(4):
    which = params["order"][..., position]
    candidates = [_apply_op(xp, i, state, params, mean) for i in range(4)]
    chosen = candidates[3]
    for i in (2, 1, 0):
      chosen = _select(xp, which == i, candidates[i], chosen)
    state = chosen
  state = _select(xp, params["jitter"], state, identity)
  gray = _const(xp, GRAY_MATRIX)
  grayed = (xp.matmul(gray + xp.zeros_like(state[0]), state[0]), _matvec(xp, gray, state[1]))
  return _select(xp, params["grayscale"], grayed, state)
