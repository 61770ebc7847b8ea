"""A classroom on one server: many sessions of a real `streamlit run app.py`, each at its own α, at once.

    python benchmarks/classroom.py [--sessions 30] [--browsers 2] [--rounds 5] [--think 2 6] [--burst]
                                   [--experiment FILE (default: the built-in demo)]

Each student opens the Upload page with its own `?alpha=`, picks an example image of the first set ("Predict") and
then changes α `--rounds` times through the exact-α box, thinking 2–6 s between changes (`--burst`: everyone at
the same instant instead). Students are websocket clients speaking Streamlit's protocol (streamlit_client.py);
`--browsers` more are real chromium pages. Latency: from sending the new α to the arrival of the θ_α top-5 table
at that α (in a browser: from pressing Enter to the caption naming the new α). Every table a student is shown
(a browser's read from the grid's accessible cells) is checked against the library's probabilities at that
student's α, and against the other students' alphas on the same image. Server memory (RSS, PSS, USS of the
server's process tree): after one student has warmed it up, the peak under load, and after every session, all
still connected. The bound is on USS, the server's private memory (RSS and PSS also move when other processes
map the same libraries): the warmed-up server, the pool's other working models, SERVER_SLACK, and
SESSION_ALLOWANCE per session for Streamlit's own state (a working model per session would be 20 MB on the
demo). Prints the figures as JSON; the exit status is 1 when a table is wrong, a session failed or the bound is
exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import streamlit_client as sc  # noqa: E402

from wiseft_explorer.experiment import DEFAULT_EXPERIMENT  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ALPHA_CAPTION = "WiSE-FT at α = "
EXAMPLES_OPTION = "Examples from the sets"
SESSION_ALLOWANCE = 2 * 2**20  # Streamlit's own state per session (widgets, messages, thumbnails): no model
# What a busy server allocates once, however many sessions: malloc arenas of concurrent script threads, code paths
# used for the first time. Measured: 40-60 MB for 10, 30 or 60 sessions on the demo.
SERVER_SLACK = 64 * 2**20


@dataclass
class Student:
    """One session: the α it moves through, the example it looks at, and what it received."""

    index: int
    alphas: list[float]
    browser: bool = False
    example: str = ""  # the Predict button's key, e.g. "example_ID_3"
    seen: list[tuple[float, list[dict]]] = field(default_factory=list)  # (α asked, θ_α table received)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    session: sc.StreamlitSession | None = None
    buttons: list[str] = field(default_factory=list)  # the Predict buttons' keys, in page order


def student_alphas(index: int, sessions: int, rounds: int) -> list[float]:
    """Distinct alphas per student (1.4 / sessions apart), each round moving everyone by 0.011."""
    base = -0.2 + 1.4 * index / sessions
    return [round(base + 0.011 * r, 3) for r in range(rounds + 1)]


def _alpha_table(run: sc.Run, alpha: float) -> tuple[float, list[dict]] | None:
    """Arrival time and rows of the θ_α table a run drew under the caption naming `alpha`, if it drew one."""
    caption = f"{ALPHA_CAPTION}{alpha:g}"
    for i, shown in enumerate(run.shown):
        if shown.kind == "markdown" and shown.text.split(" ✓")[0].split(" ✗")[0] == caption:
            table = next((s for s in run.shown[i + 1:] if s.kind == "dataframe"), None)
            return (table.at, table.table) if table is not None else None
    return None


async def ws_student(url: str, student: Student, think: tuple[float, float], barrier: asyncio.Barrier | None,
                     rng: random.Random) -> None:
    """One websocket session: open at its α, pick its example, then change α round after round."""
    session = sc.StreamlitSession(url, page="Upload", query=f"alpha={student.alphas[0]:g}")
    try:
        await session.open()
        await session.rerun({"upload_source": sc.string(EXAMPLES_OPTION)})
        student.buttons = [key for key in session.widgets if key.startswith("example_") and key != "example_set"]
        student.example = student.buttons[student.index % len(student.buttons)]
        runs = [await session.rerun({student.example: sc.trigger()})]
        for alpha in student.alphas[1:]:
            await (barrier.wait() if barrier else asyncio.sleep(rng.uniform(*think)))
            runs.append(await session.rerun({"alpha_number": sc.number(alpha), "alpha_submit": sc.trigger()}))
        for alpha, run in zip(student.alphas, runs, strict=True):
            found = _alpha_table(run, alpha)
            student.errors += run.errors() + ([] if found else [f"no θ_α table at α = {alpha:g}"])
            if found:
                student.seen.append((alpha, found[1]))
                if run is not runs[0]:
                    student.latencies.append(found[0] - run.started)
    except Exception as err:  # one broken session is a finding, not the end of the load test
        student.errors.append(f"{type(err).__name__}: {err}")
    student.session = session  # kept open until the memory is read


async def _browser_table(page) -> list[dict]:
    """The θ_α table of a page (the second of the three top-5 tables), read from the grid's accessible cells once
    the run is drawn and two reads 0.3 s apart agree (the caption naming the new α may come before its table)."""
    # Elements of the previous run stay on the page, marked stale, until the new run has replaced them.
    await page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=120_000)
    cells = page.locator('[data-testid="stDataFrame"]').nth(1).locator('[role="gridcell"]')
    last = None
    for _ in range(100):
        texts = await cells.all_inner_texts()
        if texts and texts == last:  # empty while the grid is being replaced
            break
        last = texts
        await asyncio.sleep(0.3)
    return [{"class": name, "probability": float(p)} for name, p in zip(last[::2], last[1::2], strict=True)]


async def browser_student(browser, url: str, student: Student, think: tuple[float, float],
                          barrier: asyncio.Barrier | None, rng: random.Random) -> None:
    """One chromium page: the same steps through the real front end, reading the tables it draws."""
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        await page.goto(f"{url}/Upload?alpha={student.alphas[0]:g}", timeout=120_000)
        await page.get_by_text(EXAMPLES_OPTION).click(timeout=120_000)
        buttons = page.get_by_role("button", name="Predict")
        await buttons.first.wait_for(timeout=120_000)
        await buttons.nth(student.index % len(student.buttons)).click()
        await page.get_by_text(f"{ALPHA_CAPTION}{student.alphas[0]:g}").first.wait_for(timeout=120_000)
        student.seen.append((student.alphas[0], await _browser_table(page)))
        box = page.locator('[data-testid="stNumberInput"] input').first
        for alpha in student.alphas[1:]:
            await (barrier.wait() if barrier else asyncio.sleep(rng.uniform(*think)))
            await box.fill(f"{alpha:.3f}")
            start = time.perf_counter()
            await box.press("Enter")
            await page.get_by_text(f"{ALPHA_CAPTION}{alpha:g}").first.wait_for(timeout=120_000)
            student.latencies.append(time.perf_counter() - start)
            student.seen.append((alpha, await _browser_table(page)))
    except Exception as err:
        student.errors.append(f"browser: {type(err).__name__}: {str(err).splitlines()[0]}")


def expected_probabilities(experiment: Path, picks: set[tuple[str, float]]) -> dict[tuple[str, float], dict]:
    """The library's class probabilities of each (example key, α): what a student must be shown."""
    from wiseft_explorer.evaluation import ExperimentRuntime, preprocess, probability_along_alpha, set_example

    runtime = ExperimentRuntime.from_path(experiment)
    names, out = runtime.experiment.classnames, {}
    for key, alpha in sorted(picks):
        set_name, index = key.removeprefix("example_").rsplit("_", 1)
        images = preprocess(runtime, [set_example(runtime, set_name, int(index)).image])
        with runtime.borrow_working() as working:
            probs = probability_along_alpha(runtime, images, working, [alpha])[0, 0]
        out[key, alpha] = dict(zip(names, probs.tolist(), strict=True))
    return out


def top_rows(probs: dict[str, float], k: int = 5) -> list[dict]:
    """The top-k table the page draws for these probabilities (rounded to 3 places)."""
    top = sorted(probs.items(), key=lambda item: -item[1])[:k]
    return [{"class": name, "probability": round(p, 3)} for name, p in top]


def table_matches(rows: list[dict], probs: dict[str, float], tol: float = 1.1e-3) -> bool:
    """Whether a shown top-k table (probabilities rounded to 3 places) is these probabilities' top-k."""
    top = sorted(probs.values(), reverse=True)[:len(rows)]
    return bool(rows) and len(rows) == min(5, len(probs)) and all(
        abs(row["probability"] - probs[row["class"]]) <= tol and abs(row["probability"] - p) <= tol
        for row, p in zip(rows, top, strict=True))


def isolation(students: list[Student], expected: dict) -> tuple[int, list[str]]:
    """Every table against the other students' alphas on the same image: (comparisons that could tell the two
    alphas apart, tables that show another student's alpha instead of their own)."""
    checks, leaks = 0, []
    for s in students:
        others = {b for o in students if o is not s and o.example == s.example for b, _ in o.seen}
        for alpha, rows in s.seen:
            own = expected[s.example, alpha]
            for other in others - {alpha}:
                if table_matches(top_rows(own), expected[s.example, other]):
                    continue  # the two alphas give the same table: this pair proves nothing
                checks += 1
                if table_matches(rows, expected[s.example, other]):
                    leaks.append(f"student {s.index} asked α = {alpha:g} and was shown α = {other:g}")
    return checks, leaks


async def _drive(url: str, students: list[Student], think: tuple[float, float], burst: bool, seed: int,
                 while_open: Callable[[], None] = lambda: None) -> None:
    """Run every student at once; `while_open` is called when all are done, before any session closes."""
    barrier = asyncio.Barrier(len(students)) if burst else None
    rngs = [random.Random(seed + s.index) for s in students]
    async with contextlib.AsyncExitStack() as stack:
        browser = None
        if any(s.browser for s in students):
            from playwright.async_api import async_playwright

            pw = await stack.enter_async_context(async_playwright())
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        await asyncio.gather(*(browser_student(browser, url, s, think, barrier, r) if s.browser
                               else ws_student(url, s, think, barrier, r) for s, r in zip(students, rngs, strict=True)))
        while_open()
        await asyncio.gather(*(s.session.close() for s in students if not s.browser and s.session is not None))
        if browser is not None:
            await browser.close()


def _ms(values: list[float], q: float) -> float | None:
    """The q-quantile of seconds, in milliseconds (nearest rank)."""
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else None


def classroom(experiment: Path, cache: Path, sessions: int = 30, browsers: int = 2, rounds: int = 5,
              think: tuple[float, float] = (2.0, 6.0), burst: bool = False, seed: int = 0,
              arenas: int | None = None) -> dict:
    """Run the load test against a fresh server (glibc malloc arenas capped at `arenas` when given); the
    figures, the checks and what went wrong, as a dict."""
    from wiseft_explorer.evaluation import WORKING_POOL, ExperimentRuntime

    env = {"WISEFT_EXPERIMENT": str(experiment), "WISEFT_CACHE_DIR": str(cache)}
    if arenas:  # every script run is a thread; glibc gives busy threads arenas of their own, kept once freed
        env["MALLOC_ARENA_MAX"] = str(arenas)
    cache.mkdir(parents=True, exist_ok=True)
    proc, url = sc.start_server(ROOT / "app.py", env, log=cache / "server.log")
    students = [Student(i, student_alphas(i, sessions + browsers, rounds), browser=i >= sessions)
                for i in range(sessions + browsers)]
    try:
        warm = Student(-1, [0.123, 0.456, 0.789])
        asyncio.run(_drive(url, [warm], (0.1, 0.1), False, seed))  # models loaded, the pool's first model made
        before, after = sc.tree_memory(proc.pid), []
        for s in students:  # a browser clicks the button at the same place in the row as a websocket student would
            s.buttons = warm.buttons
            s.example = warm.buttons[s.index % len(warm.buttons)] if s.browser else ""
        poll = sc.MemoryPeak(proc.pid)
        poll.start()
        started = time.perf_counter()
        asyncio.run(_drive(url, students, think, burst, seed, lambda: after.append(sc.tree_memory(proc.pid))))
        wall, peak, after = time.perf_counter() - started, poll.stop(), after[0]
    finally:
        proc.terminate()
        proc.wait(30)
    space = ExperimentRuntime.from_path(experiment).space
    working = sum(f.numel() * f.element_size() for f in space.theta0.values())
    # The pool may make its other working models under load; anything else a session adds is Streamlit's own.
    bound = before["uss"] + (WORKING_POOL - 1) * working + SERVER_SLACK + len(students) * SESSION_ALLOWANCE
    checked = [warm, *students]
    expected = expected_probabilities(experiment, {(s.example, a) for s in checked for a, _ in s.seen})
    wrong = [f"student {s.index} at α = {a:g}: {rows}" for s in checked for a, rows in s.seen
             if not table_matches(rows, expected[s.example, a])]
    isolation_checks, leaks = isolation(students, expected)
    latencies = [x for s in students for x in s.latencies]
    browser_latencies = [x for s in students if s.browser for x in s.latencies]
    mb = 2**20
    return {"sessions": sessions, "browsers": browsers, "rounds": rounds, "burst": burst, "think_s": list(think),
            "malloc_arena_max": arenas, "load_average": [round(x, 2) for x in os.getloadavg()],
            "alpha_changes": len(latencies), "wall_s": round(wall, 1),
            "latency_ms": {"p50": _ms(latencies, 0.5), "p95": _ms(latencies, 0.95), "max": _ms(latencies, 1.0),
                           "browser_p50": _ms(browser_latencies, 0.5), "browser_p95": _ms(browser_latencies, 0.95)},
            "memory_mb": {**{f"{k}_{when}": round(v[k] / mb, 1) for when, v in
                             (("before", before), ("peak", peak), ("after", after)) for k in ("rss", "pss", "uss")},
                          "uss_per_session": round((after["uss"] - before["uss"]) / len(students) / mb, 2),
                          "uss_bound": round(bound / mb, 1), "working_model": round(working / mb, 1),
                          "pool": WORKING_POOL},
            "within_bound": max(after["uss"], peak["uss"]) <= bound,
            "tables_checked": sum(len(s.seen) for s in checked), "isolation_checks": isolation_checks,
            "browser_tables": sum(len(s.seen) for s in students if s.browser),
            "wrong_tables": wrong, "other_students_alpha": leaks,
            "errors": [f"student {s.index}: {e}" for s in [warm, *students] for e in s.errors]}


def main(argv: list[str] | None = None) -> int:
    """Command line: run the classroom and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, default=DEFAULT_EXPERIMENT)
    parser.add_argument("--sessions", type=int, default=30, help="websocket students")
    parser.add_argument("--browsers", type=int, default=2, help="chromium students alongside")
    parser.add_argument("--rounds", type=int, default=5, help="α changes per student")
    parser.add_argument("--think", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"))
    parser.add_argument("--burst", action="store_true", help="every student changes α at the same instant")
    parser.add_argument("--arenas", type=int, default=None, help="MALLOC_ARENA_MAX for the server (default: glibc's)")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: a temporary one)")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wiseft-classroom-") as tmp:
        figures = classroom(args.experiment.resolve(), args.cache or Path(tmp), args.sessions, args.browsers,
                            args.rounds, tuple(args.think), args.burst, arenas=args.arenas)
    print(json.dumps(figures, indent=2))
    return 0 if figures["within_bound"] and not figures["wrong_tables"] and not figures["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
