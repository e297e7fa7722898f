"""The journal's storage: SQLAlchemy 2 (asyncio), SQLite by default, PostgreSQL in production.

Appends. One transaction per batch: the next indexes are taken after the tree size read inside the
transaction (PostgreSQL: under a transaction-scoped advisory lock, so replicas append one at a time;
SQLite: one writer per process, serialised by a lock), events whose id is already stored are skipped
(a redelivery after a crash appends nothing twice), and each new leaf adds its perfect nodes
(:class:`~vigie_audit.merkle.MerkleFrontier`). The writer keeps the O(log n) frontier in memory and
reloads it from the database whenever the stored size is not the one it expects.

Reads. A root, inclusion proof or consistency proof reads the stored perfect nodes it needs in one
query (about 2*log2(n) rows); nothing is ever recomputed from the leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Dialect,
    LargeBinary,
    Row,
    Table,
    and_,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vigie_audit import schema
from vigie_audit.journal import IndexedColumns, LeafEncoder
from vigie_audit.merkle import (
    EMPTY_ROOT,
    ConsistencyProof,
    InclusionProof,
    MerkleFrontier,
    Node,
    ProofRequestError,
    consistency_proof_plan,
    inclusion_proof_plan,
    leaf_hash,
    root_from,
    root_plan,
)
from vigie_audit.tree_head import SignedTreeHead, TreeHead
from vigie_core.database import WRITE_OPTION, make_engine, migrate
from vigie_proto.v1.audit_pb2 import AuditEvent

logger = logging.getLogger("vigie.audit.store")

# pg_advisory_xact_lock key ("VIGIEAUD"): one appender at a time across replicas.
_APPEND_LOCK_KEY = 0x564947494541554
_MAX_REJECTED_PAYLOAD = 64 * 1024
# Rows per IN (...) list, well under SQLite's and PostgreSQL's parameter limits.
_IN_CHUNK = 400


class JournalCorruptError(RuntimeError):
    """The stored tree lacks a node it must have: run ``python -m vigie_audit verify``."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    appended: list[tuple[int, str]]  # (index, event id), in append order
    duplicates: list[str]  # event ids already in the journal, skipped
    tree_size: int


@dataclass(frozen=True, slots=True)
class Rejection:
    subject: str
    stream_sequence: int | None
    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class EntryFilter:
    camera_id: str | None = None
    actor: str | None = None
    action: str | None = None
    service: str | None = None
    occurred_from: datetime | None = None  # inclusive
    occurred_until: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class StoredEntry:
    index: int
    event_id: str
    logged_at: datetime
    occurred_at: datetime
    service: str
    actor: str | None
    action: str
    outcome: str
    leaf: bytes | None  # None once retention pruned it
    leaf_hash: bytes | None  # None only if the stored tree lost it
    pruned_at: datetime | None
    camera_ids: tuple[str, ...] = ()

    @property
    def columns(self) -> IndexedColumns | None:
        """The stored copies of the leaf's fields (None once pruned)."""
        if self.actor is None:
            return None
        return IndexedColumns(
            self.event_id,
            self.logged_at,
            self.occurred_at,
            self.service,
            self.actor,
            self.action,
            self.outcome,
            self.camera_ids,
        )


@dataclass(frozen=True, slots=True)
class PruneResult:
    pruned: int
    first_index: int | None
    last_index: int | None
    rejected_deleted: int


ENTRY_COLUMNS = (
    "idx",
    "event_id",
    "logged_at",
    "occurred_at",
    "service",
    "actor",
    "action",
    "outcome",
    "leaf",
)


def prepare_bulk_insert(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> tuple[str, list[tuple[Any, ...]]]:
    """An INSERT for the driver's ``executemany``, and the rows with each value converted by its
    column's own SQLAlchemy type (the stored form is what SQLAlchemy would write).

    SQLAlchemy's per-row statement machinery costs more than the insert itself at thousands of rows a
    second; only the type conversions are kept.
    """
    # The dialect's implementation of each type, as SQLAlchemy itself uses (e.g. SQLite's DATETIME text);
    # none for binary columns: every driver takes bytes as they are (SQLAlchemy only wraps them).
    converters = [
        None
        if isinstance(table.c[name].type, LargeBinary)
        else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in columns
    ]
    converted: list[tuple[Any, ...]] = list(rows)
    if rows and any(converters):
        # Column by column (transposed and back with zip), so the conversions run in map's C loop.
        by_column = [
            values if convert is None else tuple(map(convert, values))
            for values, convert in zip(zip(*rows, strict=True), converters, strict=True)
        ]
        converted = list(zip(*by_column, strict=True))
    paramstyle = dialect.paramstyle
    if paramstyle == "qmark":
        placeholders = ", ".join("?" for _ in columns)
    elif paramstyle == "numeric_dollar":
        placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    elif paramstyle in ("format", "pyformat"):
        placeholders = ", ".join("%s" for _ in columns)
    else:
        raise NotImplementedError(f"driver parameter style {paramstyle!r}")
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})", converted


async def _insert_rows(
    conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    if rows:
        statement, converted = prepare_bulk_insert(conn.dialect, table, columns, rows)
        await conn.exec_driver_sql(statement, converted)


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class JournalStore:
    """Append-only storage of the journal and of its Merkle tree."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._postgres = engine.dialect.name == "postgresql"
        # One writer at a time in this process (appends, tree heads, pruning, rejections).
        self._write_lock = asyncio.Lock()
        self._frontier: MerkleFrontier | None = None
        self._last_logged_at = datetime.min.replace(tzinfo=UTC)

    @classmethod
    async def open(
        cls, url: str, *, schema_name: str | None = None, run_migrations: bool = True
    ) -> JournalStore:
        store = cls(make_engine(url, schema_name=schema_name))
        if run_migrations:
            await store.migrate()
        return store

    async def migrate(self) -> None:
        """Bring the tables to the latest migration (idempotent)."""
        await migrate(self._engine, "vigie_audit")

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    # -- appends -------------------------------------------------------------------------------------

    async def append(self, events: Sequence[AuditEvent], now: datetime | None = None) -> AppendResult:
        """Append the events not already in the journal, in order, in one transaction."""
        async with self._write_lock:
            try:
                # Redeliveries are rare: first try without looking the ids up; the unique event id
                # refuses a repeat, and the transaction is then redone with the lookup.
                return await self._append(events, now, look_up_ids=False)
            except IntegrityError:
                return await self._append(events, now, look_up_ids=True)

    async def _append(
        self, events: Sequence[AuditEvent], now: datetime | None, look_up_ids: bool
    ) -> AppendResult:
        async with self._writer.begin() as conn:
            if self._postgres:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})
            size = await self._size(conn)
            if self._frontier is None or self._frontier.size != size:
                if self._frontier is not None:
                    logger.info(
                        "the journal has %d entries, not %d: reloading its frontier",
                        size,
                        self._frontier.size,
                    )
                self._frontier = await self._load_frontier(conn, size)
                self._last_logged_at = await self._max_logged_at(conn)
            frontier = self._frontier.copy()
            seen = (
                await self._existing_event_ids(conn, [e.event_id for e in events]) if look_up_ids else set()
            )
            # Never earlier than the last entry: logged_at follows the index even if the clock steps back.
            encoder = LeafEncoder(max(now or datetime.now(UTC), self._last_logged_at))
            entry_rows: list[tuple[Any, ...]] = []
            camera_rows: list[tuple[Any, ...]] = []
            node_rows: list[tuple[Any, ...]] = []
            appended: list[tuple[int, str]] = []
            duplicates: list[str] = []
            for audit_event in events:
                if audit_event.event_id in seen:
                    duplicates.append(audit_event.event_id)
                    continue
                seen.add(audit_event.event_id)
                leaf = encoder.encode(audit_event)
                created = frontier.append(leaf_hash(leaf))
                index = created[0][0].index
                c = IndexedColumns.of_event(audit_event, encoder.logged_at)
                entry_rows.append(
                    (
                        index,
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
                camera_rows.extend((camera, index) for camera in c.camera_ids)
                node_rows.extend((node.level, node.index, node_hash) for node, node_hash in created)
                appended.append((index, audit_event.event_id))
            await _insert_rows(conn, schema.entries, ENTRY_COLUMNS, entry_rows)
            await _insert_rows(conn, schema.entry_cameras, ("camera_id", "entry_idx"), camera_rows)
            await _insert_rows(conn, schema.tree_nodes, ("level", "node_index", "hash"), node_rows)
        # Committed: only now does the in-memory frontier move on.
        self._frontier = frontier
        self._last_logged_at = encoder.logged_at
        return AppendResult(appended, duplicates, frontier.size)

    async def reject(self, rejections: Sequence[Rejection], now: datetime | None = None) -> None:
        """Keep messages that are not valid events aside (dead letters), with the reason."""
        if not rejections:
            return
        received_at = now or datetime.now(UTC)
        rows = [
            {
                "received_at": received_at,
                "subject": r.subject[:256],
                "stream_sequence": r.stream_sequence,
                "reason": r.reason[:1000],
                "payload": r.payload[:_MAX_REJECTED_PAYLOAD],
            }
            for r in rejections
        ]
        async with self._write_lock, self._writer.begin() as conn:
            await conn.execute(insert(schema.rejected_messages), rows)

    async def _size(self, conn: AsyncConnection) -> int:
        last = (await conn.execute(select(func.max(schema.entries.c.idx)))).scalar_one()
        return 0 if last is None else int(last) + 1

    async def _max_logged_at(self, conn: AsyncConnection) -> datetime:
        last = (await conn.execute(select(func.max(schema.entries.c.logged_at)))).scalar_one()
        return schema.UtcDateTime().process_result_value(last, self._engine.dialect) or datetime.min.replace(
            tzinfo=UTC
        )

    async def _existing_event_ids(self, conn: AsyncConnection, event_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(event_ids))):
            result = await conn.execute(
                select(schema.entries.c.event_id).where(schema.entries.c.event_id.in_(chunk))
            )
            found.update(str(v) for v in result.scalars())
        return found

    async def _nodes(self, conn: AsyncConnection, nodes: Iterable[Node]) -> dict[Node, bytes]:
        wanted = sorted(set(nodes))
        found: dict[Node, bytes] = {}
        table = schema.tree_nodes
        for chunk in _chunks(wanted):
            by_level: dict[int, list[int]] = {}
            for node in chunk:
                by_level.setdefault(node.level, []).append(node.index)
            # One primary-key lookup per level. A row-value IN ((level, index), ...) would be shorter, but
            # SQLite answers it with a full scan of the table.
            condition = or_(
                *(
                    and_(table.c.level == level, table.c.node_index.in_(indexes))
                    for level, indexes in by_level.items()
                )
            )
            result = await conn.execute(
                select(table.c.level, table.c.node_index, table.c.hash).where(condition)
            )
            found.update({Node(level, index): bytes(h) for level, index, h in result})
        missing = [n for n in wanted if n not in found]
        if missing:
            raise JournalCorruptError(
                f"the stored tree lacks {len(missing)} node(s), first (level {missing[0].level}, "
                f"index {missing[0].index}): run 'python -m vigie_audit verify'"
            )
        return found

    async def _load_frontier(self, conn: AsyncConnection, size: int) -> MerkleFrontier:
        nodes = MerkleFrontier.nodes_for(size)
        hashes = await self._nodes(conn, nodes)
        return MerkleFrontier(size, [hashes[n] for n in nodes])

    # -- proofs --------------------------------------------------------------------------------------

    async def tree_size(self) -> int:
        async with self._engine.connect() as conn:
            return await self._size(conn)

    async def _tree_nodes(
        self, conn: AsyncConnection, size: int, nodes: set[Node], field: str
    ) -> dict[Node, bytes]:
        """The nodes a root or proof of the first ``size`` entries needs, in one read.

        ``nodes`` always includes the node of the last of those entries, and a node is written with its
        leaves: if all are there, ``size`` is within the journal, with no need to read its size first.
        """
        try:
            return await self._nodes(conn, nodes)
        except JournalCorruptError:
            current = await self._size(conn)
            if size > current:
                raise ProofRequestError(
                    f"tree size {size} is past the journal's {current} entries", field
                ) from None
            raise

    async def root(self, size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        async with self._engine.connect() as conn:
            return root_from(size, await self._tree_nodes(conn, size, root_plan(size).nodes, "tree_size"))

    async def prove_inclusion(self, index: int, size: int) -> InclusionProof:
        """PATH(index, D[size]) with the leaf hash and root: one read of about 2*log2(size) nodes."""
        plan = inclusion_proof_plan(index, size)
        leaf_node = Node(0, index)
        async with self._engine.connect() as conn:
            hashes = await self._tree_nodes(
                conn, size, plan.nodes | root_plan(size).nodes | {leaf_node}, "tree_size"
            )
        return InclusionProof(
            index, size, hashes[leaf_node], tuple(plan.assemble(hashes)), root_from(size, hashes)
        )

    async def prove_consistency(self, first: int, second: int) -> ConsistencyProof:
        """PROOF(first, D[second]) with both roots, in one read."""
        plan = consistency_proof_plan(first, second)
        nodes = plan.nodes | root_plan(first).nodes | root_plan(second).nodes
        async with self._engine.connect() as conn:
            hashes = await self._tree_nodes(conn, second, nodes, "second")
        return ConsistencyProof(
            first,
            second,
            root_from(first, hashes),
            root_from(second, hashes),
            tuple(plan.assemble(hashes)),
        )

    # -- entries -------------------------------------------------------------------------------------

    def _entry_query(self) -> Any:
        e, n = schema.entries, schema.tree_nodes
        return select(
            e.c.idx,
            e.c.event_id,
            e.c.logged_at,
            e.c.occurred_at,
            e.c.service,
            e.c.actor,
            e.c.action,
            e.c.outcome,
            e.c.leaf,
            n.c.hash,
            e.c.pruned_at,
        ).outerjoin(n, and_(n.c.level == 0, n.c.node_index == e.c.idx))

    @staticmethod
    def _stored_entry(row: Row[Any], camera_ids: tuple[str, ...] = ()) -> StoredEntry:
        return StoredEntry(
            index=int(row.idx),
            event_id=str(row.event_id),
            logged_at=row.logged_at,
            occurred_at=row.occurred_at,
            service=row.service,
            actor=row.actor,
            action=row.action,
            outcome=row.outcome,
            leaf=bytes(row.leaf) if row.leaf is not None else None,
            leaf_hash=bytes(row.hash) if row.hash is not None else None,
            pruned_at=row.pruned_at,
            camera_ids=camera_ids,
        )

    async def entry(self, index: int) -> StoredEntry | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(self._entry_query().where(schema.entries.c.idx == index))).first()
        return self._stored_entry(row) if row is not None else None

    async def entry_by_event_id(self, event_id: str) -> StoredEntry | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(self._entry_query().where(schema.entries.c.event_id == event_id))
            ).first()
        return self._stored_entry(row) if row is not None else None

    async def entries(self, where: EntryFilter, from_index: int, limit: int) -> list[StoredEntry]:
        """Entries matching ``where`` with index >= ``from_index``, by index, at most ``limit``."""
        e = schema.entries
        query = self._entry_query().where(e.c.idx >= from_index)
        if where.camera_id is not None:
            c = schema.entry_cameras
            query = query.join(c, and_(c.c.entry_idx == e.c.idx, c.c.camera_id == where.camera_id))
        if where.actor is not None:
            query = query.where(e.c.actor == where.actor)
        if where.action is not None:
            query = query.where(e.c.action == where.action)
        if where.service is not None:
            query = query.where(e.c.service == where.service)
        if where.occurred_from is not None:
            query = query.where(e.c.occurred_at >= where.occurred_from)
        if where.occurred_until is not None:
            query = query.where(e.c.occurred_at < where.occurred_until)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(e.c.idx).limit(limit))).all()
        return [self._stored_entry(row) for row in rows]

    async def iter_entries(self, size: int | None = None, page: int = 5000) -> AsyncIterator[StoredEntry]:
        """Every stored entry row by index (with its leaf hash and cameras), for export and verification."""
        e, c = schema.entries, schema.entry_cameras
        next_index = 0
        while True:
            query = self._entry_query().where(e.c.idx >= next_index)
            if size is not None:
                query = query.where(e.c.idx < size)
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query.order_by(e.c.idx).limit(page))).all()
                if not rows:
                    return
                first, last = int(rows[0].idx), int(rows[-1].idx)
                cameras: dict[int, list[str]] = {}
                camera_rows = await conn.execute(
                    select(c.c.entry_idx, c.c.camera_id).where(c.c.entry_idx.between(first, last))
                )
                for entry_idx, camera_id in camera_rows:
                    cameras.setdefault(int(entry_idx), []).append(camera_id)
            for row in rows:
                yield self._stored_entry(row, tuple(sorted(cameras.get(int(row.idx), ()))))
            if len(rows) < page:
                return
            next_index = last + 1

    async def iter_nodes(self, level: int, page: int = 20000) -> AsyncIterator[tuple[int, bytes]]:
        """The stored perfect nodes of one level, by index."""
        n = schema.tree_nodes
        next_index = 0
        while True:
            async with self._engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(n.c.node_index, n.c.hash)
                        .where(n.c.level == level, n.c.node_index >= next_index)
                        .order_by(n.c.node_index)
                        .limit(page)
                    )
                ).all()
            if not rows:
                return
            for index, node in rows:
                yield int(index), bytes(node)
            if len(rows) < page:
                return
            next_index = int(rows[-1][0]) + 1

    async def max_node_level(self) -> int:
        async with self._engine.connect() as conn:
            level = (await conn.execute(select(func.max(schema.tree_nodes.c.level)))).scalar_one()
        return -1 if level is None else int(level)

    # -- signed tree heads ---------------------------------------------------------------------------

    async def add_tree_head(self, signed: SignedTreeHead) -> None:
        head = signed.head
        async with self._write_lock, self._writer.begin() as conn:
            await conn.execute(
                insert(schema.tree_heads),
                [
                    {
                        "log_id": head.log_id,
                        "tree_size": head.tree_size,
                        "timestamp_ms": head.timestamp_ms,
                        "root_hash": head.root_hash,
                        "signature": signed.signature,
                        "public_key": signed.public_key,
                    }
                ],
            )

    @staticmethod
    def _tree_head(row: Row[Any]) -> SignedTreeHead:
        head = TreeHead(row.log_id, int(row.tree_size), bytes(row.root_hash), int(row.timestamp_ms))
        return SignedTreeHead(head, bytes(row.signature), bytes(row.public_key))

    async def latest_tree_head(self) -> SignedTreeHead | None:
        t = schema.tree_heads
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t).order_by(t.c.id.desc()).limit(1))).first()
        return self._tree_head(row) if row is not None else None

    async def tree_heads(self) -> list[SignedTreeHead]:
        t = schema.tree_heads
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(t).order_by(t.c.id))).all()
        return [self._tree_head(row) for row in rows]

    # -- retention -----------------------------------------------------------------------------------

    async def prune(self, cutoff: datetime, now: datetime | None = None) -> PruneResult:
        """Clear the payload (and actor) of entries logged before ``cutoff``; keep every hash.

        The leaf hashes and node hashes stay, so every remaining entry's inclusion proof and every
        consistency proof still verify, and a pruned entry still proves it existed. Expired rejected
        messages are deleted. On PostgreSQL this goes through ``vigie_audit_prune()``, the one path the
        triggers let through.
        """
        pruned_at = now or datetime.now(UTC)
        e = schema.entries
        async with self._write_lock, self._writer.begin() as conn:
            if self._postgres:
                row = (
                    await conn.execute(
                        text("SELECT * FROM vigie_audit_prune(:cutoff, :pruned_at)"),
                        {"cutoff": cutoff, "pruned_at": pruned_at},
                    )
                ).one()
                return PruneResult(
                    int(row.pruned_count), row.first_index, row.last_index, int(row.rejected_count)
                )
            expired = and_(e.c.leaf.is_not(None), e.c.logged_at < cutoff)
            count, first, last = (
                await conn.execute(select(func.count(), func.min(e.c.idx), func.max(e.c.idx)).where(expired))
            ).one()
            if count:
                await conn.execute(
                    update(e).where(expired).values(leaf=None, actor=None, pruned_at=pruned_at)
                )
            deleted = await conn.execute(
                sql_delete(schema.rejected_messages).where(schema.rejected_messages.c.received_at < cutoff)
            )
            return PruneResult(int(count), first, last, int(deleted.rowcount or 0))

    async def rejected_count(self) -> int:
        async with self._engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(schema.rejected_messages))).scalar_one()
            )


@contextlib.asynccontextmanager
async def open_store(url: str, *, schema_name: str | None = None) -> AsyncIterator[JournalStore]:
    store = await JournalStore.open(url, schema_name=schema_name)
    try:
        yield store
    finally:
        await store.close()
