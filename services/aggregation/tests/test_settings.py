"""Settings: a bad configuration stops the service with a clear message naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from vigie_aggregation.settings import (
    AggregationSettings,
    CameraSiteConfig,
    DisclosureSettings,
    NoiseSettings,
)


def test_the_defaults_are_the_protective_ones() -> None:
    settings = AggregationSettings()
    assert settings.disclosure.window_s == 1200
    assert settings.disclosure.threshold == 11
    assert not settings.noise.enabled
    assert settings.retention_days == 365


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DisclosureSettings(window_s=600), "window_justification"),
        (lambda: DisclosureSettings(window_s=1300, window_justification="x"), "divide a day"),
        (lambda: DisclosureSettings(threshold=1), "threshold"),
        (
            lambda: AggregationSettings(
                cameras=[CameraSiteConfig(id="a", site="s1"), CameraSiteConfig(id="a", site="s2")]
            ),
            "listed more than once",
        ),
        (
            lambda: AggregationSettings(
                noise=NoiseSettings(enabled=True, epsilon_per_window=2, budget_epsilon=1)
            ),
            "nothing could ever be published",
        ),
        (lambda: CameraSiteConfig(id="a", site="with space"), "site"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match=message):
        build()


def test_an_invalid_configuration_stops_the_service_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vigie_aggregation"],
        env={**os.environ, "VIGIE_AGGREGATION_DISCLOSURE__THRESHOLD": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "vigie-aggregation: invalid configuration" in result.stderr
    assert "disclosure.threshold" in result.stderr
    assert "Traceback" not in result.stderr
