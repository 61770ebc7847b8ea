"""The demo against its family's line: effective robustness of every endpoint's WiSE-FT path, and the figure.

    python -m benchmarks.family_report [--experiment wiseft_explorer/assets/experiments/demo.toml] [--out docs]

Sweeps every fine-tuned endpoint of the experiment (cached sweeps are read back), then writes to `--out`:
`demo-family-robustness.md`, a table of effective robustness (points; shift accuracy minus the family's logit line
at the model's ID accuracy) per shift and on average at α = 0, 0.5, the best α on the held-out ID split and 1, for
each endpoint; and `demo-family.png`: the family's points, line and 95% band for the shift average, every
endpoint's WiSE-FT path and its output-space ensemble (rendered by kaleido when installed, else by the Debian
chromium the browser tests use, through playwright).
Rerun it after adding endpoints (LP-FT, FLYP) to the experiment file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.experiment import DEFAULT_EXPERIMENT
from wiseft_explorer.presentation import plots, reference_overlay
from wiseft_explorer.results import (
    AVG_ROW,
    Curves,
    choose_alphas,
    curve_robustness,
    experiment_axes,
    reference_lines,
)


def endpoint_curves(toml: Path) -> dict[str, Curves]:
    """Every endpoint's curves over the alpha grid (cached sweeps are read back)."""
    names = ExperimentRuntime.from_path(toml).experiment.endpoint_names or [None]
    out = {}
    for name in names:
        runtime = ExperimentRuntime.from_path(toml, name)
        out[name or "fine-tuned"] = run_sweep(runtime).curves()
    return out


def robustness_markdown(curves: dict[str, Curves], lines) -> str:
    """The table: one row per endpoint and α, ID and shift-average accuracy, effective robustness per shift."""
    shifts = [a.set_name for a in lines.axes]
    head = ["endpoint", "α", "ID %", "avg shift %", *(f"ER {s}" for s in shifts), "ER avg"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, c in curves.items():
        best = choose_alphas(c).get("best_id_val", 0.5)
        for label, alpha in (("0 (zero-shot)", 0.0), ("0.5", 0.5), (f"{best:g} (best on ID-val)", best),
                             ("1 (fine-tuned)", 1.0)):
            er = curve_robustness(c, lines, alpha)
            acc = c.accuracies(alpha)
            cells = [name, label, f"{100 * acc[c.id_set]:.1f}", f"{100 * acc[AVG_ROW]:.1f}",
                     *(f"{100 * er[s].value:+.1f}" for s in shifts),
                     f"{100 * er[AVG_ROW].value:+.1f} ± {100 * (er[AVG_ROW].se or 0):.1f}"]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def figure(curves: dict[str, Curves], lines):
    """The shift average against ID on logit axes: the family, its line and band, every path and ensemble."""
    (first, c), *others = curves.items()
    overlay = reference_overlay(c, AVG_ROW, lines)
    paths = plots.endpoint_paths(first, c, dict(others))
    return plots.id_vs_shift(c.table(), c.id_set, AVG_ROW, 0.5, scale=lines.scale, label=first, paths=paths,
                             under=overlay.traces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=str(DEFAULT_EXPERIMENT))
    parser.add_argument("--out", default="docs")
    args = parser.parse_args(argv)
    toml = Path(args.experiment)
    exp = ExperimentRuntime.from_path(toml).experiment
    axes = experiment_axes(exp)
    if not axes:
        print("no family line for this experiment: build the demo's family first (family.json beside the zero-shot "
              "checkpoint)", file=sys.stderr)
        return 2
    lines = reference_lines(axes)
    curves = endpoint_curves(toml)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = robustness_markdown(curves, lines)
    (out / "demo-family-robustness.md").write_text(table, encoding="utf-8")
    print(table)
    fig = figure(curves, lines)
    fig.update_layout(width=900, height=640, title="Built-in demo: WiSE-FT paths against the demo family's line")
    write_png(fig, out / "demo-family.png")
    print(f"wrote {out / 'demo-family.png'}")
    return 0


def write_png(fig, path: Path, chromium: str = "/usr/bin/chromium") -> None:
    """The figure as a PNG at twice its layout size: kaleido if installed, else a headless chromium screenshot of
    the figure's page (plotly.js inlined: nothing is fetched)."""
    try:
        import kaleido  # noqa: F401  (plotly's static-image engine)
    except ImportError:
        from playwright.sync_api import sync_playwright

        width, height = fig.layout.width, fig.layout.height
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=2)
            page.set_content(fig.to_html(include_plotlyjs=True, full_html=True, config={"displayModeBar": False}))
            page.wait_for_selector(".main-svg")
            page.locator(".js-plotly-plot").screenshot(path=str(path))
            browser.close()
        return
    fig.write_image(path, scale=2)


if __name__ == "__main__":
    sys.exit(main())
