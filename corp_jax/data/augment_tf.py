"""Per-clip augmentation inside tf.data (CPU), Sec. 3.2 following CVRL [37].

Contract:
  Every random choice is drawn ONCE PER CLIP from a stateless seed and applied identically to
  all T frames of the clip ("the random seed for each frame in the same clip is set to the
  same", Sec. 3.2); different clips get different seeds and so independent draws. Outputs are
  a deterministic function of (frames, seed).

  Steps and distributions (`AugmentConfig` defaults are CVRL's video_ssl values):
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
       (CVRL pads with zeros, which darkens borders).
  Steps 2-5 work on float32 in [0, 1] and are the same maths as `augment_jax` (tested equal
  for equal parameters), so the accelerator path can take them over: then the CPU only
  decodes + crops + resizes to uint8.

  `color_mode='linear'` replaces steps 3-4 by `color_matrix`'s one affine map of RGB per clip
  (same uniforms, same draws; no clipping between ops) and runs steps 2-5 as a few XLA passes
  (`linear_aug_tf`, which also gives their costs); `augment_jax.apply_linear_augmentation`
  is its twin. It is the fast CPU mode (~9 ms per 16 x 224 x 224 clip on one core with blur
  drawn half the time, against ~100 ms for 'cvrl', whose HSV ops dominate).

  The parameter vector: 13 uniforms per clip, mapped to parameters by `params_from_uniforms`
  (see `PARAM_LAYOUT`); `augment_jax.params_from_uniforms` is its JAX twin.

TensorFlow is imported lazily inside functions; `AugmentConfig` is plain Python so the JAX
module can share it without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from corp_jax.data import color_matrix
from corp_jax.data import linear_aug_tf

# Index of each uniform in the per-clip parameter vector.
PARAM_LAYOUT = {
    "flip": 0, "jitter": 1, "brightness": 2, "contrast": 3, "saturation": 4, "hue": 5,
    "order": 6,  # 6..9: argsort gives the jitter order
    "grayscale": 10, "blur": 11, "sigma": 12,
}
NUM_PARAM_UNIFORMS = 13
GRAY_WEIGHTS = color_matrix.GRAY_WEIGHTS  # tf.image.rgb_to_grayscale
COLOR_MODES = ("cvrl", "linear")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Distribution of the per-clip augmentation (defaults: CVRL strength 1.0)."""
  crop_area_range: Tuple[float, float] = (0.3, 1.0)
  crop_aspect_ratio_range: Tuple[float, float] = (0.5, 2.0)
  flip_prob: float = 0.5
  color_jitter_prob: float = 0.8
  brightness: float = 0.8
  contrast: float = 0.8
  saturation: float = 0.8
  hue: float = 0.2
  grayscale_prob: float = 0.2
  blur_prob: float = 0.5
  blur_sigma_range: Tuple[float, float] = (0.1, 2.0)
  # 'cvrl': steps 3-4 exactly as CVRL (HSV saturation / hue, clip after each op);
  # 'linear': jitter + grayscale as one affine map of RGB per clip (`color_matrix`), one
  # clip at the end; with flip and blur a few XLA passes on the CPU path (`linear_aug_tf`).
  color_mode: str = "cvrl"

  def __post_init__(self):
    if self.color_mode not in COLOR_MODES:
      raise ValueError(f"AugmentConfig.color_mode must be one of {COLOR_MODES}, "
                       f"got {self.color_mode!r}")
    for name in ("flip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob"):
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {value!r}")
    for name in ("brightness", "contrast", "saturation"):
      if getattr(self, name) < 0:
        raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)!r}")
    if not 0.0 <= self.hue <= 0.5:
      raise ValueError(f"AugmentConfig.hue must be in [0, 0.5], got {self.hue!r}")
    lo, hi = self.crop_area_range
    if not 0.0 < lo <= hi <= 1.0:
      raise ValueError(f"AugmentConfig.crop_area_range must satisfy 0 < lo <= hi <= 1, "
                       f"got {self.crop_area_range!r}")
    lo, hi = self.crop_aspect_ratio_range
    if not 0.0 < lo <= hi:
      raise ValueError(f"AugmentConfig.crop_aspect_ratio_range must satisfy 0 < lo <= hi, "
                       f"got {self.crop_aspect_ratio_range!r}")
    lo, hi = self.blur_sigma_range
    if not 0.0 < lo <= hi:
      raise ValueError(f"AugmentConfig.blur_sigma_range must satisfy 0 < lo <= hi, "
                       f"got {self.blur_sigma_range!r}")

  def without_color(self) -> "AugmentConfig":
    """Linear-evaluation training views (Sec. 4.1): no colour jitter, no blur. Grayscale
    goes too: in CVRL, which CORP follows, grayscale is part of the colour-jitter op."""
    return dataclasses.replace(self, color_jitter_prob=0.0, grayscale_prob=0.0,
                               blur_prob=0.0)

  def factor_range(self, name: str) -> Tuple[float, float]:
    """CVRL's multiplicative factor range [max(1 - s, 0), 1 + s] for a jitter strength s."""
    strength = getattr(self, name)
    return max(1.0 - strength, 0.0), 1.0 + strength


def blur_radius(crop_size: int, sigma_max: float = 2.0) -> int:
  """Half-width of the blur kernel for S x S frames: CVRL's kernel size S // 10, capped at
  3 sigma_max (taps beyond 3 sigma weigh < 0.5% in total; the cap halves the cost at 224)."""
  return max(min(int(crop_size) // 20, int(np.ceil(3.0 * sigma_max))), 1)


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def params_from_uniforms_tf(uniforms, cfg: AugmentConfig) -> dict:
  """uniforms [13] float32 in [0, 1) -> the clip's augmentation parameters (scalars)."""
  tf = _tf()
  u = uniforms
  p = PARAM_LAYOUT

  def scaled(x, lo_hi):
    return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * x

  return {
      "flip": u[p["flip"]] < cfg.flip_prob,
      "jitter": u[p["jitter"]] < cfg.color_jitter_prob,
      "brightness": scaled(u[p["brightness"]], cfg.factor_range("brightness")),
      "contrast": scaled(u[p["contrast"]], cfg.factor_range("contrast")),
      "saturation": scaled(u[p["saturation"]], cfg.factor_range("saturation")),
      "hue": scaled(u[p["hue"]], (-cfg.hue, cfg.hue)),
      "order": tf.argsort(u[p["order"]:p["order"] + 4], stable=True),
      "grayscale": u[p["grayscale"]] < cfg.grayscale_prob,
      "blur": u[p["blur"]] < cfg.blur_prob,
      "sigma": scaled(u[p["sigma"]], cfg.blur_sigma_range),
  }


# ---------------------------------------------------------------- crop (uint8, per clip)


def sample_crop_window_tf(image_shape, seed, cfg: AugmentConfig):
  """Random resized crop window for a frame of `image_shape` [H, W, C]: (begin [3], size [3])."""
  tf = _tf()
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.cast(image_shape, tf.int32), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed, min_object_covered=0.0, aspect_ratio_range=cfg.crop_aspect_ratio_range,
      area_range=cfg.crop_area_range, max_attempts=10, use_image_if_no_bounding_boxes=True)
  return begin, size


def decode_crop_resize_jpeg_tf(jpegs, begin, size, crop_size: int):
  """Decodes only the crop window of each JPEG and resizes it.

  jpegs: [T] tf.string; begin, size: [3] from `sample_crop_window_tf`.
  Returns [T, S, S, 3] float32 in [0, 255].
  """
  tf = _tf()
  window = tf.stack([begin[0], begin[1], size[0], size[1]])
  decode = lambda j: tf.io.decode_and_crop_jpeg(j, window, channels=3)  # noqa: E731
  num_frames = jpegs.shape[0] if jpegs.shape.rank == 1 else None
  if num_frames is not None:  # static T: T decode ops, no while loop (~10% cheaper)
    frames = tf.stack([decode(jpegs[t]) for t in range(num_frames)])
  else:
    frames = tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec([None, None, 3],
                                                                        tf.uint8))
  return tf.image.resize(frames, [crop_size, crop_size], method="bilinear")


def crop_resize_frames_tf(frames, begin, size, crop_size: int):
  """Crops decoded frames [T, H, W, 3] uint8 to the window and resizes: float32 [0, 255]."""
  tf = _tf()
  window = tf.slice(frames, tf.concat([[0], begin], 0), tf.concat([[-1], size], 0))
  return tf.image.resize(window, [crop_size, crop_size], method="bilinear")


def to_uint8_tf(frames):
  """Bilinear-resized float [0, 255] -> uint8 rounded half up (the accelerator path's input).

  A bilinear resize is a convex combination of uint8 pixels, so frames + 0.5 lies in
  [0.5, 255.5) and truncating cast is exact rounding without a clip pass (which costs as much
  as a quarter of the JPEG decode at 224 x 224 x 16).
  """
  tf = _tf()
  return tf.cast(frames + 0.5, tf.uint8)


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
    x = tf.cond(params["blur"], lambda: gaussian_blur_tf(x, params["sigma"], blur_radius_px),
                lambda: x)
  return tf.clip_by_value(x, 0.0, 1.0)


# ------------------------------------------------ 'linear' colour mode (linear_aug_tf)


def linear_color_affine_tf(params, mean):
  """(A [3, 3], b [3]) of the clip's jitter + grayscale; mean [3] of the input in [0, 1]."""
  import tensorflow.experimental.numpy as tnp  # pylint: disable=g-import-not-at-top
  return color_matrix.clip_color_affine(tnp, params, mean)


def apply_linear_augmentation_tf(x, params, blur_radius_px: int, cfg: AugmentConfig | None = None,
                                 input_scale: float = 1.0):
  """Steps 2-5 in the 'linear' colour mode: x [T, H, W, 3] float32 in [0, input_scale]
  (static shape) -> [T, H, W, 3] float32 in [0, 1], i.e. clip(A blur(flip(x)) + b, 0, 1);
  `linear_aug_tf.apply_linear_augmentation_tf` (its XLA passes are described there)."""
  return linear_aug_tf.apply_linear_augmentation_tf(x, params, blur_radius_px, cfg,
                                                    input_scale)


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
    return apply_linear_augmentation_tf(frames_0_255, params, radius, cfg, input_scale=255.0)
  return apply_augmentation_tf(frames_0_255 / 255.0, params, radius, cfg)
