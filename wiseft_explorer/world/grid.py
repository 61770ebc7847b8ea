"""A sample grid of the demo world (one row per named set) for the README: `python -m wiseft_explorer.world.grid OUT.png`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .sets import SET_NAMES, make_set


def sample_grid(sets: tuple[str, ...] = SET_NAMES, per_row: int = 12, seed: int = 0, zoom: int = 3) -> Image.Image:
    """One labelled row of `per_row` images for each named set, each image enlarged `zoom` times."""
    rows = [make_set(name, seed=seed, n=per_row).images for name in sets]
    side = rows[0].shape[1] * zoom
    label_w, pad = 84, 2
    width = label_w + per_row * (side + pad)
    grid = Image.new("RGB", (width, len(sets) * (side + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, (name, images) in enumerate(zip(sets, rows, strict=True)):
        top = pad + r * (side + pad)
        draw.text((6, top + side // 2 - 6), name, fill=(0, 0, 0))
        for c, img in enumerate(images):
            tile = Image.fromarray(np.ascontiguousarray(img)).resize((side, side), Image.Resampling.NEAREST)
            grid.paste(tile, (label_w + c * (side + pad), top))
    return grid


def main(argv: list[str] | None = None) -> None:
    """Write the sample grid PNG."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="output PNG path")
    parser.add_argument("--per-row", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sample_grid(per_row=args.per_row, seed=args.seed).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
