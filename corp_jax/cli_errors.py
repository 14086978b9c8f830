"""Short errors for the command line: a user's mistake is one or a few lines, no traceback.

  `parse_flags(argv)`: the `flags_parser` of `absl.app.run`. A missing config file, an
      unknown config key (`--config.optim.lrr=1`) or a value of the wrong type is reported
      with the full key path and the valid keys nearby, then exit status 2.
  `user_errors(verbose)`: a context manager around a job. ValueError, FileNotFoundError
      and FloatingPointError (bad config values, missing or damaged inputs, a diverging run)
      print `error: <message>` and exit with status 2 (1 for a diverging run).
With `--verbose` on the command line both re-raise, so the traceback is shown.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys

from absl import flags

CONFIG_FLAG = "config"


def _verbose(argv) -> bool:
  return any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1")
             for a in argv)


def _fail(message: str, code: int = 2):
  print(f"error: {message}\n(add --verbose for the traceback)", file=sys.stderr, flush=True)
  sys.exit(code)


def _flag_value(argv, name: str):
  """The value of `--name=V` or `--name V` in argv (the last one), or None."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _overrides(argv) -> list[tuple[str, str]]:
  """(dotted key, value) of each `--config.a.b=V` / `--config.a.b V` in argv."""
  found = []
  prefix = f"--{CONFIG_FLAG}."
  for i, arg in enumerate(argv):
    if arg.startswith(prefix):
      key, sep, value = arg[len(prefix):].partition("=")
      if not sep:
        value = argv[i + 1] if i + 1 < len(argv) else ""
      found.append((key, value))
  return found


def describe_key_error(config, dotted: str) -> str | None:
  """Why `config.<dotted>` is not a settable key, or None when it is."""
  node, walked = config, [CONFIG_FLAG]
  for part in dotted.split("."):
    keys = sorted(node.keys()) if hasattr(node, "keys") else None
    if keys is None:
      return (f"unknown config key '{CONFIG_FLAG}.{dotted}': {'.'.join(walked)} is a value "
              f"({node!r}), not a section")
    if part not in keys:
      close = difflib.get_close_matches(part, keys, n=3, cutoff=0.6) or [
          k for k in keys if any(difflib.SequenceMatcher(None, part, word).ratio() >= 0.75
                                 for word in k.split("_"))][:3]
      hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
      return (f"unknown config key '{CONFIG_FLAG}.{dotted}': {'.'.join(walked)} has no "
              f"{part!r}; {hint}its keys: {', '.join(keys)}")
    node = node[part]
    walked.append(part)
  return None


def missing_config_file(argv) -> str | None:
  """The error for a `--config` naming no file (ml_collections defers it), or None."""
  spec = _flag_value(argv, CONFIG_FLAG)
  if spec is None or os.path.isfile(spec.split(":", 1)[0]):
    return None
  path = spec.split(":", 1)[0]
  here = os.path.abspath(path)
  available = sorted(f for f in os.listdir("configs") if f.endswith(".py")
                     and not f.startswith("_")) if os.path.isdir("configs") else []
  hint = f"; configs here: {', '.join('configs/' + f for f in available)}" if available else ""
  return f"config file {path!r} not found (--config={spec}, looked at {here}){hint}"


def explain_flag_error(argv, error: BaseException) -> str:
  """A one-paragraph explanation of a failed flag parse, naming the file or key."""
  spec = _flag_value(argv, CONFIG_FLAG)
  if spec is not None:
    missing = missing_config_file(argv)
    if missing:
      return missing
    try:
      config = flags.FLAGS[CONFIG_FLAG].parser.parse(spec)
    except Exception as e:  # pylint: disable=broad-except
      return f"cannot load the config {spec!r}: {type(e).__name__}: {e}"
    for dotted, value in _overrides(argv):
      problem = describe_key_error(config, dotted)
      if problem:
        return problem
    for dotted, value in _overrides(argv):
      node = config
      for part in dotted.split("."):
        node = node[part]
      if not isinstance(node, (int, float)) or isinstance(node, bool):
        continue  # strings take anything; other types are left to the flag parser
      try:
        type(node)(value)
      except (TypeError, ValueError):
        return (f"--{CONFIG_FLAG}.{dotted}={value!r}: expected a {type(node).__name__} "
                f"(current value {node!r})")
  message = str(error).strip().strip("\"'") or type(error).__name__
  return f"cannot parse the command line: {message}"


def parse_flags(argv):
  """absl's flag parsing, with a short error instead of a traceback (see module doc)."""
  missing = missing_config_file(argv)
  if missing and not _verbose(argv):
    _fail(missing)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if _verbose(argv):
      raise
    _fail(f"{e}\n  (--helpfull lists every flag)")
  except Exception as e:  # pylint: disable=broad-except
    if _verbose(argv):
      raise
    _fail(explain_flag_error(argv, e))


@contextlib.contextmanager
def user_errors(verbose: bool):
  """Turns the errors a user can fix into `error: ...` and an exit status (module doc)."""
  try:
    yield
  except (ValueError, FileNotFoundError, FloatingPointError) as e:
    if verbose:
      raise
    _fail(str(e), 1 if isinstance(e, FloatingPointError) else 2)
