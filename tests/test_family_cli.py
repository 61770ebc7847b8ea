"""The demo family's effective robustness in `sweep` on a tiny built demo (slow: it builds the demo)."""

from __future__ import annotations

import dataclasses
import json

from wiseft_explorer.demo import FamilyConfig, MemberRecipe, family_stage
from wiseft_explorer.results import FAMILY_TITLE


def test_the_cli_sweep_prints_and_writes_the_familys_effective_robustness(tmp_path, capsys):
    """A tiny built demo with a tiny family: `sweep` prints the family's table and the JSONL carries it."""
    from wiseft_explorer.cli import main
    from wiseft_explorer.demo import DemoConfig, build_demo

    demo = tmp_path / "assets" / "demo"
    result = build_demo(demo, dataclasses.replace(DemoConfig.tiny(), eval_limit=32),
                        experiments_dir=tmp_path / "experiments", progress=False)
    family = FamilyConfig(members=tuple(MemberRecipe("mlp", 0, 0, e) for e in (1, 2, 3)), train_size=128,
                          eval_limit=32, precise=None)
    family_stage(demo, 0, family, progress=False)
    out = tmp_path / "results.jsonl"
    assert main(["sweep", "--experiment", str(result.experiments["demo-linear"]), "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert FAMILY_TITLE in printed and "avg_shifts" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= 3 and all("Sketch:effective_robustness" in r and "avg_shifts:effective_robustness" in r
                                  for r in rows)
