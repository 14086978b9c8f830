"""Relation heads: what the head sees, the pairwise relation r(z_i, z_j), the MLP to logits.

Contract (docs/CONTRACTS.md, corp_jax.heads):

* `relation_inputs(z)`: what the head sees, √d-scaled unit vectors of the projections z of
  Sec. 3.1 (the scaling is this package's choice; the paper does not say whether z is
  normalised before Eq. 1).
* `corp_f_order_logits(z, relate)`: Eq. 4 on the positive pairs of CORP_f, both directions.
* `group_pair_logits(z, relate_all)`: Eq. 2 on every ordered clip pair of each CORP_m group.
  Both take raw projections z and apply `relation_inputs`; `relate` / `relate_all` are the
  head's `__call__` / `all_pairs` bound to its parameters.
* `MixedAttention(num_heads=h)`: Eq. 1, r(x, y)_k = <U_k x, V_k y> with U_k, V_k in
  R^{d/h x d}; `(x: [..., d], y: [..., d]) -> [..., h]`.
* `DecouplingAttention(num_symmetric=n, num_antisymmetric=l)`: Eq. 7-8 with the sum removed;
  `(x, y) -> [..., n + l]` = concat(Gx * Gy [n], Px * Qy - Qx * Py [l]). The first n entries are
  exactly symmetric in (x, y), the last l exactly anti-symmetric.
* `RelationHead(attention, num_heads, mlp_layers, num_classes)`: phi(z_i, z_j) = mlp(r(z_i, z_j))
  (Eq. 2 / Eq. 4); `__call__(z_i, z_j) -> [..., C]` broadcasting over leading dims and
  `all_pairs(z: [M, d]) -> [M, M, C]` with entry [i, j] = phi(z_i, z_j), computed by projecting
  every z once and forming outer products (no loop over pairs).

Parameters are created in `param_dtype` (float32); `dtype` (e.g. bfloat16) is the compute dtype of
the projections and the MLP. Logits come back in the compute dtype; the losses cast to float32.

Gradient sums run in float32 under a 16-bit compute dtype. When a value is broadcast over pairs
(an MLP bias added to every pair, or Gz_j shared by every pair (i, j) in `all_pairs`), the
backward pass adds up its cotangent over those pairs. If the broadcast happens in bfloat16, that
sum is a bfloat16 reduce_sum: XLA:CPU rounds the running sum to bfloat16 after every add. So the
operands are broadcast in float32 and cast after (`_broadcast_then_cast`, `_Dense`). The forward
values are the same bit for bit as a bfloat16 broadcast. Measured on `all_pairs` with M = 64
(4096 pairs, bfloat16, norm error against float64): a bfloat16 sum gives the mlp_out bias
gradient an error of 3.7e-2, against 2.3e-3 for PyTorch bf16, which sums in float32. The decoupling G/P/Q gradients had 8.7e-3, against 5.1e-3 for PyTorch.
"""

from typing import Any, Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from corp_jax.losses.contrastive import l2_normalize

Array = Any
Dtype = Any

# Fan-in scaled init over the input dimension d (last axis) of a [rows..., d] projection, so
# every projected coordinate starts with unit variance for unit-variance inputs. For L2-normalised
# inputs (||z|| = 1) the coordinates start at variance 1/d and every relation entry, a product of
# two of them, near 1/d: initial logits are then small and nearly constant across pairs.
_projection_init = nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=-1, out_axis=-2)

ATTENTION_KINDS = ("mixed", "decoupling")


def _is_narrow_float(dtype: Dtype) -> bool:
  """True for floating dtypes narrower than float32 (bfloat16, float16)."""
  dtype = jnp.dtype(dtype)
  return jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4


def _broadcast_then_cast(a: Array, shape: Sequence[int], dtype: Dtype) -> Array:
  """`a` broadcast to `shape` and cast to `dtype`, summing its gradient in float32.

  When `dtype` is a narrow float, the broadcast is done in float32 and the cast comes after it.
  The transpose then converts the cotangent to float32 and reduces over the broadcast axes in
  float32. Broadcasting in the narrow dtype would reduce in that dtype, and the running sum would
  lose precision with every pair added. Converting bfloat16 values to float32 and back is exact,
  so the forward values do not change. For float32 or wider, this is `a.astype(dtype)` with
  broadcasting left to the consumer, as flax does.
  """
  if not _is_narrow_float(dtype):
    return a.astype(dtype)
  wide = jnp.promote_types(a.dtype, jnp.float32)
  return jnp.broadcast_to(a.astype(wide), tuple(shape)).astype(dtype)


def _broadcast_operands(*arrays: Array) -> Tuple[Array, ...]:
  """Broadcasts same-dtype operands to their common shape, with float32 gradient sums.

  Each operand broadcast over pairs, such as g_z[:, None] and g_z[None, :] in `all_pairs`, or
  x [M, 1, d] against y [1, M, d], has its gradient summed over those pairs in float32.
  """
  dtype = jnp.result_type(*arrays)
  if not _is_narrow_float(dtype):
    return arrays
  shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in arrays))
  return tuple(a if jnp.shape(a) == shape else _broadcast_then_cast(a, shape, dtype)
               for a in arrays)


class _Dense(nn.Module):
  """`nn.Dense` whose bias gradient sums over the batch in float32.

  It has the same parameters (`kernel` [in, out], `bias` [out]), initialisers and forward values
  as `nn.Dense(features, dtype=dtype, param_dtype=param_dtype)`. flax casts the bias to the
  compute dtype before adding it. For bfloat16 that makes its gradient a bfloat16 sum over every
  leading index (every pair, for `all_pairs`). Here the float32 bias is broadcast first and then
  cast (`_broadcast_then_cast`), so the sum is done in float32.
  """
  features: int
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (jnp.shape(inputs)[-1], self.features), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), self.param_dtype)
    inputs, kernel = nn.dtypes.promote_dtype(inputs, kernel, dtype=self.dtype)
    y = jax.lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())))
    if _is_narrow_float(y.dtype):
      return y + _broadcast_then_cast(bias, y.shape, y.dtype)
    # As nn.Dense: bias promoted to the compute dtype, added by broadcasting.
    return y + jnp.reshape(bias.astype(y.dtype), (1,) * (y.ndim - 1) + (-1,))


def _check_positive_int(name: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")


def antisymmetric_product(p_x: Array, q_x: Array, p_y: Array, q_y: Array) -> Array:
  """Px * Qy - Qx * Py, written so that swapping x and y negates it bit for bit.

  Compiled code may contract a*b - c*d into fma(a, b, -c*d), whose rounding depends on which
  product is fused, so the plain form is anti-symmetric only to ~1 ulp under jit. With
  A(x, y) = Px*Qy - Qx*Py however rounded, 0.5 * (A(x, y) - A(y, x)) equals A mathematically, and
  its outer subtraction (of two non-products, never contracted) makes swapping x, y an exact
  negation. The extra cost is O(l) per pair, against the projections' O(l d).
  """
  forward = p_x * q_y - q_x * p_y
  backward = p_y * q_x - q_y * p_x
  return 0.5 * (forward - backward)


def _check_same_feature_dim(x: Array, y: Array) -> None:
  if x.shape[-1] != y.shape[-1]:
    raise ValueError(
        f"relation inputs must share the feature dim d: x has shape {x.shape}, "
        f"y has shape {y.shape}")


class MixedAttention(nn.Module):
  """Multi-head bilinear attention, Eq. 1 (the paper's "mixed" baseline).

  r(x, y)_k = <U_k x, V_k y>, k = 1..h, with U_k, V_k in R^{d/h x d}; stored as
  `U`, `V`: [h, d/h, d] float32. Each head is the bilinear form x^T U_k^T V_k y, whose matrix
  mixes a symmetric and an anti-symmetric part (Sec. 3.4). Parameters: 2 d^2, for any h.

  Attributes:
    num_heads: h; the input dim d must be divisible by h.
    dtype: compute dtype (None: float32 / input promotion).
    param_dtype: parameter dtype.
  """
  num_heads: int = 128
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  @property
  def features(self) -> int:
    """Width of r(x, y)."""
    return self.num_heads

  @nn.compact
  def project(self, z: Array) -> Tuple[Array, Array]:
    """Projects z: [..., d] once into (U z, V z), each [..., h, d/h]."""
    _check_positive_int("MixedAttention.num_heads", self.num_heads)
    d = z.shape[-1]
    if d % self.num_heads != 0:
      raise ValueError(
          f"MixedAttention: feature dim d={d} must be divisible by num_heads={self.num_heads} "
          f"(U_k, V_k are d/h x d, Eq. 1)")
    head_dim = d // self.num_heads
    shape = (self.num_heads, head_dim, d)
    u_kernel = self.param("U", _projection_init, shape, self.param_dtype)
    v_kernel = self.param("V", _projection_init, shape, self.param_dtype)
    z, u_kernel, v_kernel = nn.dtypes.promote_dtype(z, u_kernel, v_kernel, dtype=self.dtype)
    u_z = jnp.einsum("...d,hcd->...hc", z, u_kernel)
    v_z = jnp.einsum("...d,hcd->...hc", z, v_kernel)
    return u_z, v_z

  def __call__(self, x: Array, y: Array) -> Array:
    """r(x, y): x, y [..., d] (broadcastable leading dims) -> [..., h]."""
    _check_same_feature_dim(x, y)
    u_x, _ = self.project(x)
    _, v_y = self.project(y)
    u_x, v_y = _broadcast_operands(u_x, v_y)
    return jnp.sum(u_x * v_y, axis=-1)

  def all_pairs(self, z: Array) -> Array:
    """r(z_i, z_j) for all i, j: z [M, d] -> [M, M, h]."""
    u_z, v_z = self.project(z)
    return jnp.einsum("ihc,jhc->ijh", u_z, v_z)


class DecouplingAttention(nn.Module):
  """Decoupling attention, Eq. 7-8 with the summation removed (Sec. 3.4).

  With G: [n, d], P, Q: [l, d] (rows g_i, p_j, q_j of Eq. 7) the output is
    concat(Gx * Gy, Px * Qy - Qx * Py) in R^{n + l}.
  Summing it gives x^T M y for M = sum_i g_i g_i^T + sum_j (p_j q_j^T - q_j p_j^T) (Eq. 8).
  The G part is exactly symmetric under x <-> y and the P, Q part exactly anti-symmetric, so
  similarity gradients reach only G and order gradients only P, Q.

  Default sizes n = 128, l = 64: n + 2l = 256 projection rows of length d, which for the paper's
  h = 128 and d = 128 equals the mixed head's 2 d^2 = 256 d parameters, and the projections cost
  the same multiply-adds. The element-wise products are O(n + l) per pair against the
  projections' O((n + 2l) d), so the module has neither extra parameters nor computation over
  Eq. 1 (the MLP that follows sees n + l = 192 inputs instead of 128).

  Attributes:
    num_symmetric: n, rows of G.
    num_antisymmetric: l, rows of P and of Q.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """
  num_symmetric: int = 128
  num_antisymmetric: int = 64
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  @property
  def features(self) -> int:
    """Width of r(x, y)."""
    return self.num_symmetric + self.num_antisymmetric

  @nn.compact
  def project(self, z: Array) -> Tuple[Array, Array, Array]:
    """Projects z: [..., d] once into (G z [..., n], P z [..., l], Q z [..., l])."""
    _check_positive_int("DecouplingAttention.num_symmetric", self.num_symmetric)
    _check_positive_int("DecouplingAttention.num_antisymmetric", self.num_antisymmetric)
    d = z.shape[-1]
    g_kernel = self.param("G", _projection_init, (self.num_symmetric, d), self.param_dtype)
    p_kernel = self.param("P", _projection_init, (self.num_antisymmetric, d), self.param_dtype)
    q_kernel = self.param("Q", _projection_init, (self.num_antisymmetric, d), self.param_dtype)
    z, g_kernel, p_kernel, q_kernel = nn.dtypes.promote_dtype(
        z, g_kernel, p_kernel, q_kernel, dtype=self.dtype)
    return z @ g_kernel.T, z @ p_kernel.T, z @ q_kernel.T

  def symmetric_part(self, x: Array, y: Array) -> Array:
    """Gx * Gy: [..., n], equal under x <-> y."""
    _check_same_feature_dim(x, y)
    g_x, _, _ = self.project(x)
    g_y, _, _ = self.project(y)
    g_x, g_y = _broadcast_operands(g_x, g_y)
    return g_x * g_y

  def antisymmetric_part(self, x: Array, y: Array) -> Array:
    """Px * Qy - Qx * Py: [..., l], negated under x <-> y."""
    _check_same_feature_dim(x, y)
    _, p_x, q_x = self.project(x)
    _, p_y, q_y = self.project(y)
    return antisymmetric_product(*_broadcast_operands(p_x, q_x, p_y, q_y))

  def __call__(self, x: Array, y: Array) -> Array:
    """r(x, y): x, y [..., d] (broadcastable leading dims) -> [..., n + l]."""
    _check_same_feature_dim(x, y)
    g_x, p_x, q_x = self.project(x)
    g_y, p_y, q_y = self.project(y)
    g_x, g_y = _broadcast_operands(g_x, g_y)
    symmetric = g_x * g_y
    antisymmetric = antisymmetric_product(*_broadcast_operands(p_x, q_x, p_y, q_y))
    # Both parts broadcast x's and y's leading dims the same way, so they concatenate directly.
    return jnp.concatenate([symmetric, antisymmetric], axis=-1)

  def all_pairs(self, z: Array) -> Array:
    """r(z_i, z_j) for all i, j: z [M, d] -> [M, M, n + l]."""
    g_z, p_z, q_z = self.project(z)
    g_i, g_j = _broadcast_operands(g_z[:, None, :], g_z[None, :, :])
    symmetric = g_i * g_j
    antisymmetric = antisymmetric_product(*_broadcast_operands(
        p_z[:, None, :], q_z[:, None, :], p_z[None, :, :], q_z[None, :, :]))
    return jnp.concatenate([symmetric, antisymmetric], axis=-1)


class RelationHead(nn.Module):
  """phi(z_i, z_j) = mlp(r(z_i, z_j)): Eq. 2 (3-way, CORP_m) and Eq. 4 (2-way, CORP_f).

  Attributes:
    attention: 'decoupling' (Eq. 8, the paper's default) or 'mixed' (Eq. 1).
    num_heads: h for 'mixed'; for 'decoupling' it sets the default sizes n = h, l = h // 2
      (the parameter-matched sizes, see DecouplingAttention).
    num_symmetric, num_antisymmetric: override n, l for 'decoupling'.
    mlp_layers: 1 (a linear map of r) or 2 (Dense -> ReLU -> Dense), Table 6d.
    mlp_hidden: hidden width of the 2-layer MLP; None uses the width of r.
    num_classes: 3 for CORP_m, 2 for CORP_f / the ablations.
    dtype: compute dtype; param_dtype: parameter dtype (float32).
  """
  attention: str = "decoupling"
  num_heads: int = 128
  num_symmetric: Optional[int] = None
  num_antisymmetric: Optional[int] = None
  mlp_layers: int = 2
  mlp_hidden: Optional[int] = None
  num_classes: int = 3
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  def setup(self):
    if self.attention not in ATTENTION_KINDS:
      raise ValueError(
          f"RelationHead.attention must be one of {ATTENTION_KINDS}, got {self.attention!r}")
    if self.mlp_layers not in (1, 2):
      raise ValueError(f"RelationHead.mlp_layers must be 1 or 2, got {self.mlp_layers!r}")
    _check_positive_int("RelationHead.num_heads", self.num_heads)
    if not isinstance(self.num_classes, int) or self.num_classes < 2:
      raise ValueError(f"RelationHead.num_classes must be an int >= 2, got {self.num_classes!r}")
    if self.mlp_hidden is not None:
      _check_positive_int("RelationHead.mlp_hidden", self.mlp_hidden)
    if self.attention == "mixed":
      if self.num_symmetric is not None or self.num_antisymmetric is not None:
        raise ValueError(
            "RelationHead: num_symmetric / num_antisymmetric apply only to "
            f"attention='decoupling', got attention='mixed' with num_symmetric="
            f"{self.num_symmetric!r}, num_antisymmetric={self.num_antisymmetric!r}")
      self.relation = MixedAttention(
          num_heads=self.num_heads, dtype=self.dtype, param_dtype=self.param_dtype)
    else:
      n = self.num_heads if self.num_symmetric is None else self.num_symmetric
      l = max(self.num_heads // 2, 1) if self.num_antisymmetric is None else self.num_antisymmetric
      self.relation = DecouplingAttention(
          num_symmetric=n, num_antisymmetric=l, dtype=self.dtype, param_dtype=self.param_dtype)
    hidden = self.mlp_hidden or self.relation.features
    # _Dense: nn.Dense's parameters and forward values, with the bias gradient summed in float32.
    dense = lambda features, name: _Dense(
        features, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    if self.mlp_layers == 2:
      self.hidden_layer = dense(hidden, "mlp_hidden")
    self.output_layer = dense(self.num_classes, "mlp_out")

  def _mlp(self, r: Array) -> Array:
    if self.mlp_layers == 2:
      r = nn.relu(self.hidden_layer(r))
    return self.output_layer(r)

  def __call__(self, z_i: Array, z_j: Array) -> Array:
    """phi(z_i, z_j): z_i, z_j [..., d] (broadcastable) -> logits [..., num_classes]."""
    return self._mlp(self.relation(z_i, z_j))

  def all_pairs(self, z: Array) -> Array:
    """phi for every ordered pair: z [M, d] -> logits [M, M, num_classes], [i, j] = phi(z_i, z_j)."""
    if z.ndim != 2:
      raise ValueError(f"RelationHead.all_pairs expects z of shape [M, d], got {z.shape}")
    return self._mlp(self.relation.all_pairs(z))


def relation_inputs(z: Array) -> Array:
  """What the relation head sees: z [..., d] -> √d · z / ||z|| [..., d] float32.

  Not in the paper. The projections z of Sec. 3.1 are not normalised (the projection keeps its
  bias, see docs/DESIGN_NOTES.md); the head sees them as unit vectors scaled by √d. Each
  component is then O(1) whatever d is, so the products of Eq. 1 / Eq. 8 and the logits of
  Eq. 2 / Eq. 4 do not start vanishingly small: the order task starts at a saddle, and a 1/d
  start slows it down. The InfoNCE part (Eq. 5) normalises z itself, without the √d.
  """
  z = z.astype(jnp.float32)
  return l2_normalize(z) * jnp.sqrt(jnp.float32(z.shape[-1]))


def corp_f_order_logits(z: Array, relate: Callable[[Array, Array], Array]) -> Array:
  """Eq. 4 on CORP_f's positive pairs, both directions: z [B, 2, d] -> [B, 2, C].

  order_logits[b, a] = phi(z[b, a], z[b, 1 - a]) on `relation_inputs(z)`, the layout
  `corp_jax.losses.corp_f_loss` expects (Eq. 6 sums the order terms of both directions).
  `relate(z_i, z_j) -> [..., C]` is phi, e.g. `RelationHead.__call__` bound to its parameters.
  """
  head_in = relation_inputs(z)
  return jnp.stack([relate(head_in[:, 0], head_in[:, 1]),
                    relate(head_in[:, 1], head_in[:, 0])], axis=1)


def group_pair_logits(z: Array, relate_all: Callable[[Array], Array]) -> Array:
  """Eq. 2 on every ordered clip pair of each group: z [G, M, d] -> [G, M, M, C].

  logits[g, i, j] = phi(z[g, i], z[g, j]) on `relation_inputs(z)`, the layout
  `corp_jax.losses.corp_m_loss` and its ablations expect. `relate_all(z: [M, d]) -> [M, M, C]`
  is `RelationHead.all_pairs` bound to its parameters.
  """
  return jax.vmap(relate_all)(relation_inputs(z))
