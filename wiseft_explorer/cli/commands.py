"""`python -m wiseft_explorer` / `wiseft-explorer`: sweep, predict, export, info, convert, finetune, build-demo,
make-example, app."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..experiment.locations import DEFAULT_EXPERIMENT
from .merging import add_method_options

if TYPE_CHECKING:
    from tqdm import tqdm as Bar

KNOWN_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError, FileNotFoundError, KeyError, OSError)


def _runtime(args: argparse.Namespace, endpoint: str | None = None):
    """The experiment's runtime at its --endpoint (or `endpoint`), with --workers and a bar for any head it builds."""
    import dataclasses

    from ..evaluation.runtime import ExperimentRuntime
    from ..experiment.parse import load_experiment
    from .merging import apply_method

    exp = load_experiment(args.experiment).with_endpoint(endpoint or getattr(args, "endpoint", None))
    if getattr(args, "workers", None) is not None:
        exp = dataclasses.replace(exp, workers=args.workers)
    runtime = ExperimentRuntime(exp)
    runtime.head_progress = _HeadBar(getattr(args, "quiet", False))
    runtime = apply_method(args, runtime)  # --method: the runtime along a merge method's path
    args.runtime = runtime  # main() prints what loading it adjusted, once the command is done
    return runtime


class _HeadBar:
    """A tqdm bar per zero-shot head being built (a head read from the cache shows none)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Bar | None = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None or done < self.bar.n:
            self.bar = tqdm(total=total, desc="zero-shot head", unit="class", disable=self.quiet)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()


def cmd_sweep(args: argparse.Namespace) -> int:
    """The sweep of the --endpoint, or of every fine-tuned endpoint in turn when the experiment has several."""
    from ..experiment.forms import slug
    from ..experiment.parse import load_experiment

    exp = load_experiment(args.experiment)
    every = len(exp.endpoints) >= 2 and not args.endpoint and args.method == "wiseft"  # a merge uses them all
    names = exp.endpoint_names if every else [args.endpoint]
    for name in names:
        if len(names) > 1:
            print(f"== fine-tuned endpoint: {name} ==")
        code = _sweep_endpoint(args, name, out_suffix=f"-{slug(name)}" if len(names) > 1 else "")
        if code:
            return code
    return 0


def _sweep_endpoint(args: argparse.Namespace, endpoint: str | None, out_suffix: str = "") -> int:
    """Run (or read from cache) one endpoint's alpha sweep and print its table; under torchrun, on every rank."""
    from tqdm import tqdm

    from ..core.distributed import process_group
    from ..evaluation.distributed_sweep import run_sweep_distributed
    from ..evaluation.engine import StreamProgress
    from ..evaluation.sweep import run_sweep
    from ..results.curves import ALPHA_GRID, alpha_choices, choose_alphas

    runtime = _runtime(args, endpoint)
    alphas = [args.alpha] if args.alpha is not None else list(ALPHA_GRID)
    bar = None
    # Joined before any model loads: with NCCL, "cuda" must already mean this rank's GPU.
    with process_group(runtime.experiment.device) as group:
        who = f"rank {group.rank}: " if group.distributed else ""

        def progress(done: StreamProgress, _snapshot=None) -> None:
            nonlocal bar
            if bar is None:  # created at the first batch: a fully cached sweep shows no bar
                resumed = done.done - done.processed_now
                if resumed:
                    print(f"{who}resuming an interrupted sweep: {resumed:,} of {done.total:,} images were done "
                          "before", file=sys.stderr)
                part = f", {group.describe()}'s part" if group.distributed else ""
                bar = tqdm(total=done.total, initial=resumed, desc=f"sweep ({len(alphas)} α{part})", unit="img",
                           disable=args.quiet or not group.is_root, smoothing=0.1)
            bar.update(done.done - bar.n)

        if group.distributed:
            result = run_sweep_distributed(runtime, group, alphas, on_progress=progress)
        else:
            result = run_sweep(runtime, alphas, on_progress=progress)
    if bar is not None:
        bar.close()
    if result is None:  # ranks other than 0 computed their part; rank 0 reports and writes
        return 0
    for line in runtime.data_warnings():
        print(f"warning: {line}", file=sys.stderr)
    print(f"preprocessing: {runtime.preprocessing()}", file=sys.stderr)
    table = result.table() * 100
    print(table.round(1).to_string())
    _print_robustness(runtime.experiment, result)
    if len(alphas) > 1:
        print("alpha choices:", json.dumps(choose_alphas(result.curves())))
        for choice in alpha_choices(result.curves()):
            print(f"  {choice.caption()}")
    ensemble = result.curves().ensemble_curves()
    if ensemble is not None and len(alphas) > 1:
        print("output-space ensemble, (1 - α)·logits_0 + α·logits_1 (needs both models at inference; θ_α needs one):")
        print((ensemble.table()[[result.id_set, "avg_shifts"]] * 100).round(1).to_string())
    if args.compare_at in result.alphas and {0.0, 1.0} <= set(result.alphas):
        from ..results.uncertainty import compare_to_ends, format_comparison

        print(format_comparison(compare_to_ends(result, args.compare_at), args.compare_at))
    if args.out:
        from ..evaluation.result_files import write_results

        out = Path(args.out)
        jsonl, per_image = write_results(runtime, result, out.with_name(out.stem + out_suffix + out.suffix))
        print(f"wrote {jsonl} and {per_image.name} (the per-image file the app's 'Open results' imports with it)")
    return 0


def _print_robustness(exp, result) -> None:
    """Effective robustness of every alpha (points above the testbed's or the demo family's line), or why not."""
    from ..results.robustness import FAMILY_TITLE, ROBUSTNESS_TITLE, experiment_robustness
    from ..results.testbed import experiment_axes, no_testbed_reason

    robustness = experiment_robustness(exp, result) if exp.shifts else None
    if robustness is None:
        if exp.shifts:
            print(f"effective robustness: none. {no_testbed_reason(exp.id_set.preset)}", file=sys.stderr)
        return
    print(ROBUSTNESS_TITLE if experiment_axes(exp)[0].source.is_testbed else FAMILY_TITLE)
    print((robustness * 100).round(1).to_string())


def cmd_predict(args: argparse.Namespace) -> int:
    """Top-5 of zero-shot, theta_alpha and fine-tuned for each image, as JSON; bad files fail alone."""
    from ..data.images import ImageDecodeError, decode_image
    from ..evaluation.predict import predict_three, preprocess

    runtime = _runtime(args)
    alpha = 0.5 if args.alpha is None else args.alpha
    working = runtime.new_working()
    results, failed = [], 0
    for name in args.images:
        try:
            picture = decode_image(Path(name))
        except (ImageDecodeError, OSError) as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
            results.append({"image": name, "error": str(err)})
            continue
        preds = predict_three(runtime, preprocess(runtime, [picture]), alpha, working)
        # predict_three calls the theta_alpha model "alpha"; here that key holds the value, so name the model apart.
        tops = {("interpolated" if k == "alpha" else k): v[0].as_dict() for k, v in preds.items()}
        results.append({"image": name, "alpha": alpha, **tops})
    print(json.dumps(results, indent=2))
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the interpolated model at --alpha."""
    from ..evaluation.export import export_interpolated, head_path

    if args.alpha is None:
        raise ValueError("export needs --alpha (e.g. --alpha 0.5)")
    out = export_interpolated(_runtime(args), args.alpha, args.out, args.format)
    print(f"wrote {out} (alpha={args.alpha}, format={args.format})")
    if args.format == "open_clip":
        print(f"wrote {head_path(out)}: theta_alpha's head, which the open_clip file leaves out (its text tower is "
              "the zero-shot one)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Models, parameter counts, device and sets of an experiment."""
    from ..core.models import parameter_count

    runtime = _runtime(args)
    exp, pair = runtime.experiment, runtime.models
    info = {"experiment": exp.name, "file": str(exp.path), "device": str(pair.device), "precision": exp.precision,
            "zeroshot": {"model": exp.zeroshot.name, "pretrained": exp.zeroshot.pretrained,
                         "clip_parameters": parameter_count(pair.clip.model),
                         "classifier_parameters": parameter_count(pair.zeroshot),
                         "image_tower_parameters": parameter_count(pair.zeroshot.visual)},
            "finetuned": {"checkpoint": str(exp.finetuned),
                          "classifier_parameters": parameter_count(pair.finetuned),
                          "recipe": pair.finetuned_metadata.get("recipe")},
            "preprocessing": runtime.preprocessing(),
            "head_policy": exp.head_policy, "classes": len(exp.classnames), "templates": len(exp.templates),
            "id_set": exp.id_set.name, "id_val": exp.id_val.name if exp.id_val else None,
            "shift_sets": [s.name for s in exp.shifts], "interpolated_weights": runtime.space.num_weights}
    print(json.dumps(info, indent=2))
    return 0


def _alpha(text: str) -> float:
    """--alpha: any finite float (NaN or inf would silently turn every weight into NaN)."""
    try:
        value = float(text)
    except ValueError:  # float()'s own message only repeats the text quoted here: noise
        raise argparse.ArgumentTypeError(f"expected a number such as 0.5, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _endpoint_option(parser: argparse.ArgumentParser, default: str = "default: the first") -> None:
    parser.add_argument("--endpoint", default=None,
                        help=f"the fine-tuned endpoint, by name, of an experiment with several ({default})")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = argparse.ArgumentParser(prog="wiseft-explorer", description="Robust fine-tuning (WiSE-FT) explorer.")
    sub = parser.add_subparsers(dest="command", required=True)
    # The options of the commands that read an experiment: --experiment and --endpoint (info), and --alpha too.
    experiment = argparse.ArgumentParser(add_help=False)
    experiment.add_argument("--experiment", default=str(DEFAULT_EXPERIMENT), help="experiment TOML (default: demo)")
    common = argparse.ArgumentParser(add_help=False, parents=[experiment])
    common.add_argument("--alpha", type=_alpha, default=None, help="mixing coefficient (any float; <0 or >1 extrapolates)")

    p = sub.add_parser("sweep", parents=[common], help="accuracy of every set over the alpha grid (cached)")
    _endpoint_option(p, "default: every one, in turn")
    p.add_argument("--out", help="also write the results as JSONL (and its per-image file next to it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--compare-at", type=_alpha, default=0.5,
                   help="after a full sweep, compare this alpha with both ends, with standard errors (default 0.5)")
    p.add_argument("--workers", type=int, default=None,
                   help="image-decoding worker processes (default: the experiment's, else cores - 1, at most 8)")
    add_method_options(p)
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("predict", parents=[common], help="top-5 of zero-shot, alpha and fine-tuned for images")
    p.add_argument("images", nargs="+", help="image files")
    _endpoint_option(p)
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("export", parents=[common], help="write the interpolated model at --alpha")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--format", choices=("classifier", "open_clip"), default="classifier",
                   help="classifier: the classifier theta_alpha (image tower + head). open_clip: a full state dict "
                        "open_clip loads as is, which is NOT the classifier: theta_alpha's image tower with the "
                        "zero-shot text tower; theta_alpha's head is written beside it (clip.safetensors -> "
                        "clip.head.safetensors)")
    _endpoint_option(p)
    add_method_options(p)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("info", parents=[experiment], help="models, parameter counts, device")
    _endpoint_option(p)
    p.set_defaults(func=cmd_info)
    from . import convert, example, serve
    from . import merging as merging_cli
    from . import training as train_cli

    merging_cli.add_parsers(sub, experiment, _runtime)
    train_cli.add_parsers(sub, common)
    convert.add_parser(sub)
    example.add_parser(sub)
    serve.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one subcommand; known errors print one line and exit 2."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "app":  # only `app` passes options on (to Streamlit)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.streamlit_args = unknown if args.command == "app" else []
    try:
        code = args.func(args)
        for note in args.runtime.model_notes() if getattr(args, "runtime", None) else []:
            print(f"note: {note}", file=sys.stderr)
        return code
    except KNOWN_ERRORS as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
