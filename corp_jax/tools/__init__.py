"""Developer tools. `python -m corp_jax.tools.parity` compares the JAX heads and losses with an
independent PyTorch reference (torch is imported only by `parity`, `torch_reference` and
corp_jax/export/torch_r3d.py, never by this package's __init__ or the training library).
`cvrl_model_garden_check` compares the CVRL importer with the TF2 Model Garden's Keras R3D-50.
`python -m corp_jax.tools.fault_campaign` kills data_prep and pretraining at random points and
damages checkpoints (docs/RELIABILITY.md)."""
