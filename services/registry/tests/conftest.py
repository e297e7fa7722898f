"""Fixtures of the registry tests: declarations, stores on SQLite and PostgreSQL, the API in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from vigie_core.audit import AuditPublisher, AuditPublishSettings, MemoryAuditSink
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier
from vigie_embedded.testing import postgres_schema
from vigie_registry.api.app import registry_app
from vigie_registry.http import form_tokens_for, mount_registry
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.objections import ClientRateLimiter, ReceiptSigner
from vigie_registry.public.form_token import FormTokens
from vigie_registry.publication import CameraPublisher, MemoryKeyValueBucket
from vigie_registry.settings import RegistrySettings
from vigie_registry.sources import sources_publication
from vigie_registry.storage.store import RegistryStore, SourceCipher
from vigie_registry.views import MemoryViewReader

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def declaration(**changes: Any) -> dict[str, Any]:
    """A valid declaration body (JSON) of a pedestrian-counting camera; ``changes`` replace top-level keys."""
    body: dict[str, Any] = {
        "name": "North gate",
        "description": "Pedestrians entering the park",
        "location": {
            "address": "1 place de la Mairie, Lyon",
            "latitude": 45.76,
            "longitude": 4.83,
            "site": "centre",
        },
        "source": {"url": "rtsp://viewer:s3cret-pass@10.0.0.12:554/stream?token=abc123"},
        "purpose": "pedestrian_flow_statistics",
        "lines": [{"id": "gate", "start": [0.1, 0.5], "end": [0.9, 0.5]}],
        "masks": [{"id": "window", "polygon": [[0.0, 0.0], [0.2, 0.0], [0.2, 0.2]]}],
        "legal": {"basis": "public_task", "act": "Délibération 2026-12", "dpia_reference": "DPIA-2026-004"},
        "controller": {"name": "Ville de Lyon", "email": "mobilite@ville.example"},
        "dpo": {"name": "Délégué à la protection des données", "email": "dpo@ville.example"},
    }
    body.update(changes)
    return body


def security_declaration(**changes: Any) -> dict[str, Any]:
    start = NOW - timedelta(days=1)
    return declaration(
        purpose="security_events",
        lines=[],
        zones=[{"id": "platform", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]}],
        security_events={
            "detections": ["abandoned_object", "crowd_movement"],
            "legal_text": "Loi 2023-380 art. 10; décret 2023-828",
            "authorisation_reference": "Arrêté préfectoral 2026-123",
            "authorised_from": start.isoformat(),
            "authorised_until": (start + timedelta(days=10)).isoformat(),
        },
        **changes,
    )


# -- databases ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    schema: str | None = None


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database: an SQLite file, then a PostgreSQL schema (skipped without one, failed on CI)."""
    if request.param == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite3")
        return
    async with postgres_schema("regtest") as found:
        yield Database(found.url, found.schema)


CIPHER_KEY = "p6W8xQ0e3pX0y3jZ7nP3dG6bq0s2o9G3m8yQpT3v1-A="


@pytest.fixture
async def any_store(database: Database) -> AsyncIterator[RegistryStore]:
    store = await RegistryStore.open(
        database.url, schema_name=database.schema, cipher=SourceCipher(CIPHER_KEY)
    )
    try:
        yield store
    finally:
        await store.close()


# -- the API in process ----------------------------------------------------------------------------------


class Clock:
    def __init__(self, start: datetime = NOW) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    client: httpx.AsyncClient
    sink: MemoryAuditSink
    issuer: LocalTokenIssuer
    store: RegistryStore
    bucket: MemoryKeyValueBucket
    publisher: CameraPublisher
    clock: Clock
    registry: CollectorRegistry
    signer: ReceiptSigner
    audit: AuditPublisher
    # The sources bucket (vigie-sources): sealed source URLs for ingest.
    sources: MemoryKeyValueBucket

    def token(self, *scopes: str, subject: str = "operator-7") -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.issuer.mint(subject, scopes)}"}
        return headers | {"X-Vigie-Motive": "declaring the north gate camera"}

    @property
    def admin(self) -> dict[str, str]:
        return self.token("registry:admin")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0


def publisher_of(
    store: RegistryStore,
    bucket: MemoryKeyValueBucket,
    sources: MemoryKeyValueBucket,
    registry: CollectorRegistry,
    clock: Clock,
    cipher: SourceCipher | None = None,
) -> CameraPublisher:
    """The service's publisher on in-memory buckets: the policy, then the sealed sources."""
    publication = sources_publication(store, cipher or SourceCipher(CIPHER_KEY), sources, registry)
    return CameraPublisher.for_policy(store, bucket, registry=registry, clock=clock, extra=[publication])


QUICK_AUDIT = AuditPublishSettings(
    confirm_timeout_s=0.5, drain_timeout_s=0.5, retry_initial_s=0.01, retry_max_s=0.05
)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = RegistrySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite3",
        objection={"rate_limit": "3/minute"},
    )
    store = await RegistryStore.open(
        settings.database_url.get_secret_value(), cipher=SourceCipher(CIPHER_KEY)
    )
    clock = Clock()
    registry = CollectorRegistry()
    bucket = MemoryKeyValueBucket()
    sources = MemoryKeyValueBucket()
    publisher = publisher_of(store, bucket, sources, registry, clock)
    issuer = LocalTokenIssuer.generate()
    sink = MemoryAuditSink()
    audit = AuditPublisher("registry", sink, settings=QUICK_AUDIT)
    await audit.start()
    signer = ReceiptSigner(b"k" * 32)
    app = registry_app(
        store=store,
        publisher=publisher,
        audit=audit,
        verifier=TokenVerifier(AuthSettings(), local_issuer=issuer),
        settings=settings,
        signer=signer,
        limiter=ClientRateLimiter(settings.objection.rate_limit),
        metrics=RegistryMetrics(registry),
        clock=clock,
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, sink, issuer, store, bucket, publisher, clock, registry, signer, audit, sources)
    finally:
        await audit.close()
        await store.close()


# -- the whole HTTP surface in process: the API under /v1 and the transparency page at / -----------------


@dataclass
class Site:
    client: httpx.AsyncClient
    sink: MemoryAuditSink
    issuer: LocalTokenIssuer
    store: RegistryStore
    bucket: MemoryKeyValueBucket
    clock: Clock
    registry: CollectorRegistry
    tokens: FormTokens
    settings: RegistrySettings
    # The scene views the API and the page read (publish as inference would).
    views: MemoryViewReader = field(default_factory=MemoryViewReader)

    @property
    def admin(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.issuer.mint('operator-7', ['registry:admin'])}",
            "X-Vigie-Motive": "declaring a camera",
        }

    async def declare(self, camera_id: str = "north-gate", status: str = "active", **changes: Any) -> None:
        body = {"id": camera_id, **declaration(**changes), "status": status}
        response = await self.client.post("/v1/cameras", json=body, headers=self.admin)
        assert response.status_code == 201, response.text

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0


SITE_URL = "https://cameras.ville.example"


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    settings = RegistrySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite3",  # type: ignore[arg-type]
        receipt_key="r" * 32,  # type: ignore[arg-type]
        # The client is the address in X-Forwarded-For (as behind the chart's ingress, the in-process
        # client's 127.0.0.1 standing for it): tests vary it.
        objection={  # type: ignore[arg-type]
            "rate_limit": "3/minute",
            "forwarded_hops": 1,
            "trusted_proxies": ["127.0.0.0/8"],
        },
        public={"base_url": SITE_URL, "form_token_ttl_s": 600},  # type: ignore[arg-type]
    )
    store = await RegistryStore.open(
        settings.database_url.get_secret_value(), cipher=SourceCipher(CIPHER_KEY)
    )
    clock = Clock(datetime.now(UTC))
    registry = CollectorRegistry()
    bucket = MemoryKeyValueBucket()
    publisher = publisher_of(store, bucket, MemoryKeyValueBucket(), registry, clock)
    issuer = LocalTokenIssuer.generate()
    sink = MemoryAuditSink()
    audit = AuditPublisher("registry", sink, settings=QUICK_AUDIT)
    await audit.start()
    tokens = form_tokens_for(settings, clock)
    views = MemoryViewReader()
    root = FastAPI()
    mount_registry(
        root,
        store=store,
        publisher=publisher,
        audit=audit,
        verifier=TokenVerifier(AuthSettings(), local_issuer=issuer),
        settings=settings,
        signer=ReceiptSigner(b"r" * 32),
        metrics=RegistryMetrics(registry),
        clock=clock,
        form_tokens=tokens,
        views=views,
    )
    transport = httpx.ASGITransport(app=root)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"X-Forwarded-For": "192.0.2.10"}
        ) as client:
            yield Site(client, sink, issuer, store, bucket, clock, registry, tokens, settings, views)
    finally:
        await audit.close()
        await store.close()
