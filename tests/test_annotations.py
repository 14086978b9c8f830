"""Annotation parsing: every format from small files, and errors naming file and line."""

import json
import os

import pytest

from data_prep.annotations import load_class_names, parse_annotations
from data_prep.entries import AnnotationError


def write(path, text):
  os.makedirs(os.path.dirname(str(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  return str(path)


def triples(annotation_set):
  return [(v.path, v.label_text, v.label_index) for v in annotation_set.videos]


# --- csv ---------------------------------------------------------------------------------

def test_csv_with_and_without_header(tmp_path):
  with_header = write(tmp_path / "a.csv", "path,label\nx/1.mp4,run\n# comment\n\ny.mp4,jump\n")
  got = parse_annotations("csv", with_header, str(tmp_path))
  assert got.class_names == ("jump", "run")
  assert triples(got) == [("x/1.mp4", "run", 1), ("y.mp4", "jump", 0)]
  assert got.videos[1].line == 5
  bare = write(tmp_path / "b.csv", '"z, with comma.mp4",swim\n')
  assert triples(parse_annotations("csv", bare, str(tmp_path))) == [
      ("z, with comma.mp4", "swim", 0)]


def test_csv_malformed_line_names_file_and_line(tmp_path):
  path = write(tmp_path / "a.csv", "path,label\na.mp4,run\nb.mp4,run,extra\n")
  with pytest.raises(AnnotationError, match=rf"^{path}:3: expected 'path,label'"):
    parse_annotations("csv", path, str(tmp_path))
  path = write(tmp_path / "c.csv", "a.mp4,run\nb.mp4\n")
  with pytest.raises(AnnotationError, match=r"c.csv:2: "):
    parse_annotations("csv", path, str(tmp_path))


def test_csv_duplicate_names_both_lines(tmp_path):
  path = write(tmp_path / "a.csv", "a.mp4,run\nb.mp4,run\n./a.mp4,jump\n")
  with pytest.raises(AnnotationError,
                     match=r"a.csv:3: duplicate entry 'a.mp4' \(first listed at line 1\)"):
    parse_annotations("csv", path, str(tmp_path))


def test_unknown_class_with_fixed_class_names(tmp_path):
  names = write(tmp_path / "names.txt", "run\njump\n")
  path = write(tmp_path / "a.csv", "a.mp4,jump\nb.mp4,swim\n")
  with pytest.raises(AnnotationError, match=r"a.csv:2: unknown class 'swim'.*names.txt"):
    parse_annotations("csv", path, str(tmp_path), class_names=names)
  ok = write(tmp_path / "b.csv", "a.mp4,jump\n")
  got = parse_annotations("csv", ok, str(tmp_path), class_names=names)
  assert got.class_names == ("run", "jump") and triples(got) == [("a.mp4", "jump", 1)]


# --- class-name files --------------------------------------------------------------------

@pytest.mark.parametrize("filename, text", [
    ("plain.txt", "b\na\n\nc\n"),
    ("indexed.txt", "2 a\n1 b\n3 c\n"),             # classInd.txt style, 1-based
    ("zero.txt", "0 b\n2 c\n1 a\n"),
    ("list.json", json.dumps(["b", "a", "c"])),
    ("map.json", json.dumps({"a": "1", "b": "0", "c": 2})),  # SSv2 labels JSON style
    ("k.metadata.json", json.dumps({"class_names": ["b", "a", "c"], "num_classes": 3})),
])
def test_class_name_files(tmp_path, filename, text):
  assert load_class_names(write(tmp_path / filename, text)) == ["b", "a", "c"]


def test_class_name_file_errors(tmp_path):
  with pytest.raises(AnnotationError, match=r"dup.txt:3: duplicate class name 'a'"):
    load_class_names(write(tmp_path / "dup.txt", "a\nb\na\n"))
  with pytest.raises(AnnotationError, match=r"gap.json: class indices must be 0..N-1"):
    load_class_names(write(tmp_path / "gap.json", json.dumps({"a": 0, "b": 2})))
  with pytest.raises(AnnotationError, match=r"bad.json:2: invalid JSON"):
    load_class_names(write(tmp_path / "bad.json", "[\n  oops]"))
  with pytest.raises(AnnotationError, match=r"nope.txt: class names file not found"):
    load_class_names(str(tmp_path / "nope.txt"))


# --- kinetics ----------------------------------------------------------------------------

KINETICS_HEADER = "label,youtube_id,time_start,time_end,split\n"


def test_kinetics_lookup_split_and_missing(tmp_path):
  videos = tmp_path / "videos"
  write(videos / "abseiling/--07WQ2iBlw_000001_000011.mp4", "")   # canonical name
  write(videos / "zumba/aaaaaaaaaaa.webm", "")                       # id-prefixed name
  path = write(tmp_path / "k.csv", KINETICS_HEADER +
               "abseiling,--07WQ2iBlw,1,11,train\n"
               'zumba,aaaaaaaaaaa,5.0,15.0,train\n'
               '"passing American football (in game)",bbbbbbbbbbb,0,10,train\n'
               "zumba,ccccccccccc,0,10,val\n")
  got = parse_annotations("kinetics", path, str(videos), split="train")
  assert triples(got) == [
      ("abseiling/--07WQ2iBlw_000001_000011.mp4", "abseiling", 0),
      ("zumba/aaaaaaaaaaa.webm", "zumba", 2),
      # Not on disk: keeps the canonical name, so the conversion reports it missing.
      ("bbbbbbbbbbb_000000_000010.mp4", "passing American football (in game)", 1)]
  assert got.class_names == ("abseiling", "passing American football (in game)", "zumba")
  assert len(parse_annotations("kinetics", path, str(videos)).videos) == 4


def test_kinetics_unlabelled_test_list(tmp_path):
  path = write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\n"
               "aaaaaaaaaaa,0,10,test\n")
  got = parse_annotations("kinetics", path, str(tmp_path))
  assert triples(got) == [("aaaaaaaaaaa_000000_000010.mp4", "", -1)] and not got.class_names


def test_kinetics_errors(tmp_path):
  with pytest.raises(AnnotationError, match=r"h.csv:1: expected a header"):
    parse_annotations("kinetics", write(tmp_path / "h.csv", "a,b,1,2\n"), str(tmp_path))
  bad_time = write(tmp_path / "t.csv", KINETICS_HEADER + "x,aaaaaaaaaaa,0,10,train\n"
                   "x,bbbbbbbbbbb,zero,10,train\n")
  with pytest.raises(AnnotationError, match=r"t.csv:3: column 'time_start' must be a number"):
    parse_annotations("kinetics", bad_time, str(tmp_path))
  short = write(tmp_path / "s.csv", KINETICS_HEADER + "x,aaaaaaaaaaa,0,10\n")
  with pytest.raises(AnnotationError, match=r"s.csv:2: expected 5 fields"):
    parse_annotations("kinetics", short, str(tmp_path))
  dup = write(tmp_path / "d.csv", KINETICS_HEADER + "x,aaaaaaaaaaa,0,10,train\n"
              "y,aaaaaaaaaaa,0,10,train\n")
  with pytest.raises(AnnotationError, match=r"d.csv:3: duplicate entry 'aaaaaaaaaaa_000000"):
    parse_annotations("kinetics", dup, str(tmp_path))
  no_split = write(tmp_path / "n.csv", "label,youtube_id,time_start,time_end\n")
  with pytest.raises(AnnotationError, match=r"n.csv:1: --split 'train' given"):
    parse_annotations("kinetics", no_split, str(tmp_path), split="train")


# --- something-something v2 --------------------------------------------------------------

SSV2 = """[
  {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
   "template": "Holding [something] next to [something]", "placeholders": ["potato", "x"]},
  {"id": "42326", "label": "spreading margarine onto bread",
   "template": "Spreading [something] onto [something]", "placeholders": ["a", "b"]}
]
"""


def test_ssv2_with_labels_json(tmp_path):
  path = write(tmp_path / "train.json", SSV2)
  labels = write(tmp_path / "labels.json", json.dumps({
      "Approaching something with your camera": "0",
      "Holding something next to something": "1",
      "Spreading something onto something": "2"}))
  got = parse_annotations("ssv2", path, str(tmp_path), class_names=labels)
  assert triples(got) == [("78687.webm", "Holding something next to something", 1),
                          ("42326.webm", "Spreading something onto something", 2)]
  assert [v.line for v in got.videos] == [2, 4]
  assert len(got.class_names) == 3


def test_ssv2_test_list_is_unlabelled_and_errors_name_lines(tmp_path):
  test_list = write(tmp_path / "test.json", '[{"id": "1"},\n {"id": 2}]')
  assert triples(parse_annotations("ssv2", test_list, str(tmp_path))) == [
      ("1.webm", "", -1), ("2.webm", "", -1)]
  no_id = write(tmp_path / "a.json", '[\n {"id": "1"},\n {"template": "x"}\n]')
  with pytest.raises(AnnotationError, match=r"a.json:3: expected an object with an 'id'"):
    parse_annotations("ssv2", no_id, str(tmp_path))
  broken = write(tmp_path / "b.json", '[\n {"id": "1"}\n {"id": "2"}\n]')
  with pytest.raises(AnnotationError, match=r"b.json:3: expected ',' or ']'"):
    parse_annotations("ssv2", broken, str(tmp_path))
  dup = write(tmp_path / "c.json", '[{"id": "1"},\n\n{"id": "1"}]')
  with pytest.raises(AnnotationError, match=r"c.json:3: duplicate entry '1'"):
    parse_annotations("ssv2", dup, str(tmp_path))


# --- ucf101 ------------------------------------------------------------------------------

def _ucf_lists(tmp_path):
  lists = tmp_path / "ucfTrainTestlist"
  write(lists / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n3 YoYo\n")
  write(lists / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
        "YoYo/v_YoYo_g08_c01.avi 3\n")
  write(lists / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\n")
  return lists


def test_ucf101_split_files_use_class_ind(tmp_path):
  lists = _ucf_lists(tmp_path)
  videos = tmp_path / "UCF-101"
  write(videos / "v_YoYo_g08_c01.avi", "")  # Unpacked flat: found at the top.
  got = parse_annotations("ucf101", str(lists / "trainlist01.txt"), str(videos))
  assert got.class_names == ("ApplyEyeMakeup", "Archery", "YoYo")
  assert triples(got) == [
      ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "ApplyEyeMakeup", 0),
      ("v_YoYo_g08_c01.avi", "YoYo", 2)]
  test = parse_annotations("ucf101", str(lists), str(videos), split="test1")
  assert triples(test) == [("Archery/v_Archery_g01_c01.avi", "Archery", 1)]


def test_ucf101_errors(tmp_path):
  lists = _ucf_lists(tmp_path)
  wrong = write(lists / "trainlist02.txt", "Archery/v_Archery_g01_c01.avi 2\n"
                "YoYo/v_YoYo_g01_c01.avi 1\n")
  with pytest.raises(AnnotationError,
                     match=r"trainlist02.txt:2: line gives class index 1 \(ApplyEyeMakeup\)"):
    parse_annotations("ucf101", wrong, str(tmp_path))
  bad = write(lists / "trainlist03.txt", "Archery/v_Archery_g01_c01.avi 2\n"
              "v_YoYo_g01_c01.avi\n")
  with pytest.raises(AnnotationError, match=r"trainlist03.txt:2: expected 'Class/video.avi"):
    parse_annotations("ucf101", bad, str(tmp_path))
  with pytest.raises(AnnotationError, match=r"--split must be one of train1..3"):
    parse_annotations("ucf101", str(lists), str(tmp_path), split="val")
  unknown = write(tmp_path / "other/list.txt", "Bowling/v_Bowling_g01_c01.avi\n")
  with pytest.raises(AnnotationError, match=r"list.txt:1: unknown class 'Bowling'"):
    parse_annotations("ucf101", unknown, str(tmp_path),
                      class_names=str(lists / "classInd.txt"))


# --- hmdb51 ------------------------------------------------------------------------------

def test_hmdb51_split_folder(tmp_path):
  splits = tmp_path / "testTrainMulti_7030_splits"
  write(splits / "brush_hair_test_split1.txt", "a.avi 1\nb.avi 2\nc.avi 0\n")
  write(splits / "brush_hair_test_split2.txt", "a.avi 2\n")
  write(splits / "wave_test_split1.txt", "w.avi 1 \n")
  train = parse_annotations("hmdb51", str(splits), str(tmp_path), split="train1")
  assert train.class_names == ("brush_hair", "wave")
  assert triples(train) == [("brush_hair/a.avi", "brush_hair", 0), ("wave/w.avi", "wave", 1)]
  test = parse_annotations("hmdb51", str(splits), str(tmp_path), split="test1")
  assert [v.path for v in test.videos] == ["brush_hair/b.avi"]


def test_hmdb51_errors(tmp_path):
  splits = tmp_path / "splits"
  bad = write(splits / "run_test_split1.txt", "a.avi 1\nb.avi 3\n")
  with pytest.raises(AnnotationError, match=rf"^{bad}:2: expected 'video.avi 0\|1\|2'"):
    parse_annotations("hmdb51", str(splits), str(tmp_path), split="train1")
  with pytest.raises(AnnotationError, match=r"no <class>_test_split2.txt files"):
    parse_annotations("hmdb51", str(splits), str(tmp_path), split="train2")
  with pytest.raises(AnnotationError, match=r"--split must be one of"):
    parse_annotations("hmdb51", str(splits), str(tmp_path))


# --- folder and general ------------------------------------------------------------------

def test_folder_lists_videos_unlabelled(tmp_path):
  for name in ("b/2.mp4", "a.webm", "b/notes.txt", "c/3.AVI"):
    write(tmp_path / "v" / name, "")
  got = parse_annotations("folder", None, str(tmp_path / "v"))
  assert triples(got) == [("a.webm", "", -1), ("b/2.mp4", "", -1), ("c/3.AVI", "", -1)]
  with pytest.raises(AnnotationError, match="leave --annotations out"):
    parse_annotations("folder", "x.csv", str(tmp_path / "v"))
  with pytest.raises(FileNotFoundError, match="nowhere"):
    parse_annotations("folder", None, str(tmp_path / "nowhere"))


def test_missing_file_and_bad_format(tmp_path):
  with pytest.raises(AnnotationError, match=r"none.csv: annotation file not found"):
    parse_annotations("csv", str(tmp_path / "none.csv"), str(tmp_path))
  with pytest.raises(ValueError, match="unknown --format 'avi'"):
    parse_annotations("avi", None, str(tmp_path))
  with pytest.raises(AnnotationError, match="--split is not used with --format csv"):
    parse_annotations("csv", write(tmp_path / "a.csv", "a.mp4,x\n"), str(tmp_path),
                      split="train")
