"""TFDS builder `corp_embedded`: the embedded procedural videos as a TensorFlow Datasets set.

Contract: importing this module registers `corp_embedded` (version 1.0.0) with TFDS;
`tfds.builder('corp_embedded/<config>', data_dir=...).download_and_prepare()` generates it
offline from `embedded_render` (nothing is downloaded). The videos, their classes and their
order are those of `embedded.ensure_embedded_dataset` with the same seed and sizes, so the
TFRecord and TFDS forms of the data set hold the same content (JPEG bytes may differ).

Features:
  `video`      tfds.features.Video uint8 [L, H, W, 3], frames stored as JPEG. Built from NumPy
               frames, so TFDS never calls ffmpeg.
  `label`      ClassLabel, the motion class (the default, order-sensitive label),
  `appearance`, `motion`, `combined`  ClassLabels of the three label families,
  `filename`   Text, `embedded/<split>/<index:06d>` as in the TFRecord form.
Configs: `default` (512 train / 128 test videos, 64 px, 32 frames) and `tiny` (8 / 4 videos,
32 px, 8 frames; for tests). Splits: `train`, `test`.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from corp_jax.data import embedded
from corp_jax.data import embedded_render

_DESCRIPTION = """\
Procedural videos of one object on a static scene (sky, ground, landmark posts). The
appearance label (object shape/colour/texture) is order-free; the motion label comes in
time-reversed pairs (rise/fall, approach/recede, fill/empty, rotate clockwise/counter-
clockwise), so it needs the order of frames. Rotation classes are flip-ambiguous.
"""


@dataclasses.dataclass
class EmbeddedConfig(tfds.core.BuilderConfig):
  """Sizes of one build of the embedded data set."""
  seed: int = 0
  num_train: int = 512
  num_test: int = 128
  frame_size: int = 64
  num_frames: int = 32


class CorpEmbedded(tfds.core.GeneratorBasedBuilder):
  """The embedded procedural video data set, generated locally."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release; renderer format version 1."}
  BUILDER_CONFIGS = [
      EmbeddedConfig(name="default", description="512 train / 128 test, 64 px, 32 frames"),
      EmbeddedConfig(name="tiny", description="8 train / 4 test, 32 px, 8 frames (tests)",
                     num_train=8, num_test=4, frame_size=32, num_frames=8),
  ]
  DEFAULT_CONFIG_NAME = "default"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    """None: there are no checksums or download files to look up beside this module.

    TFDS 4.9.10 resolves a builder's code path through the `importlib_resources` backport,
    which it does not install; returning None (TFDS's own value for builders defined in
    `__main__`) keeps `download_and_prepare` working offline without that package.
    """
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    motions = tfds.features.ClassLabel(names=embedded_render.MOTION_NAMES)
    return self.dataset_info_from_configs(
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Video(
                shape=(config.num_frames, config.frame_size, config.frame_size, 3),
                encoding_format="jpeg"),
            "label": motions,
            "appearance": tfds.features.ClassLabel(
                names=embedded_render.APPEARANCE_NAMES),
            "motion": tfds.features.ClassLabel(names=embedded_render.MOTION_NAMES),
            "combined": tfds.features.ClassLabel(names=embedded_render.combined_names()),
            "filename": tfds.features.Text(),
        }),
        supervised_keys=("video", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is rendered locally
    config = self.builder_config
    return {
        "train": self._generate_examples("train", config.num_train),
        "test": self._generate_examples("test", config.num_test),
    }

  def _generate_examples(self, split: str, num_videos: int):
    config = self.builder_config
    for index, appearance, motion, frames in embedded.render_split(
        config.seed, split, num_videos, config.frame_size, config.num_frames):
      filename = f"embedded/{split}/{index:06d}"
      yield filename, {
          "video": frames,
          "label": motion,
          "appearance": appearance,
          "motion": motion,
          "combined": embedded_render.combined_class(appearance, motion),
          "filename": filename,
      }
