"""Checks the CVRL importer against the TF2 Model Garden's own Keras R3D-50 (a one-off tool).

  # 1. In a separate virtual environment with the Model Garden (not a corp_jax dependency):
  #    python -m venv --system-site-packages /tmp/mg && /tmp/mg/bin/pip install --no-deps \
  #        tf-models-official && /tmp/mg/bin/pip install tf-keras gin-config pycocotools \
  #        opencv-python-headless sentencepiece tensorflow-hub tensorflow-text immutabledict \
  #        seqeval tensorflow-model-optimization
  TF_USE_LEGACY_KERAS=1 /tmp/mg/bin/python -m corp_jax.tools.cvrl_model_garden_check \
      write --out=/tmp/mg_ref
  # 2. In corp_jax's environment:
  python -m corp_jax.tools.cvrl_model_garden_check compare --out=/tmp/mg_ref

`write` builds CVRL's model (official/projects/video_ssl: VideoSSLModel around ResNet3D-50 with
temporal kernels 1/1/3/3, stem 5x7x7 temporal stride 2, pool temporal stride 1, the
video_ssl config's BatchNorm epsilon), fills the backbone with random weights and non-trivial
BatchNorm statistics, saves tf.train.Checkpoint(model=..., backbone=...) and one with the
model alone, plus clips [2, 8, 64, 64, 3] and the Keras backbone's pooled features
(training=False). `compare` imports both checkpoints (corp_jax.export.cvrl) into 'r3d50_cvrl'
and 'r3d50' and prints the max relative feature difference and cosine similarity.
Measured (tf-models-official 2.20, tf-keras 2.21, CPU): r3d50_cvrl 7.2e-7 (cosine 1.0),
r3d50 0.167 (cosine 0.987: 'fixed' padding and epsilon 1e-5 compute another function).
"""

from __future__ import annotations

import argparse
import json
import os


def write(out: str) -> None:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from official.projects.video_ssl.configs import video_ssl  # pylint: disable=g-import-not-at-top
  from official.projects.video_ssl.modeling import video_ssl_model  # pylint: disable=g-import-not-at-top
  from official.vision.modeling.backbones import resnet_3d  # pylint: disable=g-import-not-at-top
  mc = video_ssl.VideoSSLModel()
  backbone = resnet_3d.ResNet3D(
      model_id=50, temporal_strides=[1, 1, 1, 1],
      temporal_kernel_sizes=[(1,) * 3, (1,) * 4, (3,) * 6, (3,) * 3],
      stem_conv_temporal_kernel_size=5, stem_conv_temporal_stride=2, stem_pool_temporal_stride=1,
      norm_epsilon=mc.norm_activation.norm_epsilon,
      norm_momentum=mc.norm_activation.norm_momentum,
      input_specs=tf.keras.layers.InputSpec(shape=[None, None, None, None, 3]))
  model = video_ssl_model.VideoSSLModel(
      backbone=backbone, normalize_feature=mc.normalize_feature, hidden_dim=mc.hidden_dim,
      hidden_layer_num=mc.hidden_layer_num, hidden_norm_args=mc.hidden_norm_activation,
      projection_dim=mc.projection_dim)
  rng = np.random.RandomState(0)
  for v in backbone.weights:
    shape = v.shape.as_list()
    if len(shape) == 1:
      positive = "moving_variance" in v.name or "gamma" in v.name
      v.assign((rng.uniform(0.5, 1.5, shape) if positive else rng.normal(0, 0.1, shape))
               .astype(np.float32))
    else:
      v.assign(rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape).astype(np.float32))
  clips = rng.rand(2, 8, 64, 64, 3).astype(np.float32)
  features = tf.reduce_mean(backbone(clips, training=False)["5"], axis=[1, 2, 3]).numpy()
  os.makedirs(out, exist_ok=True)
  both = tf.train.Checkpoint(model=model, **model.checkpoint_items).save(out + "/both/ckpt")
  alone = tf.train.Checkpoint(model=model).save(out + "/model_only/ckpt")
  np.savez(out + "/io.npz", clips=clips, features=features)
  with open(out + "/meta.json", "w") as f:
    json.dump({"checkpoints": [both, alone],
               "variables": dict(tf.train.list_variables(both))}, f, indent=1)
  print(f"wrote {out}: checkpoints {both}, {alone}; features {features.shape}")


def compare(out: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from corp_jax.export import init_from  # pylint: disable=g-import-not-at-top
  from corp_jax.models import ResNet3D  # pylint: disable=g-import-not-at-top
  io = np.load(out + "/io.npz")
  with open(out + "/meta.json") as f:
    checkpoints = json.load(f)["checkpoints"]
  want = io["features"]
  for path in checkpoints:
    for variant in ("r3d50_cvrl", "r3d50"):
      params, stats, _ = init_from.load_backbone(path, variant)
      module = ResNet3D(variant, conv_impl="native")
      got = np.asarray(jax.jit(lambda v, x, m=module: m.apply(v, x, train=False))(
          {"params": params, "batch_stats": stats}, io["clips"]))
      cosine = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
      print(f"{path} {variant:10s} max_rel {np.abs(got - want).max() / np.abs(want).max():.2e}"
            f"  cosine {np.round(cosine, 6).tolist()}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("command", choices=("write", "compare"))
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  (write if args.command == "write" else compare)(args.out)


if __name__ == "__main__":
  main()
