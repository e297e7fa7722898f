"""The registry service: the admin, DPO and public API, and the policy bucket kept equal to the database.

Start-up: open the database and run its migrations, connect to NATS, start the audit publisher, create or
bind the policy bucket and the sources bucket, publish every camera's policy and source (sealed; none
without a ``source_key``: :mod:`vigie_registry.sources`) and remove keys of cameras the registry does not
have (so the buckets match the database), bind the stream VIEWS where inference publishes the scene views
(:mod:`vigie_registry.views`), mount the API under ``/v1``, then run until SIGTERM:

- the reconciler publishes what a failed publish left behind (``policy.reconcile_interval_s``);
- the authorisation job switches off a ``security_events`` camera whose authorisation has ended (status
  ``paused``, reason ``authorisation_ended``, audited as a policy change; docs/privacy.md rule 5). Consumers
  stop analysing at the end of the window by themselves; this makes the registry say so too;
- the retention job deletes objection records older than ``objection.retention_days`` (audited).

A loop's failure is logged and retried, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from nats.js.api import KeyValueConfig

from vigie_core.audit import AuditAction, AuditPublisher, start_audit_publisher
from vigie_core.auth import TokenVerifier
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import StreamConfigConflictError, connect, jetstream_api, stream_guard
from vigie_core.permissions import POLICY_BUCKET
from vigie_core.streams import PolicyBucket, SourcesBucket, ViewsStream
from vigie_registry.camera import StoredCamera
from vigie_registry.http import API_PREFIX, mount_registry
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.objections import ReceiptSigner
from vigie_registry.publication import CameraPublisher, KeyValueBucket, NatsKeyValueBucket
from vigie_registry.settings import RegistrySettings
from vigie_registry.sources import SOURCES_BUCKET, sources_publication
from vigie_registry.storage.store import RegistryStore, SourceCipher
from vigie_registry.views import VIEWS_STREAM, NatsViewReader

__all__ = ["ACTOR", "API_PREFIX", "end_authorisations", "remove_old_objections", "serve"]

logger = logging.getLogger("vigie.registry")

T = TypeVar("T")

ACTOR = "service:registry"


async def end_authorisations(
    store: RegistryStore,
    publisher: CameraPublisher,
    audit: AuditPublisher,
    now: float,
    metrics: RegistryMetrics,
) -> list[str]:
    """Switch off the security_events cameras whose authorisation has ended; the ids switched off."""
    ended = []
    for camera_id in await store.authorisations_ended(int(now)):

        def switch_off(old: StoredCamera) -> StoredCamera:
            if old.status != "active":
                return old
            return replace(old, status="paused", status_reason="authorisation_ended")

        async def record(old: StoredCamera | None, new: StoredCamera | None) -> None:
            assert old is not None
            assert new is not None
            events = new.declaration.security_events
            await audit.record(
                AuditAction.AUDIT_ACTION_POLICY_CHANGE,
                actor=ACTOR,
                motive="security_events: the authorisation ended, the camera is switched off "
                "(docs/privacy.md rule 5)",
                camera_ids=[new.id],
                records=[("camera", new.id)],
                details={
                    "version": str(new.version),
                    "from_status": old.status,
                    "status": new.status,
                    "reason": "authorisation_ended",
                    "authorised_until": events.authorised_until.astimezone(UTC).isoformat() if events else "",
                },
            )

        old, new = await store.change(camera_id, switch_off, now=int(now), before_commit=record)
        if new is not old:
            ended.append(camera_id)
            metrics.changes.labels("expiry").inc()
            logger.warning("camera %s: security_events authorisation ended, switched off", camera_id)
            await publisher.publish(new)
    return ended


async def remove_old_objections(store: RegistryStore, audit: AuditPublisher, now: float, days: int) -> int:
    before = int(now) - days * 86_400
    removed = await store.delete_objections_before(before)
    if removed:
        await audit.record(
            AuditAction.AUDIT_ACTION_RETENTION_DELETION,
            actor=ACTOR,
            motive=f"objection records older than {days} days deleted (objection.retention_days)",
            records=[("objections", f"before:{before}")],
            data_end=datetime.fromtimestamp(before, UTC),
            details={"deleted": str(removed)},
        )
    return removed


async def _every(
    name: str, interval_s: float, stop: asyncio.Event, step: Callable[[], Awaitable[object]]
) -> None:
    while not stop.is_set():
        try:
            await step()
        except Exception:  # a loop must outlive any one failure; the next run retries
            logger.exception("%s failed; retrying in %.0fs", name, interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def receipt_signer(settings: RegistrySettings) -> ReceiptSigner:
    if settings.receipt_key is not None:
        return ReceiptSigner(settings.receipt_key.get_secret_value().encode())
    logger.warning(
        "no receipt_key configured: generated one for this run; receipts of objections made now will not "
        "verify after a restart. Set VIGIE_REGISTRY_RECEIPT_KEY (at least 32 random characters)"
    )
    return ReceiptSigner.generate()


async def _bucket(
    runtime: ServiceRuntime,
    settings: RegistrySettings,
    ensure: Callable[[], Awaitable[T]],
    name: str = POLICY_BUCKET,
) -> T | None:
    """A bucket (or a stream), retried until JetStream answers or the service is asked to stop."""
    attempt = 0
    while not runtime.stop_requested.is_set():
        try:
            return await ensure()
        except StreamConfigConflictError:  # a bucket that copies from elsewhere, or of the wrong kind
            raise
        except Exception as error:
            attempt += 1
            if attempt in (1, 10) or attempt % 100 == 0:
                logger.warning("cannot bind the bucket %s (%s); retrying", name, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.stop_requested.wait(), settings.policy.reconcile_interval_s)
    return None


async def serve(
    runtime: ServiceRuntime,
    *,
    clock: Callable[[], float] = time.time,
    bucket: KeyValueBucket | None = None,
    sources_bucket: KeyValueBucket | None = None,
) -> None:
    """The service's body: run until asked to stop (``bucket``, ``sources_bucket``: in-memory ones for
    tests; by default the NATS buckets)."""
    settings = runtime.settings
    assert isinstance(settings, RegistrySettings)
    stop = runtime.stop_requested
    if settings.source_key is None:
        logger.warning(
            "no source_key configured: camera source URLs are stored unencrypted, and NOT distributed to "
            "ingest (a source is never sent unsealed; the bucket %s is kept empty): ingest reads only the "
            "cameras of its own configuration. Set VIGIE_REGISTRY_SOURCE_KEY "
            "(python -m vigie_registry keygen)",
            SOURCES_BUCKET,
        )
    cipher = SourceCipher(settings.source_key.get_secret_value() if settings.source_key else None)
    store = await RegistryStore.open(
        settings.database_url.get_secret_value(), schema_name=settings.database_schema, cipher=cipher
    )
    runtime.exit_stack.push_async_callback(store.close)
    metrics = RegistryMetrics(runtime.registry)

    nc = await connect(settings.nats, "vigie-registry")
    runtime.exit_stack.push_async_callback(nc.drain)
    audit = await start_audit_publisher(runtime, nc, settings.audit)
    # The provisioner creates both buckets, in the registry's own account; the registry waits for them and
    # checks them, at start and then continuously.
    guard = stream_guard(runtime, audit)

    def bind(config: KeyValueConfig) -> Callable[[], Awaitable[KeyValueBucket]]:
        api = jetstream_api(settings.nats, "registry", f"KV_{config.bucket}")
        return lambda: NatsKeyValueBucket.ensure(
            nc, config, guard, api=api, timeout_s=settings.policy.publish_timeout_s
        )

    found = bucket or await _bucket(runtime, settings, bind(PolicyBucket(settings.policy.history).config()))
    found_sources = sources_bucket or await _bucket(
        runtime, settings, bind(SourcesBucket().config()), SOURCES_BUCKET
    )
    views_api = jetstream_api(settings.nats, "registry", VIEWS_STREAM)
    views = NatsViewReader(nc, api=views_api, timeout_s=settings.views.read_timeout_s)

    async def bind_views() -> NatsViewReader:
        js = nc.jetstream(prefix=views_api, timeout=settings.policy.publish_timeout_s)
        await guard.bind(js, ViewsStream().config(), sized=False)
        return views

    found_views = await _bucket(runtime, settings, bind_views, VIEWS_STREAM)
    if found is None or found_sources is None or found_views is None:
        return
    sources = sources_publication(store, cipher, found_sources, runtime.registry)
    publisher = CameraPublisher.for_policy(
        store, found, registry=runtime.registry, clock=clock, extra=[sources]
    )
    result = await publisher.reconcile(full=True)
    logger.info(
        "policy and sources buckets reconciled: %d published, %d removed, %d failed",
        result.published,
        result.removed,
        result.failed,
    )
    mount_registry(
        runtime.app,
        store=store,
        publisher=publisher,
        audit=audit,
        verifier=TokenVerifier.from_settings(settings.auth),
        settings=settings,
        signer=receipt_signer(settings),
        metrics=metrics,
        clock=clock,
        views=found_views,
    )
    runtime.readiness.add("nats", lambda: None if nc.is_connected else "not connected to NATS")
    runtime.readiness.add("policy", publisher.problem)
    runtime.readiness.mark_started()
    logger.info(
        "registry of %d camera(s); API on %s%s, transparency page on %s/",
        len(await store.cameras()),
        runtime.http_url,
        API_PREFIX,
        runtime.http_url,
    )

    async def reconcile() -> None:
        await publisher.reconcile()

    async def authorisations() -> None:
        await end_authorisations(store, publisher, audit, clock(), metrics)

    async def retention() -> None:
        await remove_old_objections(store, audit, clock(), settings.objection.retention_days)

    await asyncio.gather(
        _every("policy reconciliation", settings.policy.reconcile_interval_s, stop, reconcile),
        _every("authorisation check", settings.authorisation_check_interval_s, stop, authorisations),
        _every("objection retention", settings.retention_check_interval_s, stop, retention),
    )
