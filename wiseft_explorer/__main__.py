"""Run the command-line interface: python -m wiseft_explorer ..."""

from .cli.commands import main

raise SystemExit(main())
