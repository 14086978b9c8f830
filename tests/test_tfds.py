"""The `corp_embedded` TFDS builder (offline prepare) and the per-process TFDS source."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from corp_jax.data import embedded  # pylint: disable=g-import-not-at-top
from corp_jax.data import embedded_render as er  # pylint: disable=g-import-not-at-top
from corp_jax.data import tfds_embedded  # pylint: disable=g-import-not-at-top
from corp_jax.data import tfds_source  # pylint: disable=g-import-not-at-top

NAME = "corp_embedded/tiny"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("tfds"))
  builder = tfds.builder(NAME, data_dir=directory)
  builder.download_and_prepare()  # renders locally: no network
  return directory


def _read(directory, split, process_index, process_count, label_key="label"):
  ds = tfds_source.tfds_video_source(NAME, directory, split, label_key=label_key,
                                     process_index=process_index,
                                     process_count=process_count)
  return list(ds.as_numpy_iterator())


def test_builder_info(data_dir):
  builder = tfds.builder(NAME, data_dir=data_dir)
  config = tfds_embedded.CorpEmbedded.BUILDER_CONFIGS[1]
  assert builder.info.version == "1.0.0"
  assert builder.info.splits["train"].num_examples == config.num_train
  assert builder.info.splits["test"].num_examples == config.num_test
  assert builder.info.features["motion"].names == list(er.MOTION_NAMES)
  assert builder.info.features["combined"].num_classes == 40


def test_two_processes_read_disjoint_parts_that_cover_the_split(data_dir):
  config = tfds_embedded.CorpEmbedded.BUILDER_CONFIGS[1]
  parts = [_read(data_dir, "train", p, 2) for p in range(2)]
  names = [{e["filename"].decode() for e in part} for part in parts]
  assert all(names) and not names[0] & names[1]
  assert names[0] | names[1] == {f"embedded/train/{i:06d}" for i in range(config.num_train)}
  shape = (config.num_frames, config.frame_size, config.frame_size, 3)
  _, motions = embedded.split_classes(config.seed, "train", config.num_train)
  for element in parts[0] + parts[1]:
    assert element["frames"].shape == shape and element["frames"].dtype == np.uint8
    assert element["num_frames"] == config.num_frames
    assert element["label"].dtype == np.int32
    index = int(element["filename"].decode().rsplit("/", 1)[1])
    assert element["label"] == motions[index]  # label = motion class


def test_frames_are_the_rendered_video(data_dir):
  config = tfds_embedded.CorpEmbedded.BUILDER_CONFIGS[1]
  appearances, motions = embedded.split_classes(config.seed, "test", config.num_test)
  rendered = [er.render_video(embedded.video_rng(config.seed, "test", index),
                              int(appearances[index]), int(motions[index]),
                              config.num_frames, config.frame_size).astype(int)
              for index in range(config.num_test)]
  for element in _read(data_dir, "test", 0, 1, label_key="appearance"):
    index = int(element["filename"].decode().rsplit("/", 1)[1])
    assert element["label"] == appearances[index]
    # Equal up to JPEG loss (noisy 32-pixel frames), far from every other video.
    errors = [np.abs(element["frames"] - video).mean() for video in rendered]
    assert errors[index] < 8.0
    assert min(e for i, e in enumerate(errors) if i != index) > 2 * errors[index]


def test_unprepared_data_dir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="not prepared in data_dir"):
    tfds_source.tfds_video_source(NAME, str(tmp_path), "train", process_index=0,
                                  process_count=1)


def test_bad_keys_and_process_index(data_dir):
  with pytest.raises(KeyError, match="no feature 'nope'"):
    tfds_source.tfds_video_source(NAME, data_dir, "train", label_key="nope",
                                  process_index=0, process_count=1)
  with pytest.raises(ValueError, match="process_index 2"):
    tfds_source.tfds_video_source(NAME, data_dir, "train", process_index=2, process_count=2)
