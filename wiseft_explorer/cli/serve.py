"""`wiseft-explorer app`: start the Streamlit app of the installed package (no source checkout needed)."""

from __future__ import annotations

import argparse
import subprocess
import sys


def cmd_app(args: argparse.Namespace) -> int:
    """Run `streamlit run` on the package's app script, passing any further arguments to Streamlit."""
    from ..ui.app import APP_SCRIPT  # a path only: neither Streamlit nor torch loads in this process

    extra = [a for a in args.streamlit_args if a != "--"]
    return subprocess.call([sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT), *extra])


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `app` subcommand."""
    p = sub.add_parser("app", help="start the browser app (Streamlit); further arguments go to `streamlit run`",
                       description="Start the browser app. Further arguments go to `streamlit run`, e.g. "
                                   "`wiseft-explorer app --server.port 8502`. $WISEFT_EXPERIMENT picks the default "
                                   "experiment, $WISEFT_EXPERIMENTS_DIR the folder of your own (./experiments).")
    # The options are Streamlit's, unknown to this parser: main() hands them over (parse_known_args).
    p.set_defaults(func=cmd_app, streamlit_args=[])
