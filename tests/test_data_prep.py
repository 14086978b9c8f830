"""End-to-end tests of data_prep: real videos written with PyAV, converted, read back.

Frame i of every test video has brightness 20 + 12 i, so the order and the identity of
frames survive the round trip and can be checked through JPEG (tolerance a few levels).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

av = pytest.importorskip("av")
tf = pytest.importorskip("tensorflow")

from corp_jax.data import record_stream  # pylint: disable=g-import-not-at-top
from corp_jax.data import records  # pylint: disable=g-import-not-at-top
from corp_jax.data import shard_writer
from data_prep import annotations
from data_prep import convert
from data_prep import decode
from data_prep import videos_to_tfrecords

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 10


def _brightness(index):
  return 20 + 12 * index


def _encoder(extension, candidates):
  for codec in candidates:
    try:
      av.codec.Codec(codec, "w")
      return extension, codec
    except Exception:  # pylint: disable=broad-except
      continue
  return None


MP4 = _encoder("mp4", ["mpeg4", "libx264", "h264"])
WEBM = _encoder("webm", ["libvpx", "libvpx-vp9"])
needs_codecs = pytest.mark.skipif(
    MP4 is None or WEBM is None,
    reason=f"this PyAV build lacks an encoder: mp4 {MP4}, webm {WEBM}")


def write_video(path, codec, num_frames, width=64, height=48, noise=False):
  """Writes `num_frames` frames at RATE fps; frame i is flat at _brightness(i)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(0)
  container = av.open(path, "w")
  stream = container.add_stream(codec, rate=RATE)
  stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
  for i in range(num_frames):
    if noise:  # Incompressible frames, so a byte cut lands mid-video.
      image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
      image = np.full((height, width, 3), _brightness(i), np.uint8)
    for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
      container.mux(packet)
  for packet in stream.encode():
    container.mux(packet)
  container.close()


def write_zero_frame_webm(path, codec):
  """A WebM whose stream is declared but whose first frame is cut off: 0 frames decode."""
  write_video(path, codec, 3)
  with open(path, "rb") as f:
    data = f.read()
  cluster = data.find(bytes.fromhex("1F43B675"))  # The EBML id of the first Cluster.
  with open(path, "wb") as f:
    f.write(data[:cluster + 8])


def read_records(output_dir, name):
  """Every record of NAME, as dicts with decoded frames [L, H, W, 3] and context values."""
  files = shard_writer.complete_shards(output_dir, name)
  out = []
  for serialized in tf.data.TFRecordDataset(files):
    parsed = records.parse_sequence_example(serialized)
    context, _ = tf.io.parse_single_sequence_example(
        serialized, context_features={
            records.LABEL_TEXT_KEY: tf.io.FixedLenFeature([], tf.string),
            records.FPS_KEY: tf.io.FixedLenFeature([], tf.float32),
            records.NUM_FRAMES_KEY: tf.io.FixedLenFeature([], tf.int64)})
    frames = np.stack([tf.io.decode_jpeg(j).numpy() for j in parsed[records.IMAGE_KEY]])
    out.append({"filename": parsed["filename"].numpy().decode(),
                "label": int(parsed["label"]), "num_frames": int(parsed["num_frames"]),
                "label_text": context[records.LABEL_TEXT_KEY].numpy().decode(),
                "fps": float(context[records.FPS_KEY]),
                "declared_frames": int(context[records.NUM_FRAMES_KEY]),
                "frames": frames})
  return sorted(out, key=lambda r: r["filename"])


def assert_frames_in_order(frames, source_indices):
  means = frames.reshape(len(frames), -1).mean(axis=1)
  np.testing.assert_allclose(means, [_brightness(i) for i in source_indices], atol=6)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """Two good videos (one per codec) and four bad ones, with a CSV naming all six."""
  if MP4 is None or WEBM is None:
    pytest.skip(f"this PyAV build lacks an encoder: mp4 {MP4}, webm {WEBM}")
  root = tmp_path_factory.mktemp("videos")
  video_dir = root / "videos"
  write_video(str(video_dir / "cat/a.mp4"), MP4[1], 12, width=64, height=48)
  write_video(str(video_dir / "dog/b.webm"), WEBM[1], 10, width=48, height=64)
  (video_dir / "cat/corrupt.mp4").write_bytes(np.random.default_rng(1).bytes(4000))
  (video_dir / "dog/empty.mp4").write_bytes(b"")
  write_zero_frame_webm(str(video_dir / "dog/zero.webm"), WEBM[1])
  csv = root / "train.csv"
  csv.write_text("path,label\ncat/a.mp4,cat\ndog/b.webm,dog\ncat/corrupt.mp4,cat\n"
                 "dog/empty.mp4,dog\ndog/zero.webm,dog\ncat/missing.mp4,cat\n")
  return root


def _args(root, out, *extra):
  return ["--video_dir", str(root / "videos"), "--annotations", str(root / "train.csv"),
          "--format", "csv", "--output_dir", str(out), "--name", "train",
          "--num_shards", "3", "--short_side", "32", "--workers", "0", *extra]


@pytest.fixture(scope="module")
def converted(dataset):
  out = dataset / "out"
  rc = videos_to_tfrecords.main(_args(dataset, out, "--max_failure_fraction", "0.7"))
  return out, rc


def test_good_videos_round_trip_with_size_label_and_frame_order(converted):
  out, rc = converted
  assert rc == 0
  got = read_records(str(out), "train")
  assert [r["filename"] for r in got] == ["cat/a.mp4", "dog/b.webm"]
  landscape, portrait = got
  assert landscape["frames"].shape == (12, 32, 42, 3)  # 64x48 -> short side 32, even.
  assert portrait["frames"].shape == (10, 42, 32, 3)
  assert (landscape["label"], landscape["label_text"]) == (0, "cat")
  assert (portrait["label"], portrait["label_text"]) == (1, "dog")
  for record in got:
    assert record["num_frames"] == record["declared_frames"] == len(record["frames"])
    assert record["fps"] == pytest.approx(RATE)
    assert_frames_in_order(record["frames"], range(record["num_frames"]))
  assert len(shard_writer.complete_shards(str(out), "train")) == 3


def test_bad_videos_are_skipped_and_reported(converted):
  out, _ = converted
  with open(out / "train.report.json") as f:
    report = json.load(f)
  kinds = {f["path"]: f["kind"] for f in report["failures"]}
  assert kinds == {"cat/corrupt.mp4": "unreadable", "dog/empty.mp4": "empty_file",
                   "dog/zero.webm": "zero_frames", "cat/missing.mp4": "missing"}
  assert (report["total"], report["written"], report["failed"]) == (6, 2, 4)
  assert report["ok"] and report["failures_by_kind"]["missing"] == 1
  metadata = records.read_metadata(str(out), "train")
  assert metadata["class_names"] == ["cat", "dog"] and metadata["num_classes"] == 2
  assert metadata["class_counts"] == {"cat": 1, "dog": 1}
  assert (metadata["num_videos"], metadata["num_failed"]) == (2, 4)
  shards = shard_writer.complete_shards(str(out), "train")
  assert metadata["shard_records"] == [record_stream.count_records(p) for p in shards]
  assert metadata["frames_per_video"] == {"min": 10, "mean": 11.0, "max": 12}
  assert metadata["short_side"] == 32 and metadata["format"] == "csv"
  assert metadata["fps"] is None and metadata["source_fps"]["mean"] == pytest.approx(RATE)


def test_exit_status_is_1_when_failures_exceed_tolerance(converted, dataset):
  out, _ = converted
  # Same plan: the rerun retries the failed videos (they fail again), re-judges the tolerance.
  rc = videos_to_tfrecords.main(_args(dataset, out, "--max_failure_fraction", "0.5"))
  assert rc == 1
  with open(out / "train.report.json") as f:
    report = json.load(f)
  assert not report["ok"] and report["failure_fraction"] == pytest.approx(4 / 6, abs=1e-5)


def test_changed_plan_is_refused_until_overwrite(dataset, tmp_path, capsys):
  out = tmp_path / "out"
  assert videos_to_tfrecords.main(_args(dataset, out, "--max_failure_fraction", "1")) == 0
  rc = videos_to_tfrecords.main(_args(dataset, out, "--max_failure_fraction", "1",
                                      "--num_shards", "2"))
  assert rc == 2 and "num_shards" in capsys.readouterr().err
  rc = videos_to_tfrecords.main(_args(dataset, out, "--max_failure_fraction", "1",
                                      "--num_shards", "2", "--overwrite"))
  assert rc == 0
  assert [os.path.basename(p) for p in shard_writer.complete_shards(str(out), "train")] == [
      "train-00000-of-00002", "train-00001-of-00002"]
  assert len(read_records(str(out), "train")) == 2


@needs_codecs
def test_interrupted_run_leaves_no_partial_shard_and_rerun_resumes(tmp_path):
  video_dir = tmp_path / "videos"
  for i in range(4):
    write_video(str(video_dir / f"v{i}.{MP4[0]}"), MP4[1], 4)
  video_set = annotations.parse_annotations("folder", None, str(video_dir))
  options = convert.ConvertOptions(video_dir=str(video_dir), output_dir=str(tmp_path / "out"),
                                   name="pre", num_shards=2,
                                   decode_options=decode.DecodeOptions(short_side=16))
  calls = []

  def interrupted_on_third(path, decode_options):
    calls.append(path)
    if len(calls) == 3:  # First video of the second shard: like Ctrl-C mid-shard.
      raise KeyboardInterrupt
    return decode.decode_video(path, decode_options)

  with pytest.raises(KeyboardInterrupt):
    convert.convert(video_set, options, decode_fn=interrupted_on_third, log=lambda _: None)
  names = sorted(os.listdir(tmp_path / "out"))
  assert "pre-00000-of-00002" in names and "pre-00001-of-00002" not in names
  assert not [n for n in names if ".tmp" in n]
  # A crash (not Ctrl-C) would leave a temporary; it must not count and must be removed.
  (tmp_path / "out/pre-00001-of-00002.tmp-99999").write_bytes(b"partial")

  calls.clear()
  counting = lambda path, o: calls.append(path) or decode.decode_video(path, o)
  result = convert.convert(video_set, options, decode_fn=counting, log=lambda _: None)
  assert len(calls) == 2  # Only the missing shard's videos were decoded again.
  assert result.ok and result.report["written"] == 4
  assert not [n for n in os.listdir(tmp_path / "out") if ".tmp" in n]
  got = read_records(str(tmp_path / "out"), "pre")
  assert [r["label"] for r in got] == [-1] * 4
  assert [r["filename"] for r in got] == [f"v{i}.{MP4[0]}" for i in range(4)]


def test_command_line_with_worker_processes_and_fps(tmp_path):
  if MP4 is None:
    pytest.skip("no mp4 encoder in this PyAV build")
  video_dir = tmp_path / "videos"
  write_video(str(video_dir / f"x.{MP4[0]}"), MP4[1], 12)
  write_video(str(video_dir / f"sub/y.{MP4[0]}"), MP4[1], 8)
  out = tmp_path / "out"
  env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run(
      [sys.executable, "-m", "data_prep.videos_to_tfrecords", "--video_dir", str(video_dir),
       "--format", "folder", "--output_dir", str(out), "--name", "unlab", "--num_shards", "2",
       "--short_side", "16", "--fps", "5", "--workers", "2"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert "2 of 2 videos written" in proc.stdout
  got = read_records(str(out), "unlab")
  assert [(r["filename"], r["num_frames"], r["label"]) for r in got] == [
      ("sub/y.mp4", 4, -1), ("x.mp4", 6, -1)]
  assert got[1]["fps"] == pytest.approx(5)
  assert_frames_in_order(got[1]["frames"], [0, 2, 4, 6, 8, 10])  # 10 -> 5 fps by time.
  assert records.read_metadata(str(out), "unlab")["num_classes"] == 0


@needs_codecs
def test_fps_upsampling_repeats_frames_by_timestamp(tmp_path):
  path = str(tmp_path / f"v.{WEBM[0]}")
  write_video(path, WEBM[1], 6)
  video = decode.decode_video(path, decode.DecodeOptions(short_side=0, fps=25))
  assert (video.width, video.height, video.source_num_frames) == (64, 48, 6)
  frames = np.stack([tf.io.decode_jpeg(j).numpy() for j in video.jpeg_frames])
  # 0.6 s at 25 fps: slot k shows source frame floor(k * 10 / 25).
  assert_frames_in_order(frames, [k * RATE // 25 for k in range(15)])


@needs_codecs
@pytest.mark.parametrize("angle", [0, 90, -90, 180])
def test_display_rotation_is_applied(tmp_path, angle):
  """A stream tagged 'rotate by angle (counterclockwise)' decodes upright, sized upright."""
  path = str(tmp_path / f"r.{MP4[0]}")
  container = av.open(path, "w")
  stream = container.add_stream(MP4[1], rate=RATE)
  stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
  if not hasattr(stream, "set_display_rotation"):
    container.close()
    pytest.skip("this PyAV cannot write a display matrix")
  stream.set_display_rotation(angle)
  image = np.zeros((48, 64, 3), np.uint8)
  image[:16, :16] = 255  # a white block in the stored frame's top-left corner
  for _ in range(2):
    for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
      container.mux(packet)
  for packet in stream.encode():
    container.mux(packet)
  container.close()
  video = decode.decode_video(path, decode.DecodeOptions(short_side=24))
  turn = angle % 360
  assert video.rotation == turn
  frame = tf.io.decode_jpeg(video.jpeg_frames[0]).numpy().mean(-1)
  # Upright size: the short side is 24 whichever way the stored frame lies.
  assert (video.width, video.height) == ((24, 32) if turn in (90, 270) else (32, 24))
  assert frame.shape == (video.height, video.width)
  # Counterclockwise turns move the stored top-left corner to: 90 -> bottom-left,
  # 180 -> bottom-right, 270 -> top-right.
  h, w = frame.shape
  corners = {0: frame[:4, :4], 90: frame[h - 4:, :4], 180: frame[h - 4:, w - 4:],
             270: frame[:4, w - 4:]}
  assert corners[turn].mean() > 200
  assert all(block.mean() < 60 for key, block in corners.items() if key != turn)


@needs_codecs
def test_truncated_video_is_skipped(tmp_path):
  path = str(tmp_path / f"n.{WEBM[0]}")
  write_video(path, WEBM[1], 30, noise=True)
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) * 3 // 10])
  with pytest.raises(decode.VideoSkipped) as info:
    decode.decode_video(path, decode.DecodeOptions(short_side=16))
  assert info.value.kind == "truncated" and "of the 30 frames" in info.value.reason
  relaxed = decode.DecodeOptions(short_side=16, min_decoded_fraction=0)
  assert 0 < decode.decode_video(path, relaxed).source_num_frames < 30


@pytest.mark.parametrize("size, short_side, expected", [
    ((64, 48), 32, (42, 32)), ((48, 64), 32, (32, 42)), ((1920, 1080), 256, (456, 256)),
    ((50, 50), 16, (16, 16)), ((640, 360), 0, (640, 360))])
def test_output_size_keeps_aspect_with_even_sides(size, short_side, expected):
  assert decode.output_size(*size, short_side) == expected


def test_decode_options_reject_bad_values():
  with pytest.raises(ValueError, match="short_side"):
    decode.DecodeOptions(short_side=255)
  with pytest.raises(ValueError, match="jpeg_quality"):
    decode.DecodeOptions(jpeg_quality=0)
  with pytest.raises(ValueError, match="fps"):
    decode.DecodeOptions(fps=-1)


def test_dmvr_layout_record_parses():
  """A record as DMVR/CVRL tools write it, without our optional keys, still parses."""
  example = tf.train.SequenceExample()
  example.context.feature["clip/label/index"].int64_list.value.append(7)
  frames = example.feature_lists.feature_list["image/encoded"]
  for i in range(3):
    jpeg = tf.io.encode_jpeg(np.full((8, 10, 3), _brightness(i), np.uint8)).numpy()
    frames.feature.add().bytes_list.value.append(jpeg)
  parsed = records.parse_sequence_example(tf.constant(example.SerializeToString()))
  assert int(parsed["label"]) == 7 and int(parsed["num_frames"]) == 3
  assert parsed["filename"].numpy() == b""
  decoded = np.stack([tf.io.decode_jpeg(j).numpy() for j in parsed["image/encoded"]])
  assert decoded.shape == (3, 8, 10, 3)
  assert_frames_in_order(decoded, range(3))


def test_main_exit_status_for_bad_annotations_and_interrupts(tmp_path, monkeypatch, capsys):
  bad = tmp_path / "bad.csv"
  bad.write_text("a.mp4,run\nb.mp4\n")
  args = ["--video_dir", str(tmp_path), "--annotations", str(bad), "--format", "csv",
          "--output_dir", str(tmp_path / "out"), "--name", "x", "--workers", "0"]
  assert videos_to_tfrecords.main(args) == 2
  assert f"{bad}:2: expected 'path,label'" in capsys.readouterr().err

  def interrupted(*unused_args, **unused_kwargs):
    raise KeyboardInterrupt

  bad.write_text("a.mp4,run\n")
  monkeypatch.setattr(videos_to_tfrecords.convert, "convert", interrupted)
  assert videos_to_tfrecords.main(args) == 130
  assert "rerun the same command to resume" in capsys.readouterr().err
