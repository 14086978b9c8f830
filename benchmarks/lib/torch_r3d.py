"""Independent PyTorch reference of the CORP train step, for same-run speed comparisons.

Contract:
  `TorchCorp(spec: TorchSpec)`: R3D backbone -> projection MLP -> z, plus the decoupling
  relation head; `forward(clips: [N, 3, T, H, W]) -> z: [N, d]` float32.
  `corp_f_loss(model, z: [B*2, d], starts: [B, 2], temperature) -> scalar` and
  `corp_m_loss(model, z: [B*K, d], starts: [B, K], group_size) -> scalar`.
  `make_torch_step(spec, objective, batch, num_clips, ...) -> TorchStep` whose `run()` does one
  full training step (forward, loss, backward, SGD-momentum update) on fixed random inputs.
  `TorchWorker(step_kwargs, threads)`: the same step in a child process (`warmup(n)`,
  `time_steps(n) -> [s]`, `close()`), so that PyTorch's and XLA's CPU thread pools never run
  in one process and a finished worker returns all its device memory.

The backbone is the package's PyTorch R3D (corp_jax/export/torch_r3d.py: the network
exported weights load into, checked against the JAX backbone by corp_jax/tools/parity.py), so
the two step times compare like with like. The heads are written from the paper:
  head    global average pool -> projection MLP (Linear no bias -> BN -> ReLU per hidden layer,
          then Linear with bias) -> z; decoupling relation head (G, P, Q projections of
          sqrt(d)-scaled unit z, concat(Gx*Gy, Px*Qy - Qx*Py) -> 2-layer MLP -> logits).
Losses: CORP_f = InfoNCE over 2B clips (tau) + 2-way order CE on the positive pairs, summed over
both directions and divided by B (Eq. 6); CORP_m = 3-way (P1 different video / P2 / P3) CE over
all ordered clip pairs within groups of g videos, weighted by how many video pairs contain each
clip pair, mean over video pairs (Sec. 3.2). Both are vectorised for speed and equal the
loop-based re-derivation the parity checks use (corp_jax/tools/torch_reference.py;
tests/test_torch_step_losses.py).
The optimizer is SGD with momentum (torch has no LARS; LARS adds one norm per parameter tensor,
negligible next to the convolutions). Speed practice: channels_last_3d memory format, bfloat16
autocast when asked, cudnn.benchmark, and torch.compile when asked.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time

import torch
from torch import nn
import torch.nn.functional as F

from corp_jax.export import torch_r3d


@dataclasses.dataclass(frozen=True)
class TorchSpec:
  """Backbone architecture (a torch_r3d.resolve_arch dict) + heads."""
  arch: dict
  projection_hidden: tuple = (2048, 2048, 2048)
  projection_dim: int = 128
  head_num_heads: int = 128  # decoupling: n = h symmetric rows, l = h // 2 anti-symmetric rows


def make_spec(variant: str, projection_hidden, projection_dim: int,
              head_num_heads: int) -> TorchSpec:
  if variant not in torch_r3d.VARIANTS:
    raise ValueError(f"torch reference: variant {variant!r} is not one of "
                     f"{sorted(torch_r3d.VARIANTS)}")
  return TorchSpec(arch=torch_r3d.resolve_arch(variant),
                   projection_hidden=tuple(projection_hidden), projection_dim=projection_dim,
                   head_num_heads=head_num_heads)


class TorchCorp(nn.Module):
  """Backbone + projection MLP + decoupling relation head."""

  def __init__(self, spec: TorchSpec, num_classes: int):
    super().__init__()
    self.backbone = torch_r3d.R3D(spec.arch)
    layers, width = [], self.backbone.feature_dim
    for hidden in spec.projection_hidden:
      layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden, momentum=0.1),
                 nn.ReLU(inplace=True)]
      width = hidden
    layers.append(nn.Linear(width, spec.projection_dim))
    self.projection = nn.Sequential(*layers)
    d, n, l = spec.projection_dim, spec.head_num_heads, max(spec.head_num_heads // 2, 1)
    self.n, self.l = n, l
    self.gpq = nn.Linear(d, n + 2 * l, bias=False)  # rows of G, P, Q stacked: one matmul
    self.mlp = nn.Sequential(nn.Linear(n + l, n + l), nn.ReLU(inplace=True),
                             nn.Linear(n + l, num_classes))

  def forward(self, clips):
    return self.projection(self.backbone(clips)).float()

  def _project(self, z):
    zn = F.normalize(z, dim=-1) * math.sqrt(z.shape[-1])
    return torch.split(self.gpq(zn), (self.n, self.l, self.l), dim=-1)

  def relate(self, x, y):
    """phi(x, y) for projected (g, p, q) triples that broadcast against each other."""
    (gx, px, qx), (gy, py, qy) = x, y
    r = torch.cat([gx * gy, px * qy - qx * py], dim=-1)
    return self.mlp(r)


def corp_f_loss(model: TorchCorp, z, starts, temperature: float = 0.1):
  """Eq. 6. z: [2B, d] with rows (b, a) -> 2b + a; starts: [B, 2]."""
  b = starts.shape[0]
  zn = F.normalize(z.float(), dim=-1)
  logits = zn @ zn.t() / temperature
  eye = torch.eye(2 * b, dtype=torch.bool, device=z.device)
  logits = logits.masked_fill(eye, float("-inf"))
  partner = torch.arange(2 * b, device=z.device) ^ 1
  nce = F.cross_entropy(logits, partner, reduction="sum")
  g, p, q = model._project(z.view(b, 2, -1))
  forward = model.relate((g[:, 0], p[:, 0], q[:, 0]), (g[:, 1], p[:, 1], q[:, 1]))
  backward = model.relate((g[:, 1], p[:, 1], q[:, 1]), (g[:, 0], p[:, 0], q[:, 0]))
  order_logits = torch.stack([forward, backward], dim=1).float()  # [B, 2, 2]
  labels = (starts > starts.flip(1)).long()
  valid = (starts != starts.flip(1)).float()
  ce = F.cross_entropy(order_logits.reshape(-1, 2), labels.reshape(-1), reduction="none")
  return (nce + (ce * valid.reshape(-1)).sum()) / b


def corp_m_loss(model: TorchCorp, z, starts, group_size: int):
  """Sec. 3.2, vectorised over each group's ordered clip pairs. z: [B*K, d]; starts: [B, K]."""
  b, k = starts.shape
  groups, m = b // group_size, group_size * k
  g, p, q = model._project(z.view(groups, m, -1))
  x = (g[:, :, None], p[:, :, None], q[:, :, None])
  y = (g[:, None], p[:, None], q[:, None])
  logits = model.relate(x, y).float()  # [G, M, M, 3]
  video = torch.arange(group_size, device=z.device).repeat_interleave(k)
  same = video[:, None] == video[None, :]
  off_diag = ~torch.eye(m, dtype=torch.bool, device=z.device)
  s = starts.reshape(groups, m)
  earlier = s[:, :, None] < s[:, None, :]
  labels = torch.where(same & off_diag, torch.where(earlier, 1, 2), 0)
  ordered = same & off_diag & (s[:, :, None] != s[:, None, :])
  # A different-video pair lies in one video pair; a same-video pair in g - 1 of them.
  weights = (~same).float() + ordered.float() * (group_size - 1)
  ce = F.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1), reduction="none")
  num_pairs = groups * group_size * (group_size - 1) / 2
  return (ce * weights.reshape(-1)).sum() / num_pairs


class TorchStep:
  """One full training step on fixed inputs; `run()` returns the loss tensor."""

  def __init__(self, model, optimizer, clips, starts, loss_fn, autocast_dtype, device,
               compiled: bool):
    self.model, self.optimizer = model, optimizer
    self.clips, self.starts = clips, starts
    self.loss_fn, self.autocast_dtype, self.device = loss_fn, autocast_dtype, device
    self.compiled = compiled

  def run(self):
    self.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                        enabled=self.autocast_dtype is not None):
      loss = self.loss_fn(self.clips, self.starts)
    loss.backward()
    self.optimizer.step()
    return loss

  def sync(self):
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)

  def time_steps(self, steps: int) -> list:
    """Wall seconds of `steps` individual steps, each synchronised."""
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      self.run()
      self.sync()
      times.append(time.perf_counter() - start)
    return times


def make_torch_step(spec: TorchSpec, objective: str, *, batch: int, num_clips: int,
                    clip_len: int, crop: int, group_size: int, dtype: str, device: str,
                    compile_mode: str, temperature: float = 0.1, seed: int = 0) -> TorchStep:
  """Builds model, SGD optimizer and random inputs [batch * num_clips, 3, T, crop, crop].

  dtype: 'float32' or 'bfloat16' (autocast; weights stay float32, like the JAX model).
  compile_mode: 'off', 'on' (torch.compile of the forward + loss; errors propagate).
  """
  if objective not in ("corp_f", "corp_m"):
    raise ValueError(f"torch reference: objective must be corp_f or corp_m, got {objective!r}")
  torch.manual_seed(seed)
  dev = torch.device(device)
  if dev.type == "cuda":
    torch.backends.cudnn.benchmark = True
    # JAX's default float32 precision on GPUs uses TF32 for convolutions and matmuls.
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
  model = TorchCorp(spec, num_classes=2 if objective == "corp_f" else 3)
  model = model.to(dev).to(memory_format=torch.channels_last_3d)
  optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-6)
  n = batch * num_clips
  clips = torch.rand(n, 3, clip_len, crop, crop, device=dev)
  clips = clips.contiguous(memory_format=torch.channels_last_3d)
  # Distinct sorted starts per video, so every order label is defined.
  starts = torch.argsort(torch.rand(batch, 64, device=dev), dim=1)[:, :num_clips]

  def loss_fn(x, s):
    z = model(x)
    if objective == "corp_f":
      return corp_f_loss(model, z, s, temperature)
    return corp_m_loss(model, z, s, group_size)

  if compile_mode == "on":
    loss_fn = torch.compile(loss_fn)
  elif compile_mode != "off":
    raise ValueError(f"compile_mode must be 'on' or 'off', got {compile_mode!r}")
  autocast_dtype = torch.bfloat16 if dtype == "bfloat16" else None
  return TorchStep(model, optimizer, clips, starts, loss_fn, autocast_dtype, dev,
                   compiled=compile_mode == "on")


def count_params(module: nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


def describe(step: TorchStep) -> str:
  return (f"torch {torch.__version__} {step.device.type} channels_last_3d, "
          f"{'bf16 autocast' if step.autocast_dtype is not None else 'float32'}, "
          f"compile={'on' if step.compiled else 'off'}, threads={torch.get_num_threads()}, "
          f"{count_params(step.model.backbone) / 1e6:.2f}M backbone params")


def _serve(conn, step_kwargs: dict, threads: int):
  """Child process: builds the step, then answers ('warmup'|'time', n) until ('quit', 0)."""
  try:
    if threads:
      torch.set_num_threads(threads)
    step = make_torch_step(**step_kwargs)
    conn.send(describe(step))
    while True:
      command, n = conn.recv()
      if command == "quit":
        break
      if command == "warmup":
        for _ in range(n):
          step.run()
        step.sync()
        conn.send(None)
      else:
        conn.send(step.time_steps(n))
  except Exception as e:  # pylint: disable=broad-except
    conn.send(RuntimeError(f"torch worker failed: {type(e).__name__}: {e}"))
  finally:
    conn.close()


class TorchWorker:
  """A PyTorch train step in a spawned child process (see the module docstring).

  On a shared CPU, PyTorch's OpenMP threads and XLA's thread pool in one process slow each
  other down; and a 2-thread OpenMP step slowed 15-35x whenever another process held a core
  (barrier waits), hence `threads` (0 = PyTorch's default).
  """

  def __init__(self, step_kwargs: dict, threads: int = 0):
    ctx = multiprocessing.get_context("spawn")
    self.conn, child = ctx.Pipe()
    self.proc = ctx.Process(target=_serve, args=(child, step_kwargs, threads), daemon=True)
    self.proc.start()
    child.close()
    self.desc = None

  def _ask(self, message=None):
    if message is not None:
      self.conn.send(message)
    reply = self.conn.recv()
    if isinstance(reply, BaseException):
      raise reply
    return reply

  def ready(self) -> str:
    """Waits for the child to build its step; returns its description."""
    if self.desc is None:
      self.desc = self._ask()
    return self.desc

  def warmup(self, steps: int):
    self.ready()
    self._ask(("warmup", steps))

  def time_steps(self, steps: int) -> list:
    self.ready()
    return self._ask(("time", steps))

  def close(self):
    if self.proc.is_alive():
      try:
        self.conn.send(("quit", 0))
      except (BrokenPipeError, OSError):
        pass
      self.proc.join(timeout=30)
      if self.proc.is_alive():
        self.proc.terminate()
    self.conn.close()
