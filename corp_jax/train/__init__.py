"""The pretraining job: model assembly, mesh, optimizer, jitted step, checkpoints, loop.

Imports no TensorFlow: the input pipeline is reached only through `inputs.py`, which imports
`corp_jax.data` lazily when a TFRecord/TFDS/embedded source is configured.
"""
