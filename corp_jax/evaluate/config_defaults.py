"""Evaluation configurations: the defaults and presets of the linear_eval and finetune jobs,
shared by configs/linear_eval.py and configs/finetune.py (as corp_jax/config_defaults.py is
for pretraining).

`linear_eval_config(preset)` and `finetune_config(preset)` (both `eval_config(job, preset)`)
return a locked `ml_collections.ConfigDict`:
  preset ''/None  the embedded data set, cached features (Sec. 4.1's protocol at demo size).
  'k400', 'ssv2', 'ucf101', 'hmdb51'
                  Sec. 4.1 on data_prep shards of that data set (ucf101, hmdb51: transfer):
                  32-frame clips, 10 x 3 test views, batch 1024, 100 epochs.
  'test'          the smallest sizes of the embedded recipe, for tests.
The model comes from the pretraining workdir's config.json; data settings of 0 mean "as in
pretraining" (clip stride, crop size; the embedded preset also takes the clip length).
Fine-tuning trains every layer (BatchNorm in training mode) on a class-balanced
`subset_fraction` of the training videos (0.1, or 1.0 for the transfer presets) with initial
learning rate 0.2; otherwise it is configured as linear evaluation.
"""

from __future__ import annotations

import ml_collections

JOBS = ("linear_eval", "finetune")
PRESETS = ("", "k400", "ssv2", "ucf101", "hmdb51", "test")
_PAPER_CLASSES = {"k400": 400, "ssv2": 174, "ucf101": 101, "hmdb51": 51}


def _base(job: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = job
  c.pretrain_workdir = ""  # required: the pretraining run's workdir
  c.pretrain_step = 0  # 0 = latest checkpoint
  # Instead of pretrain_workdir: a CVRL TF2 checkpoint (or a corp_jax workdir), loaded into
  # init_from_backbone; clip settings of 0 then mean CVRL's 16 frames, stride 2, 224 pixels.
  c.init_from = ""
  c.init_from_backbone = "r3d50_cvrl"
  c.seed = 0
  c.label_key = "clip/label/index"  # embedded: 'label/appearance/index', 'label/motion/index'
  c.cached_features = True  # extract features once, train the classifier on them
  c.subset_fraction = 1.0  # class-balanced fraction of the training videos
  c.subset_seed = 0
  c.log_every = 50

  c.data = d = ml_collections.ConfigDict()
  d.source = "embedded"  # 'embedded' or 'tfrecord' (data_prep shards)
  d.cache_dir = ""  # embedded: '' = the pretraining run's cache dir (or the default)
  d.embedded_seed = 0
  d.embedded_num_train = 0  # embedded sizes: 0 = as in pretraining (config.data.embedded_*)
  d.embedded_num_test = 0
  d.embedded_frame_size = 0
  d.embedded_num_frames = 0
  d.train_pattern = ""  # tfrecord: training shards, e.g. '/data/ucf101/ucf101_train-*'
  d.eval_pattern = ""  # tfrecord: test shards
  # Array inputs (corp_jax.tools.fidelity_probe --source arrays): a folder of array splits;
  # '' = the pretraining run's config.data.arrays_dir, else the embedded set's arrays.
  d.arrays_dir = ""
  d.num_classes = 0  # 0 = from the shards' NAME.metadata.json
  d.num_train_videos = 0  # 0 = from the metadata (or counted)
  d.clip_len = 0  # 0 = the pretraining clip length
  d.stride = 0  # 0 = the pretraining stride
  d.crop_size = 0  # 0 = the pretraining crop size
  d.shuffle_buffer = 512

  c.eval = e = ml_collections.ConfigDict()
  e.num_clips = 4  # uniformly spaced clips per test video
  e.num_crops = 3  # spatial crops per clip
  e.batch_size = 16  # test videos per input batch
  e.feature_chunk = 128  # clips per backbone call

  c.cache = ml_collections.ConfigDict()
  c.cache.train_passes = 2  # augmented views of each training video (cached path)

  c.optim = o = ml_collections.ConfigDict()
  o.batch_size = 256
  o.learning_rate = 0.16
  o.momentum = 0.9
  o.num_epochs = 100
  o.num_steps = 0  # > 0 overrides num_epochs
  return c


def _paper(c: ml_collections.ConfigDict, preset: str) -> None:
  c.cached_features = False
  c.data.source = "tfrecord"
  c.data.clip_len = 32
  c.data.shuffle_buffer = 4096
  c.data.num_classes = _PAPER_CLASSES[preset]
  c.eval.num_clips = 10
  c.eval.num_crops = 3
  c.eval.batch_size = 4
  c.eval.feature_chunk = 30
  c.optim.batch_size = 1024
  c.optim.num_epochs = 100
  c.log_every = 100


def eval_config(job: str, preset: str | None = None) -> ml_collections.ConfigDict:
  """The locked config of `job` ('linear_eval' or 'finetune') for a preset."""
  if job not in JOBS:
    raise ValueError(f"job must be one of {JOBS}, got {job!r}")
  preset = preset or ""
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; choose one of {[p for p in PRESETS if p]} "
                     "(or none for the embedded data set)")
  c = _base(job)
  if preset in _PAPER_CLASSES:
    _paper(c, preset)
  elif preset == "test":
    c.data.embedded_num_train = 16
    c.data.embedded_num_test = 8
    c.data.embedded_frame_size = 32
    c.data.embedded_num_frames = 8
    c.data.shuffle_buffer = 16
    c.eval.num_clips = 2
    c.eval.batch_size = 4
    c.eval.feature_chunk = 16
    c.cache.train_passes = 1
    c.optim.batch_size = 8
    c.optim.num_epochs = 5
    c.log_every = 1
  if job == "finetune":
    c.cached_features = False  # the backbone trains: features change every step
    c.optim.learning_rate = 0.2
    c.subset_fraction = 1.0 if preset in ("ucf101", "hmdb51") else 0.1
    if preset == "":
      c.optim.batch_size = 16
      c.optim.num_epochs = 20
    elif preset == "test":
      c.subset_fraction = 0.5
      c.optim.num_epochs = 1
  c.lock()
  return c


def linear_eval_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return eval_config("linear_eval", preset)


def finetune_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return eval_config("finetune", preset)
