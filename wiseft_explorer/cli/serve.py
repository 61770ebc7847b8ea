"""`wiseft-explorer app`: start the Streamlit app of the installed package (no source checkout needed)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tomllib
from pathlib import Path

PRELOAD_MODULE = "wiseft_explorer.ui.preload"  # `python -m` of it is `streamlit run` with the preload begun first


def server_flags(config: Path) -> list[str]:
    """A Streamlit config file's settings as `streamlit run` flags (`--runner.postScriptGC false`, ...)."""
    with config.open("rb") as f:
        sections = tomllib.load(f)
    return [arg for section, options in sections.items() for name, value in options.items()
            for arg in (f"--{section}.{name}", str(value).lower() if isinstance(value, bool) else str(value))]


def cmd_app(args: argparse.Namespace) -> int:
    """Run `streamlit run` on the package's app script with its settings, then any further arguments."""
    # Paths only: neither Streamlit nor torch loads in this process.
    from ..ui.app import APP_SCRIPT, SERVER_CONFIG

    extra = [a for a in args.streamlit_args if a != "--"]
    # Streamlit reads its config only from ./.streamlit and ~/.streamlit, so from another folder the app's own
    # settings (no GC after every rerun, no file watcher) would be lost; the user's flags come last and win.
    # `streamlit run` through ui/preload.py, which begins importing torch and open_clip as the server starts (when
    # the default experiment would start cold), so that the first visitor does not wait for them.
    argv = [sys.executable, "-m", PRELOAD_MODULE, "run", str(APP_SCRIPT), *server_flags(SERVER_CONFIG), *extra]
    if os.name == "posix":
        # The server takes this process's place, so a Ctrl+C, a kill or a service manager's stop reaches it: a
        # child would outlive a killed parent and keep serving.
        os.execv(sys.executable, argv)
    return subprocess.call(argv)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `app` subcommand."""
    p = sub.add_parser("app", help="start the browser app (Streamlit); further arguments go to `streamlit run`",
                       description="Start the browser app. Further arguments go to `streamlit run`, e.g. "
                                   "`wiseft-explorer app --server.port 8502`. $WISEFT_EXPERIMENT picks the default "
                                   "experiment, $WISEFT_EXPERIMENTS_DIR the folder of your own (./experiments).")
    # The options are Streamlit's, unknown to this parser: main() hands them over (parse_known_args).
    p.set_defaults(func=cmd_app, streamlit_args=[])
