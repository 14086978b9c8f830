"""Per-platform speed defaults of the backbone: what the 'auto' options resolve to, and why.

Contract:
  `configure_xla_flags()` appends GPU_XLA_FLAGS to the XLA_FLAGS environment variable; call it
  before JAX starts its backends (corp_jax.main and the benchmarks do). Harmless on CPU and TPU.
  `default_conv_impl(backend)`, `default_bn_impl(backend)`, `default_stem_space_to_depth(backend)`
  give the measured winner per backend (default: jax.default_backend()).

Measured winners (every figure side by side in one run, or on one warm machine; commands and
raw logs in docs/PERFORMANCE.md and benchmarks/results/):
  CPU  factorised convs (5.9x faster than native 3D convs for the tiny demo step, far more at
       real widths), autodiff BatchNorm (fused was equally fast), no space-to-depth stem (1.7x
       slower for the tiny demo step).
  GPU  one H200, R3D-50 16x224^2 bf16 CORP_f step, batch 16 videos x 2 clips, PyTorch
       torch.compile 604 clips/s: native 3D convs with --xla_gpu_force_conv_nhwc 569 clips/s
       (without the flag XLA:GPU runs cuDNN 3D convs channels-first: 440), factorised 509;
       + space-to-depth stem 667 (the 5x7x7 stem over 3 channels alone took 12 of 27 ms of
       conv time); + fused BatchNorm 675 (1.12x PyTorch). With factorised convs the same two
       options gave 617 and 629.
  TPU  unmeasured: native convs, autodiff BatchNorm, no space-to-depth.
"""

from __future__ import annotations

import os

import jax

# XLA:GPU lays cuDNN 3D convolutions out channels-first unless told otherwise; channels-last
# runs bf16 convs on tensor cores without layout transposes.
GPU_XLA_FLAGS = ("--xla_gpu_force_conv_nhwc",)


def configure_xla_flags(environ=None) -> list[str]:
  """Appends the GPU_XLA_FLAGS missing from XLA_FLAGS; returns the flags it added.

  A flag already named in XLA_FLAGS (with any value, e.g. '--xla_gpu_force_conv_nhwc=false')
  is left as the user set it. XLA reads XLA_FLAGS when the first backend starts, so this must
  run before any JAX computation.
  """
  environ = os.environ if environ is None else environ
  current = environ.get("XLA_FLAGS", "")
  present = {item.split("=", 1)[0] for item in current.split()}
  added = [flag for flag in GPU_XLA_FLAGS if flag.split("=", 1)[0] not in present]
  if added:
    environ["XLA_FLAGS"] = " ".join([current] + added).strip()
  return added


def gpu_conv_nhwc_enabled(environ=None) -> bool:
  """Whether XLA_FLAGS asks XLA:GPU for channels-last convolutions."""
  environ = os.environ if environ is None else environ
  value = None
  for item in environ.get("XLA_FLAGS", "").split():
    name, _, setting = item.partition("=")
    if name == "--xla_gpu_force_conv_nhwc":
      value = setting.lower() not in ("false", "0")
  return bool(value)


def _backend(backend: str | None) -> str:
  return jax.default_backend() if backend is None else backend


def default_conv_impl(backend: str | None = None) -> str:
  """'factorized' on CPU; on GPU 'native' when channels-last convs are enabled
  (configure_xla_flags), else 'factorized' (which runs as channels-last 2D convs anyway);
  'native' elsewhere."""
  backend = _backend(backend)
  if backend == "gpu":
    return "native" if gpu_conv_nhwc_enabled() else "factorized"
  return "factorized" if backend == "cpu" else "native"


def default_bn_impl(backend: str | None = None) -> str:
  """'fused' (hand-written backward) on GPU, 'autodiff' elsewhere."""
  return "fused" if _backend(backend) == "gpu" else "autodiff"


def default_stem_space_to_depth(backend: str | None = None) -> bool:
  """True on GPU, False elsewhere."""
  return _backend(backend) == "gpu"


def resolve_stem_space_to_depth(value) -> bool:
  """`model.stem_space_to_depth`: 'auto' (the platform's default), or a bool / 'true' / 'false'."""
  if isinstance(value, bool):
    return value
  text = str(value).strip().lower()
  if text == "auto":
    return default_stem_space_to_depth()
  if text in ("true", "1", "yes"):
    return True
  if text in ("false", "0", "no"):
    return False
  raise ValueError(f"model.stem_space_to_depth={value!r}: expected 'auto', True or False")
