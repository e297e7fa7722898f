"""The journal's storage, on SQLite and PostgreSQL: appends, de-duplication, proofs, filters, retention,
and the database's refusal of anything but appends."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from vigie_audit.commands import verify_store
from vigie_audit.journal import decode_leaf
from vigie_audit.merkle import MerkleTree, ProofRequestError
from vigie_audit.signer import RetentionPolicy, apply_retention
from vigie_audit.store import EntryFilter, JournalStore, Rejection
from vigie_core.audit import AuditEvent, AuditPublisher, MemoryAuditSink, action_name

EventFactory = Callable[..., list[AuditEvent]]
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


async def reference_tree(store: JournalStore) -> MerkleTree:
    """The tree recomputed in memory from the stored leaves."""
    from vigie_audit.merkle import leaf_hash

    return MerkleTree([leaf_hash(e.leaf) async for e in store.iter_entries() if e.leaf is not None])


async def test_appends_in_order_and_never_twice(store: JournalStore, make_events: EventFactory) -> None:
    batch = make_events(30)
    first = await store.append(batch[:20])
    assert [i for i, _ in first.appended] == list(range(20))
    # A redelivery of a committed batch (crash before the acks) plus new events, one repeated in the batch.
    again = await store.append([*batch[10:30], batch[25]])
    assert again.duplicates == [e.event_id for e in batch[10:20]] + [batch[25].event_id]
    assert [i for i, _ in again.appended] == list(range(20, 30))
    assert await store.tree_size() == 30
    stored = [e async for e in store.iter_entries()]
    assert [e.event_id for e in stored] == [e.event_id for e in batch]
    assert decode_leaf(stored[3].leaf or b"").event == batch[3]


async def test_proofs_and_roots_match_the_recomputed_tree(
    store: JournalStore, make_events: EventFactory
) -> None:
    for chunk in range(5):
        await store.append(make_events(23, start=23 * chunk))
    tree = await reference_tree(store)
    for size in (1, 2, 7, 64, 100, 115):
        assert await store.root(size) == tree.root(size)
        for index in {0, size // 2, size - 1}:
            proof = await store.prove_inclusion(index, size)
            assert list(proof.audit_path) == tree.inclusion_proof(index, size)
            proof.verify(tree.root(size))
        for first in (0, 1, size // 3, size):
            consistency = await store.prove_consistency(first, size)
            assert list(consistency.proof) == tree.consistency_proof(first, size)
            consistency.verify(tree.root(first), tree.root(size))
    with pytest.raises(ProofRequestError, match="past the journal's 115") as caught:
        await store.prove_inclusion(0, 116)
    assert caught.value.field == "tree_size"


async def test_another_writer_is_noticed_and_the_frontier_reloaded(
    database: Any, make_events: EventFactory
) -> None:
    # Two replicas (or a restart) share the database: each reloads what it did not write.
    one, two = await database.open(), await database.open()
    try:
        for i in range(6):
            writer = one if i % 2 else two
            await writer.append(make_events(9, start=9 * i))
        tree = await reference_tree(one)
        assert tree.size == 54
        assert await one.root(54) == await two.root(54) == tree.root()
        report = await verify_store(one)
        assert report.ok, report.summary()
    finally:
        await one.close()
        await two.close()


async def test_entries_are_filtered_and_paginated(store: JournalStore, make_events: EventFactory) -> None:
    batch = make_events(40)
    await store.append(batch)
    by_camera = await store.entries(EntryFilter(camera_id="cam-1"), 0, 100)
    assert by_camera
    assert all("cam-1" in decode_leaf(e.leaf or b"").event.camera_ids for e in by_camera)
    assert len(by_camera) == sum("cam-1" in e.camera_ids for e in batch)
    actor = await store.entries(EntryFilter(actor="op-3"), 0, 100)
    assert [e.index for e in actor] == [i for i in range(40) if i % 7 == 3]
    action = action_name(batch[1].action)
    assert {e.action for e in await store.entries(EntryFilter(action=action), 0, 100)} == {action}
    window = EntryFilter(occurred_from=T0 + timedelta(seconds=10), occurred_until=T0 + timedelta(seconds=15))
    assert [e.index for e in await store.entries(window, 0, 100)] == [10, 11, 12, 13, 14]
    page_one = await store.entries(EntryFilter(service="registry"), 0, 16)
    page_two = await store.entries(EntryFilter(service="registry"), page_one[-1].index + 1, 16)
    assert [e.index for e in page_one + page_two] == list(range(32))
    assert await store.entries(EntryFilter(service="ingest"), 0, 10) == []
    assert (await store.entry_by_event_id(batch[5].event_id)) == await store.entry(5)


async def test_retention_clears_payloads_keeps_proofs_and_is_audited(
    store: JournalStore, make_events: EventFactory
) -> None:
    day = timedelta(days=1)
    await store.append(make_events(25), now=T0)
    await store.append(make_events(25, start=25), now=T0 + 100 * day)
    tree_before = await reference_tree(store)
    await store.reject([Rejection("vigie.audit.x", 7, "not protobuf", b"\xff")], now=T0)
    sink = MemoryAuditSink()
    publisher = AuditPublisher("audit", sink)
    await publisher.start()

    result = await apply_retention(store, publisher, RetentionPolicy(days=183), now=T0 + 190 * day)
    await publisher.close()

    assert (result.pruned, result.first_index, result.last_index, result.rejected_deleted) == (25, 0, 24, 1)
    pruned, kept = await store.entry(3), await store.entry(30)
    assert pruned is not None
    assert pruned.leaf is None
    assert pruned.actor is None
    assert pruned.pruned_at is not None
    assert kept is not None
    assert kept.leaf is not None
    # Every hash stayed: proofs for what remains, and consistency with old heads, still verify.
    proof = await store.prove_inclusion(30, 50)
    proof.verify(tree_before.root(50))
    (await store.prove_consistency(10, 50)).verify(tree_before.root(10), tree_before.root(50))
    assert (await verify_store(store)).ok
    (recorded,) = sink.events()
    assert action_name(recorded.action) == "retention_deletion"
    assert [(r.kind, r.id) for r in recorded.records] == [("audit_entries", "0-24")]
    assert await store.rejected_count() == 0


async def _run(store: JournalStore, statements: tuple[str, ...]) -> None:
    async with store.engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def _refused(store: JournalStore, *statements: str) -> str:
    """The database's error for ``statements`` run in one transaction."""
    with pytest.raises(DBAPIError) as caught:
        await _run(store, statements)
    return str(caught.value.orig)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET actor = 'someone-else' WHERE idx = 1",
        "UPDATE audit_entries SET leaf = NULL WHERE idx = 1",  # half a pruning: actor kept
        "DELETE FROM audit_entries WHERE idx = 2",
        "UPDATE audit_tree_nodes SET hash = hash WHERE level = 0 AND node_index = 0",
        "DELETE FROM audit_tree_nodes WHERE level = 1",
        "DELETE FROM audit_entry_cameras",
        "UPDATE audit_tree_heads SET tree_size = 0",
        "DELETE FROM audit_tree_heads",
        "UPDATE audit_rejected_messages SET reason = 'x'",
    ],
)
async def test_the_database_refuses_to_change_the_journal(
    store: JournalStore, make_events: EventFactory, statement: str
) -> None:
    from vigie_audit.tree_head import TreeHead, TreeHeadSigningKey

    await store.append(make_events(4))
    await store.add_tree_head(TreeHeadSigningKey.generate().sign(TreeHead("t", 4, await store.root(4), 1)))
    await store.reject([Rejection("vigie.audit.x", None, "garbage", b"x")])
    assert "append-only" in await _refused(store, statement)
    assert (await verify_store(store)).ok


async def test_postgresql_refuses_truncate_and_a_pruning_outside_its_function(
    postgres_database: Any, make_events: EventFactory
) -> None:
    store = await postgres_database.open()
    try:
        await store.append(make_events(3))
        for table in ("audit_entries", "audit_tree_nodes", "audit_tree_heads", "audit_entry_cameras"):
            assert "append-only" in await _refused(store, f"TRUNCATE {table}")
        prune_shape = "UPDATE audit_entries SET leaf = NULL, actor = NULL, pruned_at = now() WHERE idx = 0"
        assert "append-only" in await _refused(store, prune_shape)
        # Even with the switch on, only the pruning shape passes.
        message = await _refused(
            store,
            "SELECT set_config('vigie.audit_prune', 'on', true)",
            "UPDATE audit_entries SET leaf = NULL, actor = NULL, pruned_at = now(), service = 'forged' "
            "WHERE idx = 0",
        )
        assert "append-only" in message
        # The function is the explicit path, and the switch does not outlive it.
        async with store.engine.begin() as conn:
            row = (
                await conn.execute(text("SELECT * FROM vigie_audit_prune(now() + interval '1 day', now())"))
            ).one()
            assert row.pruned_count == 3
            assert (
                await conn.execute(text("SELECT current_setting('vigie.audit_prune', true)"))
            ).scalar() == "off"
        assert (await verify_store(store)).ok
    finally:
        await store.close()


async def test_rejected_messages_are_kept_aside(store: JournalStore) -> None:
    await store.reject([Rejection("vigie.audit.registry", 12, "not an AuditEvent", b"\x00" * 100_000)])
    assert await store.rejected_count() == 1
    assert await store.tree_size() == 0


async def test_appended_rows_are_stored_as_sqlalchemy_would_store_them(
    store: JournalStore, make_events: EventFactory
) -> None:
    # The append path inserts through the driver, converting values with the columns' own types; what
    # it stores must be exactly what SQLAlchemy writes (e.g. SQLite's DATETIME text), or ordering,
    # filters and reads would differ.
    from sqlalchemy import insert

    from vigie_audit import schema

    (appended,) = make_events(1)  # occurred_at on a whole second: the case a plain adapter gets wrong
    await store.append([appended], now=T0)
    reference = {
        "idx": 1_000_000,
        "event_id": "0f7c0d52-6a36-4bd4-a10b-3b1f8c1f4d2e",
        "logged_at": T0,
        "occurred_at": appended.occurred_at.ToDatetime(tzinfo=UTC),
        "service": appended.service,
        "actor": appended.actor,
        "action": "config_update",
        "outcome": "success",
        "leaf": b"x",
    }
    stored = text(
        "SELECT CAST(logged_at AS TEXT), CAST(occurred_at AS TEXT), length(CAST(event_id AS TEXT)) "
        "FROM audit_entries ORDER BY idx"
    )
    async with store.engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(insert(schema.entries), [reference])
        ours, sqlalchemys = (await conn.execute(stored)).all()
        await transaction.rollback()
    assert ours == sqlalchemys
