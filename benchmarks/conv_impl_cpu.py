"""Native 3D vs factorized (time-shifted 2D) convolution: timings on the current JAX backend.

Prints, for a few R3D-like layer shapes, the forward and forward+backward (grad w.r.t. input and
kernel) time of both `Conv3D` implementations, then the time of a whole train-like step
(grad of the sum of pooled features w.r.t. params, BN in training mode) for a ResNet3D variant
with each implementation, all in the same run. The CPU default of `conv_impl='auto'`
(corp_jax.models.conv.default_conv_impl) is based on these numbers.

Usage:
  JAX_PLATFORMS=cpu python -m benchmarks.conv_impl_cpu [--repeats 3] [--variant tiny]
      [--batch 8] [--frames 8] [--size 32]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from corp_jax.models.conv import conv3d_factorized, conv3d_native, explicit_padding
from corp_jax.models.resnet3d import ResNet3D

# (description, input [N, T, H, W, Cin], Cout, kernel (kt, kh, kw), strides (st, sh, sw)).
LAYER_CASES = (
    ("3x3x3 design-notes case", (64, 8, 16, 16, 16), 16, (3, 3, 3), (1, 1, 1)),
    ("stem 5x7x7 /2,2,2", (4, 8, 32, 32, 3), 16, (5, 7, 7), (2, 2, 2)),
    ("res4 conv_a 3x1x1", (8, 8, 8, 8, 128), 64, (3, 1, 1), (1, 1, 1)),
    ("res3 conv_b 1x3x3 /1,2,2", (8, 8, 16, 16, 32), 32, (1, 3, 3), (1, 2, 2)),
    ("res5 basic 3x3x3", (8, 8, 4, 4, 64), 64, (3, 3, 3), (1, 1, 1)),
)

IMPLS = {"native": conv3d_native, "factorized": conv3d_factorized}


def time_call(fn, *args, repeats: int) -> float:
  """Median wall time in ms of `fn(*args)` after one compile-and-warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * sorted(times)[len(times) // 2]


def bench_layer(shape, cout, kernel_size, strides, repeats: int) -> dict[str, tuple[float, float]]:
  """{'native'|'factorized': (forward ms, forward+backward ms)} for one conv layer."""
  kx, kk = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, shape, jnp.float32)
  kernel = jax.random.normal(kk, tuple(kernel_size) + (shape[-1], cout), jnp.float32) * 0.1
  pads = explicit_padding("SAME", shape[1:4], kernel_size, strides)
  results = {}
  for name, conv in IMPLS.items():
    forward = jax.jit(lambda a, w, conv=conv: conv(a, w, strides, pads))
    both = jax.jit(jax.grad(lambda a, w, conv=conv: jnp.sum(conv(a, w, strides, pads) ** 2),
                            argnums=(0, 1)))
    results[name] = (time_call(forward, x, kernel, repeats=repeats),
                     time_call(both, x, kernel, repeats=repeats))
  return results


def bench_model(variant: str, batch: int, frames: int, size: int, repeats: int) -> dict[str, float]:
  """{'native'|'factorized': ms per jitted grad of sum(features) for a train-mode forward}."""
  x = jax.random.uniform(jax.random.key(1), (batch, frames, size, size, 3))
  results = {}
  for impl in IMPLS:
    model = ResNet3D(variant, conv_impl=impl)
    variables = model.init(jax.random.key(0), x, train=False)

    def loss(params, batch_stats, model=model):
      features, updates = model.apply({"params": params, "batch_stats": batch_stats}, x,
                                      train=True, mutable=["batch_stats"])
      return jnp.sum(features), updates

    step = jax.jit(jax.grad(loss, has_aux=True))
    results[impl] = time_call(step, variables["params"], variables["batch_stats"],
                              repeats=repeats)
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--variant", default="tiny")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--frames", type=int, default=8)
  parser.add_argument("--size", type=int, default=32)
  args = parser.parse_args()

  print(f"backend={jax.default_backend()} devices={jax.devices()[0].device_kind} "
        f"repeats={args.repeats} (median ms)")
  header = f"{'layer':26s} {'input':22s} {'Cout':>4s} | {'native fwd':>10s} {'fwd+bwd':>8s} | "
  print(header + f"{'factor fwd':>10s} {'fwd+bwd':>8s} | {'speed-up fwd+bwd':>16s}")
  for desc, shape, cout, kernel_size, strides in LAYER_CASES:
    r = bench_layer(shape, cout, kernel_size, strides, args.repeats)
    (nf, nb), (ff, fb) = r["native"], r["factorized"]
    print(f"{desc:26s} {str(shape):22s} {cout:4d} | {nf:10.1f} {nb:8.1f} | {ff:10.1f} {fb:8.1f} "
          f"| {nb / fb:15.1f}x")
  r = bench_model(args.variant, args.batch, args.frames, args.size, args.repeats)
  print(f"ResNet3D({args.variant!r}) train step, x=[{args.batch},{args.frames},{args.size},"
        f"{args.size},3]: native {r['native']:.1f} ms, factorized {r['factorized']:.1f} ms, "
        f"speed-up {r['native'] / r['factorized']:.1f}x")


if __name__ == "__main__":
  main()
