"""The merge methods on the command line: `--method NAME --param k=v` for sweep and export, `methods`, `fisher`."""

from __future__ import annotations

import argparse
import json


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """--method and --param on a command that builds θ (sweep, export)."""
    parser.add_argument("--method", default="wiseft",
                        help="how θ is built from the endpoints: wiseft (the straight line) or a merge method "
                             "(`wiseft-explorer methods` lists them); α runs from θ₀ to the method's point")
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="a method parameter, e.g. --param beta=0.5 (repeatable; `methods` lists them)")


def method_params(args: argparse.Namespace) -> dict[str, str]:
    """--param k=v pairs as a dict; a pair without '=' is refused with the form it needs."""
    params = {}
    for pair in getattr(args, "param", None) or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {pair!r}: write it as NAME=VALUE, e.g. --param beta=0.5")
        params[key.strip()] = value.strip()
    return params


def apply_method(args: argparse.Namespace, runtime):
    """The runtime along --method with its --params (the runtime itself for wiseft)."""
    from ..evaluation.merging import with_method

    return with_method(runtime, getattr(args, "method", "wiseft"), method_params(args))


def cmd_methods(args: argparse.Namespace) -> int:
    """Every registered merge method with its parameters (name, range, default)."""
    from ..core.merging.registry import methods

    listing = [{"name": m.name, "title": m.title, "summary": m.summary, "min_endpoints": m.min_endpoints,
                "params": [{"name": p.name, "default": p.default, "low": p.low, "high": p.high,
                            "choices": list(p.choices), "help": p.help} for p in m.params]}
               for m in methods().values()]
    print(json.dumps(listing, indent=2, ensure_ascii=False))
    return 0


def cmd_fisher(args: argparse.Namespace) -> int:
    """Compute (or find cached) the diagonal Fishers of θ₀ and θ₁, with a progress bar per model."""
    from tqdm import tqdm

    from ..evaluation.fisher import compute_fishers

    runtime = args.make_runtime(args)
    bars: dict[str, tqdm] = {}

    def progress(role: str, done: int, total: int) -> None:
        if role not in bars:
            bars[role] = tqdm(total=total, desc=f"Fisher of {role}", unit="img", disable=args.quiet)
        bars[role].update(done - bars[role].n)

    paths = compute_fishers(runtime, args.set, args.max_images, args.seed, progress)
    for bar in bars.values():
        bar.close()
    for path in paths:
        print(f"Fisher: {path}")
    return 0


def cmd_compare_methods(args: argparse.Namespace) -> int:
    """Every merge method at its best held-out α against WiSE-FT's, and the label-free α choices (markdown)."""
    from ..evaluation.method_compare import DEFAULT_CHOICES, compare_methods, format_comparison_markdown

    wanted = {m.strip() for m in args.methods.split(",")} if args.methods else None
    choices = [(n, p) for n, p in DEFAULT_CHOICES if wanted is None or n in wanted]
    text = format_comparison_markdown(compare_methods(args.make_runtime(args), choices))
    if args.out:
        from ..store.atomic import atomic_write_text

        atomic_write_text(args.out, text)
    print(text, end="")
    return 0


def add_parsers(sub, experiment: argparse.ArgumentParser, make_runtime) -> None:
    """The `methods` and `fisher` subcommands; `make_runtime(args)` is the commands' runtime for an experiment."""
    from ..evaluation.fisher import DEFAULT_IMAGES

    p = sub.add_parser("methods", help="the merge methods and their parameters")
    p.set_defaults(func=cmd_methods)
    p = sub.add_parser("fisher", parents=[experiment],
                       help="diagonal Fishers of θ₀ and θ₁ for --method fisher (cached beside the checkpoints)")
    p.add_argument("--endpoint", default=None, help="the fine-tuned endpoint, by name (default: the first)")
    p.add_argument("--set", default=None, help="the set whose images are used (default: id_val, else the ID set)")
    p.add_argument("--max-images", type=int, default=DEFAULT_IMAGES, help=f"images (default {DEFAULT_IMAGES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the labels sampled from the model (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fisher, make_runtime=make_runtime)
    p = sub.add_parser("compare-methods", parents=[experiment],
                       help="each merge method at its best held-out α against WiSE-FT's (paired errors), and the "
                            "label-free α choices' distance from the labelled one, as markdown tables")
    p.add_argument("--methods", default=None,
                   help="comma-separated method names to include (default: every one; fisher needs `fisher` first)")
    p.add_argument("--out", default=None, help="also write the tables to this file")
    p.set_defaults(func=cmd_compare_methods, make_runtime=make_runtime)
