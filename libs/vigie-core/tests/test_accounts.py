"""Vigie's NATS accounts as declared: what crosses accounts, and that each account reaches only the channels
its service already has (the broker enforcing them is tested in vigie-embedded and the chart's tests)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
from nats.js.api import StorageType

from vigie_core import accounts
from vigie_core.accounts import (
    JETSTREAM_INCLUDE,
    PROVISIONER_INCLUDE,
    accounts_conf,
    crossings,
    jetstream_conf,
    jetstream_limits,
    jetstream_variable,
    password_variable,
    provisioner_users,
)
from vigie_core.permissions import LOCAL_API, PROVISIONER, ROLES, SERVICES, owner_of, permissions_for
from vigie_core.streams import provisioned_stream_configs
from vigie_embedded.nats import nats_server_binary

INSIDE = ("ingest", "inference")


def test_every_stream_is_held_by_its_readers_account() -> None:
    assert {config.name: owner_of(config.name or "") for config in provisioned_stream_configs()} == {
        "FRAMES": "inference",
        "TRACKS": "anonymiser",
        "EVENTS": "aggregation",
        "AUDIT": "audit",
        "DEADLETTER_ANONYMISER": "anonymiser",
        "DEADLETTER_AGGREGATION": "aggregation",
        "CHECKPOINT_ANONYMISER": "anonymiser",  # track ids: its reader's alone
        "VIEWS": "registry",  # scene views: the registry reads them, inference cannot
        "KV_vigie-policy": "registry",
        "KV_vigie-sources": "sources",  # an account without users: nobody can write there but by import
    }


def test_no_account_exports_a_way_to_read_or_copy_a_stream() -> None:
    """Copying a stream of another account (sources, mirror) or reading its messages needs its consumer or
    message API exported: only the buckets' direct gets are, to their readers."""
    for crossing in crossings():
        subject = crossing.subject
        assert ".CONSUMER." not in subject, crossing
        assert ".MSG.GET." not in subject, crossing
        if ".DIRECT.GET." in subject:
            assert subject.startswith(f"{LOCAL_API}.DIRECT.GET.KV_vigie-"), crossing
            assert PROVISIONER not in crossing.to


def test_the_sources_vault_has_no_user_and_the_others_one_each() -> None:
    conf = accounts_conf()
    vault = conf.split("\n  SOURCES: {\n", 1)[1]
    assert vault.lstrip().startswith("users: []")
    for role in ROLES:
        assert conf.count(f'user: "{role}"') == (0 if role == PROVISIONER else 1), role


def test_every_export_names_its_importers_and_nobody_imports_its_own() -> None:
    for crossing in crossings():
        assert crossing.to, crossing
        assert crossing.owner not in crossing.to, crossing


def test_an_account_reaches_only_the_channels_its_service_already_has() -> None:
    """A compromised service can make the server send messages (replies, pulled messages) to any subject of
    its own account. Every data subject its account imports as a service is one it may publish on anyway,
    so the server's help gives it no new channel."""
    for role in ROLES:
        allowed = permissions_for(role)
        for crossing in crossings():
            if role in crossing.to and crossing.kind == "service":
                assert allowed.may_publish(crossing.local_subject), (role, crossing.local_subject)


def test_inside_the_boundary_nothing_leads_outside_but_the_own_audit_subject_and_the_views() -> None:
    """Ingest and inference handle pixels: their accounts' service imports lead only inside the boundary
    (FRAMES, TRACKS), to look-ups and bucket reads (requests whose answers come back to them), to their
    own audit subject, which AUDIT bounds to 64 KiB a message: no frame fits, and, for inference alone, to
    the scene views: VIEWS keeps one message per camera, of at most 256 KiB, in memory."""
    audit = next(c for c in provisioned_stream_configs() if c.name == "AUDIT")
    frames_at_least = 416 * 117 * 3  # the model's width, at the widest aspect ingest accepts (32:9)
    assert audit.max_msg_size is not None
    assert audit.max_msg_size < frames_at_least
    views = next(c for c in provisioned_stream_configs() if c.name == "VIEWS")
    assert views.subjects == ["vigie.views.*"]
    assert views.max_msg_size == 256 * 1024
    assert views.max_msgs_per_subject == 1
    assert views.storage == StorageType.MEMORY
    views_crossings = [c for c in crossings() if c.subject == "vigie.views.*"]
    assert [(c.owner, c.to, c.kind) for c in views_crossings] == [("registry", ("inference",), "service")]
    for role in INSIDE:
        for crossing in crossings():
            if role not in crossing.to or crossing.kind != "service":
                continue
            subject = crossing.subject
            data_inside = subject in ("vigie.frames.*", "vigie.tracks.*")
            request = subject.startswith(f"{LOCAL_API}.STREAM.INFO.") or ".DIRECT.GET." in subject
            views_out = role == "inference" and subject == "vigie.views.*"
            assert data_inside or request or views_out or subject == f"vigie.audit.{role}", (role, crossing)


def test_pixels_and_tracks_may_never_be_stored_on_disk() -> None:
    limits = jetstream_limits()
    for owner in ("inference", "anonymiser"):
        assert limits[owner].max_file == 0, owner
    for config in provisioned_stream_configs():
        if owner_of(config.name or "") in ("inference", "anonymiser"):
            assert config.storage == StorageType.MEMORY, config.name
    # No JetStream at all where nothing is stored.
    assert "ingest" not in limits
    assert PROVISIONER not in limits


@pytest.mark.parametrize("replicas", [1, 3])
def test_account_limits_hold_exactly_the_default_streams_every_copy_counted(replicas: int) -> None:
    limits = jetstream_limits(replicas)
    for owner, limit in limits.items():
        streams = [c for c in provisioned_stream_configs() if owner_of(c.name or "") == owner]
        memory = sum(c.max_bytes or 0 for c in streams if c.storage == StorageType.MEMORY)
        file = sum(c.max_bytes or 0 for c in streams if c.storage == StorageType.FILE)
        assert limit.max_streams == len(streams)
        assert (limit.max_mem, limit.max_file) == (replicas * memory, replicas * file)
        assert f"{jetstream_variable(owner)}: " in jetstream_conf(replicas)


def test_the_configuration_has_no_password_and_no_user_allowed_everything() -> None:
    conf = accounts_conf() + provisioner_users(None, from_environment=True)
    assert "password: $VIGIE_NATS_PASSWORD_" in conf
    assert '"password"' not in conf
    for role in ROLES:
        assert password_variable(role) == f"VIGIE_NATS_PASSWORD_{role.upper()}"
        for allowed in (*permissions_for(role).publish, *permissions_for(role).subscribe):
            assert allowed not in (">", "*", "$JS.>", "$JS.API.>", "_INBOX.>"), (role, allowed)


def _check(
    tmp_path: Path, provisioner: str, passwords: Iterable[str] = ROLES
) -> subprocess.CompletedProcess[str]:
    """nats-server's verdict on the accounts (``-t``), with the passwords of ``passwords`` in its
    environment."""
    (tmp_path / "accounts.conf").write_text(accounts_conf())
    (tmp_path / PROVISIONER_INCLUDE).write_text(provisioner)
    (tmp_path / JETSTREAM_INCLUDE).write_text(jetstream_conf())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_NATS_PASSWORD_")}
    env |= {password_variable(r): f"pw{r}" for r in passwords}
    return subprocess.run(
        [str(nats_server_binary()), "-c", str(tmp_path / "accounts.conf"), "-js", "-t"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("provisioner", ["none", "password", "environment"])
def test_nats_server_accepts_the_configuration(tmp_path: Path, provisioner: str) -> None:
    users = {
        "none": provisioner_users(None),
        "password": provisioner_users("secret"),
        "environment": provisioner_users(None, from_environment=True),
    }[provisioner]
    checked = _check(tmp_path, users)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_nats_server_refuses_it_without_a_services_password(tmp_path: Path) -> None:
    checked = _check(tmp_path, provisioner_users(None), [r for r in SERVICES if r != "audit"])
    assert checked.returncode != 0
    assert "VIGIE_NATS_PASSWORD_AUDIT" in checked.stdout + checked.stderr


def test_the_commands_print_the_chart_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert accounts.main(["conf"]) == 0
    assert capsys.readouterr().out == accounts_conf()
    assert accounts.main(["provisioner-conf"]) == 0
    assert capsys.readouterr().out == provisioner_users(None, from_environment=True)
    assert accounts.main(["jetstream-conf", "--replicas", "3"]) == 0
    assert capsys.readouterr().out == jetstream_conf(3)
    assert accounts.main(["table"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == len(crossings())
