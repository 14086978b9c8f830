"""Tables and figures of `order_probe` results, and its command line.

  python -m corp_jax.tools.order_probe_report --pretrain_workdir=W1 --pretrain_workdir=W2 \
      [--names=simclr,corp_f] --out=DIR

`markdown(results) -> str` and `plot(results, path)` take {name: probe_workdir(...) result}.
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags
import numpy as np

from corp_jax.tools import order_probe

def define_flags() -> None:
  """Defines the command line's flags; called by the two entry points only, so importing this
  module (tests, other tools) leaves absl's global flag registry alone."""
  global _WORKDIRS, _NAMES, _OUT, _NUM_TRAIN, _NUM_TEST, _CLIPS, _MAX_DIM, _STEP  # pylint: disable=global-statement
  _WORKDIRS = flags.DEFINE_multi_string("pretrain_workdir", [], "pretraining workdirs to probe")
  _NAMES = flags.DEFINE_list("names", [], "one name per workdir (default: the directory names)")
  _OUT = flags.DEFINE_string("out", "", "directory for order_probe.{json,md,png}")
  _NUM_TRAIN = flags.DEFINE_integer("num_train", 256, "train videos for the probes (0 = all)")
  _NUM_TEST = flags.DEFINE_integer("num_test", 0, "test videos (0 = the whole test split)")
  _CLIPS = flags.DEFINE_integer("clips_per_video", 3, "uniformly spaced clips per video")
  _MAX_DIM = flags.DEFINE_integer("max_dim", 512, "wider layers are PCA-reduced to this")
  _STEP = flags.DEFINE_integer("step", 0, "checkpoint step (0 = latest)")

_MEASURES = (("reversal", "reversal (1 clip)"), ("diff_order", "order from f_i-f_j"),
             ("diff_order_in_class", "order from f_i-f_j, per class"))


def markdown(results: dict) -> str:
  lines = []
  for key, title in _MEASURES:
    names = list(results)
    lines += [f"**{title}** (held-out accuracy, chance 0.50)", "",
              "| layer | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for layer in order_probe.LAYERS:
      lines.append(f"| {layer} | " + " | ".join(
          f"{results[n]['layers'][layer][key]:.2f}" for n in names) + " |")
    lines.append("")
  headed = [n for n in results if "head" in results[n]]
  if headed:
    gaps = sorted({int(g) for n in headed for g in results[n]["head"]["by_gap"]})
    lines += ["**relation head's order accuracy on test clips** (same video, by start gap in "
              "frames; other video of the same class)", "",
              "| model | " + " | ".join(f"gap {g}" for g in gaps) + " | other video |",
              "|---|" + "---|" * (len(gaps) + 1)]
    for n in headed:
      for key, label in (("head", "test videos"), ("head_train_videos", "train videos")):
        if key not in results[n]:
          continue
        head = results[n][key]
        by_gap = {int(g): v for g, v in head["by_gap"].items()}
        lines.append(f"| {n}, {label} | " + " | ".join(
            f"{by_gap[g]:.2f}" if g in by_gap else "–" for g in gaps)
            + f" | {head['cross_video']:.2f} |")
    lines.append("")
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = list(results)
  colours = {n: plt.cm.tab10(k % 10) for k, n in enumerate(names)}
  fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
  x = np.arange(len(order_probe.LAYERS))
  width = 0.8 / max(len(names), 1)
  for ax, (key, title) in zip(axes, _MEASURES):
    for k, n in enumerate(names):
      values = [results[n]["layers"][layer][key] for layer in order_probe.LAYERS]
      ax.bar(x + (k - (len(names) - 1) / 2) * width, values, width, label=n, color=colours[n])
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, order_probe.LAYERS, rotation=45, ha="right")
    ax.set_ylim(0.3, 1.0)
    ax.set_title(title)
  axes[0].legend(fontsize=7)
  ax = axes[3]
  for n in names:  # colours as in the bars; solid: test videos, dashed: training videos
    if "head" not in results[n]:
      continue
    by_gap = sorted((int(g), v) for g, v in results[n]["head"]["by_gap"].items())
    ax.plot([g for g, _ in by_gap], [v for _, v in by_gap], "o-", color=colours[n])
    if "head_train_videos" in results[n]:
      seen = sorted((int(g), v) for g, v in results[n]["head_train_videos"]["by_gap"].items())
      ax.plot([g for g, _ in seen], [v for _, v in seen], "s--", color=colours[n], ms=3)
    ax.axhline(results[n]["head"]["cross_video"], color=colours[n], ls=":")
  for style, label in (("o-", "test videos"), ("s--", "train videos")):
    ax.plot([], [], style, color="grey", label=label)
  ax.plot([], [], ":", color="grey", label="test, other video")
  ax.axhline(0.5, color="k", lw=0.8, ls="--")
  ax.set_ylim(0.3, 1.02)
  ax.set_xlabel("start gap (frames)")
  ax.set_title("relation head order acc (colours as left)")
  ax.legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main(argv):
  del argv
  workdirs = _WORKDIRS.value
  if not workdirs:
    raise app.UsageError("give at least one --pretrain_workdir")
  names = _NAMES.value or [os.path.basename(os.path.normpath(w)) for w in workdirs]
  if len(names) != len(workdirs):
    raise app.UsageError(f"--names has {len(names)} entries for {len(workdirs)} workdirs")
  from corp_jax.data import from_config  # pylint: disable=g-import-not-at-top
  cache = os.path.join(from_config.default_cache_dir(), "order_probe")
  results = {}
  for name, workdir in zip(names, workdirs):
    print(f"probing {name} ({workdir})", flush=True)
    results[name] = order_probe.probe_workdir(
        workdir, num_train=_NUM_TRAIN.value, num_test=_NUM_TEST.value,
        clips_per_video=_CLIPS.value, max_dim=_MAX_DIM.value, step=_STEP.value or None,
        cache_dir=cache)
  text = markdown(results)
  print(text)
  if _OUT.value:
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "order_probe.json"), "w") as f:
      json.dump(results, f, indent=1)
    with open(os.path.join(_OUT.value, "order_probe.md"), "w") as f:
      f.write(text)
    plot(results, os.path.join(_OUT.value, "order_probe.png"))
    print(f"wrote {_OUT.value}/order_probe.{{json,md,png}}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
