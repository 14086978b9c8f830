"""The benchmark's vectorised PyTorch CORP losses (benchmarks/lib/torch_r3d.py, written for
speed) equal the loop-based re-derivation from the paper's equations
(corp_jax/tools/torch_reference.py, the one the parity checks use), so the speed comparison
times the same objective the library trains."""

import pytest

torch = pytest.importorskip("torch")

from benchmarks.lib import torch_r3d as bench  # pylint: disable=g-import-not-at-top
from corp_jax.tools import torch_reference as ref  # pylint: disable=g-import-not-at-top


def _model(num_classes):
  torch.manual_seed(0)
  spec = bench.make_spec("tiny", projection_hidden=(16,), projection_dim=8, head_num_heads=4)
  return bench.TorchCorp(spec, num_classes).double()


def test_corp_f_loss_matches_the_reference():
  model, b, d = _model(2), 5, 8
  z = torch.randn(b, 2, d, dtype=torch.float64)
  starts = torch.tensor([[0, 9], [7, 2], [4, 4], [1, 30], [12, 3]])
  g, p, q = model._project(z)
  forward = model.relate((g[:, 0], p[:, 0], q[:, 0]), (g[:, 1], p[:, 1], q[:, 1]))
  backward = model.relate((g[:, 1], p[:, 1], q[:, 1]), (g[:, 0], p[:, 0], q[:, 0]))
  order_logits = torch.stack([forward, backward], dim=1)
  fast = bench.corp_f_loss(model, z.reshape(2 * b, d), starts, temperature=0.1)
  slow = ref.corp_f_loss(z, starts, order_logits, temperature=0.1)
  torch.testing.assert_close(fast.double(), slow, rtol=1e-6, atol=1e-6)


def test_corp_m_loss_matches_the_reference():
  model, group_size, k, d = _model(3), 3, 4, 8
  groups = 2
  b = groups * group_size
  z = torch.randn(b * k, d, dtype=torch.float64)
  starts = torch.randint(0, 20, (b, k))
  starts[0, 1] = starts[0, 0]  # equal starts inside a video: no order term for that pair
  fast = bench.corp_m_loss(model, z, starts, group_size)
  m = group_size * k
  g, p, q = model._project(z.view(groups, m, -1))
  pair_logits = model.relate((g[:, :, None], p[:, :, None], q[:, :, None]),
                             (g[:, None], p[:, None], q[:, None]))
  video_index = torch.arange(group_size).repeat_interleave(k).expand(groups, m)
  slow = ref.corp_m_loss(pair_logits, video_index, starts.reshape(groups, m))
  torch.testing.assert_close(fast.double(), slow, rtol=1e-6, atol=1e-6)
