"""`convert`: a trusted pickled checkpoint (the WiSE-FT paper's, a torch.save file, a state dict) to safetensors,
or CIFAR-10.2's pickled .npy to .npz."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a pickled checkpoint (to safetensors) or CIFAR-10.2's pickled .npy (to .npz) the user trusts."""
    from ..core.checkpoints import load_checkpoint
    from ..core.paper_pickle import convert_trusted_pickle

    if Path(args.input).suffix == ".npy":  # CIFAR-10.2 ships its test set as a pickled dict inside a .npy
        if not args.trust_pickle:
            raise ValueError(f"{args.input}: a .npy holding a pickled dict is only unpickled with --trust-pickle "
                             "(for a file you trust, such as CIFAR-10.2 from its authors)")
        from ..data.cifar import convert_cifar102

        print(f"wrote {convert_cifar102(Path(args.input), Path(args.output))}")
        return 0
    if not args.trust_pickle:
        load_checkpoint(args.input)  # refuses pickles with the explanation; converts plain tensor files
        raise ValueError("convert without --trust-pickle only re-checks files; pass --trust-pickle to convert a "
                         "pickled checkpoint you trust")
    out = convert_trusted_pickle(args.input, args.output, zeroshot=args.zeroshot)
    print(f"wrote {out}" + (f" (tied to the zero-shot weights of {args.zeroshot})" if args.zeroshot else ""))
    return 0


def add_parser(sub) -> None:
    """Register the convert subcommand (it reads no experiment: none of the shared options apply)."""
    p = sub.add_parser("convert", help="convert a trusted pickled checkpoint to safetensors, or CIFAR-10.2's .npy to .npz")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--trust-pickle", action="store_true",
                   help="unpickle INPUT, a file you trust: the WiSE-FT paper's zeroshot.pt / checkpoint_N.pt (read "
                        "without its code), a torch.save file or a state dict")
    p.add_argument("--zeroshot", default=None,
                   help="the converted zero-shot checkpoint INPUT was fine-tuned from: its digest is recorded, and "
                        "a sweep refuses to pair INPUT with other zero-shot weights")
    p.set_defaults(func=cmd_convert)
