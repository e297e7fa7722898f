"""The console of the running service on the platform's secured nats-server, without a browser: a line saved
through the console's form is in the camera's policy in the bucket ``vigie-policy`` as another service reads
it, and in the audit journal with the operator and the motive."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from vigie_core.auth import AuthSettings, LocalTokenIssuer
from vigie_core.permissions import POLICY_STREAM, api_prefix
from vigie_core.policy import PolicyWatcher
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import ServiceConnections, running_service
from vigie_proto.v1.audit_pb2 import AuditAction
from vigie_registry.console.signin import console_link
from vigie_registry.service import serve

from .conftest import Database, declaration
from .test_service import KEY, audit_events, client_of, make_settings

pytestmark = pytest.mark.integration

MOTIVE = "a second counting line at the north gate"


async def test_a_line_saved_in_the_console_reaches_the_policy_bucket(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections, tmp_path: Path
) -> None:
    settings = make_settings(
        secured_nats_server, Database(f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite3")
    )
    issuer = LocalTokenIssuer.from_settings(AuthSettings(local_key=KEY))  # type: ignore[arg-type]
    admin = {
        "Authorization": f"Bearer {issuer.mint('operator-1', ['registry:admin'])}",
        "X-Vigie-Motive": "installing the north gate camera",
    }
    inference = await client_of(secured_nats_server, "inference")
    watcher = PolicyWatcher(inference, api=api_prefix("inference", POLICY_STREAM), retry_s=0.05, check_s=0.05)
    await watcher.start()
    try:
        async with running_service("registry", settings, serve) as runtime:
            base = runtime.http_url
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                for _ in range(200):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                body = {"id": "north-gate", **declaration(), "status": "active"}
                assert (await http.post("/v1/cameras", json=body, headers=admin)).status_code == 201

                signed_in = await http.get(console_link(settings, operator="operator-9", base_url=base))
                assert signed_in.status_code == 303
                page = await http.get("/console/cameras/north-gate")
                assert page.status_code == 200
                token = re.search(r'name="form_token" value="([0-9a-f]{64})"', page.text)
                assert token is not None
                saved = await http.post(
                    "/console/cameras/north-gate/geometry",
                    data={
                        "form_token": token.group(1),
                        "motive": MOTIVE,
                        "line-0-id": "gate",
                        "line-0-points": "0.1,0.5 0.9,0.5",
                        "line-1-id": "exit",
                        "line-1-points": "0.3,0.9 0.7,0.9",
                        "line-1-directions": "right_to_left",
                    },
                )
                assert saved.status_code == 303, saved.text

            await watcher.wait_until(
                lambda: (p := watcher.policy("north-gate")) is not None and len(p.lines) == 2, 10
            )
            policy = watcher.policy("north-gate")
            assert policy is not None
            assert [line.id for line in policy.lines] == ["gate", "exit"]
            exit_line = policy.lines[1]
            assert (exit_line.start.x, exit_line.start.y) == pytest.approx((0.3, 0.9))

            events = await audit_events(as_service)
            [update] = [e for e in events if e.action == AuditAction.AUDIT_ACTION_CONFIG_UPDATE]
            assert (update.actor, update.motive, update.details["changed"]) == ("operator-9", MOTIVE, "lines")
            [change] = [
                e
                for e in events
                if e.action == AuditAction.AUDIT_ACTION_POLICY_CHANGE and e.details.get("changed") == "lines"
            ]
            assert change.actor == "operator-9"
    finally:
        await watcher.close()
        await inference.close()
