"""The project's benchmarks, run from the checkout: `python -m benchmarks.bench`, `python benchmarks/app_start.py`,
`python benchmarks/classroom.py`. They measure the library; the library never imports them."""

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent  # child processes run `-m benchmarks.…` from here
