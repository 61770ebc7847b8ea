"""A light Streamlit client (one browser session's protocol over /_stcore/stream, without a browser) and the
server it talks to (started headless on a free port, its memory read from outside).

A browser speaks to a Streamlit server through one websocket: it sends BackMsg protobufs (above all `rerun_script`,
carrying the URL's query string, the page and the widget values that changed) and receives ForwardMsg protobufs
(`new_session`, `navigation`, one `delta` per element drawn, `script_finished`). This client does the same for
the load test, so that thirty sessions cost the machine a few websockets instead of thirty browsers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyarrow.ipc
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

WIDGETS = ("button", "checkbox", "number_input", "radio", "selectbox", "slider", "text_input")
RUN_TIMEOUT_S = 300.0


@dataclass
class Shown:
    """One element a run drew, when it arrived (perf_counter seconds) and its decoded content."""

    kind: str  # the Element field: "markdown", "dataframe", "exception", "alert", …
    at: float
    text: str = ""  # markdown or alert body, exception message
    table: Any = None  # a dataframe's rows, as a list of dicts


@dataclass
class Run:
    """Everything one script run sent, in order; `finished` is how it ended."""

    started: float
    shown: list[Shown] = field(default_factory=list)
    finished: str = ""

    def errors(self) -> list[str]:
        """Exceptions and error boxes the page showed."""
        return [s.text for s in self.shown if s.kind == "exception" or (s.kind == "alert" and s.text.startswith("!"))]


def _decode(element) -> Shown:
    kind = element.WhichOneof("type")
    shown = Shown(kind, time.perf_counter())
    if kind == "markdown":
        shown.text = element.markdown.body
    elif kind == "alert":
        # Errors are marked with a leading "!" so that `Run.errors` finds them without the Alert enum.
        shown.text = ("!" if element.alert.format == 1 else "") + element.alert.body
    elif kind == "exception":
        shown.text = f"{element.exception.type}: {element.exception.message}"
    elif kind == "dataframe":
        data = element.dataframe.arrow_data.data or element.dataframe.lazy_data.initial_chunk.data
        if data:
            shown.table = pyarrow.ipc.open_stream(io.BytesIO(data)).read_all().to_pylist()
    return shown


class StreamlitSession:
    """One session of a Streamlit app: open it on a page, rerun it with widget values, read what it drew."""

    def __init__(self, base_url: str, page: str = "", query: str = "") -> None:
        self.ws_url = base_url.replace("http", "ws", 1) + "/_stcore/stream"
        self.page, self.query = page, query
        self.widgets: dict[str, tuple[str, Any]] = {}  # user key -> (widget id, its Element message)
        self.fragments: dict[str, str] = {}  # user key -> the id of the fragment that drew the widget, if any
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._run: Run | None = None
        self._done = asyncio.Event()
        self.page_hash = ""

    async def open(self) -> Run:
        """Connect and run the page once, as a browser does when it loads the URL."""
        self._ws = await websockets.connect(self.ws_url, subprotocols=["streamlit"], max_size=None,
                                            ping_interval=None, open_timeout=60)
        self._reader = asyncio.create_task(self._read())
        return await self.rerun({})

    async def close(self) -> None:
        """Disconnect, as a closed tab does."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def widget_id(self, key: str) -> str:
        """The id the server gave the widget with this user key (in the last run that drew it)."""
        if key not in self.widgets:
            raise KeyError(f"no widget with key {key!r} on the page; widgets: {sorted(self.widgets)}")
        return self.widgets[key][0]

    async def rerun(self, values: dict[str, WidgetState]) -> Run:
        """Send changed widget values (by user key) as a browser does, and wait until the script run finishes."""
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string, state.page_script_hash = self.query, self.page_hash
        state.page_name = "" if self.page_hash else self.page
        # As a browser does: a change of widgets drawn by one fragment reruns that fragment alone.
        fragments = {self.fragments.get(key, "") for key in values}
        if len(fragments) == 1:
            state.fragment_id = fragments.pop()
        for key, value in values.items():
            widget = state.widget_states.widgets.add()
            widget.CopyFrom(value)
            widget.id = self.widget_id(key)
        self._run, self._done = Run(time.perf_counter()), asyncio.Event()
        await self._ws.send(msg.SerializeToString())
        await asyncio.wait_for(self._done.wait(), RUN_TIMEOUT_S)
        return self._run

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                self._handle(ForwardMsg.FromString(data))
        except websockets.ConnectionClosed:
            pass

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "navigation":
            self.page_hash = msg.navigation.page_script_hash
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element" and self._run is not None:
            element = msg.delta.new_element
            widget_kind = element.WhichOneof("type")
            if widget_kind in WIDGETS:
                widget = getattr(element, widget_kind)
                key = widget.id.split("-", 2)[-1]
                self.widgets[key], self.fragments[key] = (widget.id, widget), msg.delta.fragment_id
            self._run.shown.append(_decode(element))
        elif kind == "script_finished" and self._run is not None:
            # A run cut short by our own next rerun never happens here: each rerun waits for the last to end.
            self._run.finished = ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
            self._done.set()


def trigger() -> WidgetState:
    """A button press."""
    return WidgetState(trigger_value=True)


def string(value: str) -> WidgetState:
    """A radio's or selectbox's chosen option (its label as shown)."""
    return WidgetState(string_value=value)


def number(value: float) -> WidgetState:
    """A number input's value."""
    return WidgetState(double_value=value)


def start_server(app: Path, env: dict[str, str], log: Path | None = None,
                 launcher: str = "streamlit") -> tuple[subprocess.Popen, str]:
    """`streamlit run APP` (headless, a free port, extra environment `env`, output to `log`), once it is healthy.

    `launcher`: the module run with `python -m` (`wiseft_explorer.ui.preload` is how `wiseft-explorer app` starts
    the server: `streamlit run` with torch's imports begun at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **env}
    with log.open("ab") if log else open(os.devnull, "wb") as out:  # the server keeps its own copy of the file
        proc = subprocess.Popen([sys.executable, "-m", launcher, "run", str(app), "--server.headless", "true",
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--server.fileWatcherType", "none"], cwd=app.parent, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the Streamlit server did not become healthy (exit status {proc.poll()})")


def tree_memory(pid: int) -> dict[str, int]:
    """Bytes of a process and its children: rss, pss (shared pages split among their users) and uss (private).

    USS is what the server itself added: PSS and RSS also move when other processes map or unmap the same
    libraries (torch's are shared with every Python process on the machine that imports it).
    """
    root = psutil.Process(pid)
    total = dict.fromkeys(("rss", "pss", "uss"), 0)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker that just exited
            info = proc.memory_full_info()
            for key in total:
                total[key] += getattr(info, key)
    return total


class MemoryPeak(threading.Thread):
    """Polls the server tree's memory; `peak` holds the highest of each measure seen while it ran."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self._halt = pid, every_s, threading.Event()
        self.peak = dict.fromkeys(("rss", "pss", "uss"), 0)

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            for key, value in tree_memory(self.pid).items():
                self.peak[key] = max(self.peak[key], value)

    def stop(self) -> dict[str, int]:
        """Stop polling; the peaks."""
        self._halt.set()
        self.join()
        return self.peak
