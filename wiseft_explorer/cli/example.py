"""`make-example DIR`: a tiny project to try the own-models walk offline (kept apart so commands.py stays short)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    """Register the make-example subcommand."""
    p = sub.add_parser("make-example",
                       help="write a tiny random open_clip model, image folders and an experiment into a new folder, "
                            "to try your-own-model commands offline")
    p.add_argument("dir", help="a new (or empty) folder; relative to the current folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and images (default: %(default)s)")
    p.set_defaults(func=_make_example)


def _make_example(args: argparse.Namespace) -> int:
    from ..demo.example import next_commands, write_example

    toml = write_example(Path(args.dir), seed=args.seed)
    print(f"wrote a tiny random CLIP, image folders (data/train, test, heldout, dark) and {toml}")
    print("next, from that folder (paths in the experiment file start at its own folder, on the command line at "
          "the folder you run from):")
    for line in next_commands(args.dir):
        print(f"  {line}")
    return 0
