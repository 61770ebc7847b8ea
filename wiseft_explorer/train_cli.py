"""CLI subcommands that train or measure: finetune, build-demo, bench (kept apart so cli.py stays short)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    """Register the training/benchmark subcommands."""
    p = sub.add_parser("finetune", parents=[common], help="fine-tune the experiment's zero-shot model")
    p.add_argument("--train", required=True, help="training set: an ImageFolder-layout folder or world:<set>")
    p.add_argument("--out", required=True, help="output checkpoint (.safetensors, our classifier format)")
    p.add_argument("--mode", choices=("end-to-end", "linear"), default="end-to-end")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=3e-5, help="peak learning rate (paper: 3e-5 at batch 512)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=500, help="linear warmup steps before the cosine decay")
    p.add_argument("--bn", choices=("frozen", "train"), default="frozen",
                   help="BatchNorm statistics: frozen (keep pretrained running stats) or train")
    p.add_argument("--limit", type=int, default=None, help="use at most this many training images")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_finetune)
    p = sub.add_parser("build-demo", help="pretrain, zero-shot head, fine-tune: rebuild the built-in demo")
    p.add_argument("--out-dir", default=None, help="where to write the assets (default: assets/demo)")
    p.add_argument("--tiny", action="store_true", help="a seconds-long configuration (tests)")
    p.add_argument("--reuse-pretrained", action="store_true",
                   help="keep an existing zero-shot checkpoint whose recorded recipe and seed match (skips pretraining)")
    p.set_defaults(func=_build_demo)
    p = sub.add_parser("bench", parents=[common], help="benchmark interpolation, latency, throughput, cache")
    p.add_argument("--tiny", action="store_true", help="seconds-long smoke run (figures not meaningful)")
    p.add_argument("--out", default="bench-results.json", help="JSON file for the figures")
    p.set_defaults(func=_bench)


def _finetune(args: argparse.Namespace) -> int:
    import torch

    from .data import load_eval_set, preprocess_set
    from .experiment import DatasetSpec, load_experiment
    from .finetune import FinetuneConfig, finetune, save_finetuned
    from .models import build_zeroshot, classifier_metadata, load_clip, pick_device

    if Path(args.out).suffix != ".safetensors":
        raise ValueError(f"{args.out}: the checkpoint must be a .safetensors file")
    exp = load_experiment(args.experiment)
    device = pick_device(exp.device)
    clip = load_clip(exp.zeroshot, device)
    zeroshot = build_zeroshot(clip, exp.classnames, exp.templates, device)
    source = args.train if args.train.startswith("world:") else str(Path(args.train).resolve())
    train = load_eval_set(DatasetSpec("train", source, limit=args.limit), exp.classnames, args.seed)
    config = FinetuneConfig(mode=args.mode, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                            warmup=args.warmup, bn=args.bn, seed=args.seed)
    torch.manual_seed(args.seed)
    result = finetune(zeroshot, (preprocess_set(train, clip.preprocess), train.labels), config, device)
    meta = classifier_metadata(clip, exp.classnames, recipe={"train": args.train, "images": len(train)})
    out = save_finetuned(args.out, result, meta)
    print(f"wrote {out} ({args.mode}, {len(train)} images, {result.seconds:.0f} s)")
    return 0


def _build_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, build_demo

    config = DemoConfig.tiny() if args.tiny else DemoConfig()
    result = build_demo(Path(args.out_dir) if args.out_dir else None, config, reuse_pretrained=args.reuse_pretrained)
    for name, path in {**result.assets, **result.experiments}.items():
        print(f"{name}: {path}")
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result.timings.items()))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(["--tiny"] * args.tiny + ["--out", args.out])
