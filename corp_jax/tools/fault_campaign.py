"""Fault campaign: SIGKILL data_prep and pretraining at random points, damage checkpoints,
and check that every rerun ends with exactly what an uninterrupted run produces.

  python -m corp_jax.tools.fault_campaign [--trials 5] [--seed 0] [--max_minutes 20] \
      [--workdir DIR] [--steps 6] [--videos 12]

Stages (each in fresh folders under --workdir, a temporary folder by default):
  data_prep   a folder of small synthetic mp4s converted by `python -m
              data_prep.videos_to_tfrecords` (2 decode workers). Baseline: one uninterrupted
              run. Each trial: start the command, SIGKILL it at a random point (once the
              decode pool is up and a random number of shards is written, plus up to
              0.5 s), check that no child (decode worker, resource tracker) outlives it by
              5 s, rerun the same command to completion, compare every shard and the
              metadata byte for byte.
  pretrain    `python -m corp_jax.main` on the 'test' preset with synthetic data, a
              checkpoint every step. Baseline: one uninterrupted run. Each trial: SIGKILL
              after a random number of committed checkpoints plus a random fraction of a
              step (so kills land in steps, saves and start-up), rerun, compare the final
              checkpoint (params, batch_stats, opt_state) bit for bit.
  corrupt     for each damage of `faults.CORRUPTIONS` (truncate, zero_bytes,
              delete_metadata): a copy of the baseline workdir with its newest checkpoint
              damaged, rerun: it must report and move the step aside, resume from the one
              before and end equal to the baseline.
Bounded: `--trials` kills per stage, and no new trial starts after `--max_minutes`. Seeded:
`--seed` fixes kill points and damage. Prints one line per trial and a summary; writes
summary.json into the workdir; exit status 0 when nothing was lost, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from corp_jax.tools import faults

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_ORPHAN_GRACE_S = 5.0


@dataclasses.dataclass
class Tally:
  """What the campaign did and found; `lost` counts reruns that did not match."""
  trials: int = 0
  faults_injected: int = 0
  survived: int = 0
  lost: int = 0
  orphans: int = 0
  finished_before_kill: int = 0
  failures: list = dataclasses.field(default_factory=list)

  def record(self, name: str, ok: bool, detail: str, log, injected: bool = True) -> None:
    """One trial; `injected` is False when the run had finished before its kill."""
    self.trials += 1
    self.faults_injected += int(injected)
    if ok:
      self.survived += 1
    else:
      self.lost += 1
      self.failures.append(f"{name}: {detail}")
    log(f"  {name}: {'ok' if ok else 'LOST'} ({detail})")


def _env(workdir: str) -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env.setdefault("JAX_PLATFORMS", "cpu")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env.pop("XLA_FLAGS", None)  # one CPU device: the cheapest compilation
  # Every pretraining process compiles the same tiny step: compile it once (into the
  # caller's persistent cache when it has one, so repeated campaigns skip it too).
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(workdir, "xla_cache"))
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  return env


def _run(cmd, env, log_path, timeout=600) -> None:
  with open(log_path, "a") as log_file:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=log_file,
                          timeout=timeout)
  if proc.returncode != 0:
    with open(log_path) as f:
      tail = f.read()[-2000:]
    raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}; log {log_path}:\n{tail}")


def _kill_at(cmd, env, log_path, wait_then_kill) -> tuple[bool, int]:
  """Starts `cmd`, lets `wait_then_kill(proc)` pick the moment, SIGKILLs it; returns
  (whether it was still running at the kill, number of children alive 5 s later)."""
  with open(log_path, "a") as log_file:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=log_file)
  try:
    wait_then_kill(proc)
    children = faults.descendants(proc.pid)
    running = proc.poll() is None
    if running:
      os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + _ORPHAN_GRACE_S
    while any(faults.alive(c) for c in children) and time.time() < deadline:
      time.sleep(0.1)
    survivors = [c for c in children if faults.alive(c)]
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  for pid in survivors:  # leave the machine clean, after counting them
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  return running, len(survivors)


# --- data_prep ---------------------------------------------------------------------------

def write_videos(video_dir: str, count: int, seed: int) -> None:
  """`count` small mp4s (noise, so decoding takes a little time), 6-14 frames each."""
  import av  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  os.makedirs(video_dir, exist_ok=True)
  for i in range(count):
    container = av.open(os.path.join(video_dir, f"v{i:03d}.mp4"), "w")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
    for _ in range(int(rng.integers(6, 15))):
      image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
    container.close()


_NUM_SHARDS = 4


def _data_prep_cmd(video_dir: str, out: str) -> list[str]:
  return [sys.executable, "-m", "data_prep.videos_to_tfrecords", "--video_dir", video_dir,
          "--format", "folder", "--output_dir", out, "--name", "fc", "--num_shards",
          str(_NUM_SHARDS), "--short_side", "32", "--workers", "2"]


def _shards(out: str) -> list[str]:
  if not os.path.isdir(out):
    return []
  return [n for n in os.listdir(out) if n.startswith("fc-") and ".tmp" not in n]


def _outputs(out: str) -> dict[str, bytes]:
  """Shards and metadata of NAME 'fc' (the report holds run-specific paths only)."""
  names = sorted(_shards(out)) + ["fc.metadata.json"]
  result = {}
  for name in names:
    with open(os.path.join(out, name), "rb") as f:
      result[name] = f.read()
  return result


def data_prep_stage(root: str, trials: int, rng: random.Random, deadline: float, tally,
                    env, log, num_videos: int) -> None:
  video_dir = os.path.join(root, "videos")
  write_videos(video_dir, num_videos, rng.randrange(1 << 30))
  start = time.time()
  _run(_data_prep_cmd(video_dir, os.path.join(root, "dp_base")), env,
       os.path.join(root, "dp_base.log"))
  expected = _outputs(os.path.join(root, "dp_base"))
  log(f"data_prep baseline: {len(expected) - 1} shards in {time.time() - start:.1f}s")
  for trial in range(trials):
    if time.time() > deadline:
      log("data_prep: time budget spent, no more trials")
      break
    out = os.path.join(root, f"dp_{trial}")
    after = rng.randrange(0, _NUM_SHARDS)  # complete shards before the kill
    delay = rng.uniform(0.0, 0.5)

    def wait_then_kill(proc, after=after, delay=delay, out=out):
      limit = time.time() + 300
      # The pool is up (2 workers + the resource tracker) and `after` shards are written.
      while proc.poll() is None and time.time() < limit and (
          len(faults.descendants(proc.pid)) < 3 or len(_shards(out)) < after):
        time.sleep(0.02)
      time.sleep(delay)

    running, orphans = _kill_at(_data_prep_cmd(video_dir, out), env,
                                os.path.join(root, f"dp_{trial}.log"), wait_then_kill)
    tally.orphans += orphans
    tally.finished_before_kill += 0 if running else 1
    _run(_data_prep_cmd(video_dir, out), env, os.path.join(root, f"dp_{trial}.log"))
    same = _outputs(out) == expected
    tally.record(f"data_prep kill {trial} after {after} shards + {delay:.2f}s",
                 same and not orphans,
                 f"{'killed' if running else 'had finished'}; {orphans} orphaned children; "
                 f"outputs {'identical' if same else 'DIFFER'}", log, injected=running)


# --- pretraining -------------------------------------------------------------------------

def _pretrain_cmd(workdir: str, steps: int) -> list[str]:
  return [sys.executable, "-m", "corp_jax.main", "--config=configs/corp_f.py:test",
          "--config.data.source=synthetic", f"--config.train.num_steps={steps}",
          "--config.train.checkpoint_every=1", "--config.train.num_devices=1",
          "--config.train.log_every=1", f"--workdir={workdir}"]


def _committed_steps(workdir: str) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def final_state(workdir: str) -> dict:
  """{path: ndarray} of the whole newest checkpoint (params, batch_stats, opt_state)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from corp_jax.train import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.ERROR)  # Orbax warns about every read-only manager
  manager = ckpt_lib.make_manager(workdir, read_only=True, async_save=False)
  try:
    step, tree = ckpt_lib.restore_newest_intact(manager, log=lambda _: None)
  finally:
    manager.close()
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"step": step, **{jax.tree_util.keystr(p): np.asarray(x) for p, x in flat}}


def _same_state(a: dict, b: dict) -> bool:
  import numpy as np  # pylint: disable=g-import-not-at-top
  return a.keys() == b.keys() and all(
      np.array_equal(a[k], b[k]) for k in a if k != "step") and a["step"] == b["step"]


def pretrain_stage(root: str, trials: int, steps: int, rng: random.Random, deadline: float,
                   tally, env, log, corruptions) -> None:
  base = os.path.join(root, "pt_base")
  start = time.time()
  _run(_pretrain_cmd(base, steps), env, os.path.join(root, "pt_base.log"))
  log(f"pretrain baseline: {steps} steps in {time.time() - start:.1f}s")
  expected = final_state(base)
  # Seconds per step, for kill points inside a step: measured on the baseline's checkpoints.
  kept = _committed_steps(base)  # the newest keep_checkpoints steps
  times = [os.path.getmtime(os.path.join(base, "checkpoints", str(s))) for s in kept]
  step_s = max(0.05, (times[-1] - times[0]) / max(1, kept[-1] - kept[0]))

  for trial in range(trials):
    if time.time() > deadline:
      log("pretrain: time budget spent, no more trials")
      break
    workdir = os.path.join(root, f"pt_{trial}")
    after = rng.randrange(0, steps)  # committed checkpoints before the kill
    fraction = rng.uniform(0.0, 1.0)

    def wait_then_kill(proc, after=after, fraction=fraction, workdir=workdir):
      limit = time.time() + 300
      while (len(_committed_steps(workdir)) < after and proc.poll() is None
             and time.time() < limit):
        time.sleep(0.02)
      time.sleep(fraction * step_s)

    running, orphans = _kill_at(_pretrain_cmd(workdir, steps), env,
                                os.path.join(root, f"pt_{trial}.log"), wait_then_kill)
    tally.orphans += orphans
    tally.finished_before_kill += 0 if running else 1
    _run(_pretrain_cmd(workdir, steps), env, os.path.join(root, f"pt_{trial}.log"))
    same = _same_state(final_state(workdir), expected)
    tally.record(f"pretrain kill {trial} after {after} checkpoints + {fraction:.2f} step",
                 same and not orphans,
                 f"{'killed' if running else 'had finished'}; final checkpoint "
                 f"{'identical' if same else 'DIFFERS'}", log, injected=running)

  for kind in corruptions:
    if time.time() > deadline:
      log("corrupt: time budget spent, no more trials")
      break
    workdir = os.path.join(root, f"pt_{kind}")
    shutil.copytree(base, workdir, ignore=shutil.ignore_patterns("metrics.jsonl", "tb"))
    what = faults.CORRUPTIONS[kind](os.path.join(workdir, "checkpoints", str(steps)), rng)
    log_path = os.path.join(root, f"pt_{kind}.log")
    _run(_pretrain_cmd(workdir, steps), env, log_path)
    with open(log_path) as f:
      reported = f"checkpoint step {steps} in" in f.read()
    moved = any(n.startswith(f"corrupt-{steps}-")
                for n in os.listdir(os.path.join(workdir, "checkpoints")))
    same = _same_state(final_state(workdir), expected)
    tally.record(f"corrupt {kind}", same and reported and moved,
                 f"{what}; reported {reported}, moved aside {moved}, final checkpoint "
                 f"{'identical' if same else 'DIFFERS'}", log)


def run(*, trials: int, seed: int, max_minutes: float, workdir: str | None, steps: int,
        num_videos: int, corruptions=None, log=print) -> dict:
  """Runs the campaign (module docstring); returns the summary dict."""
  rng = random.Random(seed)
  root = workdir or tempfile.mkdtemp(prefix="fault_campaign_")
  os.makedirs(root, exist_ok=True)
  env = _env(root)
  start = time.time()
  deadline = start + 60 * max_minutes
  tally = Tally()
  corruptions = sorted(faults.CORRUPTIONS) if corruptions is None else list(corruptions)
  log(f"fault campaign: seed {seed}, {trials} kill trials per stage, "
      f"{len(corruptions)} checkpoint damages, workdir {root}")
  data_prep_stage(root, trials, rng, deadline, tally, env, log, num_videos)
  pretrain_stage(root, trials, steps, rng, deadline, tally, env, log, corruptions)
  summary = dict(dataclasses.asdict(tally), seed=seed, wall_s=round(time.time() - start, 1),
                 workdir=root)
  with open(os.path.join(root, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  log(f"{tally.trials} trials, {tally.faults_injected} faults injected, {tally.survived} "
      f"survived, {tally.lost} lost, {tally.orphans} orphaned processes, "
      f"{tally.finished_before_kill} runs finished before their kill; "
      f"{summary['wall_s']:.0f}s")
  return summary


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m corp_jax.tools.fault_campaign",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--trials", type=int, default=5, help="SIGKILL trials per stage")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--max_minutes", type=float, default=20.0,
                      help="start no new trial after this many minutes")
  parser.add_argument("--workdir", help="where to run (default: a new temporary folder)")
  parser.add_argument("--steps", type=int, default=6, help="pretraining steps per run")
  parser.add_argument("--videos", type=int, default=12, help="videos for data_prep")
  args = parser.parse_args(argv)
  if args.trials < 0 or args.steps < 2 or args.videos < 1:
    parser.error("need --trials >= 0, --steps >= 2 and --videos >= 1")
  summary = run(trials=args.trials, seed=args.seed, max_minutes=args.max_minutes,
                workdir=args.workdir, steps=args.steps, num_videos=args.videos)
  return 0 if summary["lost"] == 0 else 1


if __name__ == "__main__":
  sys.exit(main())
