"""The crop stage in NumPy (no TensorFlow): TF's bilinear resize and the evaluation views,
for frames held as uint8 arrays (`embedded_arrays`, `array_stream`).

Contract:
  `resize_bilinear(frames [..., H, W, C], height, width)` -> float32 [..., height, width, C]
      in the input's range: `tf.image.resize(method='bilinear')` (half-pixel centres, no
      antialiasing), computed the same way in float32 (the source x = (x' + 0.5) * in/out -
      0.5, neighbours floor/ceil clamped to the image, horizontal lerp then vertical), so it
      equals `crop.resize_tf` up to float rounding.
  `to_uint8(frames)`: resized float [0, 255] -> uint8 rounded half up (`crop.to_uint8_tf`).
  `short_side_size(height, width, resize_short)`: (H', W') of `crop.resize_short_side_tf`
      (float64 scale, round half to even, never below `resize_short`).
  `spatial_crops(clips [N, T, H, W, 3], crop_size, num_crops)` -> [N * C, T, S, S, 3], the
      crops of `crop.spatial_crops_tf` (evenly spaced along the long side, centred on the
      short side; view n * C + c).
  `eval_views(video [L, H, W, 3] uint8, ...)` -> float32 [N * C, T, S, S, 3] in [0, 1]: the
      views `eval_pipeline` makes of one video (N uniform clips, short side resized to
      `resize_short`, C crops).
  `sample_crop_window(rng, height, width, area_range, aspect_ratio_range)` -> (top, left,
      h, w): a random resized crop window (section 3.2's crop, CVRL's `random_crop_resize`),
      drawn by the rule of TF's `sample_distorted_bounding_box` that `crop.sample_crop_window_tf`
      uses (min_object_covered 0, 10 attempts): per attempt an aspect ratio w/h uniform in
      the range, then a height uniform over the integers whose area lies in the range, the
      width its rounded product, the offsets uniform; the whole frame when no attempt fits.
      The same distribution as TF's, not the same numbers (NumPy's generator draws them).
"""

from __future__ import annotations

import numpy as np

from corp_jax.data import sampling


def _axis_taps(in_size: int, out_size: int):
  """(lower [out], upper [out], lerp [out] float32) of TF's half-pixel bilinear resize."""
  scale = np.float32(in_size) / np.float32(out_size)
  source = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
  floor = np.floor(source)
  lower = np.maximum(floor, 0).astype(np.int64)
  upper = np.minimum(np.ceil(source), in_size - 1).astype(np.int64)
  return lower, upper, (source - floor).astype(np.float32)


def resize_bilinear(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """[..., H, W, C] (any real dtype) -> float32 [..., height, width, C]; see the docstring."""
  frames = np.asarray(frames)
  if frames.ndim < 3:
    raise ValueError(f"resize_bilinear: frames need [..., H, W, C], got shape {frames.shape}")
  in_h, in_w = frames.shape[-3], frames.shape[-2]
  y_lo, y_hi, y_lerp = _axis_taps(in_h, height)
  x_lo, x_hi, x_lerp = _axis_taps(in_w, width)
  # Only the rows the output reads, then TF's order of operations: top and bottom rows are
  # lerped horizontally, then the two are lerped vertically.
  rows = np.unique(np.concatenate([y_lo, y_hi]))
  picked = frames[..., rows, :, :].astype(np.float32)
  left = picked[..., x_lo, :]
  horizontal = left + (picked[..., x_hi, :] - left) * x_lerp[:, None]
  position = {int(r): i for i, r in enumerate(rows)}
  top = horizontal[..., [position[int(r)] for r in y_lo], :, :]
  bottom = horizontal[..., [position[int(r)] for r in y_hi], :, :]
  return top + (bottom - top) * y_lerp[:, None, None]


_CROP_ATTEMPTS = 10  # as crop.sample_crop_window_tf


def _crop_of_aspect(rng: np.random.Generator, height: int, width: int, min_area: float,
                    max_area: float, aspect: float):
  """One attempt of TF's GenerateRandomCrop at a drawn aspect ratio: (h, w) or None."""
  low = int(np.rint(np.sqrt(min_area / aspect)))
  high = int(np.rint(np.sqrt(max_area / aspect)))
  if np.rint(high * aspect) > width:  # the tallest window whose rounded width still fits
    high = int((width + 0.5 - 1e-7) / aspect)
    if np.rint(high * aspect) > width:
      high -= 1
  high = min(high, height)
  low = min(low, high)
  crop_h = low + int(rng.integers(high - low + 1)) if low < high else low
  crop_w = int(np.rint(crop_h * aspect))
  if crop_w * crop_h < min_area:  # rounding left the area just short: one row more
    crop_h += 1
    crop_w = int(np.rint(crop_h * aspect))
  if crop_w * crop_h > max_area:  # or just over: one row less
    crop_h -= 1
    crop_w = int(np.rint(crop_h * aspect))
  area = crop_w * crop_h
  if not (min_area <= area <= max_area and 0 < crop_w <= width and 0 < crop_h <= height):
    return None
  return crop_h, crop_w


def sample_crop_window(rng: np.random.Generator, height: int, width: int,
                       area_range, aspect_ratio_range) -> tuple[int, int, int, int]:
  """(top, left, h, w) of a random resized crop of a height x width frame (see above)."""
  min_area = float(area_range[0]) * height * width
  max_area = float(area_range[1]) * height * width
  lo, hi = float(aspect_ratio_range[0]), float(aspect_ratio_range[1])
  for _ in range(_CROP_ATTEMPTS):
    size = _crop_of_aspect(rng, height, width, min_area, max_area,
                           rng.random() * (hi - lo) + lo)
    if size is None:
      continue
    crop_h, crop_w = size
    # TF draws offsets in [0, H - h) (a window never starts at the last possible offset
    # unless it fills the side).
    top = int(rng.integers(height - crop_h)) if crop_h < height else 0
    left = int(rng.integers(width - crop_w)) if crop_w < width else 0
    return top, left, crop_h, crop_w
  return 0, 0, height, width


def to_uint8(frames: np.ndarray) -> np.ndarray:
  """Bilinear-resized float [0, 255] -> uint8, rounded half up (a convex combination of
  uint8 pixels lies in [0, 255], so the truncating cast of x + 0.5 is the rounding)."""
  return (np.asarray(frames, np.float32) + np.float32(0.5)).astype(np.uint8)


def short_side_size(height: int, width: int, resize_short: int) -> tuple[int, int]:
  scale = resize_short / min(height, width)
  new = np.maximum(np.round(np.array([height * scale, width * scale], np.float64)),
                   resize_short).astype(np.int64)
  return int(new[0]), int(new[1])


def spatial_crops(clips: np.ndarray, crop_size: int, num_crops: int) -> np.ndarray:
  """clips [N, T, H, W, 3] -> [N * C, T, S, S, 3] (see the module docstring)."""
  height, width = clips.shape[2], clips.shape[3]
  landscape = width >= height
  long_excess = (width if landscape else height) - crop_size
  short_offset = ((height if landscape else width) - crop_size) // 2
  views = []
  for c in range(num_crops):
    along = long_excess // 2 if num_crops == 1 else (c * long_excess) // (num_crops - 1)
    top, left = (short_offset, along) if landscape else (along, short_offset)
    views.append(clips[:, :, top:top + crop_size, left:left + crop_size, :])
  views = np.stack(views, axis=1)  # [N, C, T, S, S, 3]
  return views.reshape((-1,) + views.shape[2:])


def eval_views(video: np.ndarray, *, num_clips: int, num_crops: int, clip_len: int,
               stride: int, crop_size: int, resize_short: int | None = None) -> np.ndarray:
  """One video's evaluation views, float32 [N * C, T, S, S, 3] in [0, 1]."""
  if resize_short is None:
    resize_short = int(round(crop_size * 256 / 224))
  if resize_short < crop_size:
    raise ValueError(f"eval_views: resize_short={resize_short} is smaller than "
                     f"crop_size={crop_size}")
  num_frames, height, width = video.shape[0], video.shape[1], video.shape[2]
  starts = sampling.uniform_clip_starts(num_frames, clip_len, stride, num_clips)
  indices = sampling.clip_frame_indices(starts, clip_len, stride, num_frames)
  unique, position = np.unique(indices.reshape(-1), return_inverse=True)
  frames = resize_bilinear(video[unique], *short_side_size(height, width, resize_short))
  clips = frames[position.reshape(-1)].reshape((num_clips, clip_len) + frames.shape[1:])
  return spatial_crops(clips, crop_size, num_crops) / np.float32(255.0)
