"""Run the command-line interface: python -m wiseft_explorer ..."""

from .cli import main

raise SystemExit(main())
