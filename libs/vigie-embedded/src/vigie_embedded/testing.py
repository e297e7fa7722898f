"""pytest fixtures for tests that need real components (registered by the repository's conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vigie_embedded.nats import EmbeddedNats


@pytest.fixture
def nats_server() -> Iterator[EmbeddedNats]:
    """A private nats-server with JetStream on a free port, for one test."""
    with EmbeddedNats() as server:
        yield server
