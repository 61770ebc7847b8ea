"""What one script run costs the server: CPU seconds, bytes and elements sent, for the runs a classroom repeats.

    python benchmarks/rerun_cost.py [--repeat 8] [--experiment FILE (default: the built-in demo)] [--cache DIR]

Wall-clock latencies move with whatever else the machine runs; the CPU time the server's process spends on a run
does not (much): on 2 cores, 32 students changing α at the same instant wait about 32 × that time. One websocket
session (streamlit_client.py) against a real `streamlit run app.py`, its cache filled first (a warm server):
  - `explorer_load`: the Explorer page opened by a new visitor (the warm start);
  - `explorer_alpha`: the Explorer's α changed through the exact-α box;
  - `upload_alpha`: the Upload page's α changed with an example picked (what benchmarks/classroom.py times).
Each figure is over `--repeat` runs: the mean of the server process's user+system CPU seconds (all its threads,
read from /proc in 10 ms ticks), the median bytes of the ForwardMsgs received and of the elements drawn. Prints
JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import streamlit_client as sc  # noqa: E402

from wiseft_explorer.experiment import DEFAULT_EXPERIMENT  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_OPTION = "Examples from the sets"
BUSY_NOTES = ("being filled in", "Computing the paths", "Evaluating the first images")
FILL_TRIES = 200


class CountingSession(sc.StreamlitSession):
    """A session that also counts the bytes it receives."""

    received = 0

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                self.received += len(data)
                self._handle(sc.ForwardMsg.FromString(data))
        except sc.websockets.ConnectionClosed:
            pass


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def _measure(proc: psutil.Process, session: CountingSession, step) -> dict[str, float]:
    """CPU seconds of the server, bytes and elements received, for one awaited step (a rerun or an open)."""
    await asyncio.sleep(0.3)  # let the previous run's stragglers (fragments, forward-message cache) settle
    cpu, got = _cpu(proc), session.received
    run = await step()
    await asyncio.sleep(0.3)
    return {"cpu_s": _cpu(proc) - cpu, "bytes": session.received - got, "elements": len(run.shown)}


def _busy(run: sc.Run) -> bool:
    """Whether a run of the Explorer shows a sweep still running (its own or another endpoint's)."""
    return any(s.kind == "progress" or any(note in s.text for note in BUSY_NOTES) for s in run.shown)


async def _filled(url: str) -> CountingSession:
    """A session of the Explorer opened once every endpoint's sweep is stored (the first visitor starts them)."""
    for _ in range(FILL_TRIES):
        session = CountingSession(url)
        if not _busy(await session.open()):
            return session
        await session.close()
        await asyncio.sleep(3)
    raise RuntimeError(f"the sweeps did not finish in {FILL_TRIES} tries; see the server log in the cache folder")


async def _costs(url: str, pid: int, repeat: int) -> dict[str, list[dict[str, float]]]:
    proc = psutil.Process(pid)
    runs: dict[str, list[dict[str, float]]] = {"explorer_load": [], "explorer_alpha": [], "upload_alpha": []}
    warm = await _filled(url)
    for i in range(repeat + 1):
        visitor = CountingSession(url, query=f"alpha={0.05 * (i % 20):.2f}")
        run = await _measure(proc, visitor, visitor.open)
        if i:
            runs["explorer_load"].append(run)
        if i == 0:
            explorer = visitor
        else:
            await visitor.close()
    for i in range(repeat + 1):
        alpha = round(0.3 + 0.05 * (i % 10), 2)
        run = await _measure(proc, explorer, lambda a=alpha: explorer.rerun(
            {"alpha_number": sc.number(a), "alpha_submit": sc.trigger()}))
        if i:
            runs["explorer_alpha"].append(run)
    upload = CountingSession(url, page="Upload", query="alpha=0.5")
    await upload.open()
    await upload.rerun({"upload_source": sc.string(EXAMPLES_OPTION)})
    button = next(k for k in upload.widgets if k.startswith("example_") and k != "example_set")
    await upload.rerun({button: sc.trigger()})
    for i in range(repeat + 1):
        alpha = round(0.2 + 0.011 * i, 3)  # off-grid as in the classroom
        run = await _measure(proc, upload, lambda a=alpha: upload.rerun(
            {"alpha_number": sc.number(a), "alpha_submit": sc.trigger()}))
        if i:
            runs["upload_alpha"].append(run)
    for session in (warm, explorer, upload):
        await session.close()
    return runs


def rerun_cost(experiment: Path, cache: Path, repeat: int = 8) -> dict[str, dict[str, float]]:
    """Median CPU seconds, bytes and elements per kind of run (see the module's docstring)."""
    cache.mkdir(parents=True, exist_ok=True)
    env = {"WISEFT_EXPERIMENT": str(experiment), "WISEFT_CACHE_DIR": str(cache), "WISEFT_PRELOAD": "0"}
    proc, url = sc.start_server(ROOT / "app.py", env, log=cache / "server.log")
    try:
        runs = asyncio.run(_costs(url, proc.pid, repeat))
    finally:
        proc.terminate()
        proc.wait(30)
    # CPU time is read in clock ticks (10 ms): its mean over the runs is finer than any one run's.
    return {kind: {"cpu_s": round(statistics.mean(r["cpu_s"] for r in rows), 4),
                   "bytes": statistics.median(r["bytes"] for r in rows),
                   "elements": statistics.median(r["elements"] for r in rows)} for kind, rows in runs.items()}


def main(argv: list[str] | None = None) -> dict:
    """Measure and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=8, help="runs of each kind (the median is reported)")
    parser.add_argument("--experiment", type=Path, default=DEFAULT_EXPERIMENT)
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default: a temporary one, filled by a first visitor's cold start)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wiseft-rerun-cost-") as tmp:
        figures = rerun_cost(args.experiment.resolve(), args.cache or Path(tmp), args.repeat)
    figures["load_average"] = dict(zip(("1", "5", "15"), psutil.getloadavg(), strict=True))
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
