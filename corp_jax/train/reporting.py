"""Where training metrics go: console progress lines, TensorBoard events, a JSONL log.

Only process 0 writes. `WORKDIR/metrics.jsonl` holds one JSON object per logged step
(`step`, every metric, `clips_per_sec`); the evaluation reports plot the paper's Fig. 3
curves from it. TensorBoard events (tensorboardX, no TensorFlow needed) go to `WORKDIR/tb`.
The workdir may be a local path or a URI (`corp_jax.io_paths`).

Resume: a run that restarts from checkpoint step S (`start_step=S`) first cuts
metrics.jsonl back to the rows with step <= S (rewritten atomically; a torn last line from a
crash is dropped too), so the log never holds a step twice; its TensorBoard writer starts a
new event file with `purge_step=S + 1`, which tells TensorBoard to hide the earlier files'
events from step S + 1 on, so the curves continue from S instead of doubling back.

`write_eval(step, scalars)` logs a periodic evaluation (the k-NN probe) to the same three
places (TensorBoard tags `eval/<name>`), its time left out of clips/s. Given `run_config`, the
run's hyperparameters go to TensorBoard's HParams plugin with the final metrics at `close()`,
and the scalars to Weights & Biases when `run_config.wandb.project` is set
(corp_jax/train/dashboards.py).
"""

from __future__ import annotations

import json
import math
import sys
import time
import uuid

import jax

from corp_jax import io_paths


class _UriEventFile:
  """An event file at a URI for tensorboardX: the bytes so far, uploaded whole through the
  file layer at each flush (object stores cannot append; TensorBoard reads the latest)."""

  def __init__(self, path: str):
    self._path, self._buffer, self._closed = path, bytearray(), False

  def write(self, data: bytes) -> None:
    self._buffer.extend(data)

  def flush(self) -> None:
    if not self._closed:
      io_paths.write_bytes(self._path, bytes(self._buffer))

  def close(self) -> None:
    self.flush()
    self._closed = True  # later flushes (tensorboardX's finalizers) upload nothing


class _UriEventFiles:
  def open(self, path: str) -> _UriEventFile:
    return _UriEventFile(path)

  def directory_check(self, path: str) -> None:
    io_paths.makedirs(path)


def tensorboard_writer(logdir: str, purge_step: int | None = None):
  """A tensorboardX SummaryWriter for a local path or a URI (events uploaded through io_paths)."""
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  if io_paths.is_uri(logdir):
    from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
    record_writer.register_writer_factory(logdir.split("://", 1)[0], _UriEventFiles())
  # The default file name has a one-second timestamp and the host name: a run resumed within
  # the second of its crash would reopen (and truncate) the first file. A random suffix keeps
  # every writer's events apart.
  return SummaryWriter(logdir, purge_step=purge_step, filename_suffix=f".{uuid.uuid4().hex[:8]}")


def cut_metrics_log(path: str, last_step: int) -> int:
  """Keeps the rows of a metrics.jsonl with step <= last_step (atomic rewrite); returns the
  number of lines removed (rows after last_step and lines that are not a JSON row)."""
  if not io_paths.exists(path):
    return 0
  kept, removed = [], 0
  for line in io_paths.read_text(path).splitlines():
    if not line.strip():
      continue
    try:
      row = json.loads(line)
      keep = isinstance(row, dict) and int(row.get("step", 0)) <= last_step
    except (json.JSONDecodeError, TypeError, ValueError):
      keep = False
    if keep:
      kept.append(line + "\n")
    else:
      removed += 1
  if removed:
    io_paths.write_text(path, "".join(kept))
  return removed


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
               stream=sys.stdout, use_tensorboard: bool = True, start_step: int = 0,
               run_config=None):
    self.total_steps = total_steps
    self.clips_per_step = clips_per_step
    self.stream = stream
    self.is_writer = jax.process_index() == 0
    self._last_time = None
    self._last_step = None
    self._tb = None
    self.jsonl_path = io_paths.join(workdir, "metrics.jsonl")
    self._wandb = None
    self._hparams = None
    self._final: dict = {}
    if self.is_writer and run_config is not None:
      from corp_jax.train import dashboards  # pylint: disable=g-import-not-at-top
      self._hparams = dashboards.flat_hparams(run_config)
      self._wandb = dashboards.make_wandb(run_config, workdir)
    if self.is_writer:
      io_paths.makedirs(workdir)
      removed = cut_metrics_log(self.jsonl_path, start_step)
      if removed:
        print(f"{self.jsonl_path}: removed {removed} row(s) logged after step {start_step}, "
              "the step this run resumes from", file=stream, flush=True)
      if use_tensorboard:
        try:
          self._tb = tensorboard_writer(io_paths.join(workdir, "tb"), start_step + 1)
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
    return self._record(step, scalars, "train")

  def write_eval(self, step: int, scalars: dict, paused_seconds: float = 0.0) -> dict:
    """A periodic evaluation's scalars; `paused_seconds` of it are left out of clips/s."""
    scalars = {k: float(v) for k, v in scalars.items()}
    if self._last_time is not None:
      self._last_time += paused_seconds
    if not self.is_writer:
      return scalars
    print(f"step {step} eval | " + " | ".join(f"{k} {v:.4g}" for k, v in scalars.items()),
          file=self.stream, flush=True)
    return self._record(step, scalars, "eval")

  def _record(self, step: int, scalars: dict, prefix: str) -> dict:
    """One metrics.jsonl row, TensorBoard `<prefix>/<name>` scalars and the W&B mirror."""
    io_paths.append_text(self.jsonl_path, json.dumps({"step": step, **scalars}) + "\n")
    if self._tb is not None:
      for k, v in scalars.items():
        if math.isfinite(v):
          self._tb.add_scalar(f"{prefix}/{k}", v, step)
      self._tb.flush()
    if self._wandb is not None:
      self._wandb.log(step, scalars, prefix=prefix)
    self._final.update(scalars)
    return scalars

  def info(self, message: str):
    if self.is_writer:
      print(message, file=self.stream, flush=True)

  def close(self):
    if self._tb is not None:
      if self._hparams:
        metrics = {f"hparam/{k}": v for k, v in self._final.items() if math.isfinite(v)}
        self._tb.add_hparams(self._hparams, metrics, name="hparams")
      self._tb.close()
    if self._wandb is not None:
      self._wandb.finish()
