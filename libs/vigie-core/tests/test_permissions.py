"""Each user's permissions inside its account, as the lists state them (a real nats-server enforces them in
vigie-embedded's and the chart's tests)."""

import json

import pytest

from vigie_core import permissions
from vigie_core.permissions import (
    LOCAL_API,
    PROVISIONER,
    ROLES,
    SERVICES,
    STREAM_OWNERS,
    account_name,
    all_permissions,
    api_prefix,
    inbox_prefix,
    owner_of,
    permissions_for,
    subject_matches,
)
from vigie_core.streams import provisioned_stream_names


def _reads(api: str, stream: str, consumer: str, subject: str) -> list[str]:
    """Every way to read a stream's messages through a consumer: what a reader must be allowed."""
    return [
        f"{api}.CONSUMER.CREATE.{stream}.{consumer}",
        f"{api}.CONSUMER.CREATE.{stream}.{consumer}.{subject}",
        f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"{api}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
    ]


def _apis() -> list[str]:
    return [LOCAL_API, *(f"$JS.{account_name(role)}.API" for role in (*ROLES, "sources"))]


@pytest.mark.parametrize(
    ("stream", "reader", "consumer", "subject"),
    [
        ("FRAMES", "inference", "inference-3", "vigie.frames.3.*"),
        ("TRACKS", "anonymiser", "anonymiser-0", "vigie.tracks.*"),
        ("EVENTS", "aggregation", "aggregation", "vigie.events.*"),
        ("AUDIT", "audit", "audit", "vigie.audit.*"),
    ],
)
def test_each_stream_has_exactly_one_reader_in_the_account_that_holds_it(
    stream: str, reader: str, consumer: str, subject: str
) -> None:
    assert owner_of(stream) == reader
    for service, allowed in all_permissions().items():
        for api in _apis():
            for api_subject in _reads(api, stream, consumer, subject):
                wanted = service == reader and api == LOCAL_API
                assert allowed.may_publish(api_subject) == wanted, (service, api_subject)
            for get in (f"{api}.STREAM.MSG.GET.{stream}", f"{api}.DIRECT.GET.{stream}"):
                assert not allowed.may_publish(get), (service, get)


@pytest.mark.parametrize(
    ("subject", "publisher"),
    [
        ("vigie.frames.north-gate", "ingest"),
        ("vigie.tracks.north-gate", "inference"),
        ("vigie.views.north-gate", "inference"),
        ("$JS.API.DIRECT.GET.VIEWS.vigie.views.north-gate", "registry"),
        ("vigie.events.north-gate", "anonymiser"),
        ("vigie.deadletter.anonymiser", "anonymiser"),
        ("vigie.deadletter.aggregation", "aggregation"),
        ("$KV.vigie-policy.cameras.north-gate", "registry"),
        ("$KV.vigie-sources.north-gate", "registry"),
        ("$JS.INFERENCE.API.STREAM.CREATE.FRAMES", PROVISIONER),
        ("$JS.ANONYMISER.API.STREAM.UPDATE.TRACKS", PROVISIONER),
        ("$JS.AGGREGATION.API.STREAM.UPDATE.EVENTS", PROVISIONER),
        ("$JS.AUDIT.API.STREAM.UPDATE.AUDIT", PROVISIONER),
        ("$JS.ANONYMISER.API.STREAM.CREATE.DEADLETTER_ANONYMISER", PROVISIONER),
        ("$JS.REGISTRY.API.STREAM.UPDATE.KV_vigie-policy", PROVISIONER),
        ("$JS.REGISTRY.API.STREAM.CREATE.VIEWS", PROVISIONER),
        ("$JS.SOURCES.API.STREAM.CREATE.KV_vigie-sources", PROVISIONER),
        ("$JS.ACK.FRAMES.inference-0.1.1.1.1795693825087069543.0", "inference"),
    ],
)
def test_each_subject_has_exactly_one_publisher(subject: str, publisher: str) -> None:
    assert [s for s, p in all_permissions().items() if p.may_publish(subject)] == [publisher]


def test_every_service_audits_as_itself_only() -> None:
    for service, allowed in all_permissions().items():
        for other in SERVICES:
            assert allowed.may_publish(f"vigie.audit.{other}") == (service == other)


def test_the_policy_readers_get_it_from_the_registrys_account_and_only_the_registry_writes_it() -> None:
    readers = {"ingest", "inference", "anonymiser"}
    for service in SERVICES:
        allowed = permissions_for(service)
        api = "$JS.API" if service == "registry" else "$JS.REGISTRY.API"
        get = f"{api}.DIRECT.GET.KV_vigie-policy.$KV.vigie-policy.cameras.north-gate"
        assert allowed.may_publish(get) == (service in readers | {"registry"}), service
        assert allowed.may_subscribe("vigie.kv.vigie-policy.cameras.north-gate") == (service in readers)
        assert not allowed.may_subscribe("$KV.vigie-policy.cameras.north-gate")
        assert allowed.may_publish("$KV.vigie-policy.cameras.north-gate") == (service == "registry")
        # No consumer on a bucket: its deliver subject would be the reader's choice, in the bucket's account.
        for api_prefix_ in _apis():
            assert not allowed.may_publish(f"{api_prefix_}.CONSUMER.CREATE.KV_vigie-policy")


def test_only_ingest_reads_the_sources_and_only_the_registry_writes_them() -> None:
    """The bucket is in an account without users: the registry writes it and reads it back, ingest reads it,
    both through imports; nobody else may."""
    for service in SERVICES:
        allowed = permissions_for(service)
        get = "$JS.SOURCES.API.DIRECT.GET.KV_vigie-sources.$KV.vigie-sources.north-gate"
        assert allowed.may_publish(get) == (service in ("ingest", "registry")), service
        assert not allowed.may_publish("$JS.API.DIRECT.GET.KV_vigie-sources")
        assert allowed.may_publish("$KV.vigie-sources.north-gate") == (service == "registry")
        assert allowed.may_subscribe("vigie.kv.vigie-sources.north-gate") == (service == "ingest")
        assert not allowed.may_subscribe("$KV.vigie-sources.north-gate")
    provisioner = permissions_for(PROVISIONER)
    assert not provisioner.may_publish("$JS.SOURCES.API.DIRECT.GET.KV_vigie-sources")


def test_inference_publishes_views_and_only_the_registry_reads_them_without_a_consumer() -> None:
    """Inference publishes a camera's scene view into VIEWS (in the registry's account) and cannot read it
    back; the registry reads a camera's latest view by direct get in its own account; nobody consumes it."""
    assert owner_of("VIEWS") == "registry"
    for service, allowed in all_permissions().items():
        assert allowed.may_publish("vigie.views.north-gate") == (service == "inference"), service
        assert not allowed.may_subscribe("vigie.views.north-gate"), service
        for api in _apis():
            get = f"{api}.DIRECT.GET.VIEWS.vigie.views.north-gate"
            assert allowed.may_publish(get) == (service == "registry" and api == LOCAL_API), (service, get)
            assert allowed.may_publish(f"{api}.DIRECT.GET.VIEWS") == (
                service == "registry" and api == LOCAL_API
            ), (service, api)
            assert not allowed.may_publish(f"{api}.STREAM.MSG.GET.VIEWS"), (service, api)
            for read in _reads(api, "VIEWS", "views", "vigie.views.*"):
                assert not allowed.may_publish(read), (service, read)
    # Inference does not even look VIEWS up: it publishes, and the broker's acknowledgement is its answer.
    assert not any("VIEWS" in subject for subject in permissions_for("inference").publish)


@pytest.mark.parametrize(
    "subject",
    [
        *(f"{api}.STREAM.DELETE.{s}" for api in _apis() for s in provisioned_stream_names()),
        *(f"{api}.STREAM.PURGE.{s}" for api in _apis() for s in provisioned_stream_names()),
        *(f"{api}.STREAM.CREATE.COPY" for api in _apis()),  # a new stream could copy FRAMES or TRACKS
        *(f"{api}.STREAM.NAMES" for api in _apis()),
        "$JS.API.CONSUMER.DELETE.FRAMES.inference-0",
        "$JS.API.STREAM.MSG.DELETE.AUDIT",
        "_INBOX.abc",
        "_INBOX_inference.abc",
        "_R_.abc.def",
        "$SYS.REQ.SERVER.PING",
        "$JS.FC.KV_vigie-policy.x",
    ],
)
def test_nobody_may(subject: str) -> None:
    assert not any(p.may_publish(subject) for p in all_permissions().values())


def test_each_user_subscribes_to_its_own_inbox_and_its_buckets_notifications_only() -> None:
    for service, allowed in all_permissions().items():
        assert allowed.subscribe[0] == f"_INBOX_{service}.>"
        assert all(s.startswith("vigie.kv.") for s in allowed.subscribe[1:]), allowed.subscribe
        assert allowed.inbox_prefix == inbox_prefix(allowed.user) == f"_INBOX_{service}"
        for other in SERVICES:
            assert allowed.may_subscribe(f"_INBOX_{other}.abc") == (service == other)
        for subject in (
            "vigie.frames.cam",
            "vigie.tracks.cam",
            "vigie.events.cam",
            "vigie.views.cam",
            "_INBOX.abc",
            ">",
        ):
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


def test_an_unknown_service_or_stream_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown service 'billing'; known: ingest, inference"):
        permissions_for("billing")
    with pytest.raises(ValueError, match="unknown stream 'COPY'"):
        owner_of("COPY")


def test_a_stream_is_reached_under_its_accounts_prefix_from_elsewhere() -> None:
    assert api_prefix("ingest", "FRAMES") == "$JS.INFERENCE.API"
    assert api_prefix("inference", "FRAMES") == "$JS.API"
    assert api_prefix("anonymiser", "EVENTS") == "$JS.AGGREGATION.API"
    assert api_prefix("ingest", "KV_vigie-sources") == "$JS.SOURCES.API"
    assert api_prefix("registry", "KV_vigie-sources") == "$JS.SOURCES.API"
    assert api_prefix("ingest", "KV_vigie-policy") == "$JS.REGISTRY.API"
    assert api_prefix("ingest", "FRAMES", accounts=False) == "$JS.API"
    assert {api_prefix(PROVISIONER, s) for s in STREAM_OWNERS} == {
        f"$JS.{account_name(owner)}.API" for owner in set(STREAM_OWNERS.values())
    }
    assert account_name("sources") == "SOURCES"


def test_the_json_document_lists_every_user_with_its_account(capsys: pytest.CaptureFixture[str]) -> None:
    assert permissions.main(["json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document) == [*SERVICES, PROVISIONER]
    for service, entry in document.items():
        p = permissions_for(service)
        assert entry == {
            "account": service.upper(),
            "user": p.user,
            "inbox_prefix": p.inbox_prefix,
            "permissions": p.nats_permissions(),
        }


def test_the_table_lists_every_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert permissions.main(["table"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split(" ")[1] for row in rows] == [*SERVICES, PROVISIONER]


@pytest.mark.parametrize("stream", provisioned_stream_names())
def test_no_service_may_configure_a_stream_only_look_it_up(stream: str) -> None:
    """Whoever configures a stream can make it copy another of its account (sources, mirror), out of reach
    of subject permissions: the provisioner alone creates and updates streams, and nobody deletes one."""
    for service in SERVICES:
        allowed = permissions_for(service)
        for api in _apis():
            for action in ("CREATE", "UPDATE", "DELETE", "PURGE"):
                assert not allowed.may_publish(f"{api}.STREAM.{action}.{stream}"), (service, action, stream)
    provisioner = permissions_for(PROVISIONER)
    api = f"$JS.{account_name(owner_of(stream))}.API"
    for action in ("INFO", "CREATE", "UPDATE"):
        assert provisioner.may_publish(f"{api}.STREAM.{action}.{stream}")
    for action in ("DELETE", "PURGE", "MSG.GET", "DIRECT.GET", "MSG.DELETE"):
        assert not provisioner.may_publish(f"{api}.STREAM.{action}.{stream}")


def test_the_provisioner_may_manage_streams_and_nothing_else() -> None:
    provisioner = permissions_for(PROVISIONER)
    assert all(".API.STREAM." in s and s.startswith("$JS.") for s in provisioner.publish)
    assert provisioner.subscribe == ("_INBOX_provisioner.>",)
    for subject in (
        "vigie.frames.cam",
        "vigie.audit.provisioner",
        "$KV.vigie-sources.cam",
        "$JS.INFERENCE.API.CONSUMER.CREATE.FRAMES.x",
        "$JS.INFERENCE.API.CONSUMER.MSG.NEXT.FRAMES.x",
        "$JS.INFERENCE.API.STREAM.CREATE.COPY",
        "$JS.API.STREAM.CREATE.FRAMES",
    ):
        assert not provisioner.may_publish(subject), subject
    assert not provisioner.may_subscribe("vigie.frames.cam")
