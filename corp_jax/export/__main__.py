"""`python -m corp_jax.export --pretrain_workdir=W [--step=N] --out=DIR [--no_projection]`."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m corp_jax.export",
      description="Export a pretrained backbone (and projection head) as PyTorch safetensors.")
  parser.add_argument("--pretrain_workdir", required=True, help="pretraining workdir")
  parser.add_argument("--step", type=int, default=0, help="checkpoint step (0 = latest)")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--no_projection", action="store_true",
                      help="export the backbone only")
  args = parser.parse_args(argv)
  from corp_jax.export import writer  # pylint: disable=g-import-not-at-top
  try:
    config = writer.export_pretrained(args.pretrain_workdir, args.out, step=args.step or None,
                                      projection=not args.no_projection)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"exported {config['variant']} (step {config['source']['step']}, F="
        f"{config['feature_dim']}) to {args.out}: {', '.join(config['files'].values())}, "
        "config.json\n  PyTorch: from corp_jax.export import load_torch_backbone; "
        f"model = load_torch_backbone({args.out!r})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
