"""Audit journal: appends per second end to end, and proof time as the journal grows.

    .venv/bin/python bench/audit.py                         # SQLite, and PostgreSQL when reachable
    .venv/bin/python bench/audit.py --events 50000 --proof-sizes 1000,10000,100000,1000000 --json out.json

1. Appends per second, end to end: audit events published to the AUDIT stream (a private nats-server)
   are consumed by the audit service, run as its own process as deployed (``python -m vigie_audit``),
   appended in one transaction per fetched batch (SQLite with ``synchronous=FULL``; PostgreSQL), and
   acknowledged after the commit. Two runs per database:
   - backlog: the stream holds N events when the service starts (its drain rate);
   - live: the service runs while this process publishes N events as fast as it can (both share the
     machine's cores, as they would on one node).
   Rate = (entries - 1) / (time the journal held N entries - time it held its first), polled every 50 ms.
2. Proofs: a journal is built by bulk-inserting precomputed leaves and perfect nodes (the same schema,
   encoding and hashing as the service, not through NATS) up to each size, and ``prove_inclusion`` /
   ``prove_consistency`` are timed through the service's store (one query each) on random indexes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import create_async_engine

from vigie_audit import schema
from vigie_audit.journal import IndexedColumns, LeafEncoder
from vigie_audit.merkle import MerkleFrontier, inclusion_proof_plan, leaf_hash
from vigie_audit.store import ENTRY_COLUMNS, JournalStore, prepare_bulk_insert
from vigie_core.audit import AuditAction, AuditEvent, new_audit_event
from vigie_core.database import make_engine
from vigie_core.messaging import connect, ensure_stream
from vigie_core.settings import NatsSettings
from vigie_core.streams import AuditStream, audit_subject
from vigie_embedded.nats import EmbeddedNats

POSTGRES_URL = os.environ.get("VIGIE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SERVICES = ("registry", "aggregation", "ingest", "anonymiser")


@dataclass
class AppendFigures:
    database: str
    mode: str
    events: int
    appends_per_second: float
    seconds: float
    publish_per_second: float | None = None


@dataclass
class ProofFigures:
    size: int
    inclusion_ms_p50: float
    inclusion_ms_p95: float
    consistency_ms_p50: float
    consistency_ms_p95: float
    nodes_read_inclusion_max: int


def sample_events(count: int) -> list[AuditEvent]:
    base = datetime.now(UTC)
    return [
        new_audit_event(
            SERVICES[i % len(SERVICES)],
            AuditAction.AUDIT_ACTION_DATA_READ,
            actor=f"op-{i % 50}",
            motive="benchmark: weekly traffic report",
            camera_ids=[f"cam-{i % 40}"],
            records=[("statistics", f"window-{i % 1000}")],
            data_start=base - timedelta(hours=1),
            data_end=base,
            details={"format": "csv"},
        )
        for i in range(count)
    ]


async def publish(nats_url: str, events: list[AuditEvent]) -> float:
    """Publish with many acknowledgements in flight, as many services together would; events/s."""
    nc = await connect(NatsSettings(url=nats_url), "bench-publisher")
    js = nc.jetstream(publish_async_max_pending=2000)
    started = time.perf_counter()
    for event in events:
        await js.publish_async(
            audit_subject(event.service), event.SerializeToString(), headers={"Nats-Msg-Id": event.event_id}
        )
    await js.publish_async_completed()
    elapsed = time.perf_counter() - started
    await nc.close()
    return len(events) / elapsed


@contextlib.contextmanager
def audit_process(nats_url: str, database_url: str, database_schema: str | None) -> Iterator[None]:
    env = {
        **os.environ,
        "VIGIE_AUDIT_NATS__URL": nats_url,
        "VIGIE_AUDIT_DATABASE_URL": database_url,
        "VIGIE_AUDIT_LOG_LEVEL": "WARNING",
        "VIGIE_AUDIT_TREE_HEAD_INTERVAL_S": "5",
    }
    if database_schema:
        env["VIGIE_AUDIT_DATABASE_SCHEMA"] = database_schema
    process = subprocess.Popen([sys.executable, "-m", "vigie_audit"], env=env, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


async def journal_progress(database_url: str, database_schema: str | None, target: int) -> float:
    """Seconds from the first entry to the ``target``-th, polling the journal's size."""
    store = JournalStore(make_engine(database_url, schema_name=database_schema))
    first: float | None = None
    try:
        while True:
            try:
                size = await store.tree_size()
            except Exception:  # the service has not created its tables yet
                size = 0
            now = time.perf_counter()
            if size and first is None:
                first = now
            if size >= target:
                assert first is not None
                return now - first
            await asyncio.sleep(0.05)
    finally:
        await store.close()


async def bench_appends(
    database: str, url: str, database_schema: str | None, count: int
) -> list[AppendFigures]:
    figures = []
    for mode in ("backlog", "live"):
        events = sample_events(count)
        with EmbeddedNats() as nats_server:
            nc = await connect(NatsSettings(url=nats_server.url), "bench-setup")
            await ensure_stream(nc.jetstream(), AuditStream().config())
            await nc.close()
            async with fresh_database(database, url, database_schema) as (db_url, db_schema):
                publish_rate = None
                if mode == "backlog":
                    publish_rate = await publish(nats_server.url, events)
                    with audit_process(nats_server.url, db_url, db_schema):
                        seconds = await journal_progress(db_url, db_schema, count)
                else:
                    with audit_process(nats_server.url, db_url, db_schema):
                        await asyncio.sleep(3)  # imports and migrations done before timing publication
                        publishing = asyncio.create_task(publish(nats_server.url, events))
                        seconds = await journal_progress(db_url, db_schema, count)
                        publish_rate = await publishing
        figures.append(AppendFigures(database, mode, count, (count - 1) / seconds, seconds, publish_rate))
        print(f"  {database:10} {mode:8} {figures[-1].appends_per_second:9.0f} appends/s", flush=True)
    return figures


@contextlib.asynccontextmanager
async def fresh_database(
    database: str, url: str, database_schema: str | None
) -> AsyncIterator[tuple[str, str | None]]:
    if database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="vigie-bench-audit-") as directory:
            yield f"sqlite+aiosqlite:///{directory}/journal.sqlite3", None
        return
    name = f"vigie_audit_bench_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield url, name
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        await engine.dispose()


def bulk_append(path: Path, frontier: MerkleFrontier, upto: int, chunk: int = 50_000) -> None:
    """Insert entries and their perfect nodes directly (building only): the service's encoding, hashing
    and stored forms (``prepare_bulk_insert``), in large transactions, without its per-batch checks."""
    dialect = sqlite.dialect()
    template = sample_events(1)[0]
    encoder = LeafEncoder(datetime.now(UTC))
    rng = random.Random(frontier.size)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        while frontier.size < upto:
            entries: list[tuple[object, ...]] = []
            nodes: list[tuple[object, ...]] = []
            for _ in range(min(chunk, upto - frontier.size)):
                template.event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                leaf = encoder.encode(template)
                created = frontier.append(leaf_hash(leaf))
                c = IndexedColumns.of_event(template, encoder.logged_at)
                entries.append(
                    (
                        created[0][0].index,
                        c.event_id,
                        c.logged_at,
                        c.occurred_at,
                        c.service,
                        c.actor,
                        c.action,
                        c.outcome,
                        leaf,
                    )
                )
                nodes.extend((n.level, n.index, h) for n, h in created)
            connection.execute("BEGIN")
            for table, columns, rows in (
                (schema.entries, ENTRY_COLUMNS, entries),
                (schema.tree_nodes, ("level", "node_index", "hash"), nodes),
            ):
                statement, converted = prepare_bulk_insert(dialect, table, columns, rows)
                connection.executemany(statement, converted)
            connection.execute("COMMIT")
    finally:
        connection.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def bench_proofs(sizes: list[int], samples: int) -> list[ProofFigures]:
    figures = []
    with tempfile.TemporaryDirectory(prefix="vigie-bench-proofs-") as directory:
        path = Path(directory) / "journal.sqlite3"
        store = await JournalStore.open(f"sqlite+aiosqlite:///{path}")  # creates the tables
        frontier = MerkleFrontier()
        rng = random.Random(1)
        try:
            for size in sorted(sizes):
                started = time.perf_counter()
                await asyncio.to_thread(bulk_append, path, frontier, size)
                built = time.perf_counter() - started
                root = await store.root(size)
                inclusion, consistency = [], []
                for _ in range(samples):
                    index = rng.randrange(size)
                    t0 = time.perf_counter()
                    proof = await store.prove_inclusion(index, size)
                    inclusion.append((time.perf_counter() - t0) * 1000)
                    proof.verify(root)
                    first = rng.randrange(1, size + 1)
                    t0 = time.perf_counter()
                    await store.prove_consistency(first, size)
                    consistency.append((time.perf_counter() - t0) * 1000)
                figures.append(
                    ProofFigures(
                        size=size,
                        inclusion_ms_p50=statistics.median(inclusion),
                        inclusion_ms_p95=percentile(inclusion, 0.95),
                        consistency_ms_p50=statistics.median(consistency),
                        consistency_ms_p95=percentile(consistency, 0.95),
                        nodes_read_inclusion_max=max(
                            len(inclusion_proof_plan(i, size).nodes) for i in (0, size // 2, size - 1)
                        ),
                    )
                )
                f = figures[-1]
                print(
                    f"  {size:>9} entries (built in {built:5.1f}s): "
                    f"inclusion p50 {f.inclusion_ms_p50:.2f} ms p95 {f.inclusion_ms_p95:.2f} ms, "
                    f"consistency p50 {f.consistency_ms_p50:.2f} ms p95 {f.consistency_ms_p95:.2f} ms, "
                    f"{f.nodes_read_inclusion_max} nodes read",
                    flush=True,
                )
        finally:
            await store.close()
    return figures


async def postgres_reachable(url: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with asyncio.timeout(5), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception as error:
        print(f"  PostgreSQL at {url} unreachable ({type(error).__name__}): skipped", flush=True)
        return False
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000, help="events per append run")
    parser.add_argument("--proof-sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--samples", type=int, default=200, help="proofs timed per size")
    parser.add_argument("--postgres", default=POSTGRES_URL, help="PostgreSQL URL ('' to skip)")
    parser.add_argument("--skip-appends", action="store_true")
    parser.add_argument("--skip-proofs", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    appends: list[AppendFigures] = []
    proofs: list[ProofFigures] = []
    if not args.skip_appends:
        print("appends, end to end (NATS -> audit service -> database -> ack):", flush=True)
        appends += await bench_appends("sqlite", "", None, args.events)
        if args.postgres and await postgres_reachable(args.postgres):
            appends += await bench_appends("postgresql", args.postgres, None, args.events)
    if not args.skip_proofs:
        print("proofs (SQLite, one query per proof):", flush=True)
        proofs = await bench_proofs([int(s) for s in args.proof_sizes.split(",")], args.samples)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"appends": [asdict(a) for a in appends], "proofs": [asdict(p) for p in proofs]}, indent=2
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
