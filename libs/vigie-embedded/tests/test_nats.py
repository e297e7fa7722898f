"""The embedded nats-server: anonymous by default, with per-service users on demand."""

import json
import urllib.request
from pathlib import Path

import nats
import pytest

from vigie_embedded.nats import EmbeddedNats

pytestmark = pytest.mark.integration


def _varz(server: EmbeddedNats) -> dict[str, object]:
    with urllib.request.urlopen(f"{server.monitoring_url}/varz", timeout=5) as response:
        document: dict[str, object] = json.load(response)
        return document


async def test_the_default_server_accepts_anonymous_clients(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    await nc.publish("anything", b"x")
    await nc.close()
    assert nats_server.service_env("ingest") == {"VIGIE_INGEST_NATS__URL": nats_server.url}


def test_a_secured_server_keeps_the_callers_configuration(tmp_path: Path) -> None:
    config = tmp_path / "limits.conf"
    config.write_text("max_payload: 2MB\n")
    with EmbeddedNats(config_file=config, services=["ingest"]) as server:
        varz = _varz(server)
        assert varz["max_payload"] == 2 * 1024 * 1024
        assert server.pid > 0


def test_admin_needs_services() -> None:
    with pytest.raises(ValueError, match="admin=True needs services"):
        EmbeddedNats(admin=True)


async def test_a_secured_server_accepts_its_users_until_stopped() -> None:
    server = EmbeddedNats(services=["audit"])
    server.start()
    credentials = server.credentials("audit")
    nc = await nats.connect(server.url, user=credentials.user, password=credentials.password)
    await nc.close()
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.pid
