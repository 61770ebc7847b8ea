"""Several fine-tuned endpoints in one experiment: every one a WiSE-FT path (and an output-space ensemble) of its own,
chosen in the sidebar or with --endpoint; the CLI sweeps each and exports any."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from libkit import cli_env, run_python
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest
from test_app import _figure, _metric_values, make_app_experiment
from test_ensemble import far_finetuned

from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep

ROOT = Path(__file__).resolve().parent.parent


def two_endpoint_experiment(root: Path) -> Path:
    """The app's tiny experiment (endpoint "centroid") with a second, far fine-tuned endpoint ("far")."""
    toml = make_app_experiment(root / "exp")

    class Tiny:  # what far_finetuned needs of the tiny experiment
        zeroshot, config = root / "exp" / "zeroshot.safetensors", root / "exp" / "wiseft-tiny-rn.json"

    far = far_finetuned(Tiny, root / "exp")
    text = toml.read_text().replace('[finetuned]\ncheckpoint = "finetuned.safetensors"\n',
                                    '[[finetuned]]\nname = "centroid"\ncheckpoint = "finetuned.safetensors"\n\n'
                                    f'[[finetuned]]\nname = "far"\ncheckpoint = "{far}"\n')
    assert text != toml.read_text()
    two = toml.with_name("two.toml")
    two.write_text(text)
    return two


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    """The two-endpoint tiny experiment."""
    return two_endpoint_experiment(tmp_path_factory.mktemp("endpoints"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wiseft_explorer", *args], capture_output=True, text=True, cwd=ROOT,
                          env=cli_env(), timeout=600)


def test_the_cli_sweeps_every_endpoint_and_exports_the_one_named(two, tmp_path):
    run = _cli("sweep", "--experiment", str(two), "--quiet", "--out", str(tmp_path / "res.jsonl"))
    assert run.returncode == 0, run.stderr
    assert "== fine-tuned endpoint: centroid ==" in run.stdout and "== fine-tuned endpoint: far ==" in run.stdout
    assert run.stdout.count("output-space ensemble") == 2
    assert (tmp_path / "res-centroid.jsonl").is_file() and (tmp_path / "res-far.jsonl").is_file()
    one = _cli("sweep", "--experiment", str(two), "--quiet", "--endpoint", "far")
    assert one.returncode == 0 and "== fine-tuned endpoint" not in one.stdout
    out = tmp_path / "far-at-1.safetensors"
    export = _cli("export", "--experiment", str(two), "--endpoint", "far", "--alpha", "1", "--out", str(out))
    assert export.returncode == 0, export.stderr
    far = load_file(str(ExperimentRuntime.from_path(two, "far").experiment.finetuned))
    assert load_file(str(out))["head.weight"].equal(far["head.weight"].to(load_file(str(out))["head.weight"].dtype))
    wrong = _cli("export", "--experiment", str(two), "--endpoint", "nope", "--alpha", "1", "--out", str(out))
    assert wrong.returncode == 2 and "no fine-tuned endpoint named 'nope' (known: centroid, far)" in wrong.stderr


def _wait_both(at: AppTest, timeout: float = 240) -> dict:
    """Rerun until the Explorer draws both endpoints' paths, the first one's sweep complete (the second's is stored)."""
    deadline = time.monotonic() + timeout
    while True:
        names = [t.get("name", "") for t in _figure(at, "id_vs_shift")["data"]]
        streaming = any("being filled in" in i.value for i in at.info)
        if "WiSE-FT path: far" in names and not streaming or time.monotonic() > deadline:
            return _figure(at, "id_vs_shift")
        time.sleep(1)
        at.run()


def test_the_explorer_draws_every_endpoint_and_its_output_ensemble_and_switches_between_them(two, monkeypatch):
    # The second endpoint's curves are stored first: once the first's are stored too, the page is a warm one, whose
    # line starts the missing sweeps at a timed rerun that only a browser asks for (test_browser.py has both starts).
    run_sweep(ExperimentRuntime.from_path(two, "far"))
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(two))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="endpoint_choice").options == ["centroid", "far"]
    names = [t.get("name", "") for t in _wait_both(at)["data"]]
    assert {"WiSE-FT path: centroid", "WiSE-FT path: far", "output ensemble: centroid",
            "output ensemble: far"} <= set(names), names
    lines = [t.get("name", "") for t in _figure(at, "acc_vs_alpha")["data"]]
    assert "output ensemble: centroid: avg shifts" in lines and "WiSE-FT path: far: ID" in lines
    assert any("output-space ensemble" in c.value and "needs both models" in c.value for c in at.caption)
    expected = {name: run_sweep(ExperimentRuntime.from_path(two, name)).table() for name in ("centroid", "far")}
    shown = _metric_values(at)["ID at α = 0.5"]
    assert shown == f"{100 * expected['centroid'].loc[0.5, 'ID']:.1f}%"
    at.selectbox(key="endpoint_choice").set_value("far").run()
    assert not at.exception and at.query_params["endpoint"] in ("far", ["far"])
    assert _metric_values(at)["ID at α = 0.5"] == f"{100 * expected['far'].loc[0.5, 'ID']:.1f}%"
    names = [t.get("name", "") for t in _figure(at, "id_vs_shift")["data"]]
    assert "WiSE-FT path: far" in names and "WiSE-FT path: centroid" in names  # the other one drawn beside it


def test_a_warm_page_leaves_torch_and_the_other_endpoints_sweeps_until_the_browser_has_it(tmp_path):
    """The first endpoint's curves are stored, the second's are not. The page run draws the stored path, the line
    saying one endpoint is left and the merge methods' button, and imports no torch: the second sweep starts at the
    line's first timed rerun (test_browser.py watches it arrive). Before, the page run imported torch twice over,
    for the picker and to start that sweep, while the browser was fetching and drawing the charts."""
    two = two_endpoint_experiment(tmp_path)
    run_sweep(ExperimentRuntime.from_path(two, "centroid"))  # stored in the experiment's own cache folder
    code = ("import sys\n"
            "from streamlit.testing.v1 import AppTest\n"
            f"at = AppTest.from_file({str(ROOT / 'app.py')!r}, default_timeout=120).run()\n"
            "assert not at.exception, [e.value for e in at.exception]\n"
            "print([b.label for b in at.button])\n"
            "print(any('(1 left)' in c.value for c in at.caption))\n"
            "print('torch' in sys.modules)\n")
    buttons, left, torch_loaded = run_python(code, WISEFT_EXPERIMENT=str(two))[-3:]
    assert "Show the merge methods (loads the models)" in buttons
    assert (left, torch_loaded) == ("True", "False")
