"""Readers of the annotation files of common video data sets, returning `VideoEntry` lists.

Every reader reports a malformed line as `AnnotationError` naming the file and 1-based line.
Paths in the returned entries are relative to the video folder. Formats:

  csv       `path,label` rows (a `path,label` header is optional); `#` lines are comments.
  kinetics  the Kinetics CSV with header `label,youtube_id,time_start,time_end[,split,...]`.
            The label column is optional (unlabelled test lists). The video of a row is found
            by file name under the video folder, recursively: first a file named
            `{youtube_id}_{time_start:06d}_{time_end:06d}.<any video ext>` (the name the common
            downloaders write), else the only file whose name starts with `{youtube_id}`
            followed by `_`, `.` or `-`. A row with no (or no unique) match keeps the canonical
            name, so the conversion reports it as missing.
  ssv2      the Something-Something V2 JSON list of `{"id", "template" | "label", ...}`; the
            label is the template with its `[...]` brackets removed (the form the SSv2 labels
            JSON maps to indices); the video is `{id}.webm`. Entries without either key are
            unlabelled (the test list).
  ucf101    a split file, `Class/v_x.avi idx` (trainlist0N.txt) or `Class/v_x.avi`
            (testlist0N.txt); the class is the folder part; `idx` (1-based, classInd.txt) is
            kept as `declared_index` and checked against the class names later.
  hmdb51    a folder of `<class>_test_split<N>.txt` files with lines `video.avi 0|1|2`
            (1 = train, 2 = test, 0 = unused in that split); the video is `<class>/video.avi`.

For ucf101 and hmdb51 a video missing at `Class/file` but present at the top of the video
folder as `file` is taken from there (some archives are unpacked flat).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re

from data_prep.entries import AnnotationError, VideoEntry, find_videos, read_text, text_lines

_CSV_HEADER_NAMES = frozenset({"path", "video", "video_path", "filename", "file"})
_SPLIT_RE = re.compile(r"^(train|test)([123])$")
_HMDB_FILE_RE = re.compile(r"^(.+)_test_split([123])\.txt$")


def _read_lines(path: str):
  for number, line in text_lines(read_text(path)):
    yield number, line.strip()


def _csv_rows(path: str):
  """(first line, fields) of each CSV row. A row spanning several lines can only come from
  an unbalanced quote (no path or label holds a newline): an error naming its first line,
  instead of silently merging every later line into one field."""
  reader = csv.reader(io.StringIO(read_text(path), newline=""))
  first_line = 1
  for row in reader:
    if reader.line_num > first_line and any("\n" in f or "\r" in f for f in row):
      raise AnnotationError(
          path, first_line, f"unbalanced '\"': a quoted field opened on this line is never "
          f"closed, so lines {first_line}-{reader.line_num} would merge into one field; "
          "close the quote (or remove it)")
    yield first_line, row
    first_line = reader.line_num + 1


def parse_split(split: str | None, source: str) -> tuple[str, int]:
  """`train1` -> ("train", 1); the UCF101/HMDB51 split names."""
  match = _SPLIT_RE.match(split or "")
  if not match:
    raise AnnotationError(source, None,
                          f"--split must be one of train1..3 or test1..3, got {split!r}")
  return match.group(1), int(match.group(2))


def parse_csv(path: str) -> list[VideoEntry]:
  entries = []
  first_row = True
  for line, row in _csv_rows(path):
    fields = [field.strip() for field in row]
    if not any(fields) or fields[0].startswith("#"):
      continue
    if first_row and fields[0].lower() in _CSV_HEADER_NAMES:
      first_row = False
      continue
    first_row = False
    if len(fields) != 2 or not fields[0] or not fields[1]:
      raise AnnotationError(path, line, f"expected 'path,label', got {','.join(row)!r}")
    entries.append(VideoEntry(path=os.path.normpath(fields[0]), label=fields[1],
                              source=path, line=line))
  return entries


class _KineticsLookup:
  """Finds a Kinetics clip's file under the video folder by its name (see module doc)."""

  def __init__(self, video_dir: str):
    self._by_stem: dict[str, str] = {}
    self._by_prefix: dict[str, list[str]] = {}
    for relpath in find_videos(video_dir):
      stem = os.path.splitext(os.path.basename(relpath))[0]
      self._by_stem.setdefault(stem, relpath)
      # YouTube ids are 11 characters; bucket on them so lookups stay O(1) on 650k files.
      self._by_prefix.setdefault(stem[:11], []).append(relpath)

  def find(self, youtube_id: str, canonical_stem: str) -> str | None:
    if canonical_stem in self._by_stem:
      return self._by_stem[canonical_stem]
    if len(youtube_id) >= 11:
      candidates = self._by_prefix.get(youtube_id[:11], [])
    else:
      candidates = [p for bucket in self._by_prefix.values() for p in bucket]
    matches = []
    for relpath in candidates:
      stem = os.path.splitext(os.path.basename(relpath))[0]
      rest = stem[len(youtube_id):]
      if stem.startswith(youtube_id) and (not rest or rest[0] in "_.-"):
        matches.append(relpath)
    return matches[0] if len(matches) == 1 else None


def _parse_time(value: str, column: str, path: str, line: int) -> int:
  try:
    return int(float(value))
  except (TypeError, ValueError):
    raise AnnotationError(path, line, f"column {column!r} must be a number, got {value!r}") \
        from None


def parse_kinetics(path: str, video_dir: str, split: str | None) -> list[VideoEntry]:
  lookup = _KineticsLookup(video_dir)
  entries = []
  rows = _csv_rows(path)
  header = next(rows, (1, None))[1]
  columns = [c.strip() for c in header] if header else []
  required = ("youtube_id", "time_start", "time_end")
  if any(c not in columns for c in required):
    raise AnnotationError(path, 1, "expected a header with columns "
                          f"label,youtube_id,time_start,time_end[,split], got {columns}")
  if split is not None and "split" not in columns:
    raise AnnotationError(path, 1, f"--split {split!r} given but the file has no split column")
  index = {c: i for i, c in enumerate(columns)}
  for line, row in rows:
    if not any(field.strip() for field in row):
      continue
    if len(row) != len(columns):
      raise AnnotationError(path, line,
                            f"expected {len(columns)} fields ({','.join(columns)}), "
                            f"got {len(row)}: {','.join(row)!r}")
    value = {c: row[i].strip() for c, i in index.items()}
    if split is not None and value["split"] != split:
      continue
    youtube_id = value["youtube_id"]
    if not youtube_id:
      raise AnnotationError(path, line, "empty youtube_id")
    start = _parse_time(value["time_start"], "time_start", path, line)
    end = _parse_time(value["time_end"], "time_end", path, line)
    stem = f"{youtube_id}_{start:06d}_{end:06d}"
    relpath = lookup.find(youtube_id, stem) or f"{stem}.mp4"
    label = value.get("label") or None
    entries.append(VideoEntry(path=relpath, label=label, source=path, line=line, key=stem))
  return entries


def _json_array_with_lines(path: str) -> list[tuple[int, object]]:
  """Parses a JSON array, returning (line where the element starts, element) pairs."""
  text = read_text(path)
  decoder = json.JSONDecoder()
  ws = re.compile(r"[ \t\n\r]*")
  line_of = lambda pos: text.count("\n", 0, pos) + 1
  try:
    pos = ws.match(text, 0).end()
    if text[pos:pos + 1] != "[":
      raise AnnotationError(path, line_of(pos), "expected a JSON list of video entries")
    pos = ws.match(text, pos + 1).end()
    items = []
    if text[pos:pos + 1] == "]":
      return items
    while True:
      item, end = decoder.raw_decode(text, pos)
      items.append((line_of(pos), item))
      pos = ws.match(text, end).end()
      if text[pos:pos + 1] == "]":
        return items
      if text[pos:pos + 1] != ",":
        raise AnnotationError(path, line_of(pos), "expected ',' or ']' between list entries")
      pos = ws.match(text, pos + 1).end()
  except json.JSONDecodeError as e:
    raise AnnotationError(path, e.lineno, f"invalid JSON: {e.msg}") from None


def ssv2_class_name(template: str) -> str:
  """'Putting [something] onto [something]' -> 'Putting something onto something'."""
  return re.sub(r"\[([^\]]*)\]", r"\1", template).strip()


def parse_ssv2(path: str) -> list[VideoEntry]:
  entries = []
  for line, item in _json_array_with_lines(path):
    if not isinstance(item, dict) or "id" not in item:
      raise AnnotationError(path, line, f"expected an object with an 'id', got {item!r:.80}")
    video_id = str(item["id"]).strip()
    if not video_id:
      raise AnnotationError(path, line, "empty 'id'")
    text = item.get("template", item.get("label"))
    if text is not None and not isinstance(text, str):
      raise AnnotationError(path, line, f"'template'/'label' must be a string, got {text!r}")
    label = ssv2_class_name(text) if text else None
    entries.append(VideoEntry(path=f"{video_id}.webm", label=label, source=path, line=line,
                              key=video_id))
  return entries


def _locate(video_dir: str, class_relpath: str) -> str:
  """`Class/file` if it exists under video_dir, else a flat `file` if that exists."""
  flat = os.path.basename(class_relpath)
  if (not os.path.exists(os.path.join(video_dir, class_relpath))
      and os.path.exists(os.path.join(video_dir, flat))):
    return flat
  return class_relpath


def parse_ucf101(path: str, video_dir: str, split: str | None) -> list[VideoEntry]:
  if os.path.isdir(path):
    subset, number = parse_split(split, path)
    path = os.path.join(path, f"{subset}list0{number}.txt")
    if not os.path.exists(path):
      raise AnnotationError(path, None, "UCF101 split file not found")
  elif split is not None:
    raise AnnotationError(path, None, "--split is for a folder of UCF101 split files; "
                          "this is a single split file, so leave --split out")
  entries = []
  for line, text in _read_lines(path):
    if not text:
      continue
    tokens = text.split()
    relpath = tokens[0].replace("\\", "/")
    if len(tokens) > 2 or "/" not in relpath:
      raise AnnotationError(path, line, f"expected 'Class/video.avi [index]', got {text!r}")
    declared = None
    if len(tokens) == 2:
      if not tokens[1].isdigit() or int(tokens[1]) < 1:
        raise AnnotationError(path, line, f"class index must be a positive integer, "
                              f"got {tokens[1]!r}")
      declared = int(tokens[1]) - 1
    label = relpath.split("/")[0]
    entries.append(VideoEntry(path=_locate(video_dir, os.path.normpath(relpath)), label=label,
                            source=path, line=line, key=os.path.normpath(relpath),
                            declared_index=declared))
  return entries


def parse_hmdb51(path: str, video_dir: str, split: str | None) -> list[VideoEntry]:
  if not os.path.isdir(path):
    raise AnnotationError(path, None, "--annotations for hmdb51 must be the folder holding "
                          "the <class>_test_split<N>.txt files")
  subset, number = parse_split(split, path)
  wanted = "1" if subset == "train" else "2"
  split_files = []
  for filename in sorted(os.listdir(path)):
    match = _HMDB_FILE_RE.match(filename)
    if match and int(match.group(2)) == number:
      split_files.append((match.group(1), os.path.join(path, filename)))
  if not split_files:
    raise AnnotationError(path, None, f"no <class>_test_split{number}.txt files found")
  entries = []
  for label, split_file in split_files:
    for line, text in _read_lines(split_file):
      if not text:
        continue
      tokens = text.split()
      if len(tokens) != 2 or tokens[1] not in ("0", "1", "2"):
        raise AnnotationError(split_file, line, f"expected 'video.avi 0|1|2', got {text!r}")
      if tokens[1] != wanted:
        continue
      relpath = os.path.join(label, tokens[0])
      entries.append(VideoEntry(path=_locate(video_dir, relpath), label=label,
                                source=split_file, line=line, key=relpath))
  return entries
