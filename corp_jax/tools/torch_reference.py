"""Independent PyTorch reference of the relation heads and CORP losses, from the paper's equations.

Used only by the parity checks (tests/test_torch_parity.py, corp_jax/tools/parity.py); the
library never imports torch. It is written directly from the equations, not from the JAX code:

* `TorchMixedAttention`: Eq. 1, r_k = <U_k x, V_k y>.
* `TorchDecouplingAttention`: Eq. 8 without the sum, concat(Gx*Gy, Px*Qy - Qx*Py).
* `TorchRelationHead`: phi = mlp(r) (Eq. 2 / 4); `all_pairs` by broadcasting the pairwise call.
* `corp_f_loss`: Eq. 5-6 as -log[Prob(order | not P1) * Prob(not P1)] per anchor, summed over
  both directions of every video and divided by B.
* `corp_m_loss`: Sec. 3.2 by an explicit loop over the video pairs of each group, summing the
  3-way CE over each pair's 4K^2 - 2K ordered clip pairs, mean over video pairs.

Parameter names and layouts mirror the Flax modules (`U`, `V`: [h, d/h, d]; `G`, `P`, `Q`:
[rows, d]; `mlp_hidden`, `mlp_out` Linear layers), and `load_flax_params` copies a Flax
`params` tree in (Dense kernels [in, out] become Linear weights [out, in]).
"""

import itertools
from typing import Any, Dict, Mapping

import numpy as np
import torch
from torch import nn

# ----------------------------------------------------------------------------- heads


class TorchMixedAttention(nn.Module):
  """Eq. 1 with U, V: [h, d/h, d]."""

  def __init__(self, num_heads: int, dim: int):
    super().__init__()
    if dim % num_heads:
      raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
    self.U = nn.Parameter(torch.zeros(num_heads, dim // num_heads, dim))
    self.V = nn.Parameter(torch.zeros(num_heads, dim // num_heads, dim))

  def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    u_x = torch.einsum("hcd,...d->...hc", self.U, x)
    v_y = torch.einsum("hcd,...d->...hc", self.V, y)
    return (u_x * v_y).sum(-1)


class TorchDecouplingAttention(nn.Module):
  """Eq. 8 without the sum, with G: [n, d], P, Q: [l, d]."""

  def __init__(self, num_symmetric: int, num_antisymmetric: int, dim: int):
    super().__init__()
    self.G = nn.Parameter(torch.zeros(num_symmetric, dim))
    self.P = nn.Parameter(torch.zeros(num_antisymmetric, dim))
    self.Q = nn.Parameter(torch.zeros(num_antisymmetric, dim))

  def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    gx, gy = x @ self.G.T, y @ self.G.T
    px, py = x @ self.P.T, y @ self.P.T
    qx, qy = x @ self.Q.T, y @ self.Q.T
    gx, gy = torch.broadcast_tensors(gx, gy)
    px, qy = torch.broadcast_tensors(px, qy)
    qx, py = torch.broadcast_tensors(qx, py)
    return torch.cat([gx * gy, px * qy - qx * py], dim=-1)


class TorchRelationHead(nn.Module):
  """phi(x, y) = mlp(r(x, y)); mlp = Linear -> ReLU -> Linear (2 layers) or Linear (1)."""

  def __init__(self, attention: str, dim: int, num_heads: int, num_classes: int,
               mlp_layers: int = 2, num_symmetric: int = None, num_antisymmetric: int = None,
               mlp_hidden: int = None):
    super().__init__()
    if attention == "mixed":
      self.relation = TorchMixedAttention(num_heads, dim)
      width = num_heads
    elif attention == "decoupling":
      n = num_heads if num_symmetric is None else num_symmetric
      l = max(num_heads // 2, 1) if num_antisymmetric is None else num_antisymmetric
      self.relation = TorchDecouplingAttention(n, l, dim)
      width = n + l
    else:
      raise ValueError(f"attention must be 'mixed' or 'decoupling', got {attention!r}")
    self.mlp_layers = mlp_layers
    if mlp_layers == 2:
      hidden = mlp_hidden or width
      self.mlp_hidden = nn.Linear(width, hidden)
      self.mlp_out = nn.Linear(hidden, num_classes)
    else:
      self.mlp_out = nn.Linear(width, num_classes)

  def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r = self.relation(x, y)
    if self.mlp_layers == 2:
      r = torch.relu(self.mlp_hidden(r))
    return self.mlp_out(r)

  def all_pairs(self, z: torch.Tensor) -> torch.Tensor:
    """z [M, d] -> [M, M, C] with [i, j] = phi(z_i, z_j), by broadcasting."""
    return self.forward(z[:, None, :], z[None, :, :])


def load_flax_params(module: TorchRelationHead, params: Mapping[str, Any]) -> None:
  """Copies a Flax RelationHead `params` tree (the dict under 'params') into `module`."""
  dtype = next(module.parameters()).dtype
  device = next(module.parameters()).device
  as_tensor = lambda a: torch.tensor(np.asarray(a, np.float32), dtype=dtype, device=device)
  with torch.no_grad():
    for name, value in params["relation"].items():
      getattr(module.relation, name).copy_(as_tensor(value))
    for layer in ("mlp_hidden", "mlp_out"):
      if layer in params:
        getattr(module, layer).weight.copy_(as_tensor(params[layer]["kernel"]).T)
        getattr(module, layer).bias.copy_(as_tensor(params[layer]["bias"]))


def grads_as_flax_tree(module: TorchRelationHead) -> Dict[str, Any]:
  """The .grad of every parameter, laid out like the Flax params tree.

  NumPy float32, or float64 for a float64 module (the float64 reference of the bf16 parity rows).
  """
  wide = lambda t: torch.float64 if t.dtype == torch.float64 else torch.float32
  to_np = lambda t: t.detach().to(wide(t)).cpu().numpy()
  tree = {"relation": {name: to_np(p.grad) for name, p in module.relation.named_parameters()}}
  for layer in ("mlp_hidden", "mlp_out"):
    if hasattr(module, layer):
      linear = getattr(module, layer)
      tree[layer] = {"kernel": to_np(linear.weight.grad).T, "bias": to_np(linear.bias.grad)}
  return tree


# ----------------------------------------------------------------------------- losses


def corp_f_loss(z: torch.Tensor, starts: torch.Tensor, order_logits: torch.Tensor,
                temperature: float = 0.1) -> torch.Tensor:
  """Eq. 6, L_total = 1/B sum_b L_b; z [B, 2, d], starts [B, 2], order_logits [B, 2, 2].

  order_logits[b, a] = phi(z[b, a], z[b, 1 - a]); class 0 = clip a earlier. Directions whose
  two starts are equal contribute no order term.
  """
  b, _, d = z.shape
  flat = torch.nn.functional.normalize(z.reshape(2 * b, d), dim=-1)
  sims = flat @ flat.T / temperature
  loss = z.new_zeros(())
  for i in range(2 * b):
    partner = i + 1 if i % 2 == 0 else i - 1
    others = [k for k in range(2 * b) if k != i]
    # Eq. 5: Prob_{i,partner}(not P1) over all k != i.
    log_prob_same = sims[i, partner] - torch.logsumexp(sims[i, others], dim=0)
    video, clip = divmod(i, 2)
    start_i, start_partner = starts[video, clip], starts[video, 1 - clip]
    log_prob_order = z.new_zeros(())
    if start_i != start_partner:
      target = 0 if start_i < start_partner else 1
      log_prob_order = torch.log_softmax(order_logits[video, clip], dim=-1)[target]
    loss = loss - (log_prob_order + log_prob_same)
  return loss / b


def corp_m_loss(pair_logits: torch.Tensor, video_index: torch.Tensor,
                starts: torch.Tensor) -> torch.Tensor:
  """Sec. 3.2: pair_logits [G, M, M, 3], video_index, starts [G, M].

  For every video pair {u, v} of a group: the 3-way CE (0 = P1 different videos, 1 = P2 first
  earlier, 2 = P3 second earlier) summed over its ordered clip pairs i != j; the loss is the mean
  over all video pairs.
  """
  per_video_pair = []
  for group in range(pair_logits.shape[0]):
    videos = torch.unique(video_index[group]).tolist()
    for u, v in itertools.combinations(videos, 2):
      clips = torch.nonzero((video_index[group] == u) | (video_index[group] == v))[:, 0]
      logits = pair_logits[group][clips][:, clips]                    # [2K, 2K, 3]
      vid, start = video_index[group][clips], starts[group][clips]
      same = vid[:, None] == vid[None, :]
      labels = torch.where(same, torch.where(start[:, None] < start[None, :], 1, 2), 0)
      keep = ~torch.eye(len(clips), dtype=torch.bool, device=logits.device)
      keep &= ~(same & (start[:, None] == start[None, :]))
      ce = torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum")
      per_video_pair.append(ce)
  return torch.stack(per_video_pair).mean()
