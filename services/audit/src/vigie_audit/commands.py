"""``python -m vigie_audit``: run the service, or work on the journal offline.

    python -m vigie_audit [serve] [--config FILE]
    python -m vigie_audit migrate [--config FILE]
    python -m vigie_audit export --out FILE --actor ID --motive TEXT [--tree-size N] [--config FILE]
    python -m vigie_audit verify [--config FILE | --export FILE] [--public-key KEY]
                                 [--tree-head FILE ...] [--proof FILE ...]

``verify`` recomputes the tree from the database of the settings, or from an export alone (offline:
no database, no network), checks every stored node, every signed tree head (with the pinned
``--public-key``, PEM or base64, or a file holding it) and every saved head and proof, and prints
``OK`` (exit 0) or ``FAIL at index N: why`` (exit 1). ``export`` is recorded in the journal before the
file is written; when that cannot be done (NATS down) nothing is exported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from vigie_audit.export_format import ExportFormatError, ExportReader, entry_line, header_line, tree_head_line
from vigie_audit.merkle import ConsistencyProof, InclusionProof
from vigie_audit.settings import AuditSettings
from vigie_audit.store import JournalStore
from vigie_audit.tree_head import SignedTreeHead, TreeHeadError, load_public_key
from vigie_audit.verification import JournalVerifier, LeafRecord, VerificationReport, parse_proof
from vigie_core.audit import AuditAction, AuditPublisher, AuditUnavailableError, JetStreamAuditSink
from vigie_core.database import make_engine, migrate
from vigie_core.lifecycle import configure_logging, run_service
from vigie_core.messaging import connect

logger = logging.getLogger("vigie.audit")


async def export_journal(
    store: JournalStore, out: Path, tree_size: int | None = None, log_id: str = "vigie-audit"
) -> int:
    """Write the first ``tree_size`` entries (default: all) and their tree heads; return the count."""
    size = await store.tree_size() if tree_size is None else tree_size
    partial = out.with_name(out.name + ".part")
    written = 0
    with partial.open("wb") as file:
        file.write(header_line(log_id, size))
        async for entry in store.iter_entries(size):
            if entry.leaf_hash is None:
                raise RuntimeError(
                    f"entry {entry.index} has no leaf hash: run 'python -m vigie_audit verify'"
                )
            file.write(entry_line(entry.index, entry.leaf, entry.leaf_hash))
            written += 1
        for signed in await store.tree_heads():
            if signed.head.tree_size <= size:
                file.write(tree_head_line(signed))
    partial.replace(out)
    return written


def _add_saved(
    verifier: JournalVerifier,
    tree_heads: Iterable[SignedTreeHead],
    proofs: Iterable[InclusionProof | ConsistencyProof],
) -> None:
    for head in tree_heads:
        verifier.check_tree_head(head, "saved")
    for proof in proofs:
        if isinstance(proof, InclusionProof):
            verifier.check_inclusion(proof)
        else:
            verifier.check_consistency(proof)


async def verify_store(
    store: JournalStore,
    trusted_key: bytes | None = None,
    tree_heads: Sequence[SignedTreeHead] = (),
    proofs: Sequence[InclusionProof | ConsistencyProof] = (),
) -> VerificationReport:
    """Recompute the tree from the database and check it (see :mod:`vigie_audit.verification`)."""
    verifier = JournalVerifier(trusted_key)
    async for entry in store.iter_entries():
        verifier.add(LeafRecord(entry.index, entry.leaf, entry.leaf_hash, entry.columns))
    for level in range(await store.max_node_level() + 1):
        verifier.check_stored_level(level, [node async for node in store.iter_nodes(level)])
    for head in await store.tree_heads():
        verifier.check_tree_head(head, "stored")
    _add_saved(verifier, tree_heads, proofs)
    return verifier.finish()


def verify_export(
    lines: Iterable[bytes],
    trusted_key: bytes | None = None,
    tree_heads: Sequence[SignedTreeHead] = (),
    proofs: Sequence[InclusionProof | ConsistencyProof] = (),
) -> VerificationReport:
    """Recompute the tree from an export alone and check it. Raises ExportFormatError if unreadable."""
    verifier = JournalVerifier(trusted_key)
    reader = ExportReader()
    for item in reader.entries(lines):
        verifier.add(item)
    for head in reader.tree_heads:
        verifier.check_tree_head(head, "exported")
    _add_saved(verifier, tree_heads, proofs)
    report = verifier.finish()
    report.findings.extend(reader.problems)
    return report


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {what} {path}: {error}") from None


def _trusted_key(value: str | None) -> bytes | None:
    if value is None:
        return None
    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        return load_public_key(text)
    except TreeHeadError as error:
        raise SystemExit(f"error: --public-key: {error}") from None


async def _verify(args: argparse.Namespace) -> int:
    trusted = _trusted_key(args.public_key)
    heads = []
    for path in args.tree_head:
        try:
            heads.append(SignedTreeHead.from_json(_read_json(path, "tree head")))
        except TreeHeadError as error:
            raise SystemExit(f"error: tree head {path}: {error}") from None
    proofs = []
    for path in args.proof:
        try:
            proofs.append(parse_proof(_read_json(path, "proof")))
        except ValueError as error:
            raise SystemExit(f"error: proof {path}: {error}") from None
    if trusted is None:
        print(
            "warning: no --public-key: each signature is checked against the key stored with it, which shows "
            "integrity, not who signed",
            file=sys.stderr,
        )
    if args.export is not None:
        try:
            with args.export.open("rb") as file:
                report = verify_export(file, trusted, heads, proofs)
        except (OSError, ExportFormatError) as error:
            raise SystemExit(f"error: {args.export}: {error}") from None
    else:
        settings = AuditSettings.load(args.config)
        store = JournalStore(
            make_engine(settings.database_url.get_secret_value(), schema_name=settings.database_schema)
        )
        try:
            report = await verify_store(store, trusted, heads, proofs)
        finally:
            await store.close()
    print(report.summary())
    return 0 if report.ok else 1


async def _export(args: argparse.Namespace) -> int:
    settings = AuditSettings.load(args.config)
    nc = await connect(settings.nats, "vigie-audit-export")
    publisher = AuditPublisher(
        "audit", JetStreamAuditSink(nc.jetstream(), settings.audit.publish_timeout_s), settings=settings.audit
    )
    await publisher.start()
    store = await JournalStore.open(
        settings.database_url.get_secret_value(), schema_name=settings.database_schema
    )
    try:
        size = await store.tree_size() if args.tree_size is None else args.tree_size
        # Recorded (and stored by the stream) before any byte of the journal leaves.
        await publisher.record(
            AuditAction.AUDIT_ACTION_AUDIT_EXPORT,
            actor=args.actor,
            motive=args.motive,
            records=[("audit_entries", f"0-{size - 1}")] if size else [],
            details={"tree_size": str(size), "file": args.out.name},
            confirm=True,
        )
        written = await export_journal(store, args.out, size, settings.log_id)
    except AuditUnavailableError as error:
        raise SystemExit(
            f"error: the export cannot be recorded in the journal, nothing exported: {error}"
        ) from None
    finally:
        await store.close()
        await publisher.close()
        await nc.drain()
    print(f"exported {written} entries to {args.out}")
    return 0


async def _migrate(args: argparse.Namespace) -> int:
    settings = AuditSettings.load(args.config)
    engine = make_engine(settings.database_url.get_secret_value(), schema_name=settings.database_schema)
    try:
        await migrate(engine, "vigie_audit")
    finally:
        await engine.dispose()
    print("the journal's tables are up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vigie_audit", description="the Vigie audit journal")
    parser.add_argument("--config", type=Path, help="TOML settings file (the environment overrides it)")
    # Also accepted after the command; SUPPRESS keeps a value given before it.
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", parents=[config], help="run the audit service (the default)")
    commands.add_parser("migrate", parents=[config], help="create or update the journal's tables")
    export = commands.add_parser("export", parents=[config], help="write the journal to a JSON lines file")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--actor", required=True, help="your pseudonymous operator id (recorded)")
    export.add_argument("--motive", required=True, help="why you export the journal (recorded)")
    export.add_argument("--tree-size", type=int, help="export the first N entries (default: all)")
    verify = commands.add_parser(
        "verify", parents=[config], help="recompute the tree and check it; names the first bad index"
    )
    verify.add_argument(
        "--export", type=Path, help="check this export file instead of the database (offline)"
    )
    verify.add_argument("--public-key", help="the journal's public key (PEM or base64, or a file): pin it")
    verify.add_argument(
        "--tree-head", type=Path, action="append", default=[], help="a signed tree head you saved"
    )
    verify.add_argument("--proof", type=Path, action="append", default=[], help="a proof you saved (JSON)")
    args = parser.parse_args(argv)
    if args.command in (None, "serve"):
        from vigie_audit.service import serve as serve_body

        run_service("audit", AuditSettings.load(args.config), serve_body)
        return 0
    configure_logging(os.environ.get("VIGIE_AUDIT_LOG_LEVEL", "WARNING"))
    command = {"migrate": _migrate, "export": _export, "verify": _verify}[args.command]
    return asyncio.run(command(args))
