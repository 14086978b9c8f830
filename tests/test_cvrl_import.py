"""Importing CVRL's TF2 checkpoints (config.init_from): the official variable names, a
reduced-width checkpoint written by TensorFlow, warm start and the evaluation jobs' backbone."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corp_jax.export import cvrl
from corp_jax.export import init_from
from corp_jax.models import VARIANTS, ResNet3D
from corp_jax.models import resnet3d
from corp_jax.train import checkpoint as ckpt_lib

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "cvrl_r3d50_variables.json")
# Same depths and naming as R3D-50, narrow: a TF checkpoint of it is small and quick.
NARROW = dataclasses.replace(VARIANTS["r3d50_cvrl"], stage_widths=(2, 2, 4, 4), stem_width=4)


def _official_names() -> dict:
  with open(FIXTURE) as f:
    return json.load(f)["variables"]


def _abstract(spec):
  module = ResNet3D(spec, conv_impl="native")
  abstract = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x, train=False),
                            jnp.zeros((1, 4, 32, 32, 3)))
  return {"params": abstract["params"], "batch_stats": abstract["batch_stats"]}


def test_official_r3d50_names_map_onto_every_backbone_variable():
  names = _official_names()
  rng = np.random.RandomState(0)
  variables = {n: np.asarray(rng.rand(*shape), np.float32) for n, shape in names.items()}
  params, stats = cvrl.backbone_from_cvrl(variables, VARIANTS["r3d50_cvrl"])
  # Shapes agree with the JAX R3D-50 (raises on any difference) and every leaf is filled.
  ckpt_lib.check_compatible({"params": params, "batch_stats": stats},
                            _abstract(VARIANTS["r3d50_cvrl"]), "fixture")
  suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
  np.testing.assert_array_equal(
      params["res2_block0"]["conv_proj"]["kernel"],
      variables["backbone/layer_with_weights-2/_shortcut_conv/kernel" + suffix])
  np.testing.assert_array_equal(
      stats["res5_block2"]["bn_b"]["var"],
      variables["backbone/layer_with_weights-17/_norm2/moving_variance" + suffix])
  np.testing.assert_array_equal(params["stem_bn"]["scale"],
                                variables["backbone/layer_with_weights-1/gamma" + suffix])
  # The VideoSSLModel path of the same backbone is found when 'backbone/' is absent.
  inner = {n.replace("backbone/", "model/layer_with_weights-0/", 1): v
           for n, v in variables.items() if n.startswith("backbone/")}
  params2, _ = cvrl.backbone_from_cvrl(inner, VARIANTS["r3d50_cvrl"])
  np.testing.assert_array_equal(params2["res4_block3"]["conv_a"]["kernel"],
                                params["res4_block3"]["conv_a"]["kernel"])


def test_missing_and_unexpected_variables_are_listed_by_name():
  variables = {n: np.zeros(s, np.float32) for n, s in _official_names().items()}
  suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
  del variables["backbone/layer_with_weights-5/_norm3/gamma" + suffix]
  variables["backbone/layer_with_weights-9/_self_gating/kernel" + suffix] = np.zeros((1,))
  with pytest.raises(ValueError) as error:
    cvrl.backbone_from_cvrl(variables, VARIANTS["r3d50_cvrl"], where="ckpt-7")
  message = str(error.value)
  assert "ckpt-7" in message
  assert "params/res3_block0/bn_c/scale" in message  # block 3 of 16 = res3 block 0
  assert "layer_with_weights-9/_self_gating/kernel" in message
  with pytest.raises(ValueError, match="no R3D stem kernel"):
    cvrl.backbone_from_cvrl({"foo/kernel" + suffix: np.zeros((3, 3))}, VARIANTS["r3d50_cvrl"])


def _write_tf_checkpoint(directory: str, spec) -> tuple[str, dict]:
  """A TF2 object-based checkpoint with the official names, at the narrow widths."""
  tf = pytest.importorskip("tensorflow")
  flat_shapes = {}
  for collection, tree in _abstract(spec).items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      flat_shapes[collection + "/" + "/".join(p.key for p in path)] = leaf.shape
  blocks = [f"res{s + 2}_block{i}" for s, d in enumerate(spec.stage_depths) for i in range(d)]
  root, values, rng = tf.Module(), {}, np.random.RandomState(3)
  suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
  for name in _official_names():
    if not name.startswith("backbone/"):
      continue
    path = name[len("backbone/"):-len(suffix)]
    target = cvrl._target_name(path, blocks)  # pylint: disable=protected-access
    node = root
    for part in ["backbone"] + path.split("/")[:-1]:
      if not hasattr(node, part):
        setattr(node, part, tf.Module())
      node = getattr(node, part)
    value = rng.uniform(0.5, 1.5, flat_shapes[target]).astype(np.float32)
    setattr(node, path.split("/")[-1], tf.Variable(value))
    values[target] = value
  prefix = tf.train.Checkpoint(backbone=root.backbone).save(os.path.join(directory, "ckpt"))
  return prefix, values


def test_tf_checkpoint_imports_for_warm_start_and_evaluation(tmp_path, monkeypatch):
  monkeypatch.setitem(resnet3d.VARIANTS, "r3d50_narrow", NARROW)
  prefix, values = _write_tf_checkpoint(str(tmp_path), NARROW)
  for path in (prefix, str(tmp_path)):  # a prefix, or the directory of its 'checkpoint' file
    params, stats, description = init_from.load_backbone(path, "r3d50_narrow")
    assert "CVRL checkpoint" in description
    np.testing.assert_array_equal(params["res3_block1"]["conv_b"]["kernel"],
                                  values["params/res3_block1/conv_b/kernel"])
    np.testing.assert_array_equal(stats["stem_bn"]["mean"], values["batch_stats/stem_bn/mean"])
  # The wrong backbone is a shape error naming variables, not a crash.
  with pytest.raises(ValueError, match="shape mismatches"):
    init_from.load_backbone(prefix, "r3d50_cvrl")
  with pytest.raises(FileNotFoundError, match="config.init_from"):
    init_from.load_backbone(str(tmp_path / "nothing"), "r3d50_narrow")

  # Evaluation jobs: job.restore gives a frozen backbone with CVRL's clip geometry.
  from corp_jax.evaluate import job as job_lib  # pylint: disable=g-import-not-at-top
  from tests.test_eval_e2e import _eval_config  # pylint: disable=g-import-not-at-top
  config = _eval_config("linear_eval", init_from=prefix, init_from_backbone="r3d50_narrow")
  frozen = job_lib.restore(config)
  assert frozen.pretrain_config.data.to_dict() == {"clip_len": 16, "stride": 2, "crop_size": 224}
  assert frozen.feature_dim == 16
  np.testing.assert_array_equal(frozen.variables["params"]["res5_block2"]["conv_c"]["kernel"],
                                values["params/res5_block2/conv_c/kernel"])
  both = _eval_config("linear_eval", init_from=prefix, pretrain_workdir=str(tmp_path))
  with pytest.raises(ValueError, match="not both"):
    job_lib.restore(both)


def test_warm_start_replaces_only_the_backbone(tmp_path):
  """init_from = another corp_jax workdir (its checkpoint written directly: no training)."""
  # pylint: disable=g-import-not-at-top
  from corp_jax.train import mesh as mesh_lib, model as model_lib
  from corp_jax.train import optim as optim_lib, state as state_lib
  from tests.train_helpers import tiny_config
  config = tiny_config("simclr", num_devices=1)
  mesh = mesh_lib.create_mesh(1)
  model = model_lib.model_from_config(config.model, 0)
  tx, _ = optim_lib.make_optimizer(config.optim, 8, 1)
  make_state = lambda seed: state_lib.create_train_state(
      model, tx, jax.random.PRNGKey(seed), (4, 16, 16, 3), mesh)
  source = str(tmp_path / "source")
  manager = ckpt_lib.make_manager(source, async_save=False)
  ckpt_lib.save(manager, 3, make_state(1).as_dict(), force=True)
  manager.close()
  want, _, _ = ckpt_lib.restore_backbone(source)
  state = make_state(5)
  started = init_from.warm_start(state, source, config.model, mesh)
  assert not np.array_equal(np.asarray(state.params["backbone"]["stem_conv"]["kernel"]),
                            want["stem_conv"]["kernel"])
  got = jax.tree_util.tree_leaves(started.params["backbone"])
  assert all(np.array_equal(np.asarray(g), w) for g, w in zip(got, jax.tree_util.tree_leaves(want)))
  for a, b in zip(jax.tree_util.tree_leaves(started.params["projection"]),
                  jax.tree_util.tree_leaves(state.params["projection"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
