"""The test suite's own settings: a thread's exception fails its test; the slow and browser markers."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from conftest import BROWSER_MODULES, SLOW_MODULES, pytest_collection_modifyitems

ROOT = Path(__file__).resolve().parent.parent
THREAD_TEST = """
import threading

def test_a_thread_dies():
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join()
"""


def _pytest_options() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


def _run_thread_test(pytester, filterwarnings: list[str]):
    lines = "".join(f"    {f}\n" for f in filterwarnings)
    pytester.makeini(f"[pytest]\nfilterwarnings =\n{lines}" if filterwarnings else "[pytest]\n")
    pytester.makepyfile(THREAD_TEST)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")  # free of this run's own filters


def test_an_exception_in_a_thread_fails_the_test(pytester):
    result = _run_thread_test(pytester, _pytest_options()["filterwarnings"])
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*ZeroDivisionError*"])


def test_without_the_setting_the_thread_exception_is_only_a_warning(pytester):
    result = _run_thread_test(pytester, [])  # what the setting above guards against
    result.assert_outcomes(passed=1, warnings=1)


def test_the_marked_modules_exist_and_the_markers_are_registered():
    # A renamed module would silently fall out of its marker and into the quick loop.
    assert sorted(m for m in BROWSER_MODULES | SLOW_MODULES if not (ROOT / "tests" / m).is_file()) == []
    assert not BROWSER_MODULES & SLOW_MODULES
    registered = {line.split(":")[0] for line in _pytest_options()["markers"]}
    assert registered == {"slow", "browser"}


def test_the_hook_marks_every_test_of_a_marked_module():
    class Item:
        def __init__(self, module: str) -> None:
            self.path, self.markers = ROOT / "tests" / module, []

        def add_marker(self, marker) -> None:
            self.markers.append(marker.name)

    items = [Item("test_browser.py"), Item("test_stream.py"), Item("test_sweep.py")]
    pytest_collection_modifyitems(None, items)
    assert [item.markers for item in items] == [["browser"], ["slow"], []]


def _commit_msg(tmp_path: Path, message: str) -> subprocess.CompletedProcess:
    (tmp_path / "MSG").write_text(message)
    return subprocess.run(["bash", str(ROOT / ".githooks" / "commit-msg"), str(tmp_path / "MSG")],
                          capture_output=True, text=True)


def test_commit_hook_takes_a_short_subject_with_a_body(tmp_path):
    assert _commit_msg(tmp_path, "Keep the cache key in one place\n\nTwo modules built it differently.\n"
                       "# a comment git strips\n").returncode == 0


def test_commit_hook_refuses_long_subjects_and_missing_bodies(tmp_path):
    long = _commit_msg(tmp_path, "x" * 73 + "\n\nwhy\n")
    assert long.returncode == 1 and "73 characters" in long.stderr
    for message in ("Subject only\n", "Subject\nno blank line\n", "Subject\n\n\n"):
        refused = _commit_msg(tmp_path, message)
        assert refused.returncode == 1 and "body that says why" in refused.stderr, message
