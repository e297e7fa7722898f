"""The verifier finds every change to a stored or exported journal, and names the first entry at fault.

One journal of a few hundred entries (signed heads every 64) is built once per test; each mutation is
applied to a copy (of the export's lines, or of the SQLite file), never to the original.
"""

import base64
import io
import json
import random
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vigie_audit.commands import export_journal, main, verify_export, verify_store
from vigie_audit.journal import decode_leaf, encode_leaf, to_datetime
from vigie_audit.merkle import MerkleTree, leaf_hash
from vigie_audit.store import JournalStore
from vigie_audit.tree_head import TreeHead, TreeHeadSigningKey
from vigie_core.audit import AuditEvent
from vigie_core.database import make_engine

EventFactory = Callable[..., list[AuditEvent]]
ENTRIES = 250
HEAD_EVERY = 64


@dataclass(frozen=True)
class BuiltJournal:
    database: Path
    export: bytes
    public_key: bytes
    tree: MerkleTree

    def lines(self) -> list[bytes]:
        return io.BytesIO(self.export).readlines()


@pytest.fixture
async def journal(tmp_path: Path, make_events: EventFactory) -> BuiltJournal:
    database = tmp_path / "journal.sqlite3"
    store = await JournalStore.open(f"sqlite+aiosqlite:///{database}")
    key = TreeHeadSigningKey.generate()
    for start in range(0, ENTRIES, HEAD_EVERY):
        await store.append(make_events(min(HEAD_EVERY, ENTRIES - start), start=start))
        size = await store.tree_size()
        await store.add_tree_head(
            key.sign(TreeHead("vigie-test", size, await store.root(size), 1_000 + size))
        )
    tree = MerkleTree([leaf_hash(e.leaf or b"") async for e in store.iter_entries()])
    await export_journal(store, tmp_path / "journal.jsonl")
    await store.close()  # checkpoints the WAL into the file, so copies of it are complete
    return BuiltJournal(database, (tmp_path / "journal.jsonl").read_bytes(), key.public_key, tree)


def check(lines: list[bytes], key: bytes) -> object:
    return verify_export(io.BytesIO(b"".join(lines)), key)


def test_an_untouched_export_verifies(journal: BuiltJournal) -> None:
    report = verify_export(io.BytesIO(journal.export), journal.public_key)
    assert report.ok, report.summary()
    assert report.entries == ENTRIES
    assert report.root == journal.tree.root()
    assert report.tree_heads_checked == len(range(0, ENTRIES, HEAD_EVERY))


def test_a_thousand_random_changes_to_an_export_are_each_found_at_their_index(journal: BuiltJournal) -> None:
    lines = journal.lines()
    header, entries, heads = lines[0], lines[1 : ENTRIES + 1], lines[ENTRIES + 1 :]
    rng = random.Random(20260501)
    kinds: Counter[str] = Counter()
    for _ in range(1000):
        kind = rng.choice(["byte", "byte", "byte", "delete", "swap"])
        mutated = list(entries)
        if kind == "byte":
            expected = rng.randrange(ENTRIES)
            line = bytearray(mutated[expected])
            position = rng.randrange(len(line))
            line[position] = rng.choice([b for b in range(256) if b != line[position]])
            mutated[expected] = bytes(line)
        elif kind == "delete":
            expected = rng.randrange(ENTRIES)
            del mutated[expected]
        else:
            expected, other = sorted(rng.sample(range(ENTRIES), 2))
            mutated[expected], mutated[other] = mutated[other], mutated[expected]
        report = verify_export(io.BytesIO(b"".join([header, *mutated, *heads])), journal.public_key)
        first = report.first_failure
        assert first is not None, f"{kind} at {expected} went unnoticed"
        assert first.index == expected, f"{kind} at {expected}: {report.summary()}"
        kinds[kind] += 1
    assert min(kinds.values()) > 100


def _sqlite(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    # What an intruder with the file would do first.
    for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        connection.execute(f"DROP TRIGGER {name}")
    return connection


def _flip(value: bytes, rng: random.Random) -> bytes:
    position = rng.randrange(len(value))
    changed = bytearray(value)
    changed[position] ^= 1 << rng.randrange(8)
    return bytes(changed)


def _mutate_database(path: Path, rng: random.Random) -> tuple[str, int]:
    """One random change to the stored journal; returns its kind and the first index it concerns."""
    kind = rng.choice(
        ["leaf", "leaf_hash", "node", "column", "delete_entry", "delete_leaf_hash", "swap", "camera"]
    )
    index = rng.randrange(ENTRIES)
    with _sqlite(path) as db:
        if kind == "leaf":
            (leaf,) = db.execute("SELECT leaf FROM audit_entries WHERE idx = ?", (index,)).fetchone()
            db.execute("UPDATE audit_entries SET leaf = ? WHERE idx = ?", (_flip(leaf, rng), index))
        elif kind == "leaf_hash":
            (h,) = db.execute(
                "SELECT hash FROM audit_tree_nodes WHERE level = 0 AND node_index = ?", (index,)
            ).fetchone()
            db.execute(
                "UPDATE audit_tree_nodes SET hash = ? WHERE level = 0 AND node_index = ?",
                (_flip(h, rng), index),
            )
        elif kind == "node":
            level, node_index, h = rng.choice(
                db.execute("SELECT * FROM audit_tree_nodes WHERE level > 0").fetchall()
            )
            db.execute(
                "UPDATE audit_tree_nodes SET hash = ? WHERE level = ? AND node_index = ?",
                (_flip(h, rng), level, node_index),
            )
            index = node_index << level  # the first entry the node covers
        elif kind == "column":
            (actor,) = db.execute("SELECT actor FROM audit_entries WHERE idx = ?", (index,)).fetchone()
            db.execute("UPDATE audit_entries SET actor = ? WHERE idx = ?", (actor + "x", index))
        elif kind == "delete_entry":
            db.execute("DELETE FROM audit_entries WHERE idx = ?", (index,))
        elif kind == "delete_leaf_hash":
            db.execute("DELETE FROM audit_tree_nodes WHERE level = 0 AND node_index = ?", (index,))
        elif kind == "swap":
            # Reorder two entries: every column but the index moves, the tree stays.
            index, other = sorted(rng.sample(range(ENTRIES), 2))
            columns = "event_id, logged_at, occurred_at, service, actor, action, outcome, leaf"
            a = db.execute(f"SELECT {columns} FROM audit_entries WHERE idx = ?", (index,)).fetchone()
            b = db.execute(f"SELECT {columns} FROM audit_entries WHERE idx = ?", (other,)).fetchone()
            db.execute(
                "UPDATE audit_entries SET event_id = 'x' || event_id WHERE idx IN (?, ?)", (index, other)
            )
            assignments = ", ".join(f"{c.strip()} = ?" for c in columns.split(","))
            db.execute(f"UPDATE audit_entries SET {assignments} WHERE idx = ?", (*b, index))
            db.execute(f"UPDATE audit_entries SET {assignments} WHERE idx = ?", (*a, other))
        else:
            row = db.execute(
                "SELECT camera_id, entry_idx FROM audit_entry_cameras ORDER BY random() LIMIT 1"
            ).fetchone()
            db.execute("DELETE FROM audit_entry_cameras WHERE camera_id = ? AND entry_idx = ?", row)
            index = row[1]
    return kind, index


async def test_random_changes_to_the_database_are_each_found_at_their_index(
    journal: BuiltJournal, tmp_path: Path
) -> None:
    rng = random.Random(7)
    kinds: Counter[str] = Counter()
    for trial in range(80):
        copy = tmp_path / f"copy-{trial}.sqlite3"
        shutil.copyfile(journal.database, copy)
        kind, expected = _mutate_database(copy, rng)
        store = JournalStore(make_engine(f"sqlite+aiosqlite:///{copy}"))
        try:
            report = await verify_store(store, journal.public_key)
        finally:
            await store.close()
        first = report.first_failure
        assert first is not None, f"{kind} at {expected} went unnoticed"
        assert first.index == expected, f"{kind} at {expected}: {report.summary()}"
        kinds[kind] += 1
        copy.unlink()
    assert len(kinds) == 8


async def test_the_stored_journal_verifies_and_its_truncation_is_found(journal: BuiltJournal) -> None:
    store = JournalStore(make_engine(f"sqlite+aiosqlite:///{journal.database}"))
    try:
        report = await verify_store(store, journal.public_key)
        assert report.ok, report.summary()
        assert report.tree_heads_checked == len(range(0, ENTRIES, HEAD_EVERY))
    finally:
        await store.close()
    with _sqlite(journal.database) as db:
        db.execute("DELETE FROM audit_entries WHERE idx >= 240")
        db.execute("DELETE FROM audit_tree_nodes WHERE ((node_index + 1) << level) > 240")
    store = JournalStore(make_engine(f"sqlite+aiosqlite:///{journal.database}"))
    try:
        report = await verify_store(store, journal.public_key)
    finally:
        await store.close()
    assert report.first_failure is not None
    assert report.first_failure.index == 240
    assert "entries from 240 on are missing" in report.first_failure.reason


def test_a_consistent_rewrite_is_caught_by_the_signed_heads(journal: BuiltJournal) -> None:
    # An intruder who rewrites entry 150 and its leaf hash: only the signatures can tell.
    lines = journal.lines()
    document = json.loads(lines[1 + 150])
    entry = decode_leaf(base64.b64decode(document["leaf"]))
    entry.event.motive = "nothing to see here"
    forged = encode_leaf(entry.event, to_datetime(entry.logged_at))
    document.update(leaf=base64.b64encode(forged).decode(), leaf_hash=leaf_hash(forged).hex())
    lines[1 + 150] = json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    report = verify_export(io.BytesIO(b"".join(lines)), journal.public_key)
    first = report.first_failure
    assert first is not None
    assert first.index == 128
    assert "from 128 to 191" in first.reason


def test_forged_heads_and_a_foreign_key_are_refused(journal: BuiltJournal) -> None:
    lines = journal.lines()
    head = json.loads(lines[-1])
    head["tree_size"] = 249
    lines[-1] = json.dumps(head, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    report = verify_export(io.BytesIO(b"".join(lines)), journal.public_key)
    assert not report.ok
    assert "signature" in str(report.findings[0])
    pinned_elsewhere = verify_export(io.BytesIO(journal.export), TreeHeadSigningKey.generate().public_key)
    assert not pinned_elsewhere.ok
    assert all("not by the trusted key" in f.reason for f in pinned_elsewhere.findings)


def test_the_command_verifies_exports_and_saved_proofs_offline(
    journal: BuiltJournal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "journal.jsonl"
    key = base64.b64encode(journal.public_key).decode()
    saved_head = tmp_path / "head.json"
    saved_head.write_text(
        json.dumps({k: v for k, v in json.loads(journal.lines()[-1]).items() if k != "type"})
    )
    proof = tmp_path / "proof.json"
    tree = journal.tree
    proof.write_text(
        json.dumps(
            {
                "index": 42,
                "tree_size": 250,
                "leaf_hash": tree.nodes(0)[42].hex(),
                "audit_path": [h.hex() for h in tree.inclusion_proof(42, 250)],
                "root_hash": tree.root().hex(),
            }
        )
    )
    arguments = ["verify", "--export", str(export), "--public-key", key, "--tree-head", str(saved_head)]
    assert main([*arguments, "--proof", str(proof)]) == 0
    assert capsys.readouterr().out.startswith("OK: 250 entries")

    lines = journal.lines()
    lines[1 + 42] = lines[1 + 42].replace(b'"leaf":"', b'"leaf":"A', 1)
    export.write_bytes(b"".join(lines))
    assert main(arguments) == 1
    assert capsys.readouterr().out.startswith("FAIL at index 42:")
    with pytest.raises(SystemExit, match="--public-key"):
        main([*arguments[:3], "--public-key", "not a key"])


async def test_the_command_verifies_the_database_of_the_settings(
    journal: BuiltJournal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "audit.toml"
    config.write_text(f'database_url = "sqlite+aiosqlite:///{journal.database}"\n')
    public_key = tmp_path / "key.pem"
    from vigie_audit.tree_head import public_key_pem

    public_key.write_text(public_key_pem(journal.public_key))
    # main() runs its own event loop: run it in a thread, as from a shell.
    import asyncio

    code = await asyncio.to_thread(main, ["verify", "--config", str(config), "--public-key", str(public_key)])
    assert code == 0, capsys.readouterr().out
    assert "OK: 250 entries" in capsys.readouterr().out
