"""The audit API on an in-process app: authentication, scopes, filters, proofs, errors, and the auditing
of every read."""

import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from vigie_audit.api import AuditApi
from vigie_audit.merkle import ConsistencyProof, InclusionProof
from vigie_audit.signer import TreeHeadSigner
from vigie_audit.store import JournalStore
from vigie_audit.tree_head import SignedTreeHead, TreeHeadSigningKey
from vigie_core.audit import AuditEvent, AuditPublisher, MemoryAuditSink, action_name
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier, install_authentication
from vigie_embedded.testing import offline_docs_problems

from .conftest import JournalDatabase

EventFactory = Callable[..., list[AuditEvent]]
READ = {"scope": "audit:read"}


@dataclass
class Harness:
    client: httpx.AsyncClient
    issuer: LocalTokenIssuer
    sink: MemoryAuditSink
    store: JournalStore
    publisher: AuditPublisher
    events: list[AuditEvent]

    def headers(self, subject: str = "dpo-7", scopes: tuple[str, ...] = ("audit:read",)) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint(subject, scopes)}"}

    async def get(self, path: str, **params: object) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.headers())


@pytest.fixture
async def api(tmp_path: Path, make_events: EventFactory) -> AsyncIterator[Harness]:
    store = await JournalStore.open(f"sqlite+aiosqlite:///{tmp_path / 'journal.sqlite3'}")
    async with _harness(store, make_events) as harness:
        yield harness


@pytest.fixture
async def api_on(database: JournalDatabase, make_events: EventFactory) -> AsyncIterator[Harness]:
    """The API on SQLite, then on PostgreSQL."""
    async with _harness(await database.open(), make_events) as harness:
        yield harness


@contextlib.asynccontextmanager
async def _harness(store: JournalStore, make_events: EventFactory) -> AsyncIterator[Harness]:
    events = make_events(30)
    await store.append(events)
    sink = MemoryAuditSink()
    publisher = AuditPublisher("audit", sink)
    await publisher.start()
    issuer = LocalTokenIssuer.generate()
    app = FastAPI()
    install_authentication(app, TokenVerifier(AuthSettings(), local_issuer=issuer))
    signer = TreeHeadSigner(store, TreeHeadSigningKey.generate(), "vigie-test")
    app.include_router(AuditApi(store, signer, publisher).router())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit") as client:
        yield Harness(client, issuer, sink, store, publisher, events)
    await publisher.close()
    await store.close()


async def test_the_service_s_app_serves_its_docs_from_this_machine(tmp_path: Path) -> None:
    """The app the service mounts at its root: the OpenAPI document, Swagger UI and ReDoc under
    /api/audit/v1, without a token and with every file they load served by the app itself; the API still
    asks for one."""
    store = await JournalStore.open(f"sqlite+aiosqlite:///{tmp_path / 'journal.sqlite3'}")
    signer = TreeHeadSigner(store, TreeHeadSigningKey.generate(), "vigie-test")
    api = AuditApi(store, signer, AuditPublisher("audit", MemoryAuditSink()))
    root = FastAPI(openapi_url=None)
    root.mount("/", api.app(TokenVerifier(AuthSettings(), local_issuer=LocalTokenIssuer.generate())))
    try:
        transport = httpx.ASGITransport(app=root)
        async with httpx.AsyncClient(transport=transport, base_url="http://audit") as client:
            assert await offline_docs_problems(client, "/api/audit/v1") == []
            document = (await client.get("/api/audit/v1/openapi.json")).json()
            assert document["info"]["title"] == "Vigie audit API"
            assert "/api/audit/v1/entries" in document["paths"]
            assert (await client.get("/api/audit/v1/entries")).status_code == 401
    finally:
        await store.close()


def detail_field(response: httpx.Response) -> str:
    (error,) = response.json()["detail"]
    return str(error["loc"][-1])


async def test_no_token_or_a_bad_one_gets_401(api: Harness) -> None:
    stranger = LocalTokenIssuer.generate()
    expired = api.issuer.mint("dpo-7", ["audit:read"], now=datetime.now(UTC).timestamp() - 3600)
    for headers in (
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {stranger.mint('dpo-7', ['audit:read'])}"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": "Basic ZHBvOnNlY3JldA=="},
    ):
        response = await api.client.get("/api/audit/v1/entries", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert api.sink.messages == [], "nothing was read, nothing is recorded"


async def test_a_token_without_the_scope_gets_403(api: Harness) -> None:
    response = await api.client.get("/api/audit/v1/entries", headers=api.headers(scopes=("stats:read",)))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert "audit:read" in response.json()["detail"]


async def test_entries_are_filtered_paginated_and_each_read_is_audited(api: Harness) -> None:
    response = await api.get("/api/audit/v1/entries", actor="op-3", limit=2, motive="inquiry 2026-17")
    assert response.status_code == 200
    body = response.json()
    assert [e["index"] for e in body["entries"]] == [3, 10]
    assert body["next_from_index"] == 17
    entry = body["entries"][0]
    assert entry["event_id"] == api.events[3].event_id
    assert entry["actor"] == "op-3"
    assert entry["details"] == {"seq": "3"}
    assert not entry["pruned"]
    assert base64.b64decode(entry["leaf"])
    assert len(entry["leaf_hash"]) == 64
    following = (await api.get("/api/audit/v1/entries", actor="op-3", limit=2, from_index=17)).json()
    assert [e["index"] for e in following["entries"]] == [17, 24]
    camera = (await api.get("/api/audit/v1/entries", camera="cam-2", action="data_read")).json()["entries"]
    assert camera
    assert all("cam-2" in e["camera_ids"] and e["action"] == "data_read" for e in camera)

    reads = api.sink.events()
    assert len(reads) == 3
    assert {action_name(r.action) for r in reads} == {"audit_read"}
    assert reads[0].actor == "dpo-7"
    assert reads[0].motive == "inquiry 2026-17"
    assert dict(reads[0].details) == {
        "request": "GET /api/audit/v1/entries",
        "filter.actor": "op-3",
        "returned": "2",
    }
    assert list(reads[2].camera_ids) == ["cam-2"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"from_index": -1}, "from_index"),
        ({"action": "peek"}, "action"),
        ({"camera": "north gate"}, "camera"),
        ({"since": "2026-03-01T08:00:00"}, "since"),  # no time zone
        ({"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "until"),
        ({"camra": "cam-1"}, "camra"),  # a misspelt filter must not return everything
        ({"motive": ""}, "motive"),
    ],
)
async def test_malformed_parameters_get_422_naming_them(
    api: Harness, params: dict[str, object], field: str
) -> None:
    response = await api.get("/api/audit/v1/entries", **params)
    assert response.status_code == 422
    assert detail_field(response) == field
    assert api.sink.messages == []


async def test_time_range_filter(api: Harness) -> None:
    t0 = api.events[0].occurred_at.ToDatetime(tzinfo=UTC)
    since, until = (t0 + timedelta(seconds=s) for s in (5, 8))
    body = (await api.get("/api/audit/v1/entries", since=since.isoformat(), until=until.isoformat())).json()
    assert [e["index"] for e in body["entries"]] == [5, 6, 7]


async def test_inclusion_and_consistency_proofs_verify_against_a_signed_head(api: Harness) -> None:
    assert (await api.get("/api/audit/v1/tree-heads/latest")).status_code == 404
    no_head = await api.get("/api/audit/v1/proofs/inclusion", index=3)
    assert no_head.status_code == 422
    assert detail_field(no_head) == "tree_size"

    created = await api.client.post("/api/audit/v1/tree-heads", headers=api.headers())
    assert created.status_code == 201
    head = SignedTreeHead.from_json(created.json())
    key = (await api.get("/api/audit/v1/public-key")).json()
    head.verify(base64.b64decode(key["public_key"]))
    assert head.head.tree_size == 30

    by_index = InclusionProof.from_json((await api.get("/api/audit/v1/proofs/inclusion", index=12)).json())
    by_index.verify(head.head.root_hash)
    by_event = (await api.get("/api/audit/v1/proofs/inclusion", event_id=api.events[12].event_id)).json()
    assert InclusionProof.from_json(by_event) == by_index
    smaller = InclusionProof.from_json(
        (await api.get("/api/audit/v1/proofs/inclusion", index=3, tree_size=7)).json()
    )
    assert smaller.tree_size == 7
    assert smaller.root_hash == await api.store.root(7)
    smaller.verify()

    consistency = ConsistencyProof.from_json(
        (await api.get("/api/audit/v1/proofs/consistency", first=7)).json()
    )
    assert consistency.second == 30
    assert consistency.second_root == head.head.root_hash
    consistency.verify(smaller.root_hash, head.head.root_hash)


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/api/audit/v1/proofs/inclusion", {"index": 30, "tree_size": 30}, 422, "tree_size"),
        ("/api/audit/v1/proofs/inclusion", {"index": 1, "tree_size": 31}, 422, "tree_size"),
        ("/api/audit/v1/proofs/inclusion", {"tree_size": 5}, 422, "index"),
        (
            "/api/audit/v1/proofs/inclusion",
            {"index": 1, "event_id": "0f7c0d52-6a36-4bd4-a10b-3b1f8c1f4d2e"},
            422,
            "index",
        ),
        ("/api/audit/v1/proofs/inclusion", {"event_id": "not-a-uuid"}, 422, "event_id"),
        ("/api/audit/v1/proofs/inclusion", {"event_id": "0f7c0d52-6a36-4bd4-a10b-3b1f8c1f4d2e"}, 404, None),
        ("/api/audit/v1/proofs/consistency", {"first": 9, "second": 4}, 422, "first"),
        ("/api/audit/v1/proofs/consistency", {"first": 1, "second": 31}, 422, "second"),
        ("/api/audit/v1/proofs/consistency", {}, 422, "first"),
        ("/api/audit/v1/entries/999", {}, 404, None),
        ("/api/audit/v1/entries/-1", {}, 422, "index"),
    ],
)
async def test_impossible_proof_requests_are_refused_clearly(
    api: Harness, path: str, params: dict[str, object], status: int, field: str | None
) -> None:
    response = await api.get(path, **params)
    assert response.status_code == status, response.text
    if field is not None:
        assert detail_field(response) == field


async def test_single_entries_and_pruned_ones(api: Harness) -> None:
    entry = (await api.get("/api/audit/v1/entries/4")).json()
    assert entry["event_id"] == api.events[4].event_id
    assert (await api.get(f"/api/audit/v1/entries/by-event-id/{api.events[4].event_id}")).json() == entry
    await api.store.prune(datetime.now(UTC) + timedelta(days=1))
    pruned = (await api.get("/api/audit/v1/entries/4")).json()
    assert pruned["pruned"] is True
    assert pruned["leaf"] is None
    assert "actor" not in pruned
    assert pruned["leaf_hash"] == entry["leaf_hash"]


async def test_a_read_that_cannot_be_audited_returns_nothing(api: Harness) -> None:
    await api.publisher.close()
    response = await api.get("/api/audit/v1/entries")
    assert response.status_code == 503
    assert "entries" not in response.text


async def test_an_e_mail_as_subject_is_not_recorded_and_gets_403(api: Harness) -> None:
    response = await api.client.get(
        "/api/audit/v1/entries", headers=api.headers(subject="jane.doe@city.example")
    )
    assert response.status_code == 403
    assert "pseudonymous" in response.json()["detail"]


_BEYOND = 2**63  # one more than a BIGINT holds


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        (f"/api/audit/v1/entries/{_BEYOND}", {}, 422, "index"),
        (f"/api/audit/v1/entries/{10**30}", {}, 422, "index"),
        (f"/api/audit/v1/entries/{_BEYOND - 1}", {}, 404, None),  # the largest index there could be
        ("/api/audit/v1/entries", {"from_index": _BEYOND}, 422, "from_index"),
        ("/api/audit/v1/entries", {"from_index": _BEYOND - 1}, 200, None),
        ("/api/audit/v1/entries", {"since": "0001-01-01T00:00:00+01:00"}, 422, "since"),
        ("/api/audit/v1/entries", {"until": "9999-12-31T23:59:59-01:00"}, 422, "until"),
        ("/api/audit/v1/entries", {"actor": "op-1\x00"}, 422, "actor"),
        ("/api/audit/v1/proofs/inclusion", {"index": _BEYOND, "tree_size": 30}, 422, "index"),
        ("/api/audit/v1/proofs/inclusion", {"index": 1, "tree_size": _BEYOND}, 422, "tree_size"),
        ("/api/audit/v1/proofs/inclusion", {"index": 1, "tree_size": _BEYOND - 1}, 422, "tree_size"),
        ("/api/audit/v1/proofs/consistency", {"first": _BEYOND, "second": 30}, 422, "first"),
        ("/api/audit/v1/proofs/consistency", {"first": 1, "second": _BEYOND}, 422, "second"),
        ("/api/audit/v1/proofs/consistency", {"first": 1, "second": _BEYOND - 1}, 422, "second"),
    ],
)
async def test_numbers_and_text_no_database_can_hold_get_4xx_not_500(
    api_on: Harness, path: str, params: dict[str, object], status: int, field: str | None
) -> None:
    response = await api_on.get(path, **params)
    assert response.status_code == status, response.text
    if field is not None:
        assert detail_field(response) == field
