"""Annotation entries, the annotation error type, and video file discovery.

A `VideoEntry` is one video named by an annotation file, before class indices are assigned:
its path (relative to the video folder, or absolute), its label text (None when unlabelled),
where it was read from (file and 1-based line, for error messages) and a duplicate key.
`AnnotationError` messages always start with `FILE:LINE:` (or `FILE:` for file-level errors).
"""

from __future__ import annotations

import dataclasses
import io
import os
import unicodedata

# Container extensions the `folder` format and the Kinetics / HMDB lookups consider videos.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv",
    ".3gp", ".ogv", ".ts",
})


class AnnotationError(ValueError):
  """A problem in an annotation or class-name file; the message names the file and line."""

  def __init__(self, source: str, line: int | None, message: str):
    self.source = source
    self.line = line
    where = f"{source}:{line}" if line is not None else source
    super().__init__(f"{where}: {message}")


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  """One annotated video. `key` identifies it for the duplicate check (defaults to path);
  `declared_index` is a 0-based class index the line itself states (UCF101), checked later."""
  path: str
  label: str | None
  source: str
  line: int
  key: str = ""
  declared_index: int | None = None

  def __post_init__(self):
    if not self.key:
      object.__setattr__(self, "key", self.path)


def read_text(path: str) -> str:
  """The text of a UTF-8 file (a leading BOM dropped); a byte that is not UTF-8 is an
  AnnotationError naming the file, line and byte offset."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise AnnotationError(
        path, line, f"not UTF-8 text: byte 0x{data[e.start]:02x} at byte offset {e.start} "
        f"cannot be decoded as UTF-8 ({e.reason}); annotation and class-name files must be "
        "UTF-8: convert it, e.g. `iconv -f LATIN1 -t UTF-8`") from None


def text_lines(text: str):
  """(1-based line number, line without its newline) of `text`; only \n, \r\n and \r end a
  line (unlike str.splitlines, which also splits at other control characters)."""
  for number, line in enumerate(io.StringIO(text, newline=None), start=1):
    yield number, line.rstrip("\n")


def check_printable(value: str, what: str, source: str, line: int | None) -> None:
  """Rejects a name holding a control character (NUL, tab, escape, ...): such a class name or
  path is a corrupted or mis-encoded file, not a real name."""
  for position, char in enumerate(value):
    if unicodedata.category(char) == "Cc":
      raise AnnotationError(
          source, line, f"{what} {value!r} contains the control character U+{ord(char):04X} "
          f"at position {position}; fix the line (control characters are not allowed in "
          "names or paths)")


def is_video_file(filename: str) -> bool:
  return os.path.splitext(filename)[1].lower() in VIDEO_EXTENSIONS


def find_videos(video_dir: str) -> list[str]:
  """Every video file under `video_dir` (recursive), as sorted paths relative to it."""
  if not os.path.isdir(video_dir):
    raise FileNotFoundError(f"video folder {video_dir!r} does not exist or is not a folder")
  found = []
  for root, dirs, files in os.walk(video_dir, followlinks=True):
    dirs.sort()  # Deterministic walk order; the final list is sorted anyway.
    for filename in files:
      if is_video_file(filename) and not filename.startswith("."):
        found.append(os.path.relpath(os.path.join(root, filename), video_dir))
  return sorted(found)
