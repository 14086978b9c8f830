"""The array training sources, no TensorFlow (`corp_jax.data.array_stream`), e.g. on a GPU
host without TensorFlow: `embedded_arrays` (the embedded videos rendered to NumPy arrays,
`corp_jax.data.embedded_arrays`) and `arrays` (the array splits in `config.data.arrays_dir`,
e.g. the photo set's, `corp_jax.data.photo_arrays`).

Contract:
  `validate(data)`: raises ValueError naming the key for source `arrays` without
      `arrays_dir`, or a crop area outside (0, 1].
  `make_train_inputs(config, *, per_process_batch, start_step) -> inputs.TrainInputs`: the
      stream of `array_stream.train_batches` over the train split sized by
      `config.data.embedded_*` in `embedded_cache_dir(config.data.cache_dir)` (or the train
      split of `config.data.arrays_dir`). The random resized crop (`aug_crop_area_min` < 1)
      is cut on the host (`array_stream`, one window per clip, the TF pipeline's
      distribution); flip, colour
      jitter, grayscale and blur, when configured, run on the accelerator in the train step
      (`augment_jax`, the `accel_aug` path: the same parameter distribution and maths as the
      TF pipeline's): the clips are then uint8, as they are with `config.data.accel_aug`.
"""

from __future__ import annotations

from corp_jax.data.from_config import augment_config, embedded_cache_dir


def validate(data) -> None:
  if data.source == "arrays" and not data.get("arrays_dir", ""):
    raise ValueError(
        "config.data.arrays_dir is required for config.data.source='arrays', e.g. "
        "--config.data.arrays_dir=/data/photo/arrays (python -m corp_jax.tools.photo_set "
        "--out /data/photo --arrays writes it)")
  low = data.get("aug_crop_area_min", 1.0)
  if not 0.0 < float(low) <= 1.0:
    raise ValueError(f"config.data.aug_crop_area_min must be in (0, 1] (the random resized "
                     f"crop's smallest area fraction; 1 = whole frames), got {low!r}")


def crop_ranges(data) -> dict:
  """The random resized crop's ranges of `config.data`, as `array_stream` takes them."""
  cfg = augment_config(data)
  return dict(crop_area_range=tuple(cfg.crop_area_range),
              crop_aspect_ratio_range=tuple(cfg.crop_aspect_ratio_range),
              crop_shared=cfg.crop_shared_across_clips)


def accelerator_augments(data) -> bool:
  """True when the clips are uint8 and the train step augments them (`augment_jax`)."""
  cfg = augment_config(data)
  return bool(data.accel_aug) or any(
      p > 0 for p in (cfg.flip_prob, cfg.color_jitter_prob, cfg.grayscale_prob, cfg.blur_prob))


def array_split(data, split: str = "train") -> dict:
  """The split ('train' or 'test') of the array set `config.data` names."""
  if data.source == "arrays":
    from corp_jax.data import photo_arrays  # pylint: disable=g-import-not-at-top
    return photo_arrays.open_arrays(data.arrays_dir)[split]
  from corp_jax.data import embedded_arrays  # pylint: disable=g-import-not-at-top
  return embedded_arrays.ensure_embedded_arrays(
      embedded_cache_dir(data.cache_dir), num_train=data.embedded_num_train,
      num_test=data.embedded_num_test, frame_size=data.embedded_frame_size,
      num_frames=data.embedded_num_frames)[split]


def make_train_inputs(config, *, per_process_batch: int, start_step: int):
  import jax  # pylint: disable=g-import-not-at-top
  from corp_jax.data import array_stream  # pylint: disable=g-import-not-at-top
  from corp_jax.train.inputs import TrainInputs  # pylint: disable=g-import-not-at-top
  data = config.data
  validate(data)
  split = array_split(data, "train")
  uint8 = accelerator_augments(data)
  stream = array_stream.train_batches(
      split, batch_size_per_process=per_process_batch, num_clips=data.num_clips,
      clip_len=data.clip_len, stride=data.stride, crop_size=data.crop_size, seed=config.seed,
      label_key=data.label_key, start_step=start_step, process_index=jax.process_index(),
      process_count=jax.process_count(), min_start_gap=int(data.get("min_start_gap", 0)),
      reverse_prob=float(data.get("reverse_video_prob", 0.0)),
      shuffle_frames=bool(data.get("shuffle_frames_in_clip", False)), output_uint8=uint8,
      cache_mb=float(data.get("arrays_cache_mb", 0)), **crop_ranges(data))
  return TrainInputs(stream, split["num_examples"], uint8)
