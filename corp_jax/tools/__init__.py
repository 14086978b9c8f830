"""Developer tools. `python -m corp_jax.tools.parity` compares the JAX heads and losses with an
independent PyTorch reference (torch is imported only by `parity` and `torch_reference`, never
by this package's __init__ or the library). `python -m corp_jax.tools.fault_campaign` kills
data_prep and pretraining at random points and damages checkpoints (docs/RELIABILITY.md)."""
