"""Pretrained corp_jax backbones for PyTorch: export to safetensors, load as torch.nn.Module.

    python -m corp_jax.export --pretrain_workdir=W [--step=N] --out=DIR [--no_projection]

writes DIR/backbone.safetensors (the R3D backbone, PyTorch names and layouts),
DIR/projection.safetensors (the projection MLP g, unless --no_projection) and DIR/config.json
(architecture, input convention, provenance). Then, with torch alone (no JAX, no TensorFlow):

    from corp_jax.export import load_torch_backbone
    model = load_torch_backbone(DIR)          # eval mode, float32
    features = model(clips)                   # clips [N, 3, T, H, W] in [0, 1] -> [N, F]

Contract:
  `load_torch_backbone(directory, device='cpu') -> corp_jax.export.torch_r3d.R3D` and
  `load_torch_projection(directory, device='cpu') -> torch_r3d.ProjectionMLP` (ValueError when
  the export has no projection head); `read_config(directory) -> dict` (config.json).
  `export_pretrained(workdir, out_dir, step=None, projection=True) -> dict` (needs JAX; lives in
  corp_jax.export.writer) returns the written config.
torch is optional for corp_jax: it is imported only when a loader is called, with an error
saying how to install it. Module names and the mapping from corp_jax / pytorchvideo /
PySlowFast names: corp_jax/export/torch_r3d.py and docs/INTEROP.md.
"""

from __future__ import annotations

import json
import os

from corp_jax.export import safetensors_io

CONFIG_FILE = "config.json"
BACKBONE_FILE = "backbone.safetensors"
PROJECTION_FILE = "projection.safetensors"
FORMAT = "corp_jax.export/1"


def _torch_r3d():
  try:
    from corp_jax.export import torch_r3d  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("loading an exported backbone needs PyTorch: pip install torch "
                      f"(CPU wheels work) ({e})") from e
  return torch_r3d


def read_config(directory: str) -> dict:
  """DIR/config.json of an export, checked for the keys the loaders need."""
  path = os.path.join(directory, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {directory!r} is not a corp_jax export (write "
                            "one with python -m corp_jax.export --pretrain_workdir=W --out=DIR)")
  with open(path) as f:
    try:
      config = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON: {e}") from e
  if config.get("format") != FORMAT or "architecture" not in config:
    raise ValueError(f"{path}: not a {FORMAT} export config (format={config.get('format')!r})")
  return config


def _load_state(module, path: str, device: str):
  import torch  # pylint: disable=g-import-not-at-top
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found (incomplete export?)")
  state = {k: torch.from_numpy(v) for k, v in safetensors_io.load_file(path).items()}
  result = module.load_state_dict(state, strict=False)
  if result.missing_keys or result.unexpected_keys:
    raise ValueError(f"{path} does not match the architecture in config.json: missing "
                     f"{sorted(result.missing_keys)}, unexpected {sorted(result.unexpected_keys)}")
  return module.to(device).eval()


def load_torch_backbone(directory: str, device: str = "cpu"):
  """The exported backbone as a torch.nn.Module in eval mode: [N, 3, T, H, W] -> [N, F]."""
  config = read_config(directory)
  model = _torch_r3d().R3D(config["architecture"])
  return _load_state(model, os.path.join(directory, config["files"]["backbone"]), device)


def load_torch_projection(directory: str, device: str = "cpu"):
  """The exported projection MLP g: [N, F] -> [N, d], eval mode."""
  config = read_config(directory)
  head = config.get("projection")
  if not head:
    raise ValueError(f"{directory} holds no projection head (exported with --no_projection)")
  module = _torch_r3d().ProjectionMLP(config["feature_dim"], head["hidden_dims"],
                                      head["out_dim"])
  return _load_state(module, os.path.join(directory, config["files"]["projection"]), device)


def export_pretrained(workdir: str, out_dir: str, step: int | None = None,
                      projection: bool = True) -> dict:
  from corp_jax.export import writer  # pylint: disable=g-import-not-at-top
  return writer.export_pretrained(workdir, out_dir, step=step, projection=projection)
