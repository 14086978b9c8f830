"""The per-clip augmentation's distribution and parameters, shared by the CPU (TF) and the
accelerator (JAX) paths. Imports neither TensorFlow nor JAX.

Contract:
  `AugmentConfig` is the distribution (defaults: CVRL's video_ssl values, strength 1.0; the
  steps are described in `augment_tf`). A clip's random choices are NUM_PARAM_UNIFORMS
  uniforms in [0, 1) laid out as PARAM_LAYOUT; `params_from_uniforms(uniforms, cfg,
  argsort)` maps uniforms [..., 13] to the parameter dict (each [...], `order` [..., 4]) with
  operator syntax only (indexing, comparison, arithmetic), so the same definition serves
  NumPy, JAX and TensorFlow arrays; `argsort` is the namespace's stable argsort along the
  last axis (the one operation the namespaces spell differently).
  `blur_radius(crop_size, sigma_max)` is the blur kernel's half-width in pixels.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Tuple

import numpy as np

from corp_jax.data import color_matrix

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
  # Beyond the paper (a diagnostic, off in every recipe): one crop window for all K clips of
  # a video instead of one per clip (the paper's Sec. 3.2), so the clips' framing matches.
  crop_shared_across_clips: bool = False
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


def params_from_uniforms(uniforms, cfg: AugmentConfig, argsort: Callable) -> dict:
  """uniforms [..., 13] in [0, 1) -> dict of per-clip parameters, each of shape [...]
  (`order` is [..., 4], the jitter ops' order). `argsort(x)`: stable argsort of x along its
  last axis, in the uniforms' namespace (e.g. `tf.argsort(x, stable=True)`)."""
  u = uniforms
  p = PARAM_LAYOUT

  def scaled(x, lo_hi):
    return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * x

  return {
      "flip": u[..., p["flip"]] < cfg.flip_prob,
      "jitter": u[..., p["jitter"]] < cfg.color_jitter_prob,
      "brightness": scaled(u[..., p["brightness"]], cfg.factor_range("brightness")),
      "contrast": scaled(u[..., p["contrast"]], cfg.factor_range("contrast")),
      "saturation": scaled(u[..., p["saturation"]], cfg.factor_range("saturation")),
      "hue": scaled(u[..., p["hue"]], (-cfg.hue, cfg.hue)),
      "order": argsort(u[..., p["order"]:p["order"] + 4]),
      "grayscale": u[..., p["grayscale"]] < cfg.grayscale_prob,
      "blur": u[..., p["blur"]] < cfg.blur_prob,
      "sigma": scaled(u[..., p["sigma"]], cfg.blur_sigma_range),
  }
