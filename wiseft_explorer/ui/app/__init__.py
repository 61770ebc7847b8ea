"""The app's scripts, which Streamlit runs (nothing imports them): `main.py` and the four pages beside it.

`streamlit run` takes a file path, so this package names it; it imports neither Streamlit nor torch."""

from pathlib import Path

APP_SCRIPT = Path(__file__).resolve().parent / "main.py"
SERVER_CONFIG = APP_SCRIPT.parent / "config.toml"  # the app's Streamlit settings (cli/serve.py passes them as flags)
