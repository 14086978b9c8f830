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


def _readme_commands() -> list[list[str]]:
  """The `python3 -m corp_jax.main` commands of README.md's multi-host section."""
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  section = text[text.index("## Multi-host"):]
  section = section[:section.index("\n## ", 1)]
  joined = re.sub(r"\\\n\s*", " ", section)
  return [shlex.split(m.group(1)) for m in
          re.finditer(r"python3 -m corp_jax\.main(.*?)(?:\"|$)", joined, flags=re.M)]


def test_readme_multihost_commands_parse():
  commands = _readme_commands()
  assert len(commands) >= 2
  for argv in commands:
    test_doc_command_config_parses(argv)


def test_readme_slurm_command_dry_runs_under_a_simulated_slurm_node():
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  argv = next(a for a in _readme_commands() if "--gpus_per_process=node" in a)
  env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  env.update(SLURM_JOB_ID="7", SLURM_NTASKS="4", SLURM_PROCID="2", SLURM_LOCALID="0",
             SLURM_NODEID="2", SLURM_STEP_NODELIST="node[1-4]",
             SLURM_STEP_TASKS_PER_NODE="1(x4)", SLURM_TASKS_PER_NODE="1(x4)",
             SLURM_GPUS_ON_NODE="8", CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7")
  out = subprocess.run([sys.executable, "-m", "corp_jax.main", *argv, "--dry_run"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  resolved = json.loads(out.stdout[out.stdout.index("{"):])
  assert resolved["initialize_kwargs"] == {
      "coordinator_address": resolved["coordinator_address"], "num_processes": 4,
      "process_id": 2, "local_device_ids": [0, 1, 2, 3, 4, 5, 6, 7]}
