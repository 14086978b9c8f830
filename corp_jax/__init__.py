"""corp_jax: Contrast and Order Representations (CORP, ICCV 2021) for video SSL in JAX/Flax.

Subpackages: `models` (R3D backbones, projection MLP), `heads` (relation heads, Eq. 1, 7-8),
`losses` (NT-Xent, CORP_f Eq. 5-6, CORP_m, ablations, metrics), `data` (TFRecord input
pipeline; the only place TensorFlow is imported), `train` (the pretraining job), `evaluate`
(linear probe, fine-tuning, reports). See docs/CONTRACTS.md for the interfaces between them.
"""

__version__ = "0.1.0"
