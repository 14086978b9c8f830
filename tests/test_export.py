"""Export to PyTorch: a pretrained `:test` run and a randomly filled R3D-50, JAX vs PyTorch
features (float32, CPU, 1e-4 relative), the file format and the error messages."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed; the export tests need it")

from corp_jax import export  # pylint: disable=g-import-not-at-top
from corp_jax.export import __main__ as export_cli  # pylint: disable=g-import-not-at-top
from corp_jax.export import convert  # pylint: disable=g-import-not-at-top
from corp_jax.export import safetensors_io  # pylint: disable=g-import-not-at-top
from corp_jax.export import torch_r3d  # pylint: disable=g-import-not-at-top
from corp_jax.evaluate import features as features_lib  # pylint: disable=g-import-not-at-top
from corp_jax.models import VARIANTS, ResNet3D, ProjectionMLP  # pylint: disable=g-import-not-at-top
from corp_jax.train import loop  # pylint: disable=g-import-not-at-top
from tests.train_helpers import tiny_config  # pylint: disable=g-import-not-at-top

RTOL = 1e-4


def _rel(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def _torch_clips(clips_nthwc: np.ndarray):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(clips_nthwc, (0, 4, 1, 2, 3))))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  config = tiny_config("corp_f", steps=2, num_devices=1, train__checkpoint_every=2)
  loop.pretrain(config, workdir)
  return workdir, config


def test_exported_test_run_matches_the_jax_backbone_and_head(pretrained, tmp_path):
  workdir, config = pretrained
  out = str(tmp_path / "export")
  assert export_cli.main([f"--pretrain_workdir={workdir}", f"--out={out}"]) == 0
  saved = export.read_config(out)
  assert saved["source"]["step"] == 2 and saved["variant"] == "tiny"
  assert sorted(os.listdir(out)) == ["backbone.safetensors", "config.json",
                                     "projection.safetensors"]

  frozen = features_lib.restore_frozen_backbone(workdir)
  clips = np.random.RandomState(0).rand(3, config.data.clip_len, 20, 20, 3).astype(np.float32)
  want = np.asarray(frozen.module.apply(frozen.variables, clips, train=False))
  model = export.load_torch_backbone(out)
  assert not model.training
  with torch.no_grad():
    got = model(_torch_clips(clips)).numpy()
  assert got.shape == want.shape == (3, saved["feature_dim"])
  assert _rel(got, want) < RTOL

  # The projection head, applied to the same features.
  from corp_jax.export import writer  # pylint: disable=g-import-not-at-top
  params, stats = writer._restore_projection(workdir, 2)  # pylint: disable=protected-access
  head = ProjectionMLP(hidden_dims=tuple(config.model.projection_hidden),
                       out_dim=config.model.projection_dim)
  z_want = head.apply({"params": params, "batch_stats": stats}, want, train=False)
  with torch.no_grad():
    z_got = export.load_torch_projection(out)(torch.from_numpy(np.array(want))).numpy()
  assert _rel(z_got, z_want) < RTOL

  # A PyTorch-only user: loading needs neither JAX nor TensorFlow.
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  np.save(str(tmp_path / "clips.npy"), np.transpose(clips, (0, 4, 1, 2, 3)))
  script = ("import sys, numpy, torch\n"
            "for m in ('jax', 'flax', 'tensorflow'): sys.modules[m] = None\n"
            "from corp_jax.export import load_torch_backbone\n"
            f"x = torch.from_numpy(numpy.load({str(tmp_path / 'clips.npy')!r}))\n"
            f"y = load_torch_backbone({out!r})(x).detach().numpy()\n"
            f"numpy.save({str(tmp_path / 'out.npy')!r}, y)")
  subprocess.run([sys.executable, "-c", script], check=True, cwd=os.path.dirname(
      os.path.dirname(os.path.abspath(__file__))))
  assert _rel(np.load(str(tmp_path / "out.npy")), want) < RTOL


def _random_variables(abstract, seed=0):
  """Random values of the abstract shapes; BN statistics positive, scales near 1."""
  rng = np.random.RandomState(seed)
  flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  leaves = []
  for path, leaf in flat:
    name = jax.tree_util.keystr(path)
    if leaf.ndim == 1:
      value = (rng.uniform(0.5, 1.5, leaf.shape) if ("var" in name or "scale" in name)
               else rng.normal(0, 0.1, leaf.shape))
    else:  # He-normal over fan-in keeps the activations O(1) through 16 blocks
      value = rng.normal(0, np.sqrt(2.0 / np.prod(leaf.shape[:-1])), leaf.shape)
    leaves.append(value.astype(np.float32))
  return jax.tree_util.tree_unflatten(treedef, leaves)


def test_r3d50_layout_with_random_weights(tmp_path):
  """Every R3D-50 variable lands where PyTorch uses it: random weights, no training."""
  module = ResNet3D("r3d50", conv_impl="native")
  clips = np.random.RandomState(1).rand(1, 4, 32, 32, 3).astype(np.float32)
  abstract = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x, train=False),
                            jnp.asarray(clips))
  variables = _random_variables(abstract)
  from corp_jax.export import writer  # pylint: disable=g-import-not-at-top
  arch = writer.architecture(type("M", (), {"backbone": "r3d50"}))
  writer.write_export(str(tmp_path), arch, variables["params"], variables["batch_stats"])
  model = export.load_torch_backbone(str(tmp_path))
  assert sum(p.numel() for p in model.parameters()) == pytest.approx(31.7e6, rel=0.01)
  want = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, clips))
  with torch.no_grad():
    got = model(_torch_clips(clips)).numpy()
  assert want.shape == got.shape == (1, 2048)
  assert _rel(got, want) < RTOL


def test_torch_variants_equal_the_jax_variants():
  for name, spec in VARIANTS.items():
    assert torch_r3d.resolve_arch(name) == torch_r3d.resolve_arch(dataclasses.asdict(spec)), name


def test_safetensors_files_load_with_the_reference_package(tmp_path):
  reference = pytest.importorskip("safetensors.numpy")
  tensors = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
             "a.num_batches_tracked": np.zeros((), np.int64), "b": np.ones((1, 2, 1), np.float32)}
  path = str(tmp_path / "t.safetensors")
  safetensors_io.save_file(tensors, path, metadata={"k": "v"})
  loaded = reference.load_file(path)
  assert sorted(loaded) == sorted(tensors)
  for k, v in tensors.items():
    np.testing.assert_array_equal(loaded[k], v)
    assert loaded[k].dtype == v.dtype
  ours = safetensors_io.load_file(path)
  assert all(np.array_equal(ours[k], v) for k, v in tensors.items())
  assert safetensors_io.read_metadata(path) == {"k": "v"}


def test_unknown_variables_and_bad_directories_are_named(tmp_path):
  with pytest.raises(ValueError, match="res2_block0/extra_conv"):
    convert.backbone_to_torch({"res2_block0": {"extra_conv": {"kernel": np.zeros((1,) * 5)}}}, {})
  with pytest.raises(FileNotFoundError, match="not a corp_jax export"):
    export.load_torch_backbone(str(tmp_path))
  (tmp_path / "w").mkdir()
  assert export_cli.main([f"--pretrain_workdir={tmp_path / 'w'}", f"--out={tmp_path / 'o'}"]) == 2


@pytest.mark.parametrize("padding", ["fixed", "same"])
def test_torch_r3d_padding_modes_and_input_normalisation(padding):
  """TF-style 'same' padding (odd and even sizes) and the in-module input normalisation."""
  spec = dataclasses.replace(VARIANTS["tiny"], padding=padding, bn_epsilon=1e-3)
  module = ResNet3D(spec, conv_impl="native")
  clips = np.random.RandomState(2).rand(2, 5, 17, 18, 3).astype(np.float32)
  variables = _random_variables(jax.eval_shape(
      lambda x: module.init(jax.random.PRNGKey(0), x, train=False), jnp.asarray(clips)))
  want = np.asarray(module.apply(variables, clips, train=False))
  state = {k: torch.from_numpy(v) for k, v in
           convert.backbone_to_torch(variables["params"], variables["batch_stats"]).items()}
  arch = dataclasses.asdict(spec)
  net = torch_r3d.R3D(arch)
  net.load_state_dict(state)
  with torch.no_grad():
    assert _rel(net.eval()(_torch_clips(clips)), want) < RTOL
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    normalising = torch_r3d.R3D({**arch, "input_mean": mean, "input_std": std})
    normalising.load_state_dict(state)
    scaled = (clips - np.float32(mean)) / np.float32(std)
    np.testing.assert_allclose(normalising.eval()(_torch_clips(clips)).numpy(),
                               net(_torch_clips(scaled.astype(np.float32))).numpy(), rtol=1e-5)
