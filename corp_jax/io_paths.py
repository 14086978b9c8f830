"""One file layer for every file the jobs read or write: local paths and URIs alike.

Contract:
  A *path* is a local path (`runs/x`, `/ckpt/x`) or a URI (`gs://bucket/runs/x`, any
  scheme `etils.epath` serves). `resolve(path)` makes a local path absolute and returns a URI
  unchanged (never `os.path.abspath` a URI: that makes a local folder named `gs:`).
  `join(base, *names)`, `exists`, `isdir`, `makedirs`, `listdir`, `remove`, `rename`,
  `read_text`, `read_bytes`, `write_text`, `write_bytes` work on both. Writes are atomic: a reader sees
  the old file or the new one, never a part (local: a temporary file renamed over the
  target; object stores: one upload, which is atomic there).
  `append_text(path, text)` appends (local: in place; object stores, which cannot append:
  read and rewrite the object, atomically).

Backend: `etils.epath`, the layer Orbax itself uses for the checkpoint directories, so job
files and checkpoints go through the same client. For `gs://` that client is `gcsfs`
(fsspec): epath picks `tf.io.gfile` instead when TensorFlow is installed, unless
`EPATH_USE_TF=false`, which this module sets unless the environment already says otherwise.
The reasons: one GCS client for the job and Orbax (its directory operations), a client that
can be pointed at a local GCS API server in tests (`STORAGE_EMULATOR_HOST`; `tf.io.gfile`
has no such setting), and no TensorFlow in the training process's file layer. Orbax's array
data goes through TensorStore's own GCS driver (`TENSORSTORE_GCS_HTTP_URL` redirects it).
"""

from __future__ import annotations

import os
import posixpath
import uuid

os.environ.setdefault("EPATH_USE_TF", "false")

from etils import epath  # pylint: disable=g-import-not-at-top,wrong-import-position


def is_uri(path) -> bool:
  """True for `scheme://...` paths (object stores), False for local paths."""
  return "://" in os.fspath(path)


def _check_client(path: str) -> None:
  if path.startswith("gs://"):
    try:
      import gcsfs  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError as e:
      raise ImportError(f"{path}: gs:// paths need the gcsfs package "
                        "(pip install -r requirements.txt, or pip install gcsfs)") from e


def resolve(path) -> str:
  """Absolute local path, or the URI itself (trailing '/' removed); errors on ''."""
  path = os.fspath(path)
  if not path:
    raise ValueError("empty path: give a directory or a URI such as gs://bucket/runs/x")
  if is_uri(path):
    _check_client(path)
    scheme, rest = path.split("://", 1)
    return f"{scheme}://{rest.rstrip('/')}" if rest.strip("/") else path
  return os.path.abspath(os.path.expanduser(path))


def join(base, *names) -> str:
  base = os.fspath(base)
  if is_uri(base):
    return posixpath.join(base, *names)
  return os.path.join(base, *names)


def dirname(path) -> str:
  path = os.fspath(path)
  return posixpath.dirname(path) if is_uri(path) else os.path.dirname(path)


def basename(path) -> str:
  path = os.fspath(path).rstrip("/")
  return posixpath.basename(path) if is_uri(path) else os.path.basename(path)


def as_path(path) -> epath.Path:
  return epath.Path(os.fspath(path))


def exists(path) -> bool:
  return as_path(path).exists()


def isdir(path) -> bool:
  return as_path(path).is_dir()


def makedirs(path) -> None:
  """Creates the directory and its parents (object stores: a no-op where there are none)."""
  as_path(path).mkdir(parents=True, exist_ok=True)


def listdir(path) -> list[str]:
  """Sorted names (not paths) of the entries of a directory; [] when it does not exist."""
  p = as_path(path)
  if not p.exists():
    return []
  return sorted(child.name for child in p.iterdir())


def remove(path) -> None:
  """Removes a file; a missing file is not an error."""
  p = as_path(path)
  if p.exists():
    p.unlink()


def rename(path, target) -> None:
  """Moves a file or a directory (object stores: copies, then deletes the original; not
  atomic there). An existing target is an error."""
  if exists(target):
    raise FileExistsError(f"cannot move {path} to {target}: the target exists")
  source = as_path(path)
  if not is_uri(os.fspath(path)):
    source.rename(as_path(target))
    return
  # Object by object (copy, then delete): every object store's client can copy, while a
  # server-side "move" is not offered everywhere (clients retry for minutes before falling
  # back when it is missing).
  if not source.is_dir():
    source.copy(as_path(target))
    source.unlink()
    return
  _copy_tree(source, as_path(target))
  source.rmtree()


def _copy_tree(source: epath.Path, target: epath.Path) -> None:
  target.mkdir(parents=True, exist_ok=True)
  for child in source.iterdir():
    if child.is_dir():
      _copy_tree(child, target / child.name)
    else:
      child.copy(target / child.name)


def read_bytes(path) -> bytes:
  return as_path(path).read_bytes()


def read_text(path) -> str:
  return as_path(path).read_text()


def write_bytes(path, data: bytes) -> str:
  """Writes atomically (see the module docstring); creates the parent directory."""
  path = os.fspath(path)
  if is_uri(path):
    _check_client(path)
    with as_path(path).open("wb") as f:
      f.write(data)
    return path
  parent = os.path.dirname(path) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def write_text(path, text: str) -> str:
  return write_bytes(path, text.encode("utf-8"))


def append_text(path, text: str) -> None:
  """Appends `text` (see the module docstring for object stores)."""
  path = os.fspath(path)
  if is_uri(path):
    old = read_bytes(path) if exists(path) else b""
    write_bytes(path, old + text.encode("utf-8"))
    return
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "a", encoding="utf-8") as f:
    f.write(text)
    f.flush()
