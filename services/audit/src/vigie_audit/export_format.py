"""The journal's offline export: JSON lines, one canonical JSON object per line.

::

    {"format":"vigie-audit-export/v1","log_id":"...","tree_size":N,"type":"header"}
    {"index":0,"leaf":"<base64 of the leaf bytes>","leaf_hash":"<hex>","type":"entry"}
    {"index":1,"leaf":null,"leaf_hash":"<hex>","type":"entry"}        (pruned by retention)
    ...
    {"type":"tree_head", ...every signed tree head, as the API returns them...}

Canonical means sorted keys, no spaces, ASCII only, lowercase hex and padded base64: one content has
one spelling, so the reader refuses any line that is not exactly how the exporter writes it. A changed
byte anywhere in an entry's line is therefore reported at that entry, whatever the byte was.

Pure: no database, network or web code.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vigie_audit.merkle import HASH_SIZE
from vigie_audit.tree_head import SignedTreeHead, TreeHeadError
from vigie_audit.verification import Finding, LeafRecord

FORMAT = "vigie-audit-export/v1"


def canonical_line(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def header_line(log_id: str, tree_size: int) -> bytes:
    return canonical_line({"type": "header", "format": FORMAT, "log_id": log_id, "tree_size": tree_size})


def entry_line(index: int, leaf: bytes | None, leaf_hash: bytes) -> bytes:
    # What canonical_line gives for these four keys (base64 and hex need no escaping), spelt out
    # because the verifier re-encodes every entry it reads.
    encoded = b'"' + base64.b64encode(leaf) + b'"' if leaf is not None else b"null"
    return b'{"index":%d,"leaf":%s,"leaf_hash":"%s","type":"entry"}\n' % (
        index,
        encoded,
        leaf_hash.hex().encode(),
    )


def tree_head_line(signed: SignedTreeHead) -> bytes:
    return canonical_line({"type": "tree_head", **signed.to_json()})


class ExportFormatError(ValueError):
    """The export cannot be read at all (e.g. no header)."""


@dataclass(slots=True)
class ExportReader:
    """Reads an export line by line: entries (or findings where a line is garbled), then tree heads."""

    header_tree_size: int | None = None
    log_id: str | None = None
    tree_heads: list[SignedTreeHead] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)
    _entries: int = 0

    def entries(self, lines: Iterable[bytes]) -> Iterator[LeafRecord | Finding]:
        """Yield each entry line as a record, or a finding naming its position; collect the rest."""
        iterator = iter(lines)
        first = next(iterator, b"")
        self._read_header(first)
        in_entries = True
        for number, raw in enumerate(iterator, start=2):
            line = raw if raw.endswith(b"\n") else raw + b"\n"
            document = _parse(line)
            if self.header_tree_size is not None:
                # The header says how many entry lines follow, so a garbled line is placed by position.
                in_entries = self._entries < self.header_tree_size
            else:
                in_entries = in_entries and not (
                    isinstance(document, dict) and document.get("type") == "tree_head"
                )
            if in_entries:
                position = self._entries
                self._entries += 1
                yield self._entry(line, document, position)
                continue
            self._read_tree_head(line, document, number)
        if self.header_tree_size is not None and self._entries < self.header_tree_size:
            yield Finding(
                self._entries,
                f"the export ends after {self._entries} entries "
                f"but its header announces {self.header_tree_size}",
            )

    def _read_header(self, line: bytes) -> None:
        document = _parse(line)
        if not isinstance(document, dict) or document.get("type") != "header":
            raise ExportFormatError("line 1 is not an export header: is this a vigie-audit export?")
        if document.get("format") != FORMAT:
            raise ExportFormatError(f"format {document.get('format')!r} is not {FORMAT!r}")
        size, log_id = document.get("tree_size"), document.get("log_id")
        if not isinstance(size, int) or not isinstance(log_id, str) or canonical_line(document) != line:
            self.problems.append(Finding(None, "line 1: the header is not in canonical form"))
            return
        self.header_tree_size, self.log_id = size, log_id

    def _entry(self, line: bytes, document: object, position: int) -> LeafRecord | Finding:
        if not isinstance(document, dict):
            return Finding(position, f"the line of entry {position} is not a JSON object")
        if document.get("type") != "entry" or set(document) != {"type", "index", "leaf", "leaf_hash"}:
            return Finding(position, f"the line of entry {position} is not an entry line")
        index, leaf_text, hash_text = document["index"], document["leaf"], document["leaf_hash"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            return Finding(position, f"the line of entry {position} has no valid index")
        try:
            leaf = base64.b64decode(leaf_text, validate=True) if isinstance(leaf_text, str) else None
            hash_value = bytes.fromhex(hash_text) if isinstance(hash_text, str) else b""
        except (binascii.Error, ValueError):
            return Finding(position, f"the line of entry {position} has a leaf or hash that does not decode")
        if (leaf_text is not None and leaf is None) or len(hash_value) != HASH_SIZE:
            return Finding(position, f"the line of entry {position} has a malformed leaf or leaf hash")
        if entry_line(index, leaf, hash_value) != line:
            return Finding(position, f"the line of entry {position} is not in canonical form (altered)")
        return LeafRecord(index=index, leaf=leaf, leaf_hash=hash_value)

    def _read_tree_head(self, line: bytes, document: object, number: int) -> None:
        if not isinstance(document, dict) or document.get("type") != "tree_head":
            self.problems.append(
                Finding(None, f"line {number}: expected a signed tree head after the entries")
            )
            return
        try:
            signed = SignedTreeHead.from_json({k: v for k, v in document.items() if k != "type"})
        except TreeHeadError as error:
            self.problems.append(Finding(None, f"line {number}: {error}"))
            return
        if tree_head_line(signed) != line:
            self.problems.append(
                Finding(None, f"line {number}: the tree head is not in canonical form (altered)")
            )
            return
        self.tree_heads.append(signed)


def _parse(line: bytes) -> object:
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
