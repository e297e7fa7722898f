"""The boundary as the permission lists state it (the real nats-server test is in vigie-embedded)."""

import json

import pytest

from vigie_core import permissions
from vigie_core.permissions import (
    PROVISIONER,
    SERVICES,
    SOURCES_BUCKET,
    all_permissions,
    inbox_prefix,
    nats_authorization,
    permissions_for,
    subject_matches,
)
from vigie_core.streams import provisioned_stream_names


def _reads(stream: str, consumer: str, subject: str) -> list[str]:
    """Every way to read a stream's messages: the subjects a reader would have to be allowed."""
    api = "$JS.API"
    return [
        f"{api}.CONSUMER.CREATE.{stream}.{consumer}",
        f"{api}.CONSUMER.CREATE.{stream}.{consumer}.{subject}",
        f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"{api}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
    ]


def _direct_reads(stream: str) -> list[str]:
    return [f"$JS.API.STREAM.MSG.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}"]


@pytest.mark.parametrize(
    ("stream", "reader", "consumer", "subject"),
    [
        ("FRAMES", "inference", "inference-3", "vigie.frames.3.*"),
        ("TRACKS", "anonymiser", "anonymiser-0", "vigie.tracks.*"),
        ("EVENTS", "aggregation", "aggregation", "vigie.events.*"),
        ("AUDIT", "audit", "audit", "vigie.audit.*"),
    ],
)
def test_each_stream_has_exactly_one_reader(stream: str, reader: str, consumer: str, subject: str) -> None:
    for service, allowed in all_permissions().items():
        for api_subject in _reads(stream, consumer, subject):
            assert allowed.may_publish(api_subject) == (service == reader), (service, api_subject)
        for api_subject in _direct_reads(stream):
            assert not allowed.may_publish(api_subject), (service, api_subject)


@pytest.mark.parametrize(
    ("subject", "publisher"),
    [
        ("vigie.frames.north-gate", "ingest"),
        ("vigie.tracks.north-gate", "inference"),
        ("vigie.events.north-gate", "anonymiser"),
        ("vigie.deadletter.anonymiser", "anonymiser"),
        ("$KV.vigie-policy.cameras.north-gate", "registry"),
        ("$JS.API.STREAM.CREATE.FRAMES", PROVISIONER),
        ("$JS.API.STREAM.UPDATE.TRACKS", PROVISIONER),
        ("$JS.API.STREAM.UPDATE.EVENTS", PROVISIONER),
        ("$JS.API.STREAM.UPDATE.AUDIT", PROVISIONER),
        ("$JS.API.STREAM.CREATE.DEADLETTER_ANONYMISER", PROVISIONER),
        ("$JS.API.STREAM.UPDATE.KV_vigie-policy", PROVISIONER),
        ("$JS.API.STREAM.CREATE.KV_vigie-sources", PROVISIONER),
        ("$JS.ACK.FRAMES.inference-0.1.1.1.1795693825087069543.0", "inference"),
    ],
)
def test_each_subject_has_exactly_one_publisher(subject: str, publisher: str) -> None:
    assert [s for s, p in all_permissions().items() if p.may_publish(subject)] == [publisher]


def test_every_service_audits_as_itself_only() -> None:
    for service, allowed in all_permissions().items():
        for other in SERVICES:
            assert allowed.may_publish(f"vigie.audit.{other}") == (service == other)


def test_every_service_reads_the_policy_and_only_the_registry_writes_it() -> None:
    for service in SERVICES:
        allowed = permissions_for(service)
        assert allowed.may_publish("$JS.API.DIRECT.GET.KV_vigie-policy.$KV.vigie-policy.cameras.north-gate")
        assert allowed.may_publish("$JS.API.CONSUMER.CREATE.KV_vigie-policy")
        assert allowed.may_publish("$KV.vigie-policy.cameras.north-gate") == (service == "registry")


def test_only_ingest_reads_the_sources_and_only_the_registry_writes_them() -> None:
    stream = "KV_vigie-sources"
    reads = [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.$KV.vigie-sources.north-gate",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.watcher.$KV.vigie-sources.>",
    ]
    for service in SERVICES:
        allowed = permissions_for(service)
        for subject in reads:
            # The registry reads back what it writes (its writes are conditional on the revision read).
            assert allowed.may_publish(subject) == (service in ("ingest", "registry")), (service, subject)
        assert allowed.may_publish("$KV.vigie-sources.north-gate") == (service == "registry")
        assert not allowed.may_publish(f"$JS.API.STREAM.CREATE.{stream}")
        assert not allowed.may_subscribe("$KV.vigie-sources.north-gate")
    provisioner = permissions_for(PROVISIONER)
    assert [s for s in reads if provisioner.may_publish(s)] == [f"$JS.API.STREAM.INFO.{stream}"]
    assert SOURCES_BUCKET == "vigie-sources"


@pytest.mark.parametrize(
    "subject",
    [
        "$JS.API.STREAM.DELETE.FRAMES",
        "$JS.API.STREAM.DELETE.KV_vigie-sources",
        "$JS.API.STREAM.PURGE.KV_vigie-sources",
        "$JS.API.STREAM.PURGE.AUDIT",
        "$JS.API.STREAM.CREATE.COPY",  # a new stream could source or mirror FRAMES or TRACKS
        "$JS.API.STREAM.NAMES",
        "$JS.API.CONSUMER.DELETE.FRAMES.inference-0",
        "$JS.API.STREAM.MSG.DELETE.AUDIT",
        "_INBOX.abc",
        "_INBOX_inference.abc",
        "$SYS.REQ.SERVER.PING",
    ],
)
def test_nobody_may(subject: str) -> None:
    assert not any(p.may_publish(subject) for p in all_permissions().values())


def test_each_service_subscribes_to_its_own_inbox_only() -> None:
    for service, allowed in all_permissions().items():
        assert allowed.subscribe == (f"_INBOX_{service}.>",)
        assert allowed.inbox_prefix == inbox_prefix(allowed.user) == f"_INBOX_{service}"
        for other in SERVICES:
            assert allowed.may_subscribe(f"_INBOX_{other}.abc") == (service == other)
        for subject in ("vigie.frames.cam", "vigie.tracks.cam", "_INBOX.abc", "$KV.vigie-policy.x"):
            assert not allowed.may_subscribe(subject)


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("*.b", "a.b", True),
        ("a.b", "a", False),
        ("a", "a.b", False),
        ("$JS.API.CONSUMER.CREATE.FRAMES.*.>", "$JS.API.CONSUMER.CREATE.FRAMES.x", False),
    ],
)
def test_subject_matches(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


def test_the_nats_authorization_has_one_user_per_given_service() -> None:
    authorization = nats_authorization({"ingest": "pw-i", "audit": "pw-a"})
    assert authorization == {
        "users": [
            {
                "user": "ingest",
                "password": "pw-i",
                "permissions": permissions_for("ingest").nats_permissions(),
            },
            {"user": "audit", "password": "pw-a", "permissions": permissions_for("audit").nats_permissions()},
        ]
    }


def test_an_unknown_service_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown service 'billing'; known: ingest, inference"):
        permissions_for("billing")


def test_the_json_document_is_what_the_chart_renders(capsys: pytest.CaptureFixture[str]) -> None:
    assert permissions.main(["json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document) == [*SERVICES, PROVISIONER]
    for service, entry in document.items():
        p = permissions_for(service)
        assert entry == {"user": p.user, "inbox_prefix": p.inbox_prefix, "permissions": p.nats_permissions()}


def test_the_table_lists_every_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert permissions.main(["table"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == [*SERVICES, PROVISIONER]


@pytest.mark.parametrize("stream", provisioned_stream_names())
def test_no_service_may_configure_a_stream_only_look_it_up(stream: str) -> None:
    """Whoever configures a stream can make it copy another (sources, mirror), out of reach of subject
    permissions: the provisioner alone creates and updates streams, and nobody deletes one."""
    for service in SERVICES:
        allowed = permissions_for(service)
        for action in ("CREATE", "UPDATE", "DELETE", "PURGE"):
            assert not allowed.may_publish(f"$JS.API.STREAM.{action}.{stream}"), (service, action, stream)
    provisioner = permissions_for(PROVISIONER)
    for action in ("INFO", "CREATE", "UPDATE"):
        assert provisioner.may_publish(f"$JS.API.STREAM.{action}.{stream}")
    for action in ("DELETE", "PURGE", "MSG.GET", "DIRECT.GET", "MSG.DELETE"):
        assert not provisioner.may_publish(f"$JS.API.STREAM.{action}.{stream}")


def test_the_provisioner_may_manage_streams_and_nothing_else() -> None:
    provisioner = permissions_for(PROVISIONER)
    assert all(s.startswith("$JS.API.STREAM.") for s in provisioner.publish)
    assert provisioner.subscribe == ("_INBOX_provisioner.>",)
    for subject in (
        "vigie.frames.cam",
        "vigie.audit.provisioner",
        "$KV.vigie-sources.cam",
        "$JS.API.CONSUMER.CREATE.FRAMES.x",
        "$JS.API.CONSUMER.MSG.NEXT.FRAMES.x",
        "$JS.API.STREAM.CREATE.COPY",
        "$JS.API.STREAM.NAMES",
    ):
        assert not provisioner.may_publish(subject), subject
    assert not provisioner.may_subscribe("vigie.frames.cam")
