"""The fidelity protocol: its summary arithmetic, commands, resume, and a tiny end-to-end run."""

import json
import os

import numpy as np
import pytest

from corp_jax.tools import fidelity
from corp_jax.tools import fidelity_probe
from corp_jax.tools import fidelity_table


def _record(objective, seed, motion, order):
  probe = {"motion": {"linear_top1": motion, "knn_top1": motion / 2, "chance": 0.1,
                      "linear_direction": 0.5 + motion / 4}}
  return {"settings": {"objective": objective, "seed": seed}, "probe": probe,
          "order_acc": order, "pretrain_wall_s": 10.0 + seed, "probe_wall_s": 5.0,
          "cpu_s": None}


def test_summary_is_mean_and_sample_sd_over_seeds():
  records = [_record("corp_f", s, m, o) for s, m, o in ((0, 0.2, 0.9), (1, 0.4, 0.7))]
  records.append(_record("simclr", 0, 0.3, None))
  summary = fidelity_table.summarize(records)
  corp_f = summary["objectives"]["corp_f"]
  assert corp_f["motion linear"]["mean"] == pytest.approx(30.0)
  assert corp_f["motion linear"]["sd"] == pytest.approx(np.std([20.0, 40.0], ddof=1))
  assert corp_f["order acc"]["n"] == 2 and corp_f["order acc"]["mean"] == pytest.approx(0.8)
  assert "order acc" not in summary["objectives"]["simclr"]
  assert "CPU s" not in corp_f  # absent values are left out, not counted as zero
  text = fidelity_table.markdown(summary, "t")
  assert "| corp_f | 2 | 30.0 ± 14.1 | 15.0 ± 7.1 |" in text
  assert "| simclr | 1 | 30.0 | 15.0 |" in text and "motion 10.0%" in text
  assert fidelity_table.runs_markdown(records).count("\n") == 2 + len(records)


def test_order_accuracy_is_the_mean_of_the_last_tenth(tmp_path):
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for step, acc in ((20, 0.1), (80, 0.5), (95, 0.6), (100, 0.8)):
      f.write(json.dumps({"step": step, "order_acc": acc, "loss": 1.0}) + "\n")
  assert fidelity.order_accuracy_at_end(str(tmp_path)) == pytest.approx(0.7)
  assert fidelity.order_accuracy_at_end(str(tmp_path / "missing")) is None


def test_order_leaves_chance_needs_a_window_above_the_threshold(tmp_path):
  values = [0.5, 0.62, 0.5, 0.5, 0.5, 0.5, 0.56, 0.57, 0.58, 0.6, 0.6, 0.7]
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for k, acc in enumerate(values):
      f.write(json.dumps({"step": 20 * (k + 1), "order_acc": acc}) + "\n")
  # One high batch mean (step 40) is noise; from step 120 the five-value mean is 0.562.
  assert fidelity.order_leaves_chance(str(tmp_path)) == 120
  assert fidelity.order_leaves_chance(str(tmp_path), threshold=0.9) is None
  assert fidelity.order_leaves_chance(str(tmp_path / "missing")) is None
  record = {"settings": {"objective": "corp_m", "seed": 0}, "probe": {}, "order_acc": 0.6,
            "order_leaves_chance": 140}
  text = fidelity_table.runs_markdown([record])
  assert "order leaves chance (step)" in text and "| 140 |" in text


def test_clip_overlap_at_the_demo_stride():
  # 8-frame clips at stride 3 span 22 frames; Eq. 3 keeps starts >= ceil((L - 24) / K) apart.
  short = fidelity.clip_overlap(40, 8, 3, 2, draws=200)
  assert short["share"] == 1.0 and short["min_gap"] >= 8 and short["span"] == 22
  assert fidelity.clip_overlap(120, 8, 3, 4, draws=200)["share"] == 0.0
  # config.data.min_start_gap >= the clip span (22 frames) keeps clips apart on short videos too.
  assert fidelity.clip_overlap(64, 8, 3, 2, draws=200)["share"] > 0.0
  assert fidelity.clip_overlap(64, 8, 3, 2, draws=200, min_gap=22)["share"] == 0.0


def test_direction_accuracy_counts_only_choices_inside_the_pair():
  labels = np.array([0, 0, 1, 1, 2, 3])
  predictions = np.array([0, 1, 1, 2, 3, 3])  # right, partner, right, other pair, partner, right
  assert fidelity_probe.direction_accuracy(predictions, labels, [(0, 1), (2, 3)]) == 0.6


def test_pretraining_command_carries_seed_steps_set_and_overrides(tmp_path):
  args = fidelity.build_parser().parse_args(
      ["--steps", "7", "--override", "data.stride=2"])
  manifest = {"name": "photo", "train_pattern": "/s/train-*"}
  overrides = fidelity.pretrain_overrides(args, manifest, seed=3)
  command = fidelity.pretrain_command("corp_m", "test", overrides, "/w")
  assert command[1:3] == ["-m", "corp_jax.main"]
  assert command[3].endswith(os.path.join("configs", "corp_m.py") + ":test")
  for flag in ("--config.seed=3", "--config.train.num_steps=7", "--config.data.source=tfrecord",
               "--config.data.train_pattern=/s/train-*", "--config.data.stride=2",
               "--workdir=/w"):
    assert flag in command
  assert command.index("--config.data.stride=2") > command.index("--config.seed=3")


def test_bad_arguments_are_refused(capsys):
  assert fidelity.main(["--objectives", "corp_x"]) == 2
  assert fidelity.main(["--set", "/no/such/set.json"]) == 2
  assert "set.json" in capsys.readouterr().err


def test_tiny_protocol_runs_probes_both_families_and_resumes(tmp_path, monkeypatch):
  monkeypatch.setenv("CORP_JAX_CACHE", str(tmp_path / "cache"))
  argv = ["--set", "embedded", "--root", str(tmp_path / "root"), "--objectives",
          "simclr,corp_f", "--seeds", "0", "--steps", "2", "--preset", "test",
          "--linear_preset", "test", "--in_process"]
  for item in ("data.embedded_num_train=16", "data.embedded_num_test=8",
               "data.embedded_frame_size=32", "data.embedded_num_frames=8",
               # Stride 1: the test views' clips start at distinct frames (pairs to order).
               "data.stride=1", "train.num_devices=2", "train.async_checkpoints=False"):
    argv += ["--override", item]
  assert fidelity.main(argv) == 0
  out = tmp_path / "root" / "embedded"
  result = json.loads((out / "fidelity.json").read_text())
  assert [r["settings"]["objective"] for r in result["runs"]] == ["simclr", "corp_f"]
  for run in result["runs"]:
    for family in ("appearance", "motion"):
      entry = run["probe"][family]
      assert 0.0 <= entry["linear_top1"] <= 1.0 and 0.0 <= entry["knn_top1"] <= 1.0
    assert 0.0 <= run["probe"]["motion"]["linear_direction"] <= 1.0 or np.isnan(
        run["probe"]["motion"]["linear_direction"])
  assert result["runs"][0]["order_acc"] is None and 0 <= result["runs"][1]["order_acc"] <= 1
  # The relation head's order on held-out videos' views (corp_f only: simclr has no head).
  assert "order_views" not in result["runs"][0]["probe"]
  views = result["runs"][1]["probe"]["order_views"]
  assert views["test_videos"]["videos"] == 8 and views["train_videos"]["videos"] == 8
  for split in ("test_videos", "train_videos"):
    assert 0.0 <= views[split]["accuracy"] <= 1.0 and views[split]["pairs"] > 0
  text = (out / "fidelity.md").read_text()
  assert "| corp_f | 1 |" in text and "order acc, test videos" in text

  # A rerun finds every result and trains nothing.
  def no_training(*_, **__):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(fidelity, "_pretrain_in_process", no_training)
  monkeypatch.setattr(fidelity_probe, "probe", no_training)
  assert fidelity.main(argv) == 0
  # --reprobe probes the recorded runs again and keeps their pretraining figures.
  monkeypatch.setattr(fidelity_probe, "probe", lambda *_: {"motion": {"marker": 1}})
  assert fidelity.main(argv + ["--reprobe"]) == 0
  again = json.loads((out / "fidelity.json").read_text())["runs"]
  assert all(r["probe"] == {"motion": {"marker": 1}} for r in again)
  assert [r["pretrain_wall_s"] for r in again] == [r["pretrain_wall_s"] for r in result["runs"]]
  assert all(r["reprobe"]["first_probe_wall_s"] is not None for r in again)
  # Other settings in the same folder are refused, not mixed in.
  with pytest.raises(SystemExit, match="other settings"):
    fidelity.main(argv[:argv.index("--steps") + 1] + ["3"] + argv[argv.index("--steps") + 2:])


def test_a_set_json_without_a_required_key_is_named(tmp_path):
  path = tmp_path / "set.json"
  manifest = {"train_pattern": "a-*", "test_pattern": "b-*", "families": {}}
  path.write_text(json.dumps(manifest))
  with pytest.raises(ValueError, match="lacks 'name'"):
    fidelity_probe.read_set(str(path))
  path.write_text(json.dumps(dict(manifest, name="mine")))
  assert fidelity_probe.read_set(str(path))["name"] == "mine"
