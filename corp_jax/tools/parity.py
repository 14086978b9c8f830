"""JAX-vs-PyTorch parity of the relation heads and the CORP losses (outputs and gradients).

    python -m corp_jax.tools.parity [--device cpu|cuda] [--dtype float32,bfloat16]

JAX runs on its default backend, PyTorch (corp_jax/tools/torch_reference.py, written from the
paper's equations) on --device, with the Flax weights copied into the torch modules. For each
component it prints the max abs difference and the max difference relative to the reference's
largest magnitude, per output and gradient (w.r.t. inputs and every weight). A comparison passes
if max_abs <= tol or max_rel <= tol. float32 runs with highest matmul precision on both sides
(no TF32) and tol 1e-5; the exit status is 1 if any float32 comparison fails. bfloat16 (compute
dtype; float32 weights and losses) is reported against tol 5e-2 for information.

Components: the mixed and decoupling heads (pairwise call and all_pairs), CORP_f
(head -> order logits -> Eq. 6) and CORP_m (head all_pairs -> Sec. 3.2 loss), each with
gradients w.r.t. the inputs z and the head weights. Needs only jax, flax, numpy, torch (no
TensorFlow, no ml_collections). `run_all` is also used by tests/test_torch_parity.py.
"""

import argparse
import sys
from typing import Dict, List, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch

from corp_jax.heads import RelationHead
from corp_jax.losses import corp_f_loss
from corp_jax.losses import corp_m_loss
from corp_jax.tools import torch_reference as ref

TOLERANCES = {"float32": 1e-5, "bfloat16": 5e-2}
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_JAX_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Small sizes: the parity is about the math, and the test runs on a shared CPU.
DIM, NUM_HEADS, NUM_PAIRS = 16, 8, 5
CORP_F_VIDEOS = 4
CORP_M_GROUPS, CORP_M_VIDEOS, CORP_M_CLIPS = 2, 2, 3


class Comparison(NamedTuple):
  component: str
  quantity: str
  dtype: str
  max_abs: float
  max_rel: float
  tolerance: float

  @property
  def ok(self) -> bool:
    return self.max_abs <= self.tolerance or self.max_rel <= self.tolerance


def _compare(component, quantity, dtype, got, want) -> Comparison:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  if got.shape != want.shape:
    raise ValueError(f"{component}/{quantity}: shape {got.shape} vs reference {want.shape}")
  max_abs = float(np.max(np.abs(got - want)))
  scale = float(np.max(np.abs(want)))
  max_rel = max_abs / scale if scale > 0 else max_abs
  return Comparison(component, quantity, dtype, max_abs, max_rel, TOLERANCES[dtype])


def _flatten(tree, prefix="") -> Dict[str, np.ndarray]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = np.asarray(value, np.float32)
  return out


def _heads(attention: str, num_classes: int, dtype: str, seed: int):
  """A Flax head with random weights and the torch reference holding the same weights."""
  head = RelationHead(attention=attention, num_heads=NUM_HEADS, mlp_layers=2,
                      num_classes=num_classes, dtype=_JAX_DTYPES[dtype])
  dummy = jnp.zeros((1, DIM), jnp.float32)

  @jax.jit
  def init(rng):
    params = head.init(rng, dummy, dummy)["params"]
    # Non-zero biases so the bias path is checked too.
    return jax.tree_util.tree_map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.fold_in(rng, 1), p.shape), params)

  return head, init(jax.random.PRNGKey(seed))


def _torch_head(attention, num_classes, params, device, dtype):
  module = ref.TorchRelationHead(attention, DIM, NUM_HEADS, num_classes, mlp_layers=2)
  module = module.to(device=device, dtype=_TORCH_DTYPES[dtype])
  ref.load_flax_params(module, params)
  return module


def _torch_tensor(array, device, dtype=torch.float32, grad=False):
  return torch.tensor(np.asarray(array), dtype=dtype, device=device, requires_grad=grad)


def _collect(component, dtype, jax_values: Dict, torch_values: Dict) -> List[Comparison]:
  return [_compare(component, name, dtype, jax_values[name], torch_values[name])
          for name in jax_values]


def check_head(attention: str, device: str, dtype: str, seed: int = 0) -> List[Comparison]:
  """phi(x, y) and all_pairs(z) with gradients of a random projection of the outputs."""
  rng = np.random.default_rng(seed)
  x, y = (rng.normal(size=(NUM_PAIRS, DIM)).astype(np.float32) for _ in range(2))
  cotangent = rng.normal(size=(NUM_PAIRS, 3)).astype(np.float32)
  cotangent_pairs = rng.normal(size=(NUM_PAIRS, NUM_PAIRS, 3)).astype(np.float32)
  head, params = _heads(attention, 3, dtype, seed)

  def objective(p, x, y):
    out = head.apply({"params": p}, x, y).astype(jnp.float32)
    pairs = head.apply({"params": p}, x, method=head.all_pairs).astype(jnp.float32)
    return jnp.sum(out * cotangent) + jnp.sum(pairs * cotangent_pairs), (out, pairs)

  (_, (out, pairs)), grads = jax.jit(jax.value_and_grad(objective, (0, 1, 2), has_aux=True))(
      params, x, y)
  jax_values = {"output": out, "all_pairs": pairs, "grad_x": grads[1], "grad_y": grads[2]}
  jax_values.update({f"grad_{k}": v for k, v in _flatten(grads[0]).items()})

  module = _torch_head(attention, 3, params, device, dtype)
  tdtype = _TORCH_DTYPES[dtype]
  tx, ty = _torch_tensor(x, device, tdtype, True), _torch_tensor(y, device, tdtype, True)
  t_out, t_pairs = module(tx, ty).float(), module.all_pairs(tx).float()
  total = ((t_out * _torch_tensor(cotangent, device)).sum()
           + (t_pairs * _torch_tensor(cotangent_pairs, device)).sum())
  total.backward()
  to_np = lambda t: t.detach().float().cpu().numpy()
  torch_values = {"output": to_np(t_out), "all_pairs": to_np(t_pairs), "grad_x": to_np(tx.grad),
                  "grad_y": to_np(ty.grad)}
  torch_values.update({f"grad_{k}": v for k, v in _flatten(ref.grads_as_flax_tree(module)).items()})
  return _collect(f"head[{attention}]", dtype, jax_values, torch_values)


def check_corp_f(attention: str, device: str, dtype: str, seed: int = 1) -> List[Comparison]:
  """z [B, 2, d] -> order logits phi(z_a, z_{1-a}) -> corp_f_loss; grads w.r.t. z, weights."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(CORP_F_VIDEOS, 2, DIM)).astype(np.float32)
  starts = np.stack([rng.permutation(40)[:2] for _ in range(CORP_F_VIDEOS)]).astype(np.int32)
  starts[0] = (5, 5)  # one video with equal starts: its order terms are masked
  head, params = _heads(attention, 2, dtype, seed)

  def objective(p, z):
    logits = jnp.stack([head.apply({"params": p}, z[:, 0], z[:, 1]),
                        head.apply({"params": p}, z[:, 1], z[:, 0])], axis=1)
    return corp_f_loss(z, starts, logits.astype(jnp.float32), temperature=0.1)[0]

  loss, grads = jax.jit(jax.value_and_grad(objective, (0, 1)))(params, z)
  jax_values = {"loss": loss, "grad_z": grads[1]}
  jax_values.update({f"grad_{k}": v for k, v in _flatten(grads[0]).items()})

  module = _torch_head(attention, 2, params, device, dtype)
  tz = _torch_tensor(z, device, torch.float32, True)
  zc = tz.to(_TORCH_DTYPES[dtype])
  logits = torch.stack([module(zc[:, 0], zc[:, 1]), module(zc[:, 1], zc[:, 0])], dim=1).float()
  t_loss = ref.corp_f_loss(tz, torch.tensor(starts, device=device), logits, temperature=0.1)
  t_loss.backward()
  to_np = lambda t: t.detach().float().cpu().numpy()
  torch_values = {"loss": to_np(t_loss), "grad_z": to_np(tz.grad)}
  torch_values.update({f"grad_{k}": v for k, v in _flatten(ref.grads_as_flax_tree(module)).items()})
  return _collect(f"corp_f[{attention}]", dtype, jax_values, torch_values)


def check_corp_m(attention: str, device: str, dtype: str, seed: int = 2) -> List[Comparison]:
  """z [G, M, d] -> all_pairs -> corp_m_loss; grads w.r.t. z and the head weights."""
  rng = np.random.default_rng(seed)
  m = CORP_M_VIDEOS * CORP_M_CLIPS
  z = rng.normal(size=(CORP_M_GROUPS, m, DIM)).astype(np.float32)
  video_index = np.tile(np.repeat(np.arange(CORP_M_VIDEOS), CORP_M_CLIPS),
                        (CORP_M_GROUPS, 1)).astype(np.int32)
  starts = np.stack([np.concatenate([rng.permutation(60)[:CORP_M_CLIPS]
                                     for _ in range(CORP_M_VIDEOS)])
                     for _ in range(CORP_M_GROUPS)]).astype(np.int32)
  head, params = _heads(attention, 3, dtype, seed)

  def objective(p, z):
    logits = jax.vmap(lambda zg: head.apply({"params": p}, zg, method=head.all_pairs))(z)
    return corp_m_loss(logits.astype(jnp.float32), video_index, starts)[0]

  loss, grads = jax.jit(jax.value_and_grad(objective, (0, 1)))(params, z)
  jax_values = {"loss": loss, "grad_z": grads[1]}
  jax_values.update({f"grad_{k}": v for k, v in _flatten(grads[0]).items()})

  module = _torch_head(attention, 3, params, device, dtype)
  tz = _torch_tensor(z, device, torch.float32, True)
  zc = tz.to(_TORCH_DTYPES[dtype])
  logits = torch.stack([module.all_pairs(zc[g]) for g in range(CORP_M_GROUPS)]).float()
  t_loss = ref.corp_m_loss(logits, torch.tensor(video_index, device=device),
                           torch.tensor(starts, device=device))
  t_loss.backward()
  to_np = lambda t: t.detach().float().cpu().numpy()
  torch_values = {"loss": to_np(t_loss), "grad_z": to_np(tz.grad)}
  torch_values.update({f"grad_{k}": v for k, v in _flatten(ref.grads_as_flax_tree(module)).items()})
  return _collect(f"corp_m[{attention}]", dtype, jax_values, torch_values)


def run_all(device: str = "cpu", dtypes=("float32",)) -> List[Comparison]:
  """Every component for both attentions and every dtype."""
  if device == "cuda":
    # PyTorch's float32 matmuls default to IEEE on CUDA; make it explicit for both sides.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
  results = []
  for dtype in dtypes:
    if dtype not in TOLERANCES:
      raise ValueError(f"--dtype entries must be in {sorted(TOLERANCES)}, got {dtype!r}")
    # On GPU, XLA's default float32 matmul precision may use TF32; compare at full precision.
    precision = "highest" if dtype == "float32" else "default"
    with jax.default_matmul_precision(precision):
      for attention in ("mixed", "decoupling"):
        for check in (check_head, check_corp_f, check_corp_m):
          results.extend(check(attention, device, dtype))
  return results


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                      help="PyTorch device (JAX uses its default backend)")
  parser.add_argument("--dtype", default="float32,bfloat16",
                      help="comma-separated compute dtypes from float32, bfloat16")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = _parse_args(argv)
  dtypes = tuple(d.strip() for d in args.dtype.split(",") if d.strip())
  if args.device == "cuda" and not torch.cuda.is_available():
    print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
    return 2
  print(f"JAX {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}); "
        f"PyTorch {torch.__version__} on {args.device}")
  print("tolerances: " + ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items())
        + "  (pass if max_abs <= tol or max_rel <= tol; max_rel = max_abs / max|reference|)")
  results = run_all(args.device, dtypes)
  print(f"{'component':22s} {'quantity':24s} {'dtype':9s} {'max_abs':>10s} {'max_rel':>10s}  ok")
  for r in results:
    print(f"{r.component:22s} {r.quantity:24s} {r.dtype:9s} {r.max_abs:10.3e} {r.max_rel:10.3e}"
          f"  {'yes' if r.ok else 'NO'}")
  for dtype in dtypes:
    worst = max((r for r in results if r.dtype == dtype), key=lambda r: r.max_rel)
    failures = sum(not r.ok for r in results if r.dtype == dtype)
    print(f"{dtype}: worst max_rel {worst.max_rel:.3e} ({worst.component} {worst.quantity}), "
          f"{failures} over tolerance {TOLERANCES[dtype]:g}")
  float32_failures = [r for r in results if r.dtype == "float32" and not r.ok]
  return 1 if float32_failures else 0


if __name__ == "__main__":
  sys.exit(main())
