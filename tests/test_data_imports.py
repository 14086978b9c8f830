"""The input layer's modules form no import cycle (function-level imports included), and the
TF modules of the augmentation import alone."""

import ast
import pathlib
import subprocess
import sys

import corp_jax.data

PACKAGE = "corp_jax.data"


def _imports_within_package(path: pathlib.Path, modules: set) -> set:
  """Modules of corp_jax.data that `path` imports anywhere (top level or in a function)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
      found |= {alias.name for alias in node.names if alias.name in modules}
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
      found.add(node.module.split(".")[2])
    elif isinstance(node, ast.Import):
      found |= {alias.name.split(".")[2] for alias in node.names
                if alias.name.startswith(PACKAGE + ".")}
  return found


def import_graph() -> dict:
  root = pathlib.Path(corp_jax.data.__file__).parent
  paths = {p.stem: p for p in root.glob("*.py") if p.stem != "__init__"}
  return {name: _imports_within_package(path, set(paths)) - {name}
          for name, path in paths.items()}


def find_cycle(graph: dict) -> list | None:
  """One cycle of `graph` as a list of nodes (first == last), or None."""
  state = {}  # 1: on the current path, 2: done

  def visit(node, path):
    state[node] = 1
    for dep in sorted(graph.get(node, ())):
      if state.get(dep) == 1:
        return path[path.index(dep):] + [dep]
      if dep not in state:
        cycle = visit(dep, path + [dep])
        if cycle:
          return cycle
    state[node] = 2
    return None

  for start in sorted(graph):
    if start not in state:
      cycle = visit(start, [start])
      if cycle:
        return cycle
  return None


def test_cycle_finder_sees_a_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_data_modules_have_no_import_cycle():
  graph = import_graph()
  assert {"augment_tf", "linear_aug_tf", "pipeline", "record_stream"} <= set(graph)
  assert "linear_aug_tf" in graph["augment_tf"]  # the walk sees imports
  assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_augmentation_tf_modules_import_alone():
  for module in ("linear_aug_tf", "augment_tf"):
    result = subprocess.run(
        [sys.executable, "-c", f"import {PACKAGE}.{module}"], capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, (module, result.stderr[-2000:])
