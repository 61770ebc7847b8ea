"""CLI subcommands that train or measure: finetune, build-demo, bench (kept apart so cli.py stays short)."""

from __future__ import annotations

import argparse


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    """Register the training/benchmark subcommands."""
    p = sub.add_parser("bench", parents=[common], help="benchmark interpolation, latency, throughput, cache")
    p.add_argument("--tiny", action="store_true", help="seconds-long smoke run (figures not meaningful)")
    p.add_argument("--out", default="bench-results.json", help="JSON file for the figures")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(["--tiny"] * args.tiny + ["--out", args.out])
