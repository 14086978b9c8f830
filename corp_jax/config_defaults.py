"""Pretraining configurations: the defaults and the paper's presets, shared by configs/*.py.

`pretrain_config(objective, preset)` returns a locked `ml_collections.ConfigDict`:
  preset ''/None  the embedded data set, a tiny R3D, a run that is useful in minutes on CPU.
  'k400'          section 4.1 on Kinetics-400: R3D-50, 16 frames at 224², stride 2, LARS,
                  wd 1e-6, lr = batch/256, 5% warm-up + half-cosine, 800 epochs; batch 512
                  (CORP_f, SimCLR) or 64 (CORP_m, K = 4). Needs --config.data.train_pattern.
  'ssv2'          the same on Something-Something V2 with temporal stride 1.
  'long'          the embedded recipe on 4,096 training videos for 2,000 steps (10-15
                  minutes on 2 CPU cores): at this scale the order task is learned as a skill
                  rather than memorised per video (docs/FIDELITY.md, "Scale").
  'test'          a few steps of the embedded recipe at the smallest sizes, for tests.
Ablations are config values: objective (order_only, contrast_only), model.head_attention
(mixed, decoupling), data.num_clips (K), model.head_mlp_layers.
"""

from __future__ import annotations

import ml_collections

from corp_jax.train import objectives as objectives_lib

OBJECTIVES = tuple(objectives_lib.OBJECTIVES)
PRESETS = ("", "long", "k400", "ssv2", "test")


def _base(objective: str) -> ml_collections.ConfigDict:
  grouped = objectives_lib.get_objective(objective).grouped
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
  # source 'arrays': a folder of uint8 array splits (`python -m corp_jax.tools.photo_set
  # --arrays` writes DIR/arrays), read without TensorFlow.
  d.arrays_dir = ""
  # Array sources (arrays, embedded_arrays): megabytes of whole-frame resized videos (float32)
  # each process keeps, so that a video is resized once instead of on every visit; the clips
  # are the same either way. 1,024 holds about half of the 4,000-video photo set at 32 px.
  d.arrays_cache_mb = 1024
  d.tfds_name = ""
  d.tfds_data_dir = ""
  d.tfds_split = "train"
  d.num_train_videos = 0  # 0 = read from the shards' metadata when epochs are used
  d.label_key = "clip/label/index"
  # K clips per video. The demo samples K = 2 for every objective (the paper's K is "typically
  # 2~4"; the paper presets use the objective's K, 4 for CORP_m). With K = 4, Eq. 3 lets
  # the 32-40-frame demo videos put starts only 2-4 frames apart: on 4,096 embedded videos
  # for 2,000 steps (base_lr 0.2, 3 seeds) CORP_m reached order accuracy 0.68 and motion
  # top-1 23% at K = 4, and 0.80 and 30% at K = 2, batch 32 (docs/FIDELITY.md, "CORP_m").
  d.num_clips = 2
  d.clip_len = 8
  # Stride 3 (8 frames spanning 22 of the 32): the embedded motions move an object by ~1
  # crop pixel per frame, and the order task needs each clip's own direction of motion (a
  # class and its reversal show the same frames). At stride 1 the tiny backbone could not
  # learn that direction even with motion labels (tools/order_diagnostics: 52% on test after
  # 300 supervised steps, chance 50%; 70% at stride 3), so order stayed at chance.
  d.stride = 3
  d.crop_size = 32
  d.shuffle_buffer = 512
  # True: the CPU decodes + crops, colour/blur/flip run in the train step. The paper presets
  # turn it on: full CPU augmentation reaches only ~9% ('cvrl') or ~33% ('linear') of the
  # JPEG-decode bound per core (README, performance).
  d.accel_aug = False
  d.tfds_label_key = "label"
  # Section 3.2 augmentation, one draw per clip. The paper presets use CVRL's values. The
  # embedded demo turns it OFF (whole frame, no flip, no colour): with independent per-clip
  # crops, or colour jitter alone, the 0.13M-parameter backbone did not learn order within
  # the demo's budget (order accuracy 0.50 after 300-400 steps, order-only and CORP_f alike);
  # without them CORP_f's order accuracy reached 0.88 in 400 steps and its motion probe rose
  # above SimCLR's. The price: InfoNCE is easy (both clips show the same scene), so
  # the contrast top-1 says little and only the probes on held-out videos measure the
  # representation. A milder setting (aug_crop_area_min=0.5, aug_flip_prob=0.5,
  # aug_color_jitter_prob=0.8, aug_grayscale_prob=0.2) keeps contrast meaningful but left order
  # at chance; CVRL's full strength made the projection collapse onto its mean direction
  # within ~20 steps (docs/EXPERIMENTS.md). At 10,000 steps on the photo set's validation
  # draw, colour jitter 0.8 + grayscale 0.2 lowered CORP_m's motion probe (30.2 -> 18.1)
  # and SimCLR's (17.3 -> 12.3); the paper's crop (area 0.3-1) kept CORP_m's order task at
  # chance for all 10,000 steps (motion 16.0, SimCLR with it 18.3) (docs/FIDELITY.md).
  d.aug_crop_area_min = 1.0
  # Beyond the paper, a diagnostic off in every recipe: one crop window shared by a video's
  # K clips (the paper draws one per clip), so that the clips' framing matches while the
  # crop still varies across videos and visits. On the validation draw (area 0.3-1, 10,000
  # steps) CORP_m's order task then left chance after ~6,000 steps (never with per-clip
  # windows) and its motion probe reached 24.8, under the recipe's 30.2; CORP_f's order
  # reached 0.85 and its motion 37.3 +- 12.2 against SimCLR's 18.3 with the paper's crop, not
  # beyond 2 sd over three seeds, so not adopted (docs/FIDELITY.md).
  d.aug_crop_shared_across_clips = False
  d.aug_flip_prob = 0.0
  d.aug_color_jitter_prob = 0.0
  d.aug_color_strength = 0.4
  d.aug_grayscale_prob = 0.0
  d.aug_blur_prob = 0.0
  # 'cvrl': CVRL's exact colour ops (HSV saturation / hue); 'linear': jitter + grayscale as one
  # affine map of RGB per clip (corp_jax/data/color_matrix.py), ~3-4x faster on the CPU.
  d.aug_color_mode = "cvrl"
  # A shortcut control (docs/FIDELITY.md), off in every recipe: each training clip's frames
  # in a random order, so order can be read only from what the frames show, not from the
  # direction of motion inside a clip.
  d.shuffle_frames_in_clip = False
  # Order-task options beyond the paper (off here and in the paper presets; measured in
  # docs/ORDER_KNOWLEDGE.md). min_start_gap: frames between clip starts on top of Eq. 3's
  # offset (clips share no frame when >= stride * (clip_len - 1) + 1). reverse_video_prob:
  # probability that a training video is shown played backwards (order labels follow).
  d.min_start_gap = 0
  d.reverse_video_prob = 0.0

  c.model = m = ml_collections.ConfigDict()
  m.backbone = "tiny"
  m.dtype = "float32"
  m.conv_impl = "auto"
  # Speed options with per-platform 'auto' defaults, each the measured winner
  # (corp_jax/models/platform.py, docs/PERFORMANCE.md); every choice computes the same function
  # with the same parameters. conv_impl: 'native' / 'factorized' / 'im2col'. stem_space_to_depth
  # (True / False / 'auto'): the stem conv as a stride-1 conv over 2x2x2 space-to-depth blocks.
  # bn_impl: backbone BatchNorm (+ residual + ReLU), 'fused' (hand-written backward) or
  # 'autodiff'.
  m.stem_space_to_depth = "auto"
  m.bn_impl = "auto"
  m.remat = False
  m.projection_hidden = (128, 128)
  m.projection_dim = 64
  m.head_attention = "decoupling"
  m.head_num_heads = 32
  m.head_mlp_layers = 2
  m.bn_momentum = 0.9

  c.loss = ml_collections.ConfigDict()
  c.loss.temperature = 0.1
  # CORP_m: videos per group (video pairs are counted within a device, as the paper counts
  # them "within each GPU"); 0 = the whole per-device batch (32 videos in the demo on one
  # device), otherwise it must divide the per-device batch. Chosen on a validation draw of
  # the photo set (4,000 videos, 10,000 steps, 3 seeds): the whole batch gave a motion probe of
  # 30.2 +- 5.6% against 26.5 +- 3.6% for groups of 8 on 160 test videos (26.1 on 960), and
  # on the report set the same motion with order accuracy 0.90 instead of 0.79 (on 4,096
  # embedded videos groups of 8 had beaten 2 and 4); docs/FIDELITY.md, "CORP_m: one group per
  # device". The paper presets set 8.
  c.loss.group_size = 0
  # Not in the paper (off here and in the presets; docs/ORDER_KNOWLEDGE.md): every clip is
  # also run played backwards, as an extra InfoNCE negative (simclr, corp_f) or, in CORP_m's
  # groups, as a clip of another video (P1 against its forward copy).
  c.loss.reversed_negatives = False
  # Not in the paper (1.0 here and in the presets; docs/FIDELITY.md): CORP_m's factor on its
  # same-video P2/P3 terms against the P1 terms. At K clips per video the P1 pairs carry
  # K/(K-1) times the P2/P3 pairs' total weight, so K/(K-1) (2.0 at K = 2) balances them.
  c.loss.order_weight = 1.0

  c.optim = o = ml_collections.ConfigDict()
  # The embedded demo trains a few hundred steps: SGD with momentum at a small rate learns
  # there, while LARS's trust-ratio steps (made for hundreds of epochs) barely move it.
  o.name = "sgd"
  o.batch_size = 32  # videos: 64 clips at K = 2
  # lr = base_lr * batch / 256 (section 4.1). The grouped objectives (CORP_m and its
  # ablations) clip their gradient to norm 1.0 (below), so their rate is the step length
  # itself. CORP_m once used 2.0, chosen on 512 videos where its order accuracy was memorised
  # per video; on 4,096 videos (K = 2, 2,000 steps) order stayed at chance at 1.0 and 2.0 and
  # left it after ~840 steps at 0.2 and ~580 at 0.5 (docs/FIDELITY.md, "CORP_m").
  o.base_lr = 0.5 if grouped else 0.2
  o.weight_decay = 1e-6
  o.momentum = 0.9
  o.trust_coefficient = 0.001
  o.warmup_fraction = 0.05
  # CORP_m sums the cross-entropy of 4K²−2K clip pairs per video pair: its first gradients
  # are ~1e3 and diverged (non-finite at step 11) without clipping in the embedded demo.
  o.grad_clip_norm = 1.0 if grouped else 0.0

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
  # Warm start: backbone weights from a CVRL TF2 checkpoint or another corp_jax workdir, used
  # when the run has no checkpoint of its own (corp_jax/export/init_from.py). For CVRL's
  # weights use model.backbone='r3d50_cvrl' (its padding and BatchNorm epsilon).
  c.init_from = ""
  # k-NN probe (cosine, k = 20) on frozen features every knn_every steps (0 = off), logged
  # to metrics.jsonl / TensorBoard (corp_jax/evaluate/knn_monitor.py). Empty patterns: the
  # embedded data set's train / test splits.
  c.knn_every = 0
  c.knn = ml_collections.ConfigDict()
  c.knn.train_pattern = ""
  c.knn.eval_pattern = ""
  c.knn.label_key = "clip/label/index"
  c.knn.k = 20
  c.knn.num_clips = 1
  c.knn.num_crops = 1
  c.knn.batch_size = 16
  c.knn.max_videos = 0  # per split; 0 = all
  # Weights & Biases (off unless project is set; needs `pip install wandb`). mode: 'online',
  # 'offline' (sync later with `wandb sync WORKDIR/wandb`) or 'disabled'.
  c.wandb = ml_collections.ConfigDict()
  c.wandb.project = ""
  c.wandb.entity = ""
  c.wandb.name = ""
  c.wandb.mode = "online"
  return c


def _paper(c: ml_collections.ConfigDict, stride: int) -> None:
  objective = objectives_lib.get_objective(c.objective)
  grouped = objective.grouped
  c.data.num_clips = objective.default_num_clips
  c.optim.name = "lars"
  c.optim.base_lr = 1.0
  c.optim.grad_clip_norm = 0.0
  c.data.aug_crop_area_min = 0.3
  c.data.aug_flip_prob = 0.5
  c.data.aug_color_jitter_prob = 0.8
  c.data.aug_color_strength = 0.8
  c.data.aug_grayscale_prob = 0.2
  c.data.aug_blur_prob = 0.5
  c.data.source = "tfrecord"
  c.data.accel_aug = True
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
  elif preset == "long":
    c.data.embedded_num_train = 4096
    c.train.num_steps = 2000
  elif preset == "test":
    c.optim.batch_size = 8
    c.loss.group_size = 2  # the tests split 8 videos over up to 4 devices
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
