import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VIGIE_INGEST_CAMERAZ": "[]"}, "unknown setting(s) in the environment: VIGIE_INGEST_CAMERAZ"),
        ({"VIGIE_INGEST_CAMERAS": '[{"id": "a b", "url": "x.mp4"}]'}, "cameras.0.id"),
        ({"VIGIE_INGEST_CAMERAS": "not json"}, "cameras"),
    ],
)
def test_an_invalid_configuration_stops_the_service_with_a_clear_message(
    env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vigie_ingest"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "vigie-ingest: invalid configuration" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
