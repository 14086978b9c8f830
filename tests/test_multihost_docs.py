"""The job commands of docs/MULTIHOST.md load: each `python3 -m corp_jax.main` line's config
file, preset and `--config.*` overrides parse (a renamed key or preset fails here)."""

import importlib.util
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "MULTIHOST.md")


def _commands() -> list[list[str]]:
  with open(DOC) as f:
    text = f.read()
  commands = []
  for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
    joined = re.sub(r"\\\n\s*", " ", block)
    for match in re.finditer(r"python3 -m corp_jax\.main(.*?)(?:\"|$)", joined, flags=re.M):
      line = match.group(1).replace("$BUCKET", "gs://my-bucket")
      commands.append(shlex.split(line))
  return commands


def test_the_doc_has_commands():
  assert len(_commands()) >= 4


def _load(spec: str):
  path, _, preset = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_doc_config", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(preset) if preset else module.get_config()


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a)[:60])
def test_doc_command_config_parses(argv):
  config_args = [a for a in argv if a.startswith("--config")]
  assert config_args and config_args[0].startswith("--config="), argv
  config = _load(config_args[0].split("=", 1)[1])
  for arg in config_args[1:]:
    key, value = arg[len("--config."):].split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      node = node[part]
    assert leaf in node, f"{key} is not a config key ({argv})"
    current = node[leaf]
    if isinstance(current, bool):
      assert value in ("True", "False", "true", "false"), (key, value)
    elif isinstance(current, (int, float)):
      type(current)(value)  # raises on a value of the wrong type
  workdir = next((a.split("=", 1)[1] for a in argv if a.startswith("--workdir=")), "")
  assert workdir, f"no --workdir in {argv}"
