"""Fixtures shared by every test folder: real components started on free ports; and, at the end of a run
that skipped tests, what was skipped and why, in plain words."""

from collections import defaultdict

import pytest

pytest_plugins = ["vigie_embedded.testing"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A run that skipped tests ends by saying which, why, and what to install or run for them: a
    newcomer must not take a run that skipped the browser or the live camera for the whole suite."""
    by_reason: defaultdict[str, list[str]] = defaultdict(list)
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr  # (file, line, "Skipped: reason"); a list once through pytest-xdist
        reason = str(longrepr[2]) if isinstance(longrepr, tuple | list) else str(longrepr)
        by_reason[reason.removeprefix("Skipped: ")].append(report.nodeid)
    if not by_reason:
        return
    count = sum(len(tests) for tests in by_reason.values())
    terminalreporter.section(f"{count} test(s) skipped: what did not run, and why", sep="-", yellow=True)
    for reason, tests in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        terminalreporter.line(f"{reason}")
        for test in tests[:5]:
            terminalreporter.line(f"    {test}")
        if len(tests) > 5:
            terminalreporter.line(f"    ... and {len(tests) - 5} more")
    terminalreporter.line(
        "Everything else ran. Each reason says what the tests need; `make system-packages` installs the "
        "optional system packages (README: Optional system packages)."
    )
