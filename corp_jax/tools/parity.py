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
gradients w.r.t. the inputs z and the head weights; and the tiny R3D backbone
(corp_jax/export/torch_r3d.py, the PyTorch definition that exported weights load into):
features with running statistics (eval) and batch statistics (train), and the gradient of the
train-mode features w.r.t. the input clips (float32 tolerance 1e-4 for the backbone rows:
`check_backbone` says why). Needs only jax, flax, numpy, torch (no
TensorFlow, no ml_collections). `run_all` is also used by tests/test_torch_parity.py.

Reading the bfloat16 rows. In bfloat16 both sides round, so a JAX-vs-PyTorch difference is the
sum of two errors and does not say which side has it. For every non-float32 dtype the PyTorch
reference is therefore also run in float64, on the same inputs, weights and cotangents. Each
row then also shows max_rel of JAX and of PyTorch against that float64 truth ("f64 jax",
"f64 torch"), plus the norm-relative JAX-vs-PyTorch error ||jax - torch|| / ||torch||. Pass
or fail is the JAX-vs-PyTorch error against the tolerance; bfloat16 rows do not affect the
exit status.

Worked case: head[mixed] grad_mlp_hidden/bias. On CPU the JAX-vs-PyTorch bf16 max_rel was 5.0e-2
(5.16e-2 on an H200 GPU), right at the 5e-2 tolerance. Against float64, on CPU:

                   max_abs   max_rel  norm_rel
  JAX bf16         2.2e-2    9.2e-3   5.9e-3  (bfloat16 gradient sums; 5.4e-3 in float32)
  PyTorch bf16     1.14e-1   4.7e-2   2.6e-2

Nearly all of the difference is in the PyTorch result: one all_pairs hidden pre-activation is
-2.8e-3 in float64 but +8.7e-5 in PyTorch's bfloat16 forward. Its ReLU switches on and adds a
-0.119 cotangent to bias[5], which then reads 1.3125 where float64 gives 1.4267. The metric is
not skewed by a tiny element, because max_rel divides by the largest |reference| entry (2.41).
It is a ReLU mask flip: a discontinuity that bf16 rounding trips on either side. Over 30 seeds
(check_head sizes), the JAX forward and the PyTorch forward each flip a ReLU in 10 of 30 seeds
(mixed) and 13 of 30 (decoupling), not always on the same seeds. Every mlp_hidden/bias error
above ~2e-2 on either side lines up with such a flip. Without flips, both sides sit at a median
of ~6e-3 against float64. A bf16 row over tolerance therefore needs the f64 columns before
anyone blames either side.

Under a 16-bit compute dtype the JAX heads sum bias and broadcast gradients in float32: a
bfloat16 sum over all pairs would round after every add (corp_jax/heads/relation.py gives the
reason and the measured errors). Float32 results do not depend on it.
"""

import argparse
import math
import sys
from typing import Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import torch

from corp_jax.export import convert as export_convert
from corp_jax.export import torch_r3d
from corp_jax.heads import RelationHead
from corp_jax.losses import corp_f_loss
from corp_jax.losses import corp_m_loss
from corp_jax.models import ResNet3D, feature_dim
from corp_jax.tools import torch_reference as ref

TOLERANCES = {"float32": 1e-5, "bfloat16": 5e-2}
BACKBONE_FLOAT32_TOLERANCE = 1e-4
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
_JAX_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Small sizes: the parity is about the math, and the test runs on a shared CPU.
DIM, NUM_HEADS, NUM_PAIRS = 16, 8, 5
CORP_F_VIDEOS = 4
CORP_M_GROUPS, CORP_M_VIDEOS, CORP_M_CLIPS = 2, 2, 3


class Comparison(NamedTuple):
  """JAX vs the PyTorch reference for one quantity.

  max_abs, max_rel, norm_rel: JAX against PyTorch in the same compute dtype. `ok` is judged on
  these. jax_vs_f64, torch_vs_f64: max_rel of each side against the PyTorch reference run in
  float64 (None for float32 runs, where no float64 run is made).
  """
  component: str
  quantity: str
  dtype: str
  max_abs: float
  max_rel: float
  tolerance: float
  norm_rel: float = math.nan
  jax_vs_f64: Optional[float] = None
  torch_vs_f64: Optional[float] = None

  @property
  def ok(self) -> bool:
    return self.max_abs <= self.tolerance or self.max_rel <= self.tolerance


def _errors(got, want):
  """(max_abs, max_rel, norm_rel); max_rel = max_abs / max|want|, norm_rel = ||got-want||/||want||."""
  diff = got - want
  max_abs = float(np.max(np.abs(diff)))
  scale, norm = float(np.max(np.abs(want))), float(np.linalg.norm(want))
  max_rel = max_abs / scale if scale > 0 else max_abs
  norm_rel = float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))
  return max_abs, max_rel, norm_rel


def _compare(component, quantity, dtype, got, want, exact=None) -> Comparison:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  if got.shape != want.shape:
    raise ValueError(f"{component}/{quantity}: shape {got.shape} vs reference {want.shape}")
  max_abs, max_rel, norm_rel = _errors(got, want)
  jax_vs_f64 = torch_vs_f64 = None
  if exact is not None:
    exact = np.asarray(exact, np.float64)
    jax_vs_f64, torch_vs_f64 = _errors(got, exact)[1], _errors(want, exact)[1]
  return Comparison(component, quantity, dtype, max_abs, max_rel, TOLERANCES[dtype], norm_rel,
                    jax_vs_f64, torch_vs_f64)


def _flatten(tree, prefix="") -> Dict[str, np.ndarray]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = np.asarray(value, np.float64)  # exact for f32 / bf16 values
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


def _to_np(t):
  return t.detach().to(torch.float64).cpu().numpy()


def _loss_dtype(tdtype):
  """PyTorch dtype of the losses and cotangents: float32, or float64 for the float64 reference."""
  return torch.float64 if tdtype == torch.float64 else torch.float32


def _collect(component, dtype, jax_values: Dict, torch_fn) -> List[Comparison]:
  """Compares JAX with torch_fn(dtype), and for non-float32 dtypes both with torch_fn(float64)."""
  torch_values = torch_fn(dtype)
  exact = torch_fn("float64") if dtype != "float32" else {}
  return [_compare(component, name, dtype, jax_values[name], torch_values[name], exact.get(name))
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

  def torch_values(tdt):
    module = _torch_head(attention, 3, params, device, tdt)
    tdtype, ldtype = _TORCH_DTYPES[tdt], _loss_dtype(_TORCH_DTYPES[tdt])
    tx, ty = _torch_tensor(x, device, tdtype, True), _torch_tensor(y, device, tdtype, True)
    t_out, t_pairs = module(tx, ty).to(ldtype), module.all_pairs(tx).to(ldtype)
    total = ((t_out * _torch_tensor(cotangent, device, ldtype)).sum()
             + (t_pairs * _torch_tensor(cotangent_pairs, device, ldtype)).sum())
    total.backward()
    values = {"output": _to_np(t_out), "all_pairs": _to_np(t_pairs), "grad_x": _to_np(tx.grad),
              "grad_y": _to_np(ty.grad)}
    values.update({f"grad_{k}": v for k, v in _flatten(ref.grads_as_flax_tree(module)).items()})
    return values

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

  def torch_values(tdt):
    module = _torch_head(attention, 2, params, device, tdt)
    ldtype = _loss_dtype(_TORCH_DTYPES[tdt])
    tz = _torch_tensor(z, device, ldtype, True)
    zc = tz.to(_TORCH_DTYPES[tdt])
    logits = torch.stack([module(zc[:, 0], zc[:, 1]), module(zc[:, 1], zc[:, 0])],
                         dim=1).to(ldtype)
    t_loss = ref.corp_f_loss(tz, torch.tensor(starts, device=device), logits, temperature=0.1)
    t_loss.backward()
    values = {"loss": _to_np(t_loss), "grad_z": _to_np(tz.grad)}
    values.update({f"grad_{k}": v for k, v in _flatten(ref.grads_as_flax_tree(module)).items()})
    return values

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

  def torch_values(tdt):
    module = _torch_head(attention, 3, params, device, tdt)
    ldtype = _loss_dtype(_TORCH_DTYPES[tdt])
    tz = _torch_tensor(z, device, ldtype, True)
    zc = tz.to(_TORCH_DTYPES[tdt])
    logits = torch.stack([module.all_pairs(zc[g]) for g in range(CORP_M_GROUPS)]).to(ldtype)
    t_loss = ref.corp_m_loss(logits, torch.tensor(video_index, device=device),
                             torch.tensor(starts, device=device))
    t_loss.backward()
    values = {"loss": _to_np(t_loss), "grad_z": _to_np(tz.grad)}
    values.update({f"grad_{k}": v for k, v in _flatten(ref.grads_as_flax_tree(module)).items()})
    return values

  return _collect(f"corp_m[{attention}]", dtype, jax_values, torch_values)


def check_backbone(device: str, dtype: str, seed: int = 0) -> List[Comparison]:
  """The tiny ResNet3D vs torch_r3d.R3D holding the same (exported) weights."""
  module = ResNet3D("tiny", dtype=_JAX_DTYPES[dtype], conv_impl="native")
  rng = np.random.RandomState(seed)
  clips = rng.rand(2, 4, 16, 16, 3).astype(np.float32)
  variables = module.init(jax.random.PRNGKey(seed), jnp.asarray(clips), train=False)
  # Non-trivial BatchNorm parameters and statistics, so every one of them is exercised.
  variables = jax.tree_util.tree_map(
      lambda v: (rng.uniform(0.5, 1.5, v.shape).astype(np.float32) if v.ndim == 1
                 else np.asarray(v)), variables)
  cotangent = rng.normal(size=(2, feature_dim("tiny"))).astype(np.float32)

  def train_features(x):
    out, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
    return out

  grad_fn = jax.grad(lambda x: jnp.sum(train_features(x) * cotangent))
  jax_values = {"features_eval": module.apply(variables, clips, train=False),
                "features_train": train_features(clips), "grad_clips": grad_fn(clips)}
  state = export_convert.backbone_to_torch(variables["params"], variables["batch_stats"])

  def torch_values(tdt):
    net = torch_r3d.R3D("tiny")
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    net = net.to(device=device, dtype=_TORCH_DTYPES[tdt])
    x = _torch_tensor(np.transpose(clips, (0, 4, 1, 2, 3)), device, _TORCH_DTYPES[tdt])
    with torch.no_grad():
      eval_out = net.eval()(x)
    x.requires_grad_(True)
    train_out = net.train()(x)
    (train_out * _torch_tensor(cotangent, device, train_out.dtype)).sum().backward()
    return {"features_eval": _to_np(eval_out), "features_train": _to_np(train_out),
            "grad_clips": np.transpose(_to_np(x.grad), (0, 2, 3, 4, 1))}

  results = _collect("backbone[tiny]", dtype, jax_values, torch_values)
  if dtype == "float32":
    # Sixteen layers with train-mode BatchNorm: against a float64 PyTorch run, the float32 input
    # gradient of JAX was 7.8e-6 and PyTorch's 4.3e-6 (max_rel), so their difference can pass
    # 1e-5 by rounding alone (it measured 1.0e-5); the features were within 2.5e-6.
    results = [r._replace(tolerance=BACKBONE_FLOAT32_TOLERANCE) for r in results]
  return results


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
      results.extend(check_backbone(device, dtype))
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
  if any(d != "float32" for d in dtypes):
    print("non-float32 rows also give max_rel of JAX ('f64 jax') and of PyTorch ('f64 torch') "
          "against PyTorch in float64 (same inputs and weights); they do not change 'ok'")
  results = run_all(args.device, dtypes)
  print(f"{'component':22s} {'quantity':24s} {'dtype':9s} {'max_abs':>10s} {'max_rel':>10s} "
        f"{'norm_rel':>10s}  ok  {'f64 jax':>10s} {'f64 torch':>10s}")
  for r in results:
    f64 = (f"  {r.jax_vs_f64:10.3e} {r.torch_vs_f64:10.3e}" if r.jax_vs_f64 is not None else "")
    print(f"{r.component:22s} {r.quantity:24s} {r.dtype:9s} {r.max_abs:10.3e} {r.max_rel:10.3e} "
          f"{r.norm_rel:10.3e}  {'yes' if r.ok else 'NO ':3s}{f64}")
  for dtype in dtypes:
    rows = [r for r in results if r.dtype == dtype]
    worst = max(rows, key=lambda r: r.max_rel)
    failures = [r for r in rows if not r.ok]
    line = (f"{dtype}: worst max_rel {worst.max_rel:.3e} ({worst.component} {worst.quantity}), "
            f"{len(failures)} over tolerance {TOLERANCES[dtype]:g}")
    if worst.jax_vs_f64 is not None:
      worst_jax = max(rows, key=lambda r: r.jax_vs_f64)
      worst_torch = max(rows, key=lambda r: r.torch_vs_f64)
      line += (f"; against float64: worst JAX {worst_jax.jax_vs_f64:.3e} ({worst_jax.component} "
               f"{worst_jax.quantity}), worst PyTorch {worst_torch.torch_vs_f64:.3e} "
               f"({worst_torch.component} {worst_torch.quantity})")
      for r in failures:
        closer = "JAX" if r.jax_vs_f64 <= r.torch_vs_f64 else "PyTorch"
        line += (f"\n  over tolerance: {r.component} {r.quantity}: {closer} is closer to float64 "
                 f"(JAX {r.jax_vs_f64:.3e}, PyTorch {r.torch_vs_f64:.3e})")
    print(line)
  float32_failures = [r for r in results if r.dtype == "float32" and not r.ok]
  return 1 if float32_failures else 0


if __name__ == "__main__":
  sys.exit(main())
