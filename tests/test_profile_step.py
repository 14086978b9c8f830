"""benchmarks/profile_step.py and hlo_check's categories / traffic: interval arithmetic, HLO
categories and bytes on a hand-written module, and one traced CPU step."""

import pytest

from benchmarks import hlo_check
from benchmarks import profile_step

_HLO = """HloModule jit_step, entry_computation_layout={()}

%fused_reduce (p0: f32[4,8]) -> f32[8] {
  %p0 = f32[4,8]{1,0} parameter(0)
  %c = f32[] constant(0)
  ROOT %r = f32[8]{0} reduce(f32[4,8]{1,0} %p0, f32[] %c), dimensions={0}, to_apply=%add
}

%fused_shift (p0: f32[4,8]) -> f32[8,4] {
  %p0 = f32[4,8]{1,0} parameter(0)
  %s = f32[4,8]{1,0} slice(f32[4,8]{1,0} %p0), slice={[0:4], [0:8]}
  ROOT %t = f32[8,4]{1,0} transpose(f32[4,8]{1,0} %s), dimensions={1,0}
}

%fused_relu (p0: f32[4,8]) -> f32[4,8] {
  %p0 = f32[4,8]{1,0} parameter(0)
  %z = f32[] constant(0)
  %b = f32[4,8]{1,0} broadcast(f32[] %z), dimensions={}
  ROOT %m = f32[4,8]{1,0} maximum(f32[4,8]{1,0} %p0, f32[4,8]{1,0} %b)
}

%fused_gemm (p0: bf16[4,8], p1: bf16[8,8]) -> bf16[4,8] {
  %p0 = bf16[4,8]{1,0} parameter(0)
  %p1 = bf16[8,8]{1,0} parameter(1)
  ROOT %d = bf16[4,8]{1,0} dot(bf16[4,8]{1,0} %p0, bf16[8,8]{1,0} %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

ENTRY %main (x: f32[4,8], k: f32[1,1,8,8]) -> f32[8] {
  %x = f32[4,8]{1,0} parameter(0)
  %k = f32[1,1,8,8]{3,2,1,0} parameter(1)
  %conv = (f32[1,1,4,8]{3,2,1,0}, u8[0]{0}) custom-call(f32[4,8]{1,0} %x, f32[1,1,8,8]{3,2,1,0} %k), custom_call_target="__cudnn$convForward"
  %gemm = (bf16[4,8]{1,0}, s8[0]{0}) custom-call(f32[4,8]{1,0} %x, f32[4,8]{1,0} %x), custom_call_target="__cublas$gemm"
  %triton = bf16[4,8]{1,0} fusion(f32[4,8]{1,0} %x, f32[4,8]{1,0} %x), kind=kCustom, calls=%fused_gemm
  %shift = f32[8,4]{1,0} fusion(f32[4,8]{1,0} %x), kind=kLoop, calls=%fused_shift
  %relu = f32[4,8]{1,0} fusion(f32[4,8]{1,0} %x), kind=kLoop, calls=%fused_relu
  ROOT %stats = f32[8]{0} fusion(f32[4,8]{1,0} %relu), kind=kInput, calls=%fused_reduce
}
"""


def test_categorize_by_instruction():
  categories = hlo_check.categorize(hlo_check.parse_hlo(_HLO))
  assert categories["conv"] == "convolution"
  assert categories["gemm"] == categories["triton"] == "matmul"
  assert categories["shift"] == "data_movement"
  assert categories["relu"] == "elementwise"
  assert categories["stats"] == "reduction"
  assert "p0" not in categories  # fusion bodies are not kernels


def test_traffic_counts_operands_and_results_without_scratch():
  totals = hlo_check.traffic(hlo_check.parse_hlo(_HLO))
  x, k = 4 * 8 * 4, 8 * 8 * 4  # f32[4,8], f32[1,1,8,8]
  assert totals["convolution"] == x + k + 4 * 8 * 4  # the u8 workspace is not counted
  assert totals["matmul"] == 2 * (2 * x + 4 * 8 * 2)  # cuBLAS (s8 scratch counted) + Triton
  assert totals["data_movement"] == x + 8 * 4 * 4
  assert totals["elementwise"] == x + x
  assert totals["reduction"] == x + 8 * 4


def test_busy_time_is_the_union_of_intervals():
  events = [("a", 0, 10), ("b", 5, 15), ("c", 20, 25), ("d", 21, 22)]
  assert profile_step.busy_ns(events) == 15 + 5
  assert profile_step.busy_ns([]) == 0
  summary = profile_step.summarize(events, {"a": "convolution", "c": "reduction"}, steps=5)
  assert summary["busy_ms"] == pytest.approx(20 / 5 / 1e6)
  assert summary["categories"]["convolution"] == pytest.approx(10 / 5 / 1e6)
  assert summary["categories"]["unmapped"] == pytest.approx((10 + 1) / 5 / 1e6)
  assert summary["ops"][0][:2] == ("a", "convolution")


@pytest.mark.slow
def test_traces_one_cpu_step(tmp_path):
  summary = profile_step.main(["--size", "smoke", "--steps", "2", "--warmup", "1",
                               "--top", "3", "--trace_dir", str(tmp_path),
                               "--json", str(tmp_path / "s.json")])
  cats = summary["categories"]
  # XLA:CPU's thunks carry hlo_op stats: the step's kernels are found and mapped.
  assert cats["convolution"] > 0 and cats["unmapped"] == 0
  assert sum(cats.values()) == pytest.approx(summary["kernel_ms"])
  assert 0 < summary["busy_ms"] <= summary["kernel_ms"] + 1e-9
  assert (tmp_path / "s.json").exists()


def test_roofline_and_traffic_lines_for_an_h200():
  """The GPU-only report lines, fed figures by hand (they run only on a GPU otherwise)."""
  from benchmarks.lib import step_builder  # pylint: disable=g-import-not-at-top
  summary = {"categories": {"convolution": 30.0, "matmul": 0.5, "data_movement": 5.0,
                            "reduction": 10.0, "elementwise": 14.0, "unmapped": 0.0}}
  lines = profile_step.roofline_lines("NVIDIA H200", "r3d50", "corp_f", "bfloat16", 16, summary)
  assert "H200" in lines[0] and "convs" in lines[0]
  assert "convolution 30.0 ms" in lines[1] and "29.0 ms" in lines[1]
  assert "no roofline" in profile_step.roofline_lines("cpu", "r3d50", "corp_f", "bfloat16", 16,
                                                      summary)[0]
  totals = dict.fromkeys(hlo_check.CATEGORIES, 0)
  totals.update(convolution=48e9, elementwise=96e9)
  text = "\n".join(hlo_check.traffic_lines(totals, "NVIDIA H200", step_builder.SIZES["r3d50"],
                                           "corp_f", 16, "bfloat16"))
  assert "20.0 ms at H200's 4.8 TB/s" in text  # 96 GB / 4.8 TB/s
  assert "roofline.py's minimum" in text and "1.7x that" in text  # 96 / 58.0 GB
