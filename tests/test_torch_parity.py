"""JAX vs an independent PyTorch reference (corp_jax/tools/torch_reference.py), float32 on CPU.

Mixed and decoupling heads, CORP_f and CORP_m: outputs and gradients w.r.t. the inputs and every
head weight agree to 1e-5 (absolute, or relative to the reference's largest magnitude). The
same checks run as `python -m corp_jax.tools.parity` on a GPU host.
"""

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed; parity checks need it")

from corp_jax.tools import parity  # pylint: disable=g-import-not-at-top
from corp_jax.tools import torch_reference  # pylint: disable=g-import-not-at-top

TOLERANCE = 1e-5


def _assert_all_close(results):
  assert results, "no comparisons were made"
  bad = [r for r in results if not r.ok]
  assert not bad, "\n".join(
      f"{r.component} {r.quantity}: max_abs {r.max_abs:.3e} max_rel {r.max_rel:.3e}" for r in bad)


@pytest.mark.parametrize("attention", ["mixed", "decoupling"])
@pytest.mark.parametrize("check", [parity.check_head, parity.check_corp_f, parity.check_corp_m],
                         ids=["head", "corp_f", "corp_m"])
def test_parity_float32_cpu(check, attention):
  assert parity.TOLERANCES["float32"] == TOLERANCE
  results = check(attention, "cpu", "float32")
  quantities = {r.quantity for r in results}
  # Gradients w.r.t. inputs and every weight of the head are compared, not just the output.
  assert any(q.startswith("grad_relation/") for q in quantities)
  assert {"grad_mlp_hidden/kernel", "grad_mlp_out/bias"} <= quantities
  assert quantities & {"grad_x", "grad_z"}
  _assert_all_close(results)


def test_parity_detects_a_wrong_weight(monkeypatch):
  """The harness compares real values: a 1e-3 change to G in the torch copy is caught."""
  original = torch_reference.load_flax_params

  def load_and_perturb(module, params):
    original(module, params)
    with torch.no_grad():
      module.relation.G.add_(1e-3)

  monkeypatch.setattr(torch_reference, "load_flax_params", load_and_perturb)
  results = parity.check_head("decoupling", "cpu", "float32")
  assert any(not r.ok and r.quantity == "output" for r in results)


def test_parity_cli_rejects_unknown_dtype():
  with pytest.raises(ValueError, match="float16"):
    parity.run_all("cpu", ("float16",))
