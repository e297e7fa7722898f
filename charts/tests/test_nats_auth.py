"""The chart's NATS accounts: generated from vigie_core.accounts, rendered as the embedded server runs them,
with every password from the users Secret. A real nats-server running the rendered configuration is
attacked in test_boundary_attacks.py."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigie_core import accounts
from vigie_core.accounts import accounts_conf, jetstream_conf, password_variable, provisioner_users
from vigie_core.permissions import ROLES

CHART = Path(__file__).resolve().parents[2] / "charts" / "vigie"


@pytest.mark.parametrize(
    ("command", "path"),
    [
        (["conf"], "nats-accounts.conf"),
        (["provisioner-conf"], "nats-provisioner.conf"),
        *((["jetstream-conf", "--replicas", str(n)], f"nats-jetstream-r{n}.conf") for n in (1, 3, 5)),
    ],
)
def test_the_chart_accounts_are_generated_from_vigie_core(
    capsys: pytest.CaptureFixture[str], command: list[str], path: str
) -> None:
    accounts.main(command)
    generated = capsys.readouterr().out
    committed = (CHART / "files" / path).read_text()
    assert committed == generated, (
        f"charts/vigie/files/{path} differs from vigie_core.accounts: "
        "did you forget to run 'make chart-files'?"
    )


@pytest.mark.parametrize("name", ["default", "production", "minimal"])
def test_the_rendered_accounts_are_the_embedded_servers(render: Callable[[str], Any], name: str) -> None:
    data = render(name).named("ConfigMap", "vigie-nats-auth")["data"]
    assert data["auth.conf"] == accounts_conf()
    assert data["provisioner.conf"] == provisioner_users(None, from_environment=True)
    # Production runs three copies of every stream: its accounts' limits count them.
    assert data["jetstream.conf"] == jetstream_conf(3 if name == "production" else 1)


def test_the_provisioners_user_can_be_left_out(helm_template: Callable[..., Any]) -> None:
    refused = helm_template(sets=("provisioner.natsUser=false",))
    assert refused.returncode != 0
    assert "provisioner.reconcileSchedule needs provisioner.natsUser: true" in refused.stderr
    rendered = helm_template(sets=("provisioner.natsUser=false", "provisioner.reconcileSchedule="))
    assert rendered.returncode == 0, rendered.stderr
    assert not [m for m in yaml.safe_load_all(rendered.stdout) if m and m["kind"] == "CronJob"]
    configmap = next(
        m
        for m in yaml.safe_load_all(rendered.stdout)
        if m and m["kind"] == "ConfigMap" and m["metadata"]["name"] == "vigie-nats-auth"
    )
    text = configmap["data"]["provisioner.conf"]
    assert "VIGIE_PROVISIONER_USERS: []" in text
    assert "password" not in text


def test_every_role_has_a_password_nats_server_reads_as_text(render: Callable[[str], Any]) -> None:
    secret = render("default").named("Secret", "vigie-nats-users")
    assert set(secret["data"]) == set(ROLES)
    for value in secret["data"].values():
        password = base64.b64decode(value).decode()
        assert password[0].isalpha(), "a password starting with a digit is read as a number"
        assert password.isalnum()
        assert len(password) >= 40


def test_the_nats_server_gets_every_password_from_the_users_secret() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    env = values["nats"]["container"]["env"]
    for role in ROLES:
        reference = env[password_variable(role)]["valueFrom"]["secretKeyRef"]
        assert reference["key"] == role
        assert "vigie.natsUsersSecretName" in reference["name"]["$tplYaml"]
    assert values["nats"]["config"]["merge"]["00$include"] == "../vigie-nats/auth.conf"
    assert values["nats"]["natsBox"]["enabled"] is False


def test_the_streams_are_reconciled_on_a_schedule_by_the_same_pod(render: Callable[[str], Any]) -> None:
    """After a NATS restart the memory streams are gone: the provisioner's pod runs every minute too."""
    rendering = render("default")
    [job] = rendering.of_kind("Job")
    [cron] = rendering.of_kind("CronJob")
    assert cron["spec"]["schedule"] == "* * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["template"] == job["spec"]["template"]
