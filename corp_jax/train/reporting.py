"""Where training metrics go: console progress lines, TensorBoard events, a JSONL log.

Only process 0 writes. `WORKDIR/metrics.jsonl` holds one JSON object per logged step
(`step`, every metric, `clips_per_sec`); the evaluation reports plot the paper's Fig. 3
curves from it. TensorBoard events (tensorboardX, no TensorFlow needed) go to `WORKDIR/tb`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax


def _format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class MetricReporter:
  """Writes scalars to console, TensorBoard and JSONL; tracks clips/s and ETA."""

  CONSOLE_KEYS = ("loss", "contrast_top1", "order_acc", "pair_acc", "total_acc",
                  "learning_rate")

  def __init__(self, workdir: str, total_steps: int, clips_per_step: int,
               stream=sys.stdout, use_tensorboard: bool = True):
    self.total_steps = total_steps
    self.clips_per_step = clips_per_step
    self.stream = stream
    self.is_writer = jax.process_index() == 0
    self._last_time = None
    self._last_step = None
    self._tb = None
    self._jsonl = None
    if self.is_writer:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      if use_tensorboard:
        try:
          from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
          self._tb = SummaryWriter(os.path.join(workdir, "tb"))
        except ImportError:
          print("tensorboardX not installed: no TensorBoard events (metrics.jsonl still "
                "written)", file=stream)

  def start(self, step: int):
    self._last_time, self._last_step = time.time(), step

  def write(self, step: int, scalars: dict) -> dict:
    now = time.time()
    steps_done = step - self._last_step if self._last_step is not None else 0
    elapsed = now - self._last_time if self._last_time is not None else 0.0
    rate = steps_done / elapsed if elapsed > 0 and steps_done > 0 else float("nan")
    self._last_time, self._last_step = now, step
    scalars = {k: float(v) for k, v in scalars.items()}
    scalars["clips_per_sec"] = rate * self.clips_per_step
    scalars["steps_per_sec"] = rate
    if not self.is_writer:
      return scalars
    eta = (self.total_steps - step) / rate if rate == rate and rate > 0 else float("nan")
    shown = " | ".join(f"{k} {scalars[k]:.4g}" for k in self.CONSOLE_KEYS if k in scalars)
    print(f"step {step}/{self.total_steps} ({100.0 * step / self.total_steps:.0f}%) | {shown}"
          f" | {scalars['clips_per_sec']:.1f} clips/s | ETA {_format_duration(eta)}",
          file=self.stream, flush=True)
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        if math.isfinite(v):
          self._tb.add_scalar(f"train/{k}", v, step)
      self._tb.flush()
    return scalars

  def info(self, message: str):
    if self.is_writer:
      print(message, file=self.stream, flush=True)

  def close(self):
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
