"""The fidelity protocol: does the order task show in the frozen features?

  python -m corp_jax.tools.fidelity --set embedded --root workdirs/fidelity
  python -m corp_jax.tools.fidelity --set /data/photo/set.json --steps 400 --seeds 0,1,2 \
      --objectives simclr,corp_f,corp_m,order_only --override data.shuffle_frames_in_clip=True \
      --tag shuffled

For every objective and seed: pretrain with `configs/<objective>.py[:preset]` and the same
number of steps (`python -m corp_jax.main`, one subprocess per run, `--config.seed`, the
`--override KEY=VALUE`s as `--config.KEY=VALUE`; a shard set adds
`--config.data.source=tfrecord` and its training pattern), then probe the final backbone on
every label family of the set (`corp_jax.tools.fidelity_probe`, a second subprocess: the
linear probe of the linear_eval job and a cosine k-NN probe, k = 20, on the same frozen
features). The same-video order accuracy at the end of pretraining is the mean of the
`order_acc` lines of WORKDIR/metrics.jsonl over the last 10% of the steps (training batches);
the step at which it leaves chance is the first logged step from which the mean of the next
`LEAVE_WINDOW` logged values exceeds `LEAVE_THRESHOLD` (a window, so that one noisy batch
mean does not count).

Layout: ROOT/<set name>[_<tag>]/<objective>/seed<k>/{pretrain/, probe.json, run.json};
ROOT/<set name>[_<tag>]/fidelity.{md,json}: per objective mean ± sd over seeds (sample sd)
of both probes on every family, the motion direction accuracy, order accuracy, and the wall
time of pretraining and probing; plus every run. Resume: a run whose run.json records the same
settings is skipped, a finished pretraining is not repeated (an unfinished one resumes from
its checkpoint), so rerunning the same command after an interruption continues;
`--reprobe` probes the recorded runs again (pretraining kept; record['reprobe'] holds the
new probe's wall and CPU time). For models with a relation head the probe also measures the
head's same-video order on the test videos' views and on as many training videos'
(`corp_jax.tools.view_order`): order on videos never trained on, beside the training metric.
`--in_process` runs both steps in this process (tests; no memory isolation). `--jobs N` runs
N (objective, seed) runs at a time (e.g. small runs sharing one GPU; each process then
allocates accelerator memory on demand); the tables keep the (seed, objective) order.
`--source arrays` pretrains and probes from NumPy arrays, no TensorFlow (for hosts without
it): the embedded videos rendered to arrays (`--config.data.source=embedded_arrays`, no JPEG),
or the array splits of a set built with `photo_set --arrays` (`--config.data.source=arrays`,
no codec); its tables go to ROOT/<set name>_arrays[_<tag>].
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import numpy as np

from corp_jax.tools import fidelity_probe

# The checkout whose configs/ the pretraining commands name (they run from its root).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OBJECTIVES = ("simclr", "corp_f", "corp_m", "order_only")
_PYTHON = sys.executable


LEAVE_THRESHOLD = 0.55
LEAVE_WINDOW = 5


def _order_lines(workdir: str) -> list[dict]:
  """The metrics.jsonl records of WORKDIR that carry `order_acc`, in step order."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  lines = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        record = json.loads(line)
        if "order_acc" in record and "step" in record:
          lines.append(record)
  return sorted(lines, key=lambda r: r["step"])


def order_accuracy_at_end(workdir: str, fraction: float = 0.1) -> float | None:
  """Mean `order_acc` of the metrics.jsonl lines in the last `fraction` of the steps."""
  lines = _order_lines(workdir)
  if not lines:
    return None
  last = max(r["step"] for r in lines)
  keep = [r["order_acc"] for r in lines if r["step"] >= last * (1 - fraction)]
  return float(np.mean(keep))


def order_leaves_chance(workdir: str, threshold: float = LEAVE_THRESHOLD,
                        window: int = LEAVE_WINDOW) -> int | None:
  """First logged step from which the mean `order_acc` of `window` logged values exceeds
  `threshold`; None if it never does (or nothing was logged)."""
  values = [(r["step"], r["order_acc"]) for r in _order_lines(workdir)]
  for k in range(len(values) - window + 1):
    if np.mean([v for _, v in values[k:k + window]]) > threshold:
      return int(values[k][0])
  return None


def clip_overlap(num_frames: int, clip_len: int, stride: int, num_clips: int,
                 draws: int = 2000, min_gap: int = 0) -> dict:
  """How often two clips of one video share frames under the training sampler (Eq. 3).

  Returns {'share': fraction of same-video clip pairs whose frame spans overlap, 'min_gap',
  'median_gap': start distances in frames, 'span': frames one clip covers}. When clips
  overlap, "the end of one looks like the start of the other" orders them without any sense
  of direction. `min_gap`: `config.data.min_start_gap`.
  """
  from corp_jax.data import sampling  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  span = (clip_len - 1) * stride + 1
  gaps = []
  for _ in range(draws):
    starts = sampling.sample_clip_starts(rng, num_frames, clip_len, stride, num_clips,
                                         min_gap=min_gap)
    gaps += [abs(int(a) - int(b)) for i, a in enumerate(starts) for b in starts[i + 1:]]
  gaps = np.asarray(gaps)
  return {"share": float(np.mean(gaps < span)), "min_gap": int(gaps.min()),
          "median_gap": float(np.median(gaps)), "span": span}


def run_clip_overlap(run_dir: str, manifest: dict) -> dict | None:
  """`clip_overlap` of a run, from its pretraining config.json and the set's video length."""
  path = os.path.join(run_dir, "pretrain", "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    data = json.load(f)["data"]
  frames = (data.get("embedded_num_frames") if manifest["name"] == "embedded"
            else manifest.get("arguments", {}).get("num_frames"))
  if not frames:
    return None
  return clip_overlap(int(frames), data["clip_len"], data["stride"], data["num_clips"],
                      draws=500, min_gap=int(data.get("min_start_gap", 0)))


def _finished_steps(workdir: str) -> int:
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    summary = json.load(f)
  return 0 if summary.get("preempted") else int(summary.get("step", 0))


def pretrain_overrides(args, manifest: dict, seed: int) -> list[str]:
  """KEY=VALUE config overrides of one pretraining run (before the user's)."""
  out = [f"seed={seed}", f"train.num_steps={args.steps}", "eval_after_pretrain=False"]
  arrays = getattr(args, "source", "records") == "arrays"
  if manifest["name"] == "embedded":
    out += ["data.source=embedded_arrays"] if arrays else []
  elif arrays:
    out += ["data.source=arrays", f"data.arrays_dir={manifest['arrays_dir']}"]
  else:
    out += ["data.source=tfrecord", f"data.train_pattern={manifest['train_pattern']}"]
  return out + list(args.override)


def pretrain_command(objective: str, preset: str, overrides: list[str], workdir: str) -> list:
  config = os.path.join(REPO_ROOT, "configs", f"{objective}.py")
  return ([_PYTHON, "-m", "corp_jax.main", f"--config={config}{':' + preset if preset else ''}",
           f"--workdir={workdir}"] + [f"--config.{o}" for o in overrides])


def _parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _pretrain_in_process(objective: str, preset: str, overrides: list[str], workdir: str):
  from corp_jax.config_defaults import pretrain_config  # pylint: disable=g-import-not-at-top
  from corp_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = pretrain_config(objective, preset)
  for item in overrides:
    key, value = item.split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = _parse_value(value)  # the lock rejects unknown keys, as the flags do
  loop.pretrain(config, workdir)


def _run_logged(command: list, log_path: str) -> float:
  """Runs `command` with its output appended to `log_path`; returns its CPU seconds (user +
  system, from its own rusage, so concurrent runs do not mix)."""
  with open(log_path, "a") as log:
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
  if child.returncode != 0:
    raise RuntimeError(f"{command[2]} exited with status {child.returncode}; see {log_path}")
  return usage.ru_utime + usage.ru_stime


def _probe_step(args, workdir: str, run_dir: str, log_path: str) -> tuple[dict, float]:
  """Probes the final backbone of `workdir`: (probe result, CPU seconds of the subprocess)."""
  if args.in_process:
    return fidelity_probe.probe(workdir, args.set, args.linear_preset, args.source), 0.0
  probe_path = os.path.join(run_dir, "probe.json")
  command = [_PYTHON, "-m", "corp_jax.tools.fidelity_probe", workdir, args.set, probe_path,
             "--source", args.source]
  if args.linear_preset:
    command += ["--linear_preset", args.linear_preset]
  cpu_s = _run_logged(command, log_path)
  with open(probe_path) as f:
    return json.load(f), cpu_s


def _write_record(record_path: str, record: dict) -> None:
  with open(record_path + ".partial", "w") as f:
    json.dump(record, f, indent=2)
  os.replace(record_path + ".partial", record_path)


def run_one(args, manifest: dict, objective: str, seed: int, run_dir: str) -> dict:
  """Pretrains and probes one (objective, seed), or returns its recorded result (probed
  again, the pretraining figures kept, with `--reprobe`)."""
  record_path = os.path.join(run_dir, "run.json")
  settings = {"objective": objective, "seed": seed, "steps": args.steps, "preset": args.preset,
              "set": args.set, "overrides": list(args.override),
              "linear_preset": args.linear_preset}
  if args.source != "records":  # records made before the option keep matching
    settings["source"] = args.source
  workdir = os.path.join(run_dir, "pretrain")
  log_path = os.path.join(run_dir, "log.txt")
  if os.path.exists(record_path):
    with open(record_path) as f:
      record = json.load(f)
    if record.get("settings") != settings:
      raise SystemExit(f"error: {record_path} was run with other settings "
                       f"({record.get('settings')}); use another --root or --tag")
    if not getattr(args, "reprobe", False):
      return record
    started = time.time()
    record["probe"], cpu_s = _probe_step(args, workdir, run_dir, log_path)
    record["reprobe"] = {"wall_s": round(time.time() - started, 1),
                         "cpu_s": None if args.in_process else round(cpu_s, 1),
                         "first_probe_wall_s": record.get("probe_wall_s")}
    _write_record(record_path, record)
    return record
  os.makedirs(run_dir, exist_ok=True)
  overrides = pretrain_overrides(args, manifest, seed)
  load = {"pretrain_start": os.getloadavg()[0]}
  cpu_s = 0.0
  started = time.time()
  pretrain_s = None  # unknown when an earlier invocation finished the pretraining
  if _finished_steps(workdir) < args.steps:
    if args.in_process:
      _pretrain_in_process(objective, args.preset, overrides, workdir)
    else:
      cpu_s += _run_logged(pretrain_command(objective, args.preset, overrides, workdir),
                           log_path)
    pretrain_s = round(time.time() - started, 1)
  load["probe_start"] = os.getloadavg()[0]
  started = time.time()
  probe, probe_cpu_s = _probe_step(args, workdir, run_dir, log_path)
  cpu_s += probe_cpu_s
  load["probe_end"] = os.getloadavg()[0]
  record = {"settings": settings, "probe": probe,
            "order_acc": order_accuracy_at_end(workdir),
            "pretrain_wall_s": pretrain_s, "probe_wall_s": round(time.time() - started, 1),
            "load_average_1min": load,
            # CPU seconds of the subprocesses (user + system): a figure the other jobs on a
            # shared machine do not inflate the way they inflate wall time.
            "cpu_s": None if args.in_process else round(cpu_s, 1)}
  _write_record(record_path, record)
  return record


def _headline(probe: dict) -> dict:
  return {family: {k: round(v, 3) for k, v in entry.items() if k.endswith(("top1", "direction"))}
          for family, entry in probe.items() if isinstance(entry, dict) and "knn_top1" in entry}


def _set_name(manifest: dict, tag: str, source: str = "records") -> str:
  name = manifest["name"] + ("_arrays" if source == "arrays" else "")
  if manifest["name"] != "embedded":
    args = manifest.get("arguments", {})
    if args.get("keyframe_interval"):
      name += f"_key{args['keyframe_interval']}"
    if args.get("num_frames"):
      name += f"_{args['num_frames']}f"
    if args.get("seed"):  # another draw of the same generator (e.g. a validation set)
      name += f"_seed{args['seed']}"
  return f"{name}_{tag}" if tag else name


def write_summary(out_dir: str, records: list[dict], title: str, wall_s: float) -> str:
  from corp_jax.tools import fidelity_table  # pylint: disable=g-import-not-at-top
  summary = fidelity_table.summarize(records)
  run_wall = sum((r.get("pretrain_wall_s") or 0) + (r.get("probe_wall_s") or 0) for r in records)
  run_cpu = sum(r.get("cpu_s") or 0 for r in records)
  text = (fidelity_table.markdown(summary, title)
          + f"\nRuns: {len(records)}, their wall time summed {run_wall / 60:.1f} min, CPU time "
            f"(user + system) {run_cpu / 60:.1f} min; this invocation {wall_s / 60:.1f} min, "
            f"load average at its end {os.getloadavg()[0]:.1f}.\n\n"
          + fidelity_table.runs_markdown(records))
  with open(os.path.join(out_dir, "fidelity.md"), "w") as f:
    f.write(text)
  with open(os.path.join(out_dir, "fidelity.json"), "w") as f:
    json.dump({"summary": summary, "runs": records, "wall_s": round(wall_s, 1)}, f, indent=2)
  return text


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m corp_jax.tools.fidelity",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--set", default="embedded",
                 help="'embedded' or the set.json of a shard set (corp_jax.tools.photo_set)")
  p.add_argument("--root", default="workdirs/fidelity", help="where runs and tables go")
  p.add_argument("--objectives", default=",".join(OBJECTIVES))
  p.add_argument("--seeds", default="0,1,2", help="comma-separated pretraining seeds")
  p.add_argument("--steps", type=int, default=400, help="pretraining steps of every run")
  p.add_argument("--preset", default="", help="pretraining config preset (e.g. test)")
  p.add_argument("--linear_preset", default="", help="configs/linear_eval.py preset")
  p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                 help="pretraining config override, repeatable (e.g. data.stride=2)")
  p.add_argument("--tag", default="", help="suffix of the output folder (e.g. for controls)")
  p.add_argument("--source", choices=fidelity_probe.SOURCES, default="records",
                 help="records: TFRecords through tf.data; arrays: NumPy array splits, no "
                      "TensorFlow (the embedded set, or a set built with photo_set --arrays)")
  p.add_argument("--jobs", type=int, default=1,
                 help="runs at a time (subprocesses; e.g. several small runs sharing one GPU, "
                      "whose memory each then allocates on demand)")
  p.add_argument("--reprobe", action="store_true",
                 help="probe again the runs already recorded with the same settings (their "
                      "pretraining is kept), e.g. after the probe gained a measure")
  p.add_argument("--in_process", action="store_true",
                 help="run pretraining and probes in this process (tests)")
  return p


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  objectives = [o for o in args.objectives.split(",") if o]
  unknown = sorted(set(objectives) - set(OBJECTIVES) - {"contrast_only"})
  try:
    seeds = [int(s) for s in args.seeds.split(",") if s]
  except ValueError:
    print(f"error: --seeds must be integers separated by commas, got {args.seeds!r}",
          file=sys.stderr)
    return 2
  if args.jobs > 1 and args.in_process:
    print("error: --jobs > 1 runs subprocesses; drop --in_process", file=sys.stderr)
    return 2
  if unknown or not objectives or not seeds or args.steps < 1 or args.jobs < 1:
    print(f"error: need known --objectives (unknown: {unknown}; choose from "
          f"{OBJECTIVES + ('contrast_only',)}), --seeds, --steps >= 1 and --jobs >= 1",
          file=sys.stderr)
    return 2
  bad = [o for o in args.override if "=" not in o]
  if bad:
    print(f"error: --override takes KEY=VALUE, got {bad}", file=sys.stderr)
    return 2
  try:
    manifest = fidelity_probe.read_set(args.set)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if manifest["name"] != "embedded":
    needs = "arrays_dir" if args.source == "arrays" else "train_pattern"
    if needs not in manifest:
      fix = ("it holds array splits only: pass --source arrays" if needs == "train_pattern"
             else "it holds shards only: build an array set with "
                  "python -m corp_jax.tools.photo_set --out DIR --arrays")
      print(f"error: --source {args.source} needs a set with {needs!r}; {args.set}: {fix}",
            file=sys.stderr)
      return 2
    args.set = os.path.abspath(args.set)
  set_name = _set_name(manifest, args.tag, args.source)
  out_dir = os.path.abspath(os.path.join(args.root, set_name))
  os.makedirs(out_dir, exist_ok=True)
  started = time.time()
  runs = [(objective, seed) for seed in seeds for objective in objectives]
  done = {}

  def one(run):
    objective, seed = run
    run_dir = os.path.join(out_dir, objective, f"seed{seed}")
    t0 = time.time()
    record = run_one(args, manifest, objective, seed, run_dir)
    record["clip_overlap"] = run_clip_overlap(run_dir, manifest)
    if objective != "simclr":
      record["order_leaves_chance"] = order_leaves_chance(os.path.join(run_dir, "pretrain"))
    print(f"{objective} seed {seed}: order acc {record['order_acc']}, "
          f"{_headline(record['probe'])} ({time.time() - t0:.0f}s; load "
          f"{os.getloadavg()[0]:.1f})", flush=True)
    return record

  if args.jobs > 1:
    # Concurrent processes on one accelerator: each allocates memory as it needs it rather
    # than JAX's default share of the whole device.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
    futures = {pool.submit(one, run): run for run in runs}
    for future in concurrent.futures.as_completed(futures):
      done[futures[future]] = future.result()
      records = [done[run] for run in runs if run in done]  # a fixed order in the tables
      write_summary(out_dir, records, f"{set_name}: {args.steps} steps",
                    time.time() - started)
  records = [done[run] for run in runs]
  print(write_summary(out_dir, records, f"{set_name}: {args.steps} steps",
                      time.time() - started))
  print(f"tables: {out_dir}/fidelity.md, {out_dir}/fidelity.json")
  return 0


if __name__ == "__main__":
  sys.exit(main())
