"""Decodes one video file with PyAV into resized JPEG frames, or says why it cannot.

`decode_video(path, options) -> DecodedVideo` (frames in presentation order):
  * turn the frames upright as a player shows them: a display-matrix rotation (phone videos
    store portrait clips as landscape frames with "rotate 90") is applied, to the nearest
    quarter turn, counterclockwise by PyAV's `frame.rotation`;
  * resize so the short side is `options.short_side` (aspect kept, both sides even;
    0 keeps the source size), measured on the upright frame;
  * with `options.fps`, resample by timestamp: output frame k shows the latest source frame
    whose time (from the first frame) is at or before k / fps, so slow sources repeat
    frames and fast ones drop frames, and clip durations in seconds are preserved;
  * encode each output frame as a JPEG (Pillow) at `options.jpeg_quality`; a repeated source
    frame is encoded once.
A video that cannot be used raises `VideoSkipped(kind, reason)`; kinds are listed in
`SKIP_KINDS`. Only PyAV, Pillow and the standard library are imported: this runs in worker
processes that must start fast and never touch TensorFlow.
"""

from __future__ import annotations

import dataclasses
import io
import os

SKIP_KINDS = ("missing", "empty_file", "unreadable", "no_video_stream", "zero_frames",
              "truncated", "decode_error")
# Float slack when comparing timestamps, so a source frame exactly on an output time wins.
_TIME_EPS = 1e-6


class VideoSkipped(Exception):
  """The video cannot be converted; `kind` is one of SKIP_KINDS, `reason` is for people."""

  def __init__(self, kind: str, reason: str):
    if kind not in SKIP_KINDS:
      raise ValueError(f"unknown skip kind {kind!r}")
    super().__init__(f"{kind}: {reason}")
    self.kind = kind
    self.reason = reason

  def __reduce__(self):  # Keeps (kind, reason) when sent back from a worker process.
    return VideoSkipped, (self.kind, self.reason)


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  short_side: int = 256
  fps: float | None = None
  jpeg_quality: int = 90
  # A video yielding fewer than this fraction of the frames its container declares is
  # treated as truncated (0 disables the check; declared counts can be a little off).
  min_decoded_fraction: float = 0.5

  def __post_init__(self):
    if self.short_side < 0 or self.short_side % 2:
      raise ValueError(f"short_side must be 0 (keep size) or a positive even number, "
                       f"got {self.short_side}")
    if self.fps is not None and not self.fps > 0:
      raise ValueError(f"fps must be positive, got {self.fps}")
    if not 1 <= self.jpeg_quality <= 100:
      raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
    if not 0 <= self.min_decoded_fraction <= 1:
      raise ValueError(f"min_decoded_fraction must be in [0, 1], "
                       f"got {self.min_decoded_fraction}")


@dataclasses.dataclass
class DecodedVideo:
  jpeg_frames: list[bytes]
  fps: float | None        # Of the output frames: options.fps, else the source rate.
  width: int
  height: int
  source_fps: float | None
  source_num_frames: int   # Source frames decoded (before resampling).
  rotation: int = 0        # Counterclockwise quarter turns applied, in degrees: 0/90/180/270.


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
  """(width, height) with the short side `short_side`, the long side scaled and even."""
  if short_side == 0:
    return width, height
  if width <= height:
    return short_side, max(2, 2 * round(height * short_side / width / 2))
  return max(2, 2 * round(width * short_side / height / 2)), short_side


class _TimestampPicker:
  """Counts how many output slots k (at k / fps) each source frame fills."""

  def __init__(self, fps: float):
    self._step = 1.0 / fps
    self._next_slot = 0

  def slots_before(self, time: float) -> int:
    """Slots with time < `time`: they show the source frame preceding `time`."""
    count = 0
    while self._next_slot * self._step < time - _TIME_EPS:
      self._next_slot += 1
      count += 1
    return count


def _rate(value) -> float | None:
  return float(value) if value else None


def display_rotation(frame) -> int:
  """The counterclockwise turn (0, 90, 180 or 270 degrees) that shows `frame` upright: its
  display matrix's rotation (PyAV `frame.rotation`, in [-180, 180]) to the nearest 90."""
  angle = getattr(frame, "rotation", 0) or 0
  return int(90 * round(float(angle) / 90)) % 360


def _encode(frame, size: tuple[int, int], quality: int, rotation: int = 0) -> bytes:
  """JPEG of `frame` turned by `rotation` and resized to `size` = (width, height) upright."""
  from av.video.reformatter import Interpolation  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  # Resize in the stored orientation, then turn: a quarter turn swaps width and height.
  width, height = (size[1], size[0]) if rotation in (90, 270) else size
  # AREA averages source pixels when shrinking (no aliasing on 1080p -> 256).
  image = frame.to_image(width=width, height=height, interpolation=Interpolation.AREA)
  if rotation:
    turns = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
             270: Image.Transpose.ROTATE_270}  # PIL's ROTATE_* turn counterclockwise
    image = image.transpose(turns[rotation])
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def _open(path: str):
  import av  # pylint: disable=g-import-not-at-top

  if not os.path.exists(path):
    raise VideoSkipped("missing", f"no such file: {path}")
  if os.path.getsize(path) == 0:
    raise VideoSkipped("empty_file", f"file is empty: {path}")
  try:
    container = av.open(path)
  except (av.FFmpegError, OSError) as e:
    raise VideoSkipped("unreadable", f"cannot open {path}: {e}") from None
  if not container.streams.video:
    container.close()
    raise VideoSkipped("no_video_stream", f"no video stream in {path} (truncated file, or "
                       "audio only)")
  return container


def decode_video(path: str, options: DecodeOptions = DecodeOptions()) -> DecodedVideo:
  """Decodes `path`; raises VideoSkipped when the video is unusable (see module doc)."""
  import av  # pylint: disable=g-import-not-at-top

  container = _open(path)
  try:
    stream = container.streams.video[0]
    source_fps = _rate(stream.average_rate) or _rate(stream.guessed_rate)
    picker = _TimestampPicker(options.fps) if options.fps else None
    frames: list[bytes] = []
    size, rotation = None, 0
    previous, previous_time, first_time, decoded = None, 0.0, None, 0

    def emit(frame, count):
      if count > 0:
        frames.extend([_encode(frame, size, options.jpeg_quality, rotation)] * count)

    try:
      for frame in container.decode(stream):
        time = frame.time
        if time is None:
          if picker and not source_fps:
            raise VideoSkipped("decode_error", "frames have no timestamps and the stream no "
                               "frame rate, so --fps cannot resample it")
          time = decoded / (source_fps or 1.0)
        if first_time is None:
          first_time = time
          rotation = display_rotation(frame)
          upright = ((frame.height, frame.width) if rotation in (90, 270)
                     else (frame.width, frame.height))
          size = output_size(*upright, options.short_side)
        time -= first_time
        if previous is not None:
          emit(previous, picker.slots_before(time) if picker else 1)
        previous, previous_time = frame, time
        decoded += 1
    except av.FFmpegError as e:
      raise VideoSkipped("truncated" if decoded else "unreadable",
                         f"decoding failed after {decoded} frames: {e}") from None
    if previous is None:
      raise VideoSkipped("zero_frames", f"no frames decoded from {path}")
    # The last source frame lasts one frame period: it fills the slots up to its end.
    duration = 1.0 / source_fps if source_fps else (previous_time / max(decoded - 1, 1))
    emit(previous, picker.slots_before(previous_time + duration) if picker else 1)

    declared = stream.frames or (
        round(container.duration / 1e6 * source_fps) if container.duration and source_fps
        else 0)
    if declared and decoded < options.min_decoded_fraction * declared:
      raise VideoSkipped("truncated", f"decoded {decoded} of the {declared} frames the "
                         f"container declares (below {options.min_decoded_fraction:.0%})")
    if not frames:
      raise VideoSkipped("zero_frames", f"no output frames at {options.fps} fps")
    return DecodedVideo(jpeg_frames=frames, fps=options.fps or source_fps, width=size[0],
                        height=size[1], source_fps=source_fps, source_num_frames=decoded,
                        rotation=rotation)
  finally:
    container.close()
