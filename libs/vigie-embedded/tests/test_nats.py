"""The embedded nats-server: anonymous by default, with per-service users on demand."""

import json
import urllib.request
from pathlib import Path

import nats
import pytest

from vigie_core.accounts import accounts_conf, provisioner_users
from vigie_core.permissions import ROLES, account_name
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
    with EmbeddedNats(config_file=config, secured=True) as server:
        varz = _varz(server)
        assert varz["max_payload"] == 2 * 1024 * 1024
        assert server.pid > 0


def test_a_secured_server_runs_the_accounts_the_chart_renders() -> None:
    """The same text as charts/vigie/files/nats-accounts.conf; passwords only in the server's environment;
    the provisioner's user absent once it has provisioned."""
    with EmbeddedNats(secured=True) as server:
        accounts = server.config_dir / "accounts.conf"
        assert accounts.read_text() == accounts_conf()
        assert server.credentials("ingest").password not in accounts.read_text()
        assert (server.config_dir / "provisioner.conf").read_text() == provisioner_users(None)
        with urllib.request.urlopen(f"{server.monitoring_url}/accountz", timeout=5) as response:
            listed = set(json.load(response)["accounts"])
        assert {account_name(role) for role in ROLES} <= listed


async def test_a_secured_server_accepts_its_users_until_stopped() -> None:
    server = EmbeddedNats(secured=True)
    server.start()
    credentials = server.credentials("audit")
    nc = await nats.connect(server.url, user=credentials.user, password=credentials.password)
    await nc.close()
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.pid
