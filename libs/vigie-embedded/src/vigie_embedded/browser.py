"""The browser the tests drive with Playwright: the system's Chromium (Playwright's own browser download
cannot work on a closed network; ``make system-packages`` installs Debian's ``chromium``, and ``.ci/run``
calls it).

Missing browser: the test is skipped with the reason, and fails on CI (``CI`` set), where it must run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

__all__ = ["CHROMIUM_ARGS", "chromium", "on_ci"]

# Headless in a container: no sandbox (no user namespaces), no GPU, nothing fetched in the background.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def chromium() -> str:
    """The browser's path (``VIGIE_CHROMIUM``, or ``chromium`` or ``chromium-browser`` on the PATH); skips
    or fails the test when it is not installed."""
    found = (
        os.environ.get("VIGIE_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
        or "/usr/bin/chromium"
    )
    if not Path(found).is_file():
        reason = (
            f"no Chromium ({found} missing): make system-packages installs it "
            "(Debian's chromium), or set VIGIE_CHROMIUM to a Chromium binary"
        )
        if on_ci():
            pytest.fail(f"{reason} (CI is set: the browser test must run; .ci/run installs it)")
        pytest.skip(reason)
    return found
