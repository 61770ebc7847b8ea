"""The demo's "accuracy on the line": a family of small standard classifiers trained from scratch on the world.

For ImageNet the robustness testbed's 338 published models give the line that effective robustness is measured
from; the demo's world has no published models, so build-demo trains its own. Every member sees only the world's
ID training photos (`world:train`, the images the demo's CLIP is fine-tuned on; no pretraining, no captions),
normalised as the demo's CLIP expects them (`images_to_tensor` with open_clip's OpenAI mean and std, no
augmentation), and differs in architecture (MLP, CNN, ResNet-like), width, depth and epochs, so that its ID
accuracies spread from weak to strong. Only their accuracies on the world's evaluation sets are kept, with the
recipe of each, in `family.json` (results/demo_family.py reads it).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
from torch import nn
from tqdm.auto import tqdm

from ..results.demo_family import FAMILY_FILE, FAMILY_FORMAT, FAMILY_VERSION, family_record
from ..store.atomic import atomic_write_text
from ..world.render import CLASSES
from ..world.sets import SHIFT_NAMES, SPECS, make_set
from .family_nets import build_net
from .pretrain import images_to_tensor

EVAL_SETS: tuple[str, ...] = ("id-test", "id-val", *SHIFT_NAMES)
# demo-precise.toml's limits (ID sets, shifts): the family is measured on those counts too.
PRECISE_LIMITS = (3000, 2000)


@dataclass(frozen=True)
class MemberRecipe:
    """How one member is trained: architecture, width, depth, epochs, and the optimiser's settings."""

    architecture: str
    width: int
    depth: int
    epochs: int
    lr: float = 3e-3
    batch_size: int = 128
    weight_decay: float = 5e-4

    @property
    def name(self) -> str:
        """A short unique name, e.g. cnn-w16-d3-e10."""
        return f"{self.architecture}-w{self.width}-d{self.depth}-e{self.epochs}"


def _default_members() -> tuple[MemberRecipe, ...]:
    # From a linear classifier on pixels to ResNets trained for 8 epochs (about 4 minutes on 2 quiet cores, estimated
    # from single members timed on the shared machine): a line needs weak and strong points.
    return (
        MemberRecipe("mlp", 0, 0, 2, lr=1e-3), MemberRecipe("mlp", 128, 1, 4, lr=1e-3),
        MemberRecipe("mlp", 256, 2, 8, lr=1e-3),
        MemberRecipe("cnn", 8, 1, 1), MemberRecipe("cnn", 8, 2, 2), MemberRecipe("cnn", 8, 3, 4),
        MemberRecipe("cnn", 16, 2, 3), MemberRecipe("cnn", 16, 3, 6), MemberRecipe("cnn", 24, 3, 8),
        MemberRecipe("resnet", 8, 2, 3), MemberRecipe("resnet", 8, 4, 6), MemberRecipe("resnet", 16, 2, 4),
        MemberRecipe("resnet", 16, 4, 8),
    )


@dataclass(frozen=True)
class FamilyConfig:
    """The whole family (defaults: the shipped demo's): its members, the training images and the eval counts."""

    members: tuple[MemberRecipe, ...] = field(default_factory=_default_members)
    train_size: int = 6000  # DemoConfig.train_size: the images the demo's CLIP is fine-tuned on
    eval_limit: int | None = None  # DemoConfig.eval_limit: the experiment files' `limit` (None: each set's size)
    precise: tuple[int, int] | None = PRECISE_LIMITS  # extra counts (ID sets, shifts) measured too

    @classmethod
    def tiny(cls) -> FamilyConfig:
        """Seconds-long, for tests: three tiny members on 128 images, 64 images per eval set."""
        return cls(members=(MemberRecipe("mlp", 0, 0, 1), MemberRecipe("cnn", 4, 1, 1),
                            MemberRecipe("resnet", 4, 1, 2)), train_size=128, eval_limit=64, precise=None)

    def counts(self, set_name: str) -> list[int]:
        """The image counts a set is measured on (ascending; each a prefix of the next)."""
        counts = {self.eval_limit or SPECS[set_name].size}
        if self.precise is not None:
            counts.add(self.precise[0] if set_name.startswith("id-") else self.precise[1])
        return sorted(counts)

    def to_dict(self) -> dict:
        """JSON-able record (the reuse check compares it)."""
        return json.loads(json.dumps(asdict(self)))


def _normalised(images: np.ndarray) -> torch.Tensor:
    return images_to_tensor(images, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)


def train_member(recipe: MemberRecipe, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    """Train one member from scratch: AdamW, a cosine learning rate over every step, cross-entropy, no augmentation."""
    torch.manual_seed(seed)
    net = build_net(recipe.architecture, recipe.width, recipe.depth, len(CLASSES))
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(x) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    order = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(recipe.epochs):
        for idx in torch.randperm(len(x), generator=order).split(recipe.batch_size):
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def evaluate(net: nn.Module, sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
             counts: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Top-1 on every set's first n images for each of its counts: {set: {str(n): accuracy}}."""
    out = {}
    for name, (x, y) in sets.items():
        correct = torch.cat([net(batch).argmax(1) for batch in x.split(500)]) == y
        out[name] = {str(n): round(float(correct[:n].float().mean()), 6) for n in counts[name]}
    return out


def train_family(config: FamilyConfig | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Train every member on `world:train` (seed `seed`, config.train_size images) and measure it on every world
    evaluation set (world seed 0, as experiment files read them); returns the JSON document (results/demo_family)."""
    config = config or FamilyConfig()
    t0 = time.perf_counter()
    train = make_set("train", seed=seed, n=config.train_size)
    x, y = _normalised(train.images), torch.from_numpy(train.labels)
    counts = {name: config.counts(name) for name in EVAL_SETS}
    sets = {}
    for name in EVAL_SETS:
        world = make_set(name, seed=0, n=max(counts[name]))
        sets[name] = (_normalised(world.images), torch.from_numpy(world.labels))
    members = []
    for recipe in tqdm(config.members, desc="demo family", disable=not progress):
        t = time.perf_counter()
        net = train_member(recipe, x, y, seed)
        accuracy = evaluate(net, sets, counts)
        members.append({"name": recipe.name, **asdict(recipe), "optimizer": "AdamW, cosine schedule, no warmup",
                        "seed": seed, "images": config.train_size,
                        "parameters": sum(p.numel() for p in net.parameters()),
                        "wall_s": round(time.perf_counter() - t, 2), "accuracy": accuracy})
    meta = {"train_set": "world:train", "seed": seed, "images": config.train_size,
            "eval_world_seed": 0, "counts": counts,
            "normalisation": "images_to_tensor with open_clip's OpenAI mean and std (the demo CLIP's); no augmentation",
            "config": config.to_dict(), "torch_threads": torch.get_num_threads(),
            "wall_s": round(time.perf_counter() - t0, 1)}
    return family_record(members, meta)


def family_stage(out_dir: str | Path, seed: int = 0, config: FamilyConfig | None = None, reuse: bool = False,
                 progress: bool = True) -> Path:
    """build-demo's family stage: train the family and write `family.json` into out_dir atomically; with `reuse`,
    an existing file of the same recipe (config and seed) is kept as it is (training is deterministic)."""
    config = config or FamilyConfig()
    path = Path(out_dir) / FAMILY_FILE
    if reuse and path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {}
        if (doc.get("format"), doc.get("version"), doc.get("config"), doc.get("seed")) == (
                FAMILY_FORMAT, FAMILY_VERSION, config.to_dict(), seed):
            return path
    doc = train_family(config, seed, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Train the demo's family of standard classifiers.")
    parser.add_argument("--out", default=None, help="folder for family.json (default: the package's demo assets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=int, default=None, help="train only the first N members (timing)")
    args = parser.parse_args()
    from ..experiment.locations import DEMO_ASSETS

    config = FamilyConfig()
    if args.only is not None:
        config = FamilyConfig(members=config.members[:args.only])
    print(family_stage(args.out or DEMO_ASSETS, args.seed, config))


if __name__ == "__main__":
    _main()
