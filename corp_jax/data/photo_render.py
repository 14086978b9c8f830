"""Pure-NumPy renderer of the photo evaluation set: camera and object motions over real
photographs (no TensorFlow, no files written).

Contract: `render_video(rng, photo, motion, num_frames, size, static=False) -> uint8
[L, H, W, 3]`, deterministic given the generator's state and the photo array;
`load_photos()` returns the bundled photographs (`PHOTO_NAMES` order) as float32 [h, w, 3]
in [0, 1], each resized so its short side is `WORK_SIDE` pixels (long side capped at
`WORK_SIDE * 3 // 2`), and `load_textures()` the grayscale textures of the `grow`/`shrink`
object.

Content and renderer differ from the embedded set (`embedded_render.py`, procedural shapes
over a synthetic sky/ground scene): every frame is a view of a real photograph (the colour
images bundled in the scikit-image wheel: no download), resampled through an affine camera
(bilinear, 2x supersampled then box-filtered), and the files are encoded as real video
(`corp_jax.tools.photo_set`).

Two labels:
* PHOTO (appearance, order-free): which of the 8 photographs the camera looks at. Each video
  views its own random window (position, scale, tilt, colour gain), so train and test views
  of one photograph differ.
* MOTION: 10 classes in 5 time-reversal pairs. The odd member of a pair is exactly the even
  member played backwards before encoding (frame t is rendered at phase L-1-t; both consume
  the generator identically). Speeds are per frame, so longer videos travel further at the
  same speed. Cues are within-clip directions that a per-clip random crop keeps:
    pan_left / pan_right    the camera moves sideways. FLIP-AMBIGUOUS: a horizontal flip
                            maps one onto the other (like SSv2's "left to right").
    tilt_up / tilt_down     the camera moves vertically (flip-safe).
    zoom_in / zoom_out      the field of view shrinks / grows (flip-safe).
    rotate_cw / rotate_ccw  the camera rolls (FLIP-AMBIGUOUS).
    grow / shrink           a textured disc over the still view grows / shrinks (flip-safe).
With `static=True` every frame is the middle frame of the motion (a control: no motion,
labels kept).
"""

from __future__ import annotations

import functools
import os

import numpy as np

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry",
               "motorcycle", "retina", "rocket")
_PHOTO_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg",
                "ihc.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg")
_TEXTURE_FILES = ("brick.png", "grass.png", "gravel.png")
MOTION_NAMES = ("pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out",
                "rotate_cw", "rotate_ccw", "grow", "shrink")
REVERSAL_PAIRS = tuple((k, k + 1) for k in range(0, len(MOTION_NAMES), 2))
FLIP_AMBIGUOUS_MOTIONS = ("pan_left", "pan_right", "rotate_cw", "rotate_ccw")

WORK_SIDE = 256  # working resolution of a photograph (short side, pixels)
# Per-frame speeds, in output-frame units (the frame is `size` pixels wide).
PAN_SPEED = 0.009  # frame widths per frame (0.6 px at 64 px)
ZOOM_RATE = 0.006  # log field of view per frame
ROLL_RATE = np.deg2rad(0.8)  # radians per frame
GROW_RATE = 0.012  # log radius per frame
_SUPERSAMPLE = 2


def _skimage_data_dir() -> str:
  try:
    import skimage.data  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("the photo set needs scikit-image's bundled sample images: "
                      "python3 -m pip install scikit-image") from e
  return os.path.dirname(skimage.data.__file__)


def _read_image(name: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = os.path.join(_skimage_data_dir(), name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: this scikit-image wheel does not bundle "
                            f"{name}; install scikit-image>=0.19")
  with Image.open(path) as image:
    image = image.convert("RGB")
    w, h = image.size
    scale = WORK_SIDE / min(w, h)
    new_w = min(int(round(w * scale)), WORK_SIDE * 3 // 2)
    new_h = min(int(round(h * scale)), WORK_SIDE * 3 // 2)
    # Crop the centre to the capped aspect ratio before resizing.
    keep_w, keep_h = min(w, new_w / scale), min(h, new_h / scale)
    box = ((w - keep_w) / 2, (h - keep_h) / 2, (w + keep_w) / 2, (h + keep_h) / 2)
    image = image.resize((new_w, new_h), Image.LANCZOS, box=box)
    return np.asarray(image, np.float32) / 255.0


@functools.lru_cache(maxsize=1)
def load_photos() -> tuple:
  return tuple(_read_image(f) for f in _PHOTO_FILES)


@functools.lru_cache(maxsize=1)
def load_textures() -> tuple:
  return tuple(_read_image(f).mean(axis=-1) for f in _TEXTURE_FILES)


def _check_args(photo: int, motion: int, num_frames: int, size: int) -> None:
  if not 0 <= photo < len(PHOTO_NAMES):
    raise ValueError(f"photo must be in [0, {len(PHOTO_NAMES)}), got {photo}")
  if not 0 <= motion < len(MOTION_NAMES):
    raise ValueError(f"motion must be in [0, {len(MOTION_NAMES)}), got {motion}")
  if num_frames < 2:
    raise ValueError(f"num_frames must be >= 2, got {num_frames}")
  if size < 16:
    raise ValueError(f"frame size must be >= 16 pixels, got {size}")


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
  """image [h, w, C] sampled at float pixel coordinates (clamped to the image)."""
  h, w = image.shape[:2]
  ys = np.clip(ys, 0.0, h - 1.001)
  xs = np.clip(xs, 0.0, w - 1.001)
  y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
  fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
  top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
  bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
  return top * (1 - fy) + bottom * fy


def _camera_view(photo: np.ndarray, grid: np.ndarray, cy: float, cx: float, half: float,
                 angle: float) -> np.ndarray:
  """The square window of half-width `half` (photo pixels) at (cy, cx), rolled by `angle`."""
  cos, sin = np.cos(angle), np.sin(angle)
  u, v = grid[0] * half, grid[1] * half  # u: down, v: right, in photo pixels
  ys = cy + cos * u + sin * v
  xs = cx - sin * u + cos * v
  return _bilinear(photo, ys, xs)


def _camera_path(kind: str, phase: np.ndarray, half0: float, angle0: float):
  """Per-frame (half-width, roll angle, dy, dx) of the camera for a motion kind."""
  half = np.full(len(phase), half0)
  angle = np.full(len(phase), angle0)
  dy = np.zeros(len(phase))
  dx = np.zeros(len(phase))
  if kind == "pan_left":  # the camera moves left: content slides right
    dx = -PAN_SPEED * 2 * half0 * phase
  elif kind == "tilt_up":
    dy = -PAN_SPEED * 2 * half0 * phase
  elif kind == "zoom_in":
    half = half0 * np.exp(-ZOOM_RATE * phase)
  elif kind == "rotate_cw":  # the view turns clockwise: the camera rolls counterclockwise
    angle = angle0 - ROLL_RATE * phase
  return half, angle, dy, dx


def render_video(rng: np.random.Generator, photo: int, motion: int, num_frames: int,
                 size: int, *, static: bool = False) -> np.ndarray:
  """One video, uint8 [L, size, size, 3]; see the module docstring."""
  _check_args(photo, motion, num_frames, size)
  image = load_photos()[photo]
  h, w = image.shape[:2]
  pair, reverse = divmod(motion, 2)
  kind = MOTION_NAMES[2 * pair]
  length = num_frames
  centre = (length - 1) / 2.0
  # Phase of each frame, relative to the middle: the reversed class runs it backwards.
  phase = np.arange(length, dtype=np.float64) - centre
  if reverse:
    phase = -phase
  if static:
    phase = np.zeros_like(phase)

  # Camera: half-width `half` of the window in photo pixels (the frame spans 2 * half).
  half0 = 0.5 * rng.uniform(0.35, 0.45) * min(h, w)
  angle0 = rng.uniform(-0.25, 0.25)
  gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
  position = rng.uniform(0.0, 1.0, 2)
  for _ in range(8):  # long videos: shrink the window until the whole path fits the photo
    half, angle, dy, dx = _camera_path(kind, phase, half0, angle0)
    reach = half.max() * np.sqrt(2.0)  # the rolled window's corners
    span_y = h - 2 * reach - (dy.max() - dy.min())
    span_x = w - 2 * reach - (dx.max() - dx.min())
    if min(span_y, span_x) >= 0:
      break
    half0 *= 0.85
  cy = reach - dy.min() + position[0] * max(span_y, 0.0)
  cx = reach - dx.min() + position[1] * max(span_x, 0.0)

  # The grow/shrink object: a tinted texture disc at a fixed place in the frame.
  texture = load_textures()[int(rng.integers(len(load_textures())))]
  tint = rng.uniform(0.2, 1.0, 3).astype(np.float32)
  disc_y, disc_x = rng.uniform(0.3, 0.7, 2) * size
  radius0 = rng.uniform(0.12, 0.18) * size
  radius = radius0 * np.exp(GROW_RATE * phase)
  tex_y, tex_x = rng.uniform(0.25, 0.75, 2) * np.asarray(texture.shape)

  n = size * _SUPERSAMPLE
  offsets = (np.arange(n, dtype=np.float64) + 0.5) / n * 2.0 - 1.0  # [-1, 1]
  grid = np.stack(np.meshgrid(offsets, offsets, indexing="ij"))
  pix = (grid + 1.0) * 0.5 * size  # output pixel coordinates of the supersamples
  frames = np.empty((length, size, size, 3), np.uint8)
  for t in range(length):
    view = _camera_view(image, grid, cy + dy[t], cx + dx[t], half[t], angle[t]) * gain
    if kind == "grow":
      dist_y, dist_x = pix[0] - disc_y, pix[1] - disc_x
      dist = np.sqrt(dist_y ** 2 + dist_x ** 2)
      alpha = np.clip(radius[t] - dist + 0.5, 0.0, 1.0)[..., None]
      # The texture is fixed to the disc, so it scales with it.
      scale = 0.2 * texture.shape[0] / radius[t]
      tex = _bilinear(texture[..., None], tex_y + dist_y * scale, tex_x + dist_x * scale)
      view = view * (1 - alpha) + (0.35 + 0.65 * tex) * tint * alpha
    pooled = view.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    frames[t] = np.clip(np.round(pooled * 255.0), 0, 255).astype(np.uint8)
  return frames
