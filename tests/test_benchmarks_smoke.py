"""Smoke test of the benchmark scripts: each main() once at the smallest size, so they can't rot.

find_max_batch and end_to_end.py are left to `bash benchmarks/gpu_suite.sh --smoke` (they
cost minutes of compilation on a 2-core CI machine). Not a timing test: it checks that the
scripts run end to end against the current library (train step, cost analysis, PyTorch
reference, HLO analysis) and return sane figures. One device of the test mesh; tiny shapes; one timed step each.
"""

import importlib.util
import math

import pytest

from benchmarks import hlo_check, train_step


@pytest.mark.slow
def test_benchmark_mains_run_once():
  common = ["--size", "smoke", "--objective", "corp_f", "--conv_impl", "native",
            "--num_devices", "1"]
  [step] = train_step.main(common + ["--steps", "1", "--warmup", "1", "--rounds", "1",
                                     "--torch_compile", "off", "--torch_warmup", "1",
                                     "--torch_threads", "1"])
  jax_run = step["runs"]["jax native"]
  assert jax_run["clips_per_s"] > 0 and jax_run["model_gflop_per_clip"] > 0
  if importlib.util.find_spec("torch"):
    assert step["runs"]["torch threads=1"]["clips_per_s"] > 0
    assert math.isfinite(jax_run["jax_over_torch"])

  hlo = hlo_check.main(["--size", "smoke", "--conv_impl", "native", "--examples", "1"])
  assert hlo["convolutions"] > 0
  assert 0 <= hlo["with_adjacent_activation_layout_op"] <= hlo["with_adjacent_layout_op"]


def test_array_stream_benchmark_runs_once():
  pytest.importorskip("skimage")
  from benchmarks import array_stream  # pylint: disable=g-import-not-at-top
  result = array_stream.main(["--num_train", "8", "--batch", "4", "--batches", "1",
                              "--slices", "1", "--crop_size", "16"])
  assert result["on"]["batches_per_cpu_s"] > 0 and result["ratio_per_cpu_s"] > 0


def test_end_to_end_verdict_separates_input_bound_from_contended():
  from benchmarks import end_to_end  # pylint: disable=g-import-not-at-top
  assert end_to_end.verdict(step_only=100, input_only=50, loop=95) == "compute-bound"
  assert end_to_end.verdict(step_only=100, input_only=50, loop=45).startswith("INPUT-BOUND")
  # Each alone faster than the loop: the two share cores; serial estimate 1/(1/100 + 1/400).
  contended = end_to_end.verdict(step_only=100, input_only=400, loop=80)
  assert contended.startswith("CONTENDED") and "80.0 clips/s" in contended


def test_a_failing_variant_does_not_cost_the_others(monkeypatch, capsys):
  """On a GPU run one candidate that fails to compile must leave the other figures."""
  original = train_step.build_jax_bench

  def failing_s2d(size, objective, **kwargs):
    if kwargs["conv_impl"].endswith("+s2d"):
      raise RuntimeError("simulated compile failure")
    return original(size, objective, **kwargs)

  monkeypatch.setattr(train_step, "build_jax_bench", failing_s2d)
  [result] = train_step.main(["--size", "smoke", "--objective", "corp_f", "--conv_impl",
                              "native,native+s2d", "--no_torch", "--num_devices", "1",
                              "--steps", "1", "--warmup", "1", "--rounds", "1"])
  assert result["runs"]["jax native"]["clips_per_s"] > 0
  assert "simulated compile failure" in result["runs"]["jax native+s2d"]["error"]
  assert "FAILED, left out" in capsys.readouterr().out
