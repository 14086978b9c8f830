"""Pretraining configurations: the defaults and the paper's presets, shared by configs/*.py.

`pretrain_config(objective, preset)` returns a locked `ml_collections.ConfigDict`:
  preset ''/None  the embedded data set, a tiny R3D, a run that is useful in minutes on CPU.
  'k400'          section 4.1 on Kinetics-400: R3D-50, 16 frames at 224², stride 2, LARS,
                  wd 1e-6, lr = batch/256, 5% warm-up + half-cosine, 800 epochs; batch 512
                  (CORP_f, SimCLR) or 64 (CORP_m, K = 4). Needs --config.data.train_pattern.
  'ssv2'          the same on Something-Something V2 with temporal stride 1.
  'test'          a few steps of the embedded recipe at the smallest sizes, for tests.
Ablations are config values: objective (order_only, contrast_only), model.head_attention
(mixed, decoupling), data.num_clips (K), model.head_mlp_layers.
"""

from __future__ import annotations

import ml_collections

OBJECTIVES = ("corp_f", "corp_m", "simclr", "order_only", "contrast_only")
PRESETS = ("", "k400", "ssv2", "test")


def _base(objective: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.objective = objective
  c.seed = 0

  c.data = d = ml_collections.ConfigDict()
  d.source = "embedded"
  d.cache_dir = ""  # '' = $CORP_JAX_CACHE or ~/.cache/corp_jax
  # Size of the embedded procedural data set (built on first use, cached per size).
  d.embedded_num_train = 512
  d.embedded_num_test = 128
  d.embedded_frame_size = 64
  d.embedded_num_frames = 32
  d.train_pattern = ""
  d.tfds_name = ""
  d.tfds_data_dir = ""
  d.tfds_split = "train"
  d.num_train_videos = 0  # 0 = read from the shards' metadata when epochs are used
  d.label_key = "clip/label/index"
  d.num_clips = 4 if objective in ("corp_m", "order_only", "contrast_only") else 2
  d.clip_len = 8
  d.stride = 1
  d.crop_size = 32
  d.shuffle_buffer = 512
  d.accel_aug = False  # True: CPU decodes + crops, colour/blur/flip run in the train step
  d.tfds_label_key = "label"
  # Section 3.2 augmentation, one draw per clip. The embedded demo uses a milder version
  # than CVRL's (colour strength 0.4, no blur, crops of at least half the frame): on 64-pixel
  # synthetic videos and a 0.13M-parameter backbone, CVRL's full strength made the InfoNCE
  # loss start above chance and the projection collapse onto its mean direction within ~20
  # steps (all cosine similarities -> 1). The paper presets restore CVRL's values.
  d.aug_crop_area_min = 0.5
  d.aug_flip_prob = 0.5
  d.aug_color_jitter_prob = 0.8
  d.aug_color_strength = 0.4
  d.aug_grayscale_prob = 0.2
  d.aug_blur_prob = 0.0

  c.model = m = ml_collections.ConfigDict()
  m.backbone = "tiny"
  m.dtype = "float32"
  m.conv_impl = "auto"
  m.remat = False
  m.projection_hidden = (128, 128)
  m.projection_dim = 64
  m.head_attention = "decoupling"
  m.head_num_heads = 32
  m.head_mlp_layers = 2
  # Append a constant coordinate to the head's input (decoupling attention only): an
  # experiment for the slow start of the order task, off by default (DESIGN.md).
  m.head_input_constant = False
  m.bn_momentum = 0.9

  c.loss = ml_collections.ConfigDict()
  c.loss.temperature = 0.1
  c.loss.group_size = 2  # CORP_m: videos per group (pairs counted within a device)

  c.optim = o = ml_collections.ConfigDict()
  # The embedded demo trains a few hundred steps: SGD with momentum at a small rate learns
  # there, while LARS's trust-ratio steps (made for hundreds of epochs) barely move it.
  o.name = "sgd"
  o.batch_size = 32 if d.num_clips == 2 else 16
  o.base_lr = 0.2  # lr = base_lr * batch / 256 (section 4.1)
  o.weight_decay = 1e-6
  o.momentum = 0.9
  o.trust_coefficient = 0.001
  o.warmup_fraction = 0.05
  # CORP_m sums the cross-entropy of 4K²−2K clip pairs per video pair: its first gradients
  # are ~1e3 and diverged (non-finite at step 11) without clipping in the embedded demo.
  o.grad_clip_norm = 1.0 if objective in ("corp_m", "order_only", "contrast_only") else 0.0

  c.train = t = ml_collections.ConfigDict()
  t.num_steps = 800
  t.num_epochs = 0.0  # > 0 overrides num_steps: epochs × videos / batch
  t.log_every = 20
  t.checkpoint_every = 100
  t.keep_checkpoints = 3
  t.async_checkpoints = True
  t.num_devices = 0  # 0 = all devices

  # The embedded demo ends with a cached-feature linear evaluation on both embedded labels.
  c.eval_after_pretrain = True
  return c


def _paper(c: ml_collections.ConfigDict, stride: int) -> None:
  grouped = c.objective in ("corp_m", "order_only", "contrast_only")
  c.optim.name = "lars"
  c.optim.base_lr = 1.0
  c.optim.grad_clip_norm = 0.0
  c.data.aug_crop_area_min = 0.3
  c.data.aug_color_strength = 0.8
  c.data.aug_blur_prob = 0.5
  c.data.source = "tfrecord"
  c.data.clip_len = 16
  c.data.stride = stride
  c.data.crop_size = 224
  c.data.shuffle_buffer = 4096
  c.model.backbone = "r3d50"
  c.model.dtype = "bfloat16"
  c.model.projection_hidden = (2048, 2048, 2048)
  c.model.projection_dim = 128
  c.model.head_num_heads = 128
  c.optim.batch_size = 64 if grouped else 512
  c.loss.group_size = 8
  c.train.num_epochs = 800.0
  c.train.log_every = 100
  c.train.checkpoint_every = 2000
  c.eval_after_pretrain = False


def pretrain_config(objective: str, preset: str | None = None) -> ml_collections.ConfigDict:
  if objective not in OBJECTIVES:
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
  preset = preset or ""
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; choose one of {[p for p in PRESETS if p]} "
                     "(or none for the embedded demo)")
  c = _base(objective)
  if preset == "k400":
    _paper(c, stride=2)
  elif preset == "ssv2":
    _paper(c, stride=1)
  elif preset == "test":
    c.optim.batch_size = 8
    c.data.clip_len = 4
    c.data.crop_size = 16
    c.data.shuffle_buffer = 16
    c.model.conv_impl = "native"  # compiles faster than 'factorized' at these sizes
    c.model.projection_hidden = (32,)
    c.model.projection_dim = 16
    c.model.head_num_heads = 8
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.checkpoint_every = 3
    c.eval_after_pretrain = False
  c.lock()
  return c
