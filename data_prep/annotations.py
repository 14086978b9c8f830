"""Annotation files in, a checked list of (video path, label text, label index) out.

`parse_annotations(format, annotations, video_dir, split, class_names)` reads one of the
formats of `formats.py` (or lists a folder, for unlabelled pretraining data), rejects
duplicate entries, fixes the class order and assigns label indices:

  * `class_names` given: that file fixes the order; a label not in it is an error naming the
    annotation file and line. Accepted class-name files: text with one name per line; text
    with `index name` lines (0- or 1-based, e.g. UCF101's classInd.txt); a JSON list of
    names; a JSON object name -> index (e.g. SSv2's labels JSON, index as int or string);
    or a `NAME.metadata.json` written by this tool (its `class_names`), so a validation set
    can reuse the training set's order.
  * ucf101 without `class_names`: the `classInd.txt` beside the split file, if present.
  * otherwise: the sorted unique labels of the annotation file.

Unlabelled entries (folder format, Kinetics/SSv2 test lists) get label index -1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from data_prep import formats
from data_prep.entries import AnnotationError, VideoEntry, check_printable, find_videos
from data_prep.entries import read_text, text_lines

FORMATS = ("csv", "kinetics", "ssv2", "ucf101", "hmdb51", "folder")
_INDEXED_NAME_RE = re.compile(r"^(\d+)\s+(\S.*)$")


@dataclasses.dataclass(frozen=True)
class LabeledVideo:
  """A video to convert: `path` relative to the video folder (or absolute)."""
  path: str
  label_text: str
  label_index: int
  source: str
  line: int


@dataclasses.dataclass(frozen=True)
class AnnotationSet:
  format: str
  source: str
  class_names: tuple[str, ...]
  videos: tuple[LabeledVideo, ...]


def _names_from_index_map(mapping: dict, path: str) -> list[str]:
  indexed = {}
  for name, value in mapping.items():
    try:
      index = int(value)
    except (TypeError, ValueError):
      raise AnnotationError(path, None, f"class {name!r} has non-integer index {value!r}") \
          from None
    indexed[index] = str(name)
  if sorted(indexed) != list(range(len(mapping))):
    raise AnnotationError(path, None, "class indices must be 0..N-1, each once; got "
                          f"{sorted(indexed)[:10]}...")
  return [indexed[i] for i in range(len(mapping))]


def _names_from_json(path: str) -> list[str]:
  try:
    data = json.loads(read_text(path))
  except json.JSONDecodeError as e:
    raise AnnotationError(path, e.lineno, f"invalid JSON: {e.msg}") from None
  if isinstance(data, dict) and isinstance(data.get("class_names"), list):
    data = data["class_names"]
  if isinstance(data, dict):
    return _names_from_index_map(data, path)
  if isinstance(data, list) and all(isinstance(n, str) for n in data):
    return [n.strip() for n in data]
  raise AnnotationError(path, None, "expected a JSON list of class names, an object "
                        "name -> index, or a metadata file with 'class_names'")


def _names_from_text(path: str) -> list[str]:
  lines = []
  for number, text in text_lines(read_text(path)):
    if text.strip():
      check_printable(text.strip(), "class name", path, number)
      lines.append((number, text.strip()))
  matches = [_INDEXED_NAME_RE.match(text) for _, text in lines]
  if lines and all(matches):
    indices = [int(m.group(1)) for m in matches]
    base = min(indices)
    if base in (0, 1) and sorted(indices) == list(range(base, base + len(indices))):
      ordered = sorted(zip(indices, [m.group(2).strip() for m in matches]))
      return [name for _, name in ordered]
    raise AnnotationError(path, None, f"'index name' lines must number 0..N-1 or 1..N, "
                          f"each once; got {sorted(indices)[:10]}...")
  seen = {}
  for number, name in lines:
    if name in seen:
      raise AnnotationError(path, number,
                            f"duplicate class name {name!r} (first at line {seen[name]})")
    seen[name] = number
  return [name for _, name in lines]


def load_class_names(path: str) -> list[str]:
  """The class order fixed by a class-name file (formats in the module docstring)."""
  if not os.path.isfile(path):
    raise AnnotationError(path, None, "class names file not found")
  names = _names_from_json(path) if path.endswith(".json") else _names_from_text(path)
  if not names:
    raise AnnotationError(path, None, "no class names in file")
  for name in names:
    check_printable(name, "class name", path, None)
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise AnnotationError(path, None, f"duplicate class names {duplicates}")
  return names


def _read_entries(fmt: str, annotations: str | None, video_dir: str,
                  split: str | None) -> list[VideoEntry]:
  if fmt == "folder":
    if annotations:
      raise AnnotationError(annotations, None, "--format folder lists every video under "
                            "--video_dir; leave --annotations out")
    if split is not None:
      raise AnnotationError(video_dir, None, "--split is not used with --format folder")
    return [VideoEntry(path=p, label=None, source=video_dir, line=0)
            for p in find_videos(video_dir)]
  if not annotations:
    raise AnnotationError("--annotations", None, f"required for --format {fmt}")
  if not os.path.exists(annotations):
    raise AnnotationError(annotations, None, "annotation file not found")
  if fmt == "kinetics":
    return formats.parse_kinetics(annotations, video_dir, split)
  if fmt == "ucf101":
    return formats.parse_ucf101(annotations, video_dir, split)
  if fmt == "hmdb51":
    return formats.parse_hmdb51(annotations, video_dir, split)
  if split is not None:
    raise AnnotationError(annotations, None, f"--split is not used with --format {fmt}")
  if os.path.isdir(annotations):
    raise AnnotationError(annotations, None, f"--format {fmt} expects a file, not a folder")
  if fmt == "csv":
    return formats.parse_csv(annotations)
  return formats.parse_ssv2(annotations)


def _check_printable(entries: list[VideoEntry]) -> None:
  for entry in entries:
    if entry.label is not None:
      check_printable(entry.label, "label", entry.source, entry.line)
    check_printable(entry.path, "video path", entry.source, entry.line)


def _check_duplicates(entries: list[VideoEntry]) -> None:
  first_seen: dict[str, VideoEntry] = {}
  for entry in entries:
    first = first_seen.setdefault(entry.key, entry)
    if first is not entry:
      where = f"line {first.line}" if first.source == entry.source else \
          f"{first.source}:{first.line}"
      raise AnnotationError(entry.source, entry.line,
                            f"duplicate entry {entry.key!r} (first listed at {where})")


def parse_annotations(fmt: str, annotations: str | None, video_dir: str,
                      split: str | None = None,
                      class_names: str | None = None) -> AnnotationSet:
  """Reads and checks an annotation source; raises AnnotationError naming file and line."""
  if fmt not in FORMATS:
    raise ValueError(f"unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}")
  entries = _read_entries(fmt, annotations, video_dir, split)
  _check_printable(entries)
  _check_duplicates(entries)
  names_file = class_names
  if names_file is None and fmt == "ucf101":
    split_dir = annotations if os.path.isdir(annotations) else os.path.dirname(annotations)
    candidate = os.path.join(split_dir, "classInd.txt")
    names_file = candidate if os.path.isfile(candidate) else None
  if names_file is not None:
    names = load_class_names(names_file)
  else:
    names = sorted({e.label for e in entries if e.label is not None})
  index_of = {name: i for i, name in enumerate(names)}
  videos = []
  for entry in entries:
    if entry.label is None:
      videos.append(LabeledVideo(entry.path, "", -1, entry.source, entry.line))
      continue
    if entry.label not in index_of:
      raise AnnotationError(entry.source, entry.line,
                            f"unknown class {entry.label!r}: not among the {len(names)} "
                            f"class names of {names_file}")
    index = index_of[entry.label]
    if entry.declared_index is not None and entry.declared_index != index:
      declared = names[entry.declared_index] if entry.declared_index < len(names) else "none"
      raise AnnotationError(entry.source, entry.line,
                            f"line gives class index {entry.declared_index + 1} ({declared}) "
                            f"but the video's folder is class {entry.label!r} "
                            f"(index {index + 1})")
    videos.append(LabeledVideo(entry.path, entry.label, index, entry.source, entry.line))
  source = annotations if annotations else video_dir
  return AnnotationSet(format=fmt, source=source, class_names=tuple(names),
                       videos=tuple(videos))
