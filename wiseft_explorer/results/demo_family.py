"""The demo's family of standard classifiers as reference models: its JSON file, read without torch.

`build-demo` trains the family (demo/family.py) and writes `family.json` beside the demo's zero-shot checkpoint:
per member, the recipe that produced it and its top-1 accuracy on every world evaluation set, at each image count
the demo's experiment files use (a world set's first n images are the same for every n, so a smaller count is a
prefix of a larger one). For the demo these models play the part the testbed's 338 models play for ImageNet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

FAMILY_FILE = "family.json"
FAMILY_FORMAT = "wiseft-explorer demo family"
FAMILY_VERSION = 1
FAMILY_TYPE = "standard classifiers (demo family)"  # every member's type: all of them are fitted over
FAMILY_SOURCE = ("the demo's own family of small standard classifiers, trained from scratch on the world's ID "
                 "training photos (no pretraining, no captions) by build-demo")


@dataclass(frozen=True)
class FamilyMember:
    """One classifier of the family: its name, recipe and accuracies (fractions) by set and image count."""

    name: str
    recipe: dict
    accuracy: dict[str, dict[int, float]]

    def at(self, set_name: str, count: int) -> float | None:
        """Accuracy on the first `count` images of a world set; the largest count measured when that one was not
        (the same model on more of the same set's images); None when the set was not measured."""
        counts = self.accuracy.get(set_name)
        if not counts:
            return None
        return counts.get(count, counts[max(counts)])


def family_record(members: list[dict], meta: dict) -> dict:
    """The JSON document for a trained family (members: name, recipe keys and `accuracy` {set: {count: acc}})."""
    return {"format": FAMILY_FORMAT, "version": FAMILY_VERSION, **meta, "members": members}


@lru_cache(maxsize=8)
def _read(path: Path, stamp: int) -> tuple[FamilyMember, ...]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the demo family's accuracies at {path}: {err}; rebuild them with "
                         "`python -m wiseft_explorer build-demo` (or delete the file to draw no family line)") from err
    if doc.get("format") != FAMILY_FORMAT or doc.get("version") != FAMILY_VERSION:
        raise ValueError(f"{path} is not a version-{FAMILY_VERSION} demo family file; rebuild it with "
                         "`python -m wiseft_explorer build-demo`")
    members = []
    for row in doc["members"]:
        accuracy = {s: {int(n): float(a) for n, a in counts.items()} for s, counts in row["accuracy"].items()}
        members.append(FamilyMember(row["name"], {k: v for k, v in row.items() if k not in ("name", "accuracy")},
                                    accuracy))
    return tuple(members)


def load_family(path: Path) -> tuple[FamilyMember, ...]:
    """The family's members from its JSON file (cached until the file changes)."""
    return _read(Path(path), file_stamp(Path(path)))


def file_stamp(path: Path) -> int:
    """The file's modification time (ns), or 0 when it is missing: part of every cache key over the file."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def family_frame(path: Path, counts: tuple[tuple[str, int], ...]) -> pd.DataFrame:
    """The family as a reference table: `model`, `type` and one column per world set, accuracies in % (as the
    testbed's table), each at the image count the experiment evaluates that set on (`counts`: (set, n) pairs)."""
    rows = []
    for member in load_family(path):
        row: dict[str, object] = {"model": member.name, "type": FAMILY_TYPE}
        for set_name, n in counts:
            acc = member.at(set_name, n)
            row[set_name] = float("nan") if acc is None else 100 * acc
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "type", *(s for s, _ in counts)])
