"""The random resized crop of the TensorFlow-free training stream (`array_stream`): the
window distribution against TF's `sample_distorted_bounding_box` (the op the TF pipeline
uses), and the windows read back from clips of coordinate-coded videos."""

import numpy as np
import pytest

from corp_jax.data import array_frames
from corp_jax.data import array_stream
from corp_jax.data import sampling

AREA, ASPECT = (0.3, 1.0), (0.5, 2.0)  # the paper presets' crop (CVRL's values)
FRAMES, HEIGHT, WIDTH = 24, 48, 64
CROP = 16


def _window_stats(windows, height, width):
  windows = np.asarray(windows, np.float64)
  top, left, h, w = windows.T
  return {"area": np.mean(h * w) / (height * width), "log_aspect": np.mean(np.log(w / h)),
          "whole": np.mean((h == height) & (w == width)),
          "top": np.mean(top) / height, "left": np.mean(left) / width}


@pytest.mark.parametrize("height,width", [(64, 64), (48, 80)])
def test_windows_follow_tfs_distribution(height, width):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from corp_jax.data import crop  # pylint: disable=g-import-not-at-top
  draws = 1500
  rng = np.random.default_rng(0)
  ours = [array_frames.sample_crop_window(rng, height, width, AREA, ASPECT)
          for _ in range(draws)]
  theirs = []
  for i in range(draws):
    begin, size = crop.sample_crop_window_tf([height, width, 3], tf.constant([7, i]),
                                             AREA, ASPECT)
    theirs.append((int(begin[0]), int(begin[1]), int(size[0]), int(size[1])))
  for top, left, h, w in ours:
    assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
    assert AREA[0] * height * width <= h * w
  a, b = _window_stats(ours, height, width), _window_stats(theirs, height, width)
  # Standard errors at 1,500 draws: ~0.005 for the area, ~0.012 for the log aspect ratio.
  # Drawing the area (not the height) uniformly and the aspect ratio log-uniformly, as
  # torchvision does, moved the mean area by ~0.045 and the log aspect by ~0.1 (measured).
  assert abs(a["area"] - b["area"]) < 0.02, (a, b)
  assert abs(a["log_aspect"] - b["log_aspect"]) < 0.06, (a, b)
  assert abs(a["whole"] - b["whole"]) < 0.03, (a, b)
  for key in ("top", "left"):
    assert abs(a[key] - b[key]) < 0.02, (key, a, b)


def test_area_one_is_the_whole_frame_and_bad_ranges_are_refused(tmp_path):
  rng = np.random.default_rng(1)
  assert array_frames.sample_crop_window(rng, 48, 64, (1.0, 1.0), ASPECT) == (0, 0, 48, 64)
  split = _coordinate_split(tmp_path)
  args = dict(batch_size_per_process=2, num_clips=2, clip_len=4, stride=2, crop_size=CROP,
              seed=0, label_key="clip/label/index")
  with pytest.raises(ValueError, match="aug_crop_area_min"):
    next(array_stream.train_batches(split, crop_area_range=(0.0, 1.0), **args))
  with pytest.raises(ValueError, match="crop_aspect_ratio_range"):
    next(array_stream.train_batches(split, crop_area_range=AREA,
                                    crop_aspect_ratio_range=(2.0, 0.5), **args))


def _coordinate_split(tmp_path, num_videos: int = 6) -> dict:
  """Videos whose pixel (t, y, x) is (x, y, t + 8 * video): the window and the frame of
  every pixel of a crop can be read back from its values."""
  t, y, x = np.meshgrid(np.arange(FRAMES), np.arange(HEIGHT), np.arange(WIDTH),
                        indexing="ij")
  frames = np.stack([np.stack([x, y, t + 8 * v], -1) for v in range(num_videos)])
  np.save(tmp_path / "frames.npy", frames.astype(np.uint8))
  np.savez(tmp_path / "labels.npz", motion=np.arange(num_videos, dtype=np.int32))
  return {"frames_path": str(tmp_path / "frames.npy"),
          "labels_path": str(tmp_path / "labels.npz"), "num_examples": num_videos,
          "metadata": {"label_keys": {"default": "clip/label/index"},
                       "default_label": "motion"}}


def _read_window(channel: np.ndarray):
  """(start, size) of the crop a bilinear resize of a coordinate ramp came from, from two
  interior samples (no clamping there): value(j) = start + (j + 0.5) * size / S - 0.5."""
  j1, j2 = CROP // 4, 3 * CROP // 4
  size = (channel[j2] - channel[j1]) * CROP / (j2 - j1)
  return channel[j1] - (j1 + 0.5) * size / CROP + 0.5, size


def test_cropped_clips_are_resized_windows_one_per_clip(tmp_path):
  split = _coordinate_split(tmp_path)
  args = dict(batch_size_per_process=6, num_clips=2, clip_len=4, stride=2, crop_size=CROP,
              seed=3, label_key="clip/label/index")
  plain = array_stream.train_batches(split, **args)
  cropped = array_stream.train_batches(split, crop_area_range=AREA, **args)
  flipped = array_stream.train_batches(split, crop_area_range=AREA, flip_prob=1.0, **args)
  windows = []
  for _ in range(4):
    a, b, f = next(plain), next(cropped), next(flipped)
    for key in ("starts", "label", "video_id"):  # the crop draws come after all others
      np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_allclose(f["clips"], b["clips"][:, :, :, :, ::-1], atol=1e-6)
    pixels = b["clips"] * 255.0
    for row, video in enumerate(b["video_id"]):
      indices = sampling.clip_frame_indices(b["starts"][row], 4, 2, FRAMES)
      # Each frame is the frame Eq. 3 chose (the blue channel is constant per frame).
      np.testing.assert_allclose(pixels[row, ..., 2],
                                 np.broadcast_to((indices + 8 * video)[:, :, None, None],
                                                 pixels.shape[1:5]), atol=1e-3)
      for clip in range(2):
        left, width = _read_window(pixels[row, clip, 0, CROP // 2, :, 0])
        top, height = _read_window(pixels[row, clip, 0, :, CROP // 2, 1])
        window = np.round([top, left, height, width]).astype(int)
        np.testing.assert_allclose([top, left, height, width], window, atol=1e-2)
        # One window for the clip's frames: every frame shows the same coordinates.
        np.testing.assert_allclose(pixels[row, clip, :, :, :, :2],
                                   np.broadcast_to(pixels[row, clip, :1, :, :, :2],
                                                   pixels.shape[2:5] + (2,)), atol=1e-3)
        expected = array_stream.cropped_clip_pixels(
            np.load(split["frames_path"])[video], indices[clip:clip + 1], [tuple(window)],
            CROP)[0]
        np.testing.assert_allclose(b["clips"][row, clip], expected, atol=1e-6)
        windows.append(window)
  windows = np.asarray(windows)
  top, left, h, w = windows.T
  assert np.all((top >= 0) & (left >= 0) & (top + h <= HEIGHT) & (left + w <= WIDTH))
  assert np.all(h * w >= AREA[0] * HEIGHT * WIDTH)
  # Windows vary from clip to clip, including between the two clips of one video.
  assert len({tuple(x) for x in windows}) > len(windows) // 2
  pairs = windows.reshape(-1, 2, 4)
  assert np.mean(np.any(pairs[:, 0] != pairs[:, 1], axis=1)) > 0.5


def test_the_probe_can_take_whole_frame_training_views(tmp_path):
  """`fidelity_probe --train_views whole` drops the pretraining crop from the probe's
  training views (and nothing else); the protocol keeps it."""
  from corp_jax.evaluate import array_data  # pylint: disable=g-import-not-at-top
  from corp_jax.evaluate import job as job_lib  # pylint: disable=g-import-not-at-top
  from corp_jax.data.augment_params import AugmentConfig  # pylint: disable=g-import-not-at-top
  from corp_jax.tools import fidelity_probe  # pylint: disable=g-import-not-at-top
  split = _coordinate_split(tmp_path)
  data = job_lib.EvalData(split, split, 6, [str(i) for i in range(6)], 6, clip_len=4,
                          stride=2, crop_size=CROP,
                          augment=AugmentConfig(crop_area_range=AREA, flip_prob=0.0,
                                                color_jitter_prob=0.8))
  config = type("Config", (), {"label_key": "clip/label/index"})()
  frames = np.load(split["frames_path"])
  protocol = fidelity_probe.training_views(data, "pretraining")
  whole = fidelity_probe.training_views(data, "whole")
  assert protocol is data and whole.augment.color_jitter_prob == 0.8
  assert whole.augment.crop_area_range == (1.0, 1.0)
  cropped = next(array_data.train_stream(config, protocol, batch_size=6, seed=0))
  plain = next(array_data.train_stream(config, whole, batch_size=6, seed=0))
  np.testing.assert_array_equal(cropped["video_id"], plain["video_id"])
  for row, video in enumerate(plain["video_id"]):
    indices = sampling.clip_frame_indices(plain["starts"][row], 4, 2, FRAMES)
    np.testing.assert_allclose(plain["clips"][row],
                               array_stream.clip_pixels(frames[video], indices, CROP),
                               atol=1e-6)
  assert not np.allclose(cropped["clips"], plain["clips"])
  with pytest.raises(ValueError, match="train_views"):
    fidelity_probe.training_views(data, "crop")
  assert fidelity_probe.main(["p", "w", "embedded", "o.json", "--train_views", "x"]) == 2


def test_a_shared_window_cuts_every_clip_of_a_video_alike(tmp_path):
  """`crop_shared` (beyond the paper): clip 1's window, the one the per-clip stream draws
  for clip 1, cut from all K clips; nothing drawn before the windows changes."""
  split = _coordinate_split(tmp_path)
  args = dict(batch_size_per_process=6, num_clips=3, clip_len=4, stride=2, crop_size=CROP,
              seed=11, label_key="clip/label/index", crop_area_range=AREA)
  per_clip = array_stream.train_batches(split, **args)
  shared = array_stream.train_batches(split, crop_shared=True, **args)
  differ = 0
  for _ in range(3):
    a, b = next(per_clip), next(shared)
    for key in ("starts", "label", "video_id"):
      np.testing.assert_array_equal(a[key], b[key])
    pixels_a, pixels_b = a["clips"] * 255.0, b["clips"] * 255.0
    # Red and green hold x and y: equal across clips iff their windows are equal.
    np.testing.assert_allclose(pixels_b[:, 1:, ..., :2],
                               np.broadcast_to(pixels_b[:, :1, ..., :2],
                                               pixels_b[:, 1:, ..., :2].shape), atol=1e-3)
    np.testing.assert_allclose(pixels_b[:, 0], pixels_a[:, 0], atol=1e-3)
    differ += int(np.sum(np.abs(pixels_a[:, 1:, ..., :2] - pixels_a[:, :1, ..., :2]).max(
        axis=(2, 3, 4, 5)) > 0.5))
  assert differ > 18  # of 36 later clips, per-clip windows mostly differ from clip 1's


def test_the_tf_pipeline_shares_the_window_when_asked():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from corp_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from corp_jax.data.augment_params import AugmentConfig  # pylint: disable=g-import-not-at-top
  # Still videos whose red / green channels are x / y ramps: two clips of a video are equal
  # exactly when they were cut from the same window.
  y, x = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
  videos = [np.broadcast_to(np.stack([4 * x % 256, 5 * y, np.full_like(x, 40 * v)], -1),
                            (FRAMES, HEIGHT, WIDTH, 3)).astype(np.uint8) for v in range(4)]

  def clips(shared):
    source = tf.data.Dataset.from_generator(
        lambda: ({"frames": f, "label": np.int32(v)} for v, f in enumerate(videos)),
        output_signature={"frames": tf.TensorSpec([None, HEIGHT, WIDTH, 3], tf.uint8),
                          "label": tf.TensorSpec([], tf.int32)})
    augment = AugmentConfig(crop_area_range=AREA, flip_prob=0.0,
                            crop_shared_across_clips=shared).without_color()
    stream = pipeline.make_train_dataset(
        source, batch_size_per_process=4, num_clips=2, clip_len=4, stride=2, crop_size=CROP,
        seed=2, shuffle_buffer=4, augment=augment, accel_aug=True, process_index=0,
        process_count=1)
    return np.concatenate([next(stream)["clips"] for _ in range(3)]).astype(np.int32)

  shared, per_clip = clips(True), clips(False)
  np.testing.assert_array_equal(shared[:, 0], shared[:, 1])
  assert np.mean(np.any(per_clip[:, 0] != per_clip[:, 1], axis=(1, 2, 3, 4))) > 0.5


def test_the_shared_window_option_reaches_both_sources():
  from corp_jax import config_defaults  # pylint: disable=g-import-not-at-top
  from corp_jax.data import from_config  # pylint: disable=g-import-not-at-top
  from corp_jax.train import array_inputs  # pylint: disable=g-import-not-at-top
  data = config_defaults.pretrain_config("corp_m").data
  assert not data.aug_crop_shared_across_clips  # off in every recipe
  assert not from_config.augment_config(data).crop_shared_across_clips
  with data.unlocked():
    data.aug_crop_shared_across_clips = True
  assert from_config.augment_config(data).crop_shared_across_clips
  assert array_inputs.crop_ranges(data)["crop_shared"] is True
