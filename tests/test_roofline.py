"""benchmarks/roofline.py: its conv table against the model's jaxpr, its arithmetic by hand."""

import math

import jax
import jax.numpy as jnp
import pytest

from benchmarks import roofline
from benchmarks.lib import flop_count
from corp_jax.models import resnet3d
from corp_jax.models.resnet3d import ResNet3D


def _jaxpr_convs(variant, clip_len, crop):
  """(in shape, out shape, kernel) per clip of every conv in the model's forward jaxpr."""
  model = ResNet3D(variant=variant, conv_impl="native")
  clips = jax.ShapeDtypeStruct((2, clip_len, crop, crop, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), clips)
  forward = lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
  convs = []
  for eqn in jax.make_jaxpr(forward)(variables, clips).jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      lhs, rhs, out = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape, eqn.outvars[0].aval.shape
      convs.append((tuple(lhs[1:]), tuple(out[1:]), tuple(rhs[:3])))
  return model, variables, clips, convs


@pytest.mark.parametrize("variant,clip_len,crop", [("r3d50", 16, 224), ("tiny", 8, 32),
                                                   ("r3d18", 7, 33)])
def test_conv_table_matches_the_models_jaxpr(variant, clip_len, crop):
  model, variables, clips, convs = _jaxpr_convs(variant, clip_len, crop)
  backbone = roofline.backbone_layers(variant, clip_len, crop)
  assert [(c.in_shape, c.out_shape, c.kernel) for c in backbone.convs] == convs
  # Model FLOPs (3 x forward) agree with the jaxpr count that train_step.py's MFU uses.
  bound = roofline.step_bound(backbone, clips=2, act_bytes=2, peak_tflops=1.0,
                              bandwidth_tb_s=1.0)
  assert bound.model_flops == pytest.approx(
      flop_count.model_train_flops(model, variables, clips), rel=1e-12)
  assert len(backbone.residuals) == sum(resnet3d.get_spec(variant).stage_depths)


def test_r3d50_reference_figures():
  backbone = roofline.backbone_layers("r3d50", 16, 224)
  forward_gflop = sum(2 * c.macs for c in backbone.convs) / 1e9
  assert forward_gflop == pytest.approx(91.0, abs=0.1)  # docs/DESIGN_NOTES.md: about 91 GFLOPs forward
  params = sum(c.weight_elems for c in backbone.convs)
  assert 31.0e6 < params < 31.7e6  # conv weights of the 31.7M (BN parameters make up the rest)


def test_one_conv_by_hand():
  conv = roofline.ConvLayer("c", (2, 4, 4, 8), (2, 4, 4, 16), (1, 1, 1))
  backbone = roofline.Backbone(convs=(conv,), residuals=(), pool_in_elems=0)
  kernels = roofline.conv_kernels(backbone, clips=3, act_bytes=2)
  assert [k.name for k in kernels] == ["c/fwd", "c/dgrad", "c/wgrad"]
  macs = 2 * 4 * 4 * 16 * 8  # per clip
  activations = 2 * 3 * (2 * 4 * 4 * 8 + 2 * 4 * 4 * 16)
  assert kernels[0].flops == 2 * macs * 3
  assert kernels[0].bytes == activations + 2 * 8 * 16
  assert kernels[2].bytes == activations + 4 * 8 * 16
  # Roofline: bandwidth-bound at 1 byte/s per flop/s, compute-bound when bandwidth is ample.
  assert kernels[0].seconds(1.0, 1.0) == max(kernels[0].flops, kernels[0].bytes)
  assert kernels[0].seconds(1.0, 1e12) == kernels[0].flops
  bound = roofline.step_bound(backbone, clips=3, act_bytes=2, peak_tflops=1e-12,
                              bandwidth_tb_s=1e-12)
  assert bound.conv_s == sum(max(k.flops, k.bytes) for k in kernels)
  assert bound.elementwise_s == roofline.BN_PASSES * 2 * 3 * conv.out_elems
  assert bound.xla_s == bound.conv_s + bound.elementwise_s


def test_stem_has_no_data_gradient_and_pool_traffic():
  backbone = roofline.backbone_layers("tiny", 8, 32)
  names = [k.name for k in roofline.conv_kernels(backbone, 1, 2)]
  assert "stem_conv/dgrad" not in names and "stem_conv/fwd" in names
  stem = backbone.convs[0]
  assert backbone.pool_in_elems == stem.out_elems == 4 * 16 * 16 * 8
  traffic = roofline.elementwise_bytes(backbone, clips=1, act_bytes=1)
  assert traffic["pool"] == 2.5 * stem.out_elems
  assert traffic["residual"] == sum(r.out_elems + 3 * r.in_elems for r in backbone.residuals)
  # res2's first tiny block keeps 8 channels at stride 1: identity shortcut, no projection.
  assert not any(c.name == "res2_block0/conv_proj" for c in backbone.convs)
  assert any(c.name == "res3_block0/conv_proj" for c in backbone.convs)


def test_main_prints_and_rejects_bad_input(capsys):
  results = roofline.main(["--device", "H200", "--measured", "jax=59.9", "--per_stage"])
  text = capsys.readouterr().out
  assert "measured: jax" in text and "res5" in text
  bound = results["H200"]
  assert bound["compute_s"] < bound["conv_s"] < bound["xla_s"]
  with pytest.raises(SystemExit, match="label=milliseconds"):
    roofline.main(["--device", "H200", "--measured", "jax=fast"])
  with pytest.raises(SystemExit, match="one device"):
    roofline.main(["--measured", "jax=59.9"])
  with pytest.raises(SystemExit, match="not one of"):
    roofline.main(["--device", "A100"])
  assert math.isfinite(roofline.parse_measured("a=b=1.5")[0][1])
