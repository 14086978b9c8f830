"""Keeps the native libraries' start-up messages off the main job's console.

TensorFlow's C++ runtime writes notices straight to file descriptor 2 while it is imported
(the oneDNN notice, absl's "All log messages before absl::InitializeLog()" warning, CPU
feature hints); the earliest come before TF_CPP_MIN_LOG_LEVEL is read, so only redirecting
the descriptor keeps them off the console. TensorFlow stays imported lazily, where the data
modules first need it; only that first import is redirected (for its few seconds anything
else written to stderr goes to the log too: the jobs import TensorFlow before their progress
lines, which go to stdout anyway).

Contract:
  `quiet_native_logging()` sets TF_CPP_MIN_LOG_LEVEL=1 (TensorFlow's and XLA's INFO lines
    off, WARNING and ERROR kept) unless the environment already sets it. Call it before
    TensorFlow or jaxlib is imported.
  `StartupOutput(workdir)`: `capture_first_import(name)` redirects file descriptor 2 into a
    temporary file while the first `import name` runs (a one-shot meta-path finder; the
    module is loaded by its own loader). Afterwards the captured lines at absl's ERROR or
    FATAL level (`E`/`F` + MMDD) are repeated on stderr, and everything captured is repeated
    when the import raises, so no real error is hidden. `text` is what was captured; it is
    appended to WORKDIR/startup.log (startup.process<i>.log for process i > 0) as soon as
    the workdir exists, else by `save()` (call it when the job ends); `stop()` removes the
    finders not yet used.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

_REPEATED = re.compile(r"^[EF]\d{4} ")  # absl's ERROR / FATAL line prefix


def quiet_native_logging() -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


@contextlib.contextmanager
def _stderr_descriptor_to(file):
  """Points file descriptor 2 (where C++ libraries write) at `file` for the block."""
  sys.stderr.flush()
  saved = os.dup(2)
  os.dup2(file.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


class _CapturingLoader(importlib.abc.Loader):
  """Runs the wrapped loader's exec_module with file descriptor 2 redirected."""

  def __init__(self, loader, output: "StartupOutput"):
    self._loader, self._output = loader, output

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    # The module keeps its own loader: importlib and the module see it as usual.
    module.__loader__ = self._loader
    if module.__spec__ is not None:
      module.__spec__.loader = self._loader
    with tempfile.TemporaryFile() as file:
      failed = True
      try:
        with _stderr_descriptor_to(file):
          self._loader.exec_module(module)
        failed = False
      finally:
        file.seek(0)
        self._output.add(file.read().decode("utf-8", errors="replace"), show_all=failed)


class _FirstImport(importlib.abc.MetaPathFinder):
  """A one-shot finder: the first import of `name` runs under _CapturingLoader."""

  def __init__(self, name: str, output: "StartupOutput"):
    self._name, self._output = name, output

  def find_spec(self, fullname, path, target=None):
    if fullname != self._name:
      return None
    self.remove()  # before searching: the other finders answer as they would without us
    spec = importlib.util.find_spec(fullname)
    if spec is not None and spec.loader is not None:
      spec.loader = _CapturingLoader(spec.loader, self._output)
    return spec

  def remove(self) -> None:
    if self in sys.meta_path:
      sys.meta_path.remove(self)


class StartupOutput:
  """What native libraries wrote to stderr while first imported; see the module docstring."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.text = ""  # everything captured
    self._unsaved = ""
    self._finders: list[_FirstImport] = []

  def capture_first_import(self, name: str) -> None:
    if name in sys.modules:
      return
    finder = _FirstImport(name, self)
    self._finders.append(finder)
    sys.meta_path.insert(0, finder)

  def add(self, text: str, *, show_all: bool = False) -> None:
    self.text += text
    self._unsaved += text
    shown = text if show_all else "".join(
        line for line in text.splitlines(keepends=True) if _REPEATED.match(line))
    if shown:
      sys.stderr.write(shown if shown.endswith("\n") else shown + "\n")
      sys.stderr.flush()
    self.save()

  def stop(self) -> None:
    """Imports after this are not redirected."""
    for finder in self._finders:
      finder.remove()
    self._finders = []

  def save(self) -> str | None:
    """Appends the unsaved text to the workdir's start-up log once the workdir exists;
    returns the log's path, or None when nothing was written. Best effort: these are
    library notices (their errors were shown), so a failed write leaves the text unsaved
    and never raises."""
    if not self._unsaved:
      return None
    try:
      from corp_jax import io_paths  # pylint: disable=g-import-not-at-top
      if not io_paths.isdir(self.workdir):
        return None
      jax = sys.modules.get("jax")
      index = jax.process_index() if jax is not None else 0
      name = "startup.log" if index == 0 else f"startup.process{index}.log"
      path = io_paths.join(self.workdir, name)
      text = self._unsaved if self._unsaved.endswith("\n") else self._unsaved + "\n"
      io_paths.append_text(path, text)
    except Exception:  # pylint: disable=broad-except
      return None
    self._unsaved = ""
    return path
