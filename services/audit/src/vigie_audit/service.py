"""The audit service's body: storage, the AUDIT consumer, the audit API, tree heads and retention.

A database outage, at start or later, is waited out: readiness ``database`` is red while the database does
not answer (probed every 2 s), the consumer keeps its batch in hand and retries it with back-off, signing
and retention try again at their next turn, and the service goes on by itself when the database is back.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable

from vigie_audit.api import AuditApi
from vigie_audit.consumer import DURABLE, JournalConsumer, JournalMetrics, sleep_or_stop
from vigie_audit.settings import AuditSettings
from vigie_audit.signer import RetentionPolicy, TreeHeadSigner, apply_retention
from vigie_audit.store import JournalStore
from vigie_audit.tree_head import TreeHeadSigningKey
from vigie_core.audit import AuditUnavailableError, connect_with_audit
from vigie_core.auth import TokenVerifier
from vigie_core.database import (
    DatabaseHealth,
    DatabaseWaitStoppedError,
    is_database_failure,
    watch_database,
)
from vigie_core.lag import start_consumer_lag
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import stream_guard

logger = logging.getLogger("vigie.audit")


def signing_key(settings: AuditSettings) -> TreeHeadSigningKey:
    if settings.signing_key is not None:
        key = TreeHeadSigningKey.load(settings.signing_key.get_secret_value())
        logger.info("signing tree heads with key %s", key.key_id)
        return key
    key = TreeHeadSigningKey.generate()
    logger.warning(
        "no signing_key configured: generated one for this run. Key id %s, public key (base64) %s. "
        "Heads signed now verify only with this key: set VIGIE_AUDIT_SIGNING_KEY to keep one across restarts",
        key.key_id,
        base64.b64encode(key.public_key).decode(),
    )
    return key


async def _every(
    stop: asyncio.Event,
    seconds: float,
    what: str,
    work: Callable[[], Awaitable[object]],
    database: DatabaseHealth,
) -> None:
    """Run ``work`` now and then every ``seconds`` until stopped; a failure is logged and retried."""
    while not stop.is_set():
        try:
            await work()
        except AuditUnavailableError as error:
            logger.error("%s failed, retrying in %.0fs: %s", what, seconds, error)
        except Exception as error:
            if not is_database_failure(error):
                raise
            database.failed(error)
            logger.error("%s failed, retrying in %.0fs: %s", what, seconds, error)
        await sleep_or_stop(stop, seconds)


async def serve(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, AuditSettings)
    stop = runtime.stop_requested
    store = await JournalStore.open(
        settings.database_url.get_secret_value(), schema_name=settings.database_schema, run_migrations=False
    )
    runtime.exit_stack.push_async_callback(store.close)
    database = watch_database(runtime, store.engine)
    signer = TreeHeadSigner(store, signing_key(settings), settings.log_id)
    metrics = JournalMetrics(runtime)
    try:
        await database.retry(store.migrate, stop=stop, what="migrating the journal")
        size = await database.retry(store.tree_size, stop=stop, what="reading the journal's size")
    except DatabaseWaitStoppedError:
        return
    metrics.tree_size.set(size)

    nc, publisher = await connect_with_audit(runtime, settings.nats, settings.audit, "vigie-audit")
    js = nc.jetstream()
    # The provisioner creates AUDIT (publishers only publish, and buffer until it exists); the audit service
    # reads it, in its own account, so checks it first and then continuously: above all that it copies
    # from nowhere.
    await stream_guard(runtime, publisher).bind(js, settings.stream.stream().config())

    # The API, its OpenAPI document and its /docs under /api/audit/v1; /metrics, /healthz, /readyz before it.
    api = AuditApi(store, signer, publisher, settings.read_scope)
    runtime.app.mount("/", api.app(TokenVerifier.from_settings(settings.auth)))

    consumer = JournalConsumer(runtime, settings, store, metrics, database)
    start_consumer_lag(runtime, js, "AUDIT", DURABLE)
    runtime.readiness.add("nats", lambda: None if nc.is_connected else "not connected to NATS")
    runtime.readiness.add("storage", lambda: consumer.storage_problem)

    async def sign() -> None:
        if await signer.sign_if_grown() is not None:
            metrics.tree_heads.inc()
            metrics.last_tree_head.set_to_current_time()

    policy = RetentionPolicy(settings.retention_days, settings.retention_justification)

    async def retain() -> None:
        metrics.pruned.inc((await apply_retention(store, publisher, policy)).pruned)

    background = [
        asyncio.create_task(
            _every(stop, settings.tree_head_interval_s, "signing a tree head", sign, database)
        ),
        asyncio.create_task(_every(stop, settings.retention_check_interval_s, "retention", retain, database)),
    ]
    logger.info("journal of %d entries; consuming AUDIT", size)
    runtime.readiness.mark_started()
    try:
        await consumer.run(nc)
    finally:
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        try:
            await sign()  # a last head covering everything appended
        except Exception as error:
            if not is_database_failure(error):
                raise
            logger.error("could not sign the last tree head: %s", error)
