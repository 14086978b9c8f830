"""Bad annotation bytes: an unbalanced quote, a non-UTF-8 file, control characters in a
label. Each is an AnnotationError naming the file and line, never a silently wrong set."""

import os

import pytest

from data_prep.annotations import load_class_names, parse_annotations
from data_prep.entries import AnnotationError


def write_bytes(path, data: bytes):
  with open(path, "wb") as f:
    f.write(data)
  return str(path)


def test_csv_unbalanced_quote_names_file_and_line(tmp_path):
  path = write_bytes(tmp_path / "a.csv", b'a.mp4,run\nb.mp4,"jump\nc.mp4,swim\nd.mp4,run\n')
  with pytest.raises(AnnotationError, match=rf"^{path}:2: unbalanced '\"'.*lines 2-4"):
    parse_annotations("csv", path, str(tmp_path))


def test_csv_balanced_quotes_still_parse(tmp_path):
  path = write_bytes(tmp_path / "a.csv", b'"a, b.mp4",run\n"c.mp4","say ""hi"""\n')
  got = parse_annotations("csv", path, str(tmp_path))
  assert [(v.path, v.label_text, v.line) for v in got.videos] == [
      ("a, b.mp4", "run", 1), ("c.mp4", 'say "hi"', 2)]


def test_kinetics_unbalanced_quote_names_line(tmp_path):
  path = write_bytes(tmp_path / "k.csv", b'label,youtube_id,time_start,time_end\n'
                     b'"run,abcdefghijk,0,10\nswim,bcdefghijkl,0,10\n')
  with pytest.raises(AnnotationError, match=rf"^{path}:2: unbalanced"):
    parse_annotations("kinetics", path, str(tmp_path))


@pytest.mark.parametrize("fmt,name,data", [
    ("csv", "a.csv", b"a.mp4,run\nb.mp4,caf\xe9\n"),
    ("ucf101", "trainlist01.txt", b"Run/v_a.avi 1\nJump/v_\xff.avi 2\n"),
    ("ssv2", "train.json", b'[{"id": "1", "template": "x"},\n {"id": "2", "template": "\xe9"}]'),
])
def test_non_utf8_annotation_names_file_line_offset_and_encoding(tmp_path, fmt, name, data):
  path = write_bytes(tmp_path / name, data)
  offset = data.index(b"\xe9" if b"\xe9" in data else b"\xff")
  with pytest.raises(AnnotationError,
                     match=rf"^{path}:2: not UTF-8 text: byte 0x.. at byte offset {offset} "
                           r".*must be UTF-8"):
    parse_annotations(fmt, path, str(tmp_path))


def test_non_utf8_class_names_file(tmp_path):
  path = write_bytes(tmp_path / "names.txt", b"run\n\xe9t\xe9\n")
  with pytest.raises(AnnotationError, match=rf"^{path}:2: not UTF-8"):
    load_class_names(path)


@pytest.mark.parametrize("label", [b"ru\x00n", b"ju\x1bmp", b"sw\x07im"])
def test_control_character_in_label_is_an_error(tmp_path, label):
  path = write_bytes(tmp_path / "a.csv", b"a.mp4,run\nb.mp4," + label + b"\n")
  with pytest.raises(AnnotationError, match=rf"^{path}:2: label .* control character U\+00"):
    parse_annotations("csv", path, str(tmp_path))


def test_control_character_in_class_names_and_paths(tmp_path):
  names = write_bytes(tmp_path / "names.txt", b"run\nju\x00mp\n")
  with pytest.raises(AnnotationError, match=rf"^{names}:2: class name .*U\+0000"):
    load_class_names(names)
  path = write_bytes(tmp_path / "b.csv", b"a\x01.mp4,run\n")
  with pytest.raises(AnnotationError, match=r"b.csv:1: video path .*U\+0001"):
    parse_annotations("csv", path, str(tmp_path))
  ok = write_bytes(tmp_path / "c.csv", "ä.mp4,café\n".encode())  # non-ASCII is fine
  assert parse_annotations("csv", ok, str(tmp_path)).class_names == ("café",)
