"""CVRL's published TF2 checkpoints (Model Garden video_ssl R3D-50) as corp_jax backbone variables.

Contract:
  `backbone_from_cvrl(variables: {TF name: np.ndarray}, spec, where) -> (params, batch_stats)`:
  pure NumPy. `variables` are a TF2 object-based checkpoint's (tf.train.load_checkpoint names);
  `spec` the target BackboneSpec (block 'bottleneck'); returns the ResNet3D `params` /
  `batch_stats` trees. Raises ValueError listing, by name, the corp_jax variables the
  checkpoint lacks and the checkpoint's backbone variables nothing uses (`where` names the file).
  `load_cvrl_backbone(path, spec) -> (params, batch_stats)` reads the checkpoint (TensorFlow,
  through corp_jax.data.tf_checkpoint) and converts it.

Names (official/vision/modeling/backbones/resnet_3d.py and layers/nn_blocks_3d.py): the Keras
functional backbone tracks its layers that own weights as `layer_with_weights-<i>` in build
order: 0 the stem Conv3D, 1 the stem BatchNormalization, then one BottleneckBlock3D per
residual block (res2 block 0 is i = 2, ...). Inside a block: `_temporal_conv` (kt x 1 x 1) /
`_norm1`, `_spatial_conv` (1 x 3 x 3, spatial stride) / `_norm2`, `_expand_conv` (1 x 1 x 1,
4x) / `_norm3`, and on the first block of a stage `_shortcut_conv` / `_norm0`. Each variable
is `<path>/<kernel|gamma|beta|moving_mean|moving_variance>/.ATTRIBUTES/VARIABLE_VALUE`. The
backbone sits under `backbone/` (the Model Garden checkpoint item) or
`model/layer_with_weights-0/` (inside the VideoSSLModel); the shortest such prefix holding a
stem kernel [kt, 7, 7, 3, 64]-like (Cin = 3) is used. Optimizer slots and the projection head
are ignored. Keras Conv3D kernels are [kt, kh, kw, Cin, Cout] like corp_jax's, so no transpose.

The function: Model Garden pads with TF 'SAME' and uses BatchNorm epsilon 1e-3; the variant
'r3d50_cvrl' computes exactly that (checked against the Model Garden Keras model, docs/
INTEROP.md). Loading the same weights into 'r3d50' ('fixed' padding, epsilon 1e-5) works too,
but shifts strided convolutions by one pixel, so features differ.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_LEAF = {"kernel": ("params", "kernel"), "gamma": ("params", "scale"),
         "beta": ("params", "bias"), "moving_mean": ("batch_stats", "mean"),
         "moving_variance": ("batch_stats", "var")}
_BLOCK_LAYER = {"_temporal_conv": "conv_a", "_norm1": "bn_a", "_spatial_conv": "conv_b",
                "_norm2": "bn_b", "_expand_conv": "conv_c", "_norm3": "bn_c",
                "_shortcut_conv": "conv_proj", "_norm0": "bn_proj"}
_STEM_KERNEL = re.compile(r"^(.*?)layer_with_weights-0/kernel" + re.escape(_SUFFIX) + "$")


def _backbone_prefix(variables: Mapping[str, np.ndarray], where: str) -> str:
  candidates = []
  for name, value in variables.items():
    match = _STEM_KERNEL.match(name)
    if match and np.ndim(value) == 5 and np.shape(value)[3] == 3:
      candidates.append(match.group(1))
  if not candidates:
    raise ValueError(f"{where}: no R3D stem kernel found (expected a variable like "
                     f"'backbone/layer_with_weights-0/kernel{_SUFFIX}' of shape "
                     f"[5, 7, 7, 3, 64]); is this a CVRL / Model Garden ResNet3D checkpoint? "
                     f"First names: {sorted(variables)[:8]}")
  return min(candidates, key=len)


def _target_name(path: str, block_names: list[str]) -> str | None:
  """'layer_with_weights-3/_norm2/gamma' -> 'params/res2_block1/bn_b/scale' (None: unknown)."""
  parts = path.split("/")
  match = re.fullmatch(r"layer_with_weights-(\d+)", parts[0])
  if not match or parts[-1] not in _LEAF:
    return None
  index = int(match.group(1))
  collection, leaf = _LEAF[parts[-1]]
  if len(parts) == 2 and index in (0, 1):
    module = "stem_conv" if index == 0 else "stem_bn"
    return f"{collection}/{module}/{leaf}" if (index == 0) == (leaf == "kernel") else None
  if len(parts) == 3 and 2 <= index < 2 + len(block_names) and parts[1] in _BLOCK_LAYER:
    return f"{collection}/{block_names[index - 2]}/{_BLOCK_LAYER[parts[1]]}/{leaf}"
  return None


def _expected_names(spec, block_names: list[str]) -> set[str]:
  names = {"params/stem_conv/kernel", "params/stem_bn/scale", "params/stem_bn/bias",
           "batch_stats/stem_bn/mean", "batch_stats/stem_bn/var"}
  first_of_stage = {f"res{s + 2}_block0" for s in range(len(spec.stage_depths))}
  for block in block_names:
    layers = ["a", "b", "c"] + (["proj"] if block in first_of_stage else [])
    for layer in layers:
      names.add(f"params/{block}/conv_{layer}/kernel")
      for leaf in ("params/{}/bn_{}/scale", "params/{}/bn_{}/bias", "batch_stats/{}/bn_{}/mean",
                   "batch_stats/{}/bn_{}/var"):
        names.add(leaf.format(block, layer))
  return names


def backbone_from_cvrl(variables: Mapping[str, np.ndarray], spec, where: str = "checkpoint"):
  if spec.block != "bottleneck":
    raise ValueError(f"CVRL checkpoints hold a bottleneck R3D (R3D-50); the configured backbone "
                     f"has {spec.block!r} blocks: use config.model.backbone='r3d50_cvrl'")
  prefix = _backbone_prefix(variables, where)
  block_names = [f"res{stage + 2}_block{i}" for stage, depth in enumerate(spec.stage_depths)
                 for i in range(depth)]
  trees: dict = {"params": {}, "batch_stats": {}}
  unexpected, found = [], set()
  for name, value in variables.items():
    if not name.startswith(prefix) or not name.endswith(_SUFFIX):
      continue
    path = name[len(prefix):-len(_SUFFIX)]
    if not path.startswith("layer_with_weights-"):
      continue  # another object under the same prefix (the projection head, counters)
    target = _target_name(path, block_names)
    if target is None:
      unexpected.append(name)
      continue
    found.add(target)
    collection, *modules, leaf = target.split("/")
    node = trees[collection]
    for module in modules:
      node = node.setdefault(module, {})
    node[leaf] = np.asarray(value, np.float32)
  # Unused shortcut layers (identity shortcuts) have no variables, so only listed names count.
  expected = _expected_names(spec, block_names)
  missing = sorted(expected - found)
  unexpected += sorted(f"{prefix}{n} (no such corp_jax variable)" for n in found - expected)
  if missing or unexpected:
    lines = [f"{where} does not match the configured R3D ({len(block_names)} blocks, "
             f"stage depths {tuple(spec.stage_depths)}):"]
    if missing:
      lines.append(f"  missing in the checkpoint ({len(missing)}): " + ", ".join(missing[:20]))
    if unexpected:
      lines.append(f"  unexpected checkpoint variables ({len(unexpected)}): "
                   + ", ".join(sorted(unexpected)[:20]))
    raise ValueError("\n".join(lines))
  return trees["params"], trees["batch_stats"]


def load_cvrl_backbone(path: str, spec):
  """Reads a CVRL TF2 checkpoint (prefix or directory) -> (params, batch_stats)."""
  from corp_jax.data import tf_checkpoint  # pylint: disable=g-import-not-at-top
  variables = tf_checkpoint.read_tf_checkpoint(
      path, select=lambda n: n.endswith(_SUFFIX) and ".OPTIMIZER_SLOT" not in n)
  return backbone_from_cvrl(variables, spec, where=f"CVRL checkpoint {path}")
