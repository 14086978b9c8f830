"""Smoke test of the benchmark scripts: each main() once at the smallest size, so they can't rot.

Not a timing test: it checks that the scripts run end to end against the current library
(train step, cost analysis, PyTorch reference, find_max_batch, HLO analysis, input pipeline) and
return sane figures. One device of the test mesh; tiny shapes; one timed step each.
"""

import importlib.util
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # `benchmarks` importable

from benchmarks import end_to_end, hlo_check, train_step  # pylint: disable=g-import-not-at-top


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

  [found] = train_step.main(common + ["--find_max_batch", "--batch", "2", "--max_batch", "2"])
  assert found["find_max_batch"]["remat=False"]["largest"] == 2
  assert found["find_max_batch"]["remat=True"]["largest"] == 2

  hlo = hlo_check.main(["--size", "smoke", "--conv_impl", "native", "--examples", "1"])
  assert hlo["convolutions"] > 0

  if importlib.util.find_spec("tensorflow") and importlib.util.find_spec("ml_collections"):
    # accel_aug=on covers more code (augmentation inside the step) than off.
    e2e = end_to_end.main(["--preset", "test", "--batch", "2", "--accel_aug", "on",
                           "--steps", "1", "--warmup", "1", "--num_devices", "1"])
    assert set(e2e) == {"on"}
    assert all(r["loop"] > 0 and r["step_only"] > 0 for r in e2e.values())
