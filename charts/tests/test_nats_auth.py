"""The chart's NATS users: generated from vigie_core.permissions, and enforced by a real nats-server
running the rendered configuration, laid out as in the NATS pod."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from nats.js.api import AckPolicy, ConsumerConfig

from vigie_core import permissions
from vigie_core.messaging import ensure_stream
from vigie_core.permissions import PROVISIONER, ROLES, SERVICES, inbox_prefix, permissions_for
from vigie_core.provision import provision_at
from vigie_core.settings import NatsSettings
from vigie_core.streams import FramesStream, frames_partition_filter, frames_subject
from vigie_embedded.nats import EmbeddedNats

CHART = Path(__file__).resolve().parents[2] / "charts" / "vigie"
_USER = re.compile(
    r'^\s*\{user: "(?P<user>[^"]+)", password: \$(?P<variable>\w+), permissions: (?P<permissions>\{.*\})\}$'
)


def _users(rendering: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """user -> (password variable, permissions) of the rendered auth.conf."""
    configmap = rendering.named("ConfigMap", "vigie-nats-auth")
    users = {}
    for line in configmap["data"]["auth.conf"].splitlines():
        if found := _USER.match(line):
            users[found["user"]] = (found["variable"], json.loads(found["permissions"]))
    return users


def test_the_chart_permissions_are_generated_from_vigie_core(capsys: pytest.CaptureFixture[str]) -> None:
    permissions.main(["json"])
    generated = capsys.readouterr().out
    committed = (CHART / "files" / "nats-permissions.json").read_text()
    assert committed == generated, (
        "charts/vigie/files/nats-permissions.json differs from vigie_core.permissions: "
        "did you forget to run 'make chart-files'?"
    )


@pytest.mark.parametrize("name", ["default", "production", "minimal"])
def test_the_rendered_users_are_the_enabled_services_with_their_permissions(
    render: Callable[[str], Any], name: str
) -> None:
    rendering = render(name)
    enabled = {
        w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for w in rendering.of_kind("Deployment", "StatefulSet")
    } & set(SERVICES)
    users = _users(rendering)
    assert set(users) == enabled | {PROVISIONER}
    for user, (variable, allowed) in users.items():
        assert variable == f"VIGIE_NATS_PASSWORD_{user.upper()}"
        assert allowed == permissions_for(user).nats_permissions()
    secret = rendering.named("Secret", "vigie-nats-users")
    assert set(secret["data"]) == set(ROLES)


def test_the_nats_server_gets_every_password_from_the_users_secret() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    env = values["nats"]["container"]["env"]
    for service in ROLES:
        reference = env[f"VIGIE_NATS_PASSWORD_{service.upper()}"]["valueFrom"]["secretKeyRef"]
        assert reference["key"] == service
        assert "vigie.natsUsersSecretName" in reference["name"]["$tplYaml"]
    assert values["nats"]["config"]["merge"]["00$include"] == "../vigie-nats/auth.conf"
    assert values["nats"]["natsBox"]["enabled"] is False


@pytest.mark.integration
async def test_a_nats_server_running_the_rendered_configuration_enforces_it(
    render: Callable[[str], Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendering = render("production")
    # As in the NATS pod: /etc/nats-config/nats.conf includes ../vigie-nats/auth.conf.
    (tmp_path / "vigie-nats").mkdir()
    (tmp_path / "vigie-nats" / "auth.conf").write_text(
        rendering.named("ConfigMap", "vigie-nats-auth")["data"]["auth.conf"]
    )
    (tmp_path / "nats-config").mkdir()
    config = tmp_path / "nats-config" / "nats.conf"
    config.write_text("include ../vigie-nats/auth.conf\n")
    passwords = {
        service: base64.b64decode(value).decode()
        for service, value in rendering.named("Secret", "vigie-nats-users")["data"].items()
    }
    for service, password in passwords.items():
        monkeypatch.setenv(f"VIGIE_NATS_PASSWORD_{service.upper()}", password)

    # Provisioned as the chart's Job does it, as the user provisioner.
    with EmbeddedNats(config_file=config, provision=False) as server:
        provisioned = await provision_at(
            NatsSettings(url=server.url, user=PROVISIONER, password=passwords[PROVISIONER])
        )
        assert {r.outcome for r in provisioned} == {"created"}
        errors: dict[str, list[str]] = {}
        two_anonymiser_violations = asyncio.Event()

        async def connect(service: str) -> nats.aio.client.Client:
            async def on_error(error: Exception) -> None:
                errors.setdefault(service, []).append(str(error))
                if len(errors.get("anonymiser", [])) == 2:
                    two_anonymiser_violations.set()

            return await nats.connect(
                server.url,
                user=service,
                password=passwords[service],
                inbox_prefix=inbox_prefix(service),
                error_cb=on_error,
            )

        ingest, inference, anonymiser = [await connect(s) for s in ("ingest", "inference", "anonymiser")]
        await ensure_stream(ingest.jetstream(), FramesStream().config())
        # Ingest binds FRAMES and may not change it (its sources above all).
        with pytest.raises(nats.errors.TimeoutError):
            await ingest.jetstream(timeout=0.5).update_stream(FramesStream(max_age_s=60).config())
        await ingest.jetstream().publish(frames_subject("north-gate"), b"pixels")
        subscription = await inference.jetstream().pull_subscribe(
            frames_partition_filter(0),
            durable="inference-0",
            stream="FRAMES",
            config=ConsumerConfig(durable_name="inference-0", ack_policy=AckPolicy.EXPLICIT),
        )
        [frame] = await subscription.fetch(1, timeout=2)
        assert frame.data == b"pixels"
        await frame.ack()

        await anonymiser.subscribe("vigie.frames.>")
        with pytest.raises(nats.errors.TimeoutError):
            await anonymiser.jetstream(timeout=0.5).stream_info("FRAMES")
        # nats-py reports violations through the error callback, asynchronously.
        await asyncio.wait_for(two_anonymiser_violations.wait(), 3)
        assert sorted(errors["anonymiser"]) == [
            'nats: permissions violation for publish to "$js.api.stream.info.frames"',
            'nats: permissions violation for subscription to "vigie.frames.>"',
        ]
        assert errors.pop("ingest") == [
            'nats: permissions violation for publish to "$js.api.stream.update.frames"'
        ]
        assert "inference" not in errors
        for client in (ingest, inference, anonymiser):
            await client.close()
