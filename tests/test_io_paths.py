"""The file layer (corp_jax/io_paths.py) on local paths and on gs:// (a GCS API server on
127.0.0.1): the same calls, atomic writes, URIs never made local."""

import os

import pytest

from corp_jax import io_paths
from tests.gcs_emulator import gcs_bucket  # pylint: disable=unused-import


def test_uris_are_never_made_local(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert io_paths.resolve("gs://bucket/runs/x/") == "gs://bucket/runs/x"
  assert io_paths.join("gs://bucket/runs/x", "checkpoints") == "gs://bucket/runs/x/checkpoints"
  assert io_paths.dirname("gs://bucket/runs/x/metrics.jsonl") == "gs://bucket/runs/x"
  assert io_paths.basename("gs://bucket/runs/x/") == "x"
  assert io_paths.resolve("runs/x") == str(tmp_path / "runs" / "x")
  with pytest.raises(ValueError, match="empty path"):
    io_paths.resolve("")
  assert os.listdir(tmp_path) == []


def _exercise(root):
  path = io_paths.join(root, "a", "b.txt")
  assert not io_paths.exists(path)
  io_paths.write_text(path, "one\n")
  io_paths.append_text(path, "two\n")
  assert io_paths.read_text(path) == "one\ntwo\n"
  io_paths.write_bytes(path, b"new")  # replaces the whole file
  assert io_paths.read_bytes(path) == b"new"
  io_paths.append_text(io_paths.join(root, "a", "c.jsonl"), "x\n")
  assert io_paths.listdir(io_paths.join(root, "a")) == ["b.txt", "c.jsonl"]
  assert io_paths.isdir(io_paths.join(root, "a"))
  io_paths.remove(path)
  io_paths.remove(path)  # a missing file is not an error
  assert io_paths.listdir(io_paths.join(root, "a")) == ["c.jsonl"]
  assert io_paths.listdir(io_paths.join(root, "missing")) == []
  # A directory moves aside whole (how a damaged checkpoint step is set aside).
  io_paths.write_text(io_paths.join(root, "ckpt", "7", "data"), "d")
  io_paths.rename(io_paths.join(root, "ckpt", "7"), io_paths.join(root, "ckpt", "corrupt-7"))
  assert io_paths.listdir(io_paths.join(root, "ckpt")) == ["corrupt-7"]
  assert io_paths.read_text(io_paths.join(root, "ckpt", "corrupt-7", "data")) == "d"
  with pytest.raises(FileExistsError):
    io_paths.rename(io_paths.join(root, "a", "c.jsonl"), io_paths.join(root, "ckpt", "corrupt-7"))


def test_local_files(tmp_path):
  _exercise(str(tmp_path))
  assert sorted(os.listdir(tmp_path / "a")) == ["c.jsonl"]  # no temporary files left


def test_gcs_objects(gcs_bucket, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _exercise(f"{gcs_bucket}/files")
  assert os.listdir(tmp_path) == ["gcs_emulator.log"]  # nothing else on local disk
