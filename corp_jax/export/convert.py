"""corp_jax variable trees <-> PyTorch state_dict names and layouts (NumPy only).

Contract:
  `backbone_to_torch(params, batch_stats) -> {torch name: np.ndarray}`: a ResNet3D's
  `params` / `batch_stats` trees (the `backbone` subtrees of a checkpoint) as the state_dict
  of corp_jax.export.torch_r3d.R3D, including BatchNorm's `num_batches_tracked` (int64 0), so
  `R3D(arch).load_state_dict(...)` is strict.
  `projection_to_torch(params, batch_stats)`: the same for ProjectionMLP.
  `torch_name(flax_path) -> str`: one parameter's name, e.g.
  'res3_block0/conv_proj/kernel' -> 'res3.0.branch1_conv.weight'.
Layouts: conv kernels [kt, kh, kw, Cin, Cout] -> weight [Cout, Cin, kt, kh, kw]; Dense kernels
[in, out] -> Linear weight [out, in]; BatchNorm scale / bias / mean / var -> weight / bias /
running_mean / running_var. Every array is float32. Any variable the mapping does not know is
an error naming it (a silent drop would export a different network).
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np

_BLOCK = re.compile(r"^res(\d+)_block(\d+)$")
_LAYER = {"conv_a": "branch2.conv_a", "bn_a": "branch2.norm_a",
          "conv_b": "branch2.conv_b", "bn_b": "branch2.norm_b",
          "conv_c": "branch2.conv_c", "bn_c": "branch2.norm_c",
          "conv_proj": "branch1_conv", "bn_proj": "branch1_norm"}
_STEM = {"stem_conv": "stem.conv", "stem_bn": "stem.norm"}
_BN_LEAF = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
  """{'a/b/c': array} of a nested mapping."""
  out = {}
  for key, value in tree.items():
    path = f"{prefix}/{key}" if prefix else str(key)
    if isinstance(value, Mapping):
      out.update(flatten(value, path))
    else:
      out[path] = np.asarray(value)
  return out


def torch_module_name(flax_module_path: str) -> str:
  """'stem_bn' -> 'stem.norm'; 'res2_block1/bn_b' -> 'res2.1.branch2.norm_b'."""
  parts = flax_module_path.split("/")
  if len(parts) == 1 and parts[0] in _STEM:
    return _STEM[parts[0]]
  if len(parts) == 2:
    match = _BLOCK.match(parts[0])
    if match and parts[1] in _LAYER:
      return f"res{match.group(1)}.{match.group(2)}.{_LAYER[parts[1]]}"
  raise ValueError(f"backbone variable {flax_module_path!r} has no PyTorch counterpart "
                   "(expected stem_conv, stem_bn or res<S>_block<I>/<conv|bn>_<a|b|c|proj>)")


def torch_name(flax_path: str) -> str:
  """Name of one backbone variable, 'res3_block0/conv_proj/kernel' -> '...branch1_conv.weight'."""
  module, leaf = flax_path.rsplit("/", 1)
  name = torch_module_name(module)
  if leaf == "kernel":
    return f"{name}.weight"
  if leaf in _BN_LEAF:
    return f"{name}.{_BN_LEAF[leaf]}"
  raise ValueError(f"backbone variable {flax_path!r}: unknown leaf {leaf!r}")


def _conv_weight(kernel: np.ndarray, path: str) -> np.ndarray:
  if kernel.ndim != 5:
    raise ValueError(f"{path}: expected a [kt, kh, kw, Cin, Cout] conv kernel, got {kernel.shape}")
  return np.ascontiguousarray(np.transpose(kernel, (4, 3, 0, 1, 2)), np.float32)


def backbone_to_torch(params: Mapping, batch_stats: Mapping) -> dict[str, np.ndarray]:
  """The PyTorch state_dict (NumPy) of a ResNet3D's variables; see the module docstring."""
  out: dict[str, np.ndarray] = {}
  for path, value in {**flatten(params), **flatten(batch_stats)}.items():
    name = torch_name(path)
    out[name] = (_conv_weight(value, path) if path.endswith("/kernel")
                 else np.asarray(value, np.float32))
    if name.endswith(".running_var"):
      out[name[:-len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
  return out


def projection_to_torch(params: Mapping, batch_stats: Mapping) -> dict[str, np.ndarray]:
  """ProjectionMLP variables -> torch_r3d.ProjectionMLP state_dict (NumPy)."""
  out: dict[str, np.ndarray] = {}
  for path, value in {**flatten(params), **flatten(batch_stats)}.items():
    module, leaf = path.rsplit("/", 1)
    value = np.asarray(value, np.float32)
    if re.fullmatch(r"hidden\d+|output", module) and leaf in ("kernel", "bias"):
      out[f"{module}.{'weight' if leaf == 'kernel' else 'bias'}"] = (
          np.ascontiguousarray(value.T) if leaf == "kernel" else value)
    elif re.fullmatch(r"bn\d+", module) and leaf in _BN_LEAF:
      out[f"{module}.{_BN_LEAF[leaf]}"] = value
      if leaf == "var":
        out[f"{module}.num_batches_tracked"] = np.zeros((), np.int64)
    else:
      raise ValueError(f"projection variable {path!r} has no PyTorch counterpart")
  return out
