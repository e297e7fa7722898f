"""Logging what failed without what it failed with."""

from __future__ import annotations

import traceback

__all__ = ["where_it_failed"]


def where_it_failed(error: BaseException) -> str:
    """An exception's type and where it was raised, without its text: for a failure inside the boundary, or
    around camera sources, whose message could quote a track id, a box or a camera URL with its password."""
    return f"{type(error).__name__}, at\n{''.join(traceback.format_tb(error.__traceback__))}"
