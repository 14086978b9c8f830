"""Pure-NumPy renderer of the embedded procedural videos (no TensorFlow, no files).

Contract: `render_video(rng, appearance, motion, num_frames, size) -> uint8 [L, H, W, 3]`,
deterministic given the generator's state. `render_video_with_info` also returns the
noise-free background and the per-frame masks and states, for tests and diagnostics.

Each video is one object on a static scene: a sky/ground split at a random horizon row, a
low-frequency texture and a few same-sized landmark posts. Two labels:

* APPEARANCE (Kinetics-like, order-free): the object's shape, colour and texture.
* MOTION (Something-Something-like): classes come in time-reversed pairs. The odd member of
  each pair is, by construction, the even member played backwards: both consume the random
  generator identically and frame t of the reversed class is drawn from phase index L-1-t,
  noise included, so `render_video(rng, a, 2k+1) == render_video(rng', a, 2k)[::-1]`
  exactly when rng and rng' start in the same state. The frames of a video and of its
  reversal are the same set, so a model that ignores order cannot tell them apart.

Why these motions (docs/DESIGN_NOTES.md, "Absolute position carries no order"): training clips get independent
random resized crops and horizontal flips, so absolute position in the frame carries no
order information. Every cue here is relative to scene structure or to the object itself:
  rise/fall              height relative to the horizon and the posts (flip-safe),
  approach/recede        size relative to the fixed-size posts and background texture
                         (flip-safe; the object also sinks below the horizon as it nears),
  fill/empty             fraction of the object's body that is filled, a ratio inside the
                         object that no crop, scale or flip changes (flip-safe),
  rotate_cw/rotate_ccw   angle of the object's marker dot. FLIP-AMBIGUOUS: a horizontal flip
                         of a clockwise video is a counter-clockwise one, so under flip
                         augmentation this pair's labels are indistinguishable (it stands in
                         for SSv2's mirror-defined classes such as "left to right"). The order
                         task stays learnable: angle times the within-clip direction of
                         rotation is flip-invariant.
Horizontal translation (left/right) is left out: a flip maps it exactly onto its reversal.
"""

from __future__ import annotations

import numpy as np

APPEARANCE_NAMES = (
    "red_disk",
    "green_checkered_square",
    "blue_striped_triangle",
    "yellow_ring",
    "purple_cross",
)
MOTION_NAMES = (
    "rise",
    "fall",
    "approach",
    "recede",
    "fill",
    "empty",
    "rotate_clockwise",
    "rotate_counterclockwise",
)
# (forward, reversed): the reversed class is the forward one played backwards.
REVERSAL_PAIRS = tuple((k, k + 1) for k in range(0, len(MOTION_NAMES), 2))
FLIP_AMBIGUOUS_MOTIONS = ("rotate_clockwise", "rotate_counterclockwise")

_OBJECT_COLOURS = np.array([
    [0.85, 0.15, 0.15],  # red
    [0.15, 0.72, 0.20],  # green
    [0.20, 0.30, 0.90],  # blue
    [0.95, 0.85, 0.15],  # yellow
    [0.65, 0.20, 0.80],  # purple
], np.float32)
_NUM_LANDMARKS = 4
_PIXEL_NOISE_AMPLITUDE = 6.0 / 255.0  # uniform in +-3/255 (std ~1.7/255)
_FLICKER_STD = 0.015


def combined_class(appearance: int, motion: int) -> int:
  return appearance * len(MOTION_NAMES) + motion


def combined_names() -> list[str]:
  return [f"{a}/{m}" for a in APPEARANCE_NAMES for m in MOTION_NAMES]


def _check_args(appearance, motion, num_frames, size):
  if not 0 <= appearance < len(APPEARANCE_NAMES):
    raise ValueError(f"appearance must be in [0, {len(APPEARANCE_NAMES)}), got {appearance}")
  if not 0 <= motion < len(MOTION_NAMES):
    raise ValueError(f"motion must be in [0, {len(MOTION_NAMES)}), got {motion}")
  if num_frames < 2:
    raise ValueError(f"num_frames must be >= 2, got {num_frames}")
  if size < 16:
    raise ValueError(f"frame size must be >= 16 pixels, got {size}")


def _sample_scene(rng, size):
  """Static background [H, W, 3] float32, its sky mask, horizon row and landmark masks."""
  horizon = rng.uniform(0.42, 0.58) * size
  # Muted colours, so the saturated objects stand out from any background.
  sky = rng.uniform(0.55, 0.80) + rng.uniform(-0.08, 0.08, 3)
  ground = rng.uniform(0.22, 0.42) + rng.uniform(-0.08, 0.08, 3)
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  sky_alpha = np.clip(horizon - ys, 0.0, 1.0)[..., None]  # 1-pixel anti-aliased edge
  bg = sky_alpha * sky + (1.0 - sky_alpha) * ground
  # Low-frequency texture: a static, crop-following ruler of spatial scale.
  texture = np.zeros((size, size), np.float32)
  for _ in range(3):
    wavelength = rng.uniform(6.0, 14.0)
    angle = rng.uniform(0.0, np.pi)
    phase = rng.uniform(0.0, 2 * np.pi)
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    texture += np.sin(2 * np.pi * proj / wavelength + phase)
  bg = bg + 0.025 * texture[..., None]
  # Landmark posts: all the same size within a video, a reference for height and size.
  post_half = max(1.5, 0.045 * size)
  post_colour = rng.uniform(0.05, 0.2) + rng.uniform(-0.03, 0.03, 3)
  landmark_masks = np.zeros((_NUM_LANDMARKS, size, size), np.float32)
  for i in range(_NUM_LANDMARKS):
    cx = rng.uniform(0.08, 0.92) * size
    cy = rng.uniform(0.08, 0.92) * size
    cover_x = np.clip(post_half + 0.5 - np.abs(xs - cx), 0.0, 1.0)
    cover_y = np.clip(1.6 * post_half + 0.5 - np.abs(ys - cy), 0.0, 1.0)
    landmark_masks[i] = cover_x * cover_y
  posts = np.clip(landmark_masks.sum(0), 0.0, 1.0)[..., None]
  bg = bg * (1.0 - posts) + post_colour * posts
  return bg.astype(np.float32), sky_alpha[..., 0] > 0.5, float(horizon), landmark_masks


def _sample_trajectory(rng, motion_pair, size, num_frames):
  """Per-phase object state for the FORWARD member of a pair; arrays of length L.

  Positions and radii are in pixels; angle in radians (increasing = clockwise on screen,
  since image y points down); fill in [0, 1] (1 = full).
  """
  phase = np.arange(num_frames, dtype=np.float32) / (num_frames - 1)
  radius = rng.uniform(0.12, 0.16) * size
  angle0 = rng.uniform(0.0, 2 * np.pi)
  drift_x = rng.uniform(-0.08, 0.08) * size
  cx0 = rng.uniform(0.3, 0.7) * size
  ones = np.ones_like(phase)
  fill = ones
  angle = angle0 * ones
  if motion_pair == 0:  # rise: from below the horizon to above it
    y_start, y_end = rng.uniform(0.72, 0.80) * size, rng.uniform(0.20, 0.28) * size
    cy = y_start + (y_end - y_start) * phase
    r = radius * ones
  elif motion_pair == 1:  # approach: grows, and sinks as it comes nearer
    s_start, s_end = rng.uniform(0.40, 0.55), rng.uniform(1.15, 1.35)
    y_start = rng.uniform(0.38, 0.48) * size
    cy = y_start + rng.uniform(0.10, 0.18) * size * phase
    r = radius * (s_start + (s_end - s_start) * phase)
  elif motion_pair == 2:  # fill: the body fills from the bottom up
    cy = rng.uniform(0.35, 0.65) * size * ones
    r = 1.15 * radius * ones
    f_start, f_end = rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0)
    fill = f_start + (f_end - f_start) * phase
    drift_x *= 0.3
  elif motion_pair == 3:  # rotate clockwise
    cy = rng.uniform(0.35, 0.65) * size * ones
    r = 1.15 * radius * ones
    angle = angle0 + np.deg2rad(rng.uniform(150.0, 240.0)) * phase
    drift_x *= 0.3
  else:
    raise ValueError(f"unknown motion pair {motion_pair}")
  cx = cx0 + drift_x * phase
  state = {"cx": cx, "cy": cy, "radius": r, "angle": angle, "fill": fill}
  # float32 throughout: NumPy scalars from `rng.uniform` would otherwise promote to float64.
  return {name: np.asarray(value, np.float32) for name, value in state.items()}


def _shape_sdf(appearance, u, v):
  """Signed distance (object units, radius ~1) of the appearance's shape; < 0 inside."""
  if appearance == 0:  # disk
    return np.hypot(u, v) - 1.0
  if appearance == 1:  # square
    return np.maximum(np.abs(u), np.abs(v)) - 0.82
  if appearance == 2:  # equilateral triangle, circumradius 1, pointing along -v
    d = None
    for k in range(3):
      a = -np.pi / 2 + k * 2 * np.pi / 3 + np.pi
      side = u * np.cos(a) + v * np.sin(a) - 0.5
      d = side if d is None else np.maximum(d, side)
    return d
  if appearance == 3:  # ring
    return np.abs(np.hypot(u, v) - 0.72) - 0.28
  if appearance == 4:  # plus-shaped cross
    bar_h = np.maximum(np.abs(u) - 0.95, np.abs(v) - 0.33)
    bar_v = np.maximum(np.abs(u) - 0.33, np.abs(v) - 0.95)
    return np.minimum(bar_h, bar_v)
  raise ValueError(f"unknown appearance {appearance}")


def _texture(appearance, u, v):
  """Brightness factor of the object's surface texture, in object coordinates."""
  if appearance == 1:  # checkerboard
    return np.where(np.sin(2.6 * np.pi * u) * np.sin(2.6 * np.pi * v) > 0, 1.0, 0.6)
  if appearance == 2:  # stripes
    return np.where(np.sin(2 * np.pi * 2.2 * u) > 0, 1.0, 0.55)
  # disk, ring, cross: smooth radial shading
  return 1.05 - 0.25 * np.hypot(u, v)


def _draw_object(appearance, colour, state):
  """Draws the object in a per-frame window that follows it (a fraction of the frame).

  Returns body colour [L, B, B, 3], coverage [L, B, B], the filled part of the body
  [L, B, B] and the windows' top-left corners `top`, `left` (int [L]; they may lie outside
  the frame, `_window_slices` clips).
  """
  # The farthest shape point (the square's corner) is 1.16 radii from the centre.
  extent = 1.2 * float(state["radius"].max()) + 2.0
  window = int(np.ceil(2.0 * extent))
  top = np.floor(state["cy"]).astype(np.int64) - window // 2
  left = np.floor(state["cx"]).astype(np.int64) - window // 2
  grid = np.arange(window, dtype=np.float32) + 0.5
  ys = top[:, None, None].astype(np.float32) + grid[None, :, None]  # [L, B, 1]
  xs = left[:, None, None].astype(np.float32) + grid[None, None, :]  # [L, 1, B]
  cx = state["cx"][:, None, None]
  cy = state["cy"][:, None, None]
  r = state["radius"][:, None, None]
  cos_a = np.cos(state["angle"])[:, None, None]
  sin_a = np.sin(state["angle"])[:, None, None]
  dx, dy = (xs - cx) / r, (ys - cy) / r
  u = cos_a * dx + sin_a * dy  # screen -> object coordinates: rotate by -angle
  v = -sin_a * dx + cos_a * dy
  coverage = np.clip(0.5 - _shape_sdf(appearance, u, v) * r, 0.0, 1.0)
  body = _texture(appearance, u, v)[..., None] * colour
  # Fill: below a horizontal (on-screen) level the body is full, above it a dark shell.
  level = cy + r - 2.0 * r * state["fill"][:, None, None]
  full = np.clip(ys - level + 0.5, 0.0, 1.0)[..., None]
  body = full * body + (1.0 - full) * (np.float32(0.25) * colour + np.float32(0.08))
  # The marker dot makes rotation visible even for symmetric shapes (on the ring's band).
  marker_u = 0.72 if appearance == 3 else 0.45
  marker = np.clip(0.5 - (np.hypot(u - marker_u, v) - 0.2) * r, 0.0, 1.0)[..., None]
  body = (1.0 - marker) * body + marker * np.float32(0.06)
  # `full` varies along y only ([L, B, 1]): give it the window's shape, so that the part of a
  # window cut off at the frame's left edge slices it like `coverage`.
  return body, coverage, np.broadcast_to(full[..., 0], coverage.shape), top, left


def _window_slices(top, left, window, size):
  """Frame and window slices of the part of a window that lies inside the frame."""
  y0, x0 = max(top, 0), max(left, 0)
  y1, x1 = min(top + window, size), min(left + window, size)
  if y1 <= y0 or x1 <= x0:
    return None
  return ((slice(y0, y1), slice(x0, x1)),
          (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)))


def render_video_with_info(rng: np.random.Generator, appearance: int, motion: int,
                           num_frames: int, size: int):
  """Renders one video; returns (frames uint8 [L, H, W, 3], info dict).

  info: `background` float32 [H, W, 3] (noise-free), `sky_mask` bool [H, W],
  `horizon` (row, float), `landmark_masks` float32 [N, H, W] (before occlusion),
  `object_mask` float32 [L, H, W] coverage, `full_mask` float32 [L, H, W] the filled part
  of the object (equal to `object_mask` except in fill/empty videos), and `state`
  (per-frame arrays `cx`, `cy`, `radius`, `angle`, `fill`) in this video's time order.
  """
  _check_args(appearance, motion, num_frames, size)
  motion_pair, reverse = divmod(motion, 2)
  # The draw order below never depends on `reverse`: pair members share every parameter.
  background, sky_mask, horizon, landmark_masks = _sample_scene(rng, size)
  colour = np.clip(_OBJECT_COLOURS[appearance] + rng.uniform(-0.06, 0.06, 3), 0.0, 1.0)
  forward_state = _sample_trajectory(rng, motion_pair, size, num_frames)
  flicker = 1.0 + _FLICKER_STD * rng.standard_normal(num_frames).astype(np.float32)
  # Uniform pixel noise: as good as Gaussian after JPEG, and several times cheaper to draw.
  noise = rng.random((num_frames, size, size, 3), dtype=np.float32) - np.float32(0.5)
  # Frame t shows phase index k_t; the reversed class walks the phases backwards.
  k = np.arange(num_frames)[::-1] if reverse else np.arange(num_frames)
  state = {name: value[k] for name, value in forward_state.items()}
  body, coverage, full, top, left = _draw_object(
      appearance, colour.astype(np.float32), state)
  frames = np.repeat(background[None], num_frames, axis=0)
  object_mask = np.zeros((num_frames, size, size), np.float32)
  full_mask = np.zeros((num_frames, size, size), np.float32)
  for t in range(num_frames):
    slices = _window_slices(int(top[t]), int(left[t]), coverage.shape[-1], size)
    if slices is None:
      continue
    in_frame, in_window = slices
    alpha = coverage[t][in_window]
    object_mask[t][in_frame] = alpha
    full_mask[t][in_frame] = alpha * full[t][in_window]
    frames[t][in_frame] = (frames[t][in_frame] * (1.0 - alpha[..., None])
                           + body[t][in_window] * alpha[..., None])
  frames = frames * flicker[k, None, None, None] + _PIXEL_NOISE_AMPLITUDE * noise[k]
  frames = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
  info = {
      "background": background,
      "sky_mask": sky_mask,
      "horizon": horizon,
      "landmark_masks": landmark_masks,
      "object_mask": object_mask,
      "full_mask": full_mask,
      "state": state,
  }
  return frames, info


def render_video(rng: np.random.Generator, appearance: int, motion: int,
                 num_frames: int, size: int) -> np.ndarray:
  """One video, uint8 [num_frames, size, size, 3]; see the module docstring."""
  return render_video_with_info(rng, appearance, motion, num_frames, size)[0]
