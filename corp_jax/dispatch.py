"""Dispatches a config to its job: pretraining (default) or an evaluation job.

`run(config, workdir)` is what `python -m corp_jax.main` calls.

A config may carry `job` ('pretrain', 'linear_eval', 'finetune'); pretraining configs have
none. Evaluation jobs are imported only when used.
"""

from __future__ import annotations


def run(config, workdir: str):
  job = config.get("job", "pretrain")
  if job == "pretrain":
    from corp_jax.train import loop  # pylint: disable=g-import-not-at-top
    _, summary = loop.pretrain(config, workdir)
    _print_pretrain_summary(summary)
    if (config.get("eval_after_pretrain", False) and config.data.source == "embedded"
        and not summary["preempted"]):
      from corp_jax import io_paths  # pylint: disable=g-import-not-at-top
      from corp_jax.evaluate import demo  # pylint: disable=g-import-not-at-top
      summary["linear_eval"] = demo.run_embedded_linear_eval(
          summary["workdir"], io_paths.join(summary["workdir"], "linear_eval_embedded"))
    return summary
  if job in ("linear_eval", "finetune"):
    from corp_jax.evaluate import job as eval_job  # pylint: disable=g-import-not-at-top
    return eval_job.run(config, workdir)
  raise ValueError(f"config.job must be 'pretrain', 'linear_eval' or 'finetune', got {job!r}")


def _print_pretrain_summary(summary: dict) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index():
    return
  metrics = summary.get("final_metrics", {})
  shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in
                    ("loss", "contrast_top1", "order_acc", "pair_acc", "total_acc")
                    if k in metrics)
  state = "stopped by SIGTERM at" if summary["preempted"] else "finished"
  print(f"\n{summary['objective']} pretraining {state} step {summary['step']}/"
        f"{summary['total_steps']}: {shown}\n"
        f"  checkpoints: {summary['checkpoints']} (backbone = {summary['backbone']})\n"
        f"  logs: {summary['workdir']}/metrics.jsonl, TensorBoard: {summary['workdir']}/tb\n"
        f"  evaluate: python -m corp_jax.main --config=configs/linear_eval.py "
        f"--config.pretrain_workdir={summary['workdir']}")
