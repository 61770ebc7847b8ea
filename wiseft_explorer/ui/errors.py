"""Library errors on a page: one line naming the problem, never a traceback; the page keeps running."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import streamlit as st

_log = logging.getLogger("wiseft_explorer.ui")


def one_line(err: BaseException) -> str:
    """An error's message as one line (its first), or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def shown_errors(what: str) -> Iterator[None]:
    """Run a page's work; an exception becomes `st.error("what: message")` (the traceback goes to the server log).

    Streamlit's own rerun and stop signals are BaseExceptions, not Exceptions, so they pass through.
    """
    try:
        yield
    except Exception as err:  # every library error (and any bug) is one line on the page, not a traceback
        _log.warning("%s: %s", what, one_line(err), exc_info=True)
        st.error(f"{what}: {one_line(err)}")
