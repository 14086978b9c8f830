"""Benchmark scripts, each run as a module from the repository root.

`python -m benchmarks.<script> ...` (see benchmarks/README.md). This package imports nothing:
scripts set environment variables (XLA_FLAGS, XLA_PYTHON_CLIENT_PREALLOCATE, TensorFlow's
allocator) before their first JAX or TensorFlow import, which an import here would precede.
The modules the scripts share, and nothing runnable, are in `benchmarks.lib`.
"""
