"""Evaluation of pretrained backbones: linear probe, semi-supervised fine-tuning, transfer,
multi-view testing and reports (paper Sec. 4.1, Tables 3-7, Fig. 3).

Entry points: `corp_jax.evaluate.job.run(config, workdir)` (configs/linear_eval.py,
configs/finetune.py; their defaults and presets are `config_defaults.py`),
`corp_jax.evaluate.demo.run_embedded_linear_eval(...)`, and the CLI
`python -m corp_jax.evaluate.compare RUN_DIR... --out DIR`. Importing this package needs no
TensorFlow; the data modules are imported inside the functions that build datasets.
"""
