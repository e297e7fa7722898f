"""The watch of a key-value bucket, against an in-memory bucket: the view is read whole and then followed,
stays as it was while the bucket cannot be read, is replaced as a whole once it is read again, and the
watch is retried for ever. The policy and sources watchers test the same loop on a real nats-server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from vigie_core.kv import BucketEntry, BucketMissingError, KeyValueWatcher

BUCKET = "vigie-words"


@dataclass
class Bucket:
    """An in-memory bucket (:class:`~vigie_core.kv.WatchedBucket`): its history, its listeners, and a
    connection that can be lost (``connected``, ``reconnects``)."""

    history: list[BucketEntry] = field(default_factory=list)
    listeners: list[Callable[[str], None]] = field(default_factory=list)
    exists: bool = False
    connected: bool = True
    reconnects: int = 0
    revision: int = 0
    reads: int = 0

    async def listen(self, changed: Callable[[str], None]) -> Callable[[], None]:
        self.listeners.append(changed)
        return lambda: self.listeners.remove(changed)

    async def read_all(self) -> list[BucketEntry]:
        if not self.exists:
            raise BucketMissingError("the bucket does not exist yet (the registry creates it)")
        self.reads += 1
        return list(self.history)

    async def get(self, key: str) -> BucketEntry | None:
        found = [entry for entry in self.history if entry.key == key]
        return found[-1] if found else None

    def put(self, key: str, value: bytes, *, seen: bool = True) -> None:
        self._write(BucketEntry(key, value, self._next()), seen)

    def delete(self, key: str, *, seen: bool = True) -> None:
        self._write(BucketEntry(key, b"", self._next(), deleted=True), seen)

    def _next(self) -> int:
        self.revision += 1
        return self.revision

    def _write(self, entry: BucketEntry, seen: bool) -> None:
        # seen=False: a change whose notification is missed (made while this client was disconnected).
        self.exists = True
        self.history.append(entry)
        if seen:
            for changed in list(self.listeners):
                changed(entry.key)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.synced = Gauge("test_words_synced", "synced", registry=registry)
        self.watch_failures = Counter("test_words_watch_failures", "failures", registry=registry)


class Words(KeyValueWatcher[str]):
    """A watcher of text entries; ``bad`` does not decode, ``boom`` breaks the watch."""

    _subject = "words bucket"
    _while_lost = "the words stay as they are"
    _logger = logging.getLogger("test.kv")

    def __init__(self, bucket: Bucket, registry: CollectorRegistry) -> None:
        super().__init__(bucket, BUCKET, Metrics(registry), retry_s=0.01, check_s=0.01)
        self.read: list[tuple[str, str | None, str | None, bool]] = []

    def _decode(self, key: str, value: bytes, revision: int) -> str:
        if value == b"boom":
            raise RuntimeError("a bug")
        return "?" if value == b"bad" else f"{value.decode()}@{revision}"

    def _entry_read(self, key: str, before: str | None, after: str | None, *, live: bool) -> None:
        self.read.append((key, before, after, live))


@dataclass
class Setup:
    words: Bucket
    watcher: Words
    registry: CollectorRegistry

    def metric(self, name: str) -> float:
        return self.registry.get_sample_value(name) or 0.0

    def bucket(self) -> Bucket:
        """The bucket, created if it was not yet."""
        self.words.exists = True
        return self.words


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    words, registry = Bucket(), CollectorRegistry()
    watcher = Words(words, registry)
    await watcher.start()
    try:
        yield Setup(words, watcher, registry)
    finally:
        await watcher.close()


def view(setup: Setup) -> dict[str, Any] | None:
    entries = setup.watcher.entries()
    return None if entries is None else dict(entries)


async def test_the_bucket_is_read_whole_then_followed(setup: Setup) -> None:
    watcher = setup.watcher
    await watcher.wait_until(lambda: setup.metric("test_words_watch_failures_total") >= 1, 2)
    assert "does not exist" in (watcher.problem() or "")
    assert watcher.entries() is None
    assert setup.metric("test_words_synced") == 0

    bucket = setup.bucket()
    bucket.put("a", b"one")
    bucket.put("b", b"two")
    bucket.delete("b")
    bucket.put("c", b"bad")
    await watcher.wait_until(lambda: watcher.entries() is not None, 2)
    assert view(setup) == {"a": "one@1", "c": "?"}
    assert watcher.problem() is None
    assert setup.metric("test_words_synced") == 1
    assert watcher.generation == 1
    assert all(not live for *_, live in watcher.read)

    watcher.read.clear()
    bucket.put("a", b"uno")
    bucket.delete("c")
    await watcher.wait_until(lambda: watcher.generation == 3, 2)
    assert view(setup) == {"a": "uno@5"}
    assert watcher.read == [("a", "one@1", "uno@5", True), ("c", "?", None, True)]


async def test_a_lost_connection_keeps_the_view_until_the_bucket_is_read_again_whole(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, bucket = setup.watcher, setup.bucket()
    bucket.put("a", b"one")
    bucket.put("b", b"two")
    await watcher.wait_until(lambda: watcher.problem() is None, 2)

    setup.words.connected = False
    assert watcher.problem() == "not connected to NATS: the words bucket cannot be read"
    bucket.delete("a", seen=False)
    bucket.put("c", b"three", seen=False)
    await watcher.wait_until(lambda: setup.metric("test_words_synced") == 0, 2)
    assert view(setup) == {"a": "one@1", "b": "two@2"}, "the last view stays"
    assert "words bucket vigie-words: the connection to NATS was lost; the words stay as they are" in (
        caplog.text
    )

    setup.words.reconnects += 1
    setup.words.connected = True
    await watcher.wait_until(lambda: watcher.problem() is None, 2)
    assert view(setup) == {"b": "two@2", "c": "three@4"}, "replaced as a whole"
    assert setup.metric("test_words_synced") == 1
    assert len(bucket.listeners) == 1, "the lost watch stopped listening"


async def test_a_reconnection_is_not_trusted_until_the_bucket_is_read_again(setup: Setup) -> None:
    watcher, bucket = setup.watcher, setup.bucket()
    await watcher.wait_until(lambda: watcher.problem() is None, 2)
    setup.words.reconnects += 1  # the watch may have missed changes meanwhile
    assert watcher.problem() == "reconnected to NATS: reading the words bucket again"
    await watcher.wait_until(lambda: bucket.reads == 2 and watcher.problem() is None, 2)


async def test_a_failing_entry_ends_the_watch_which_is_retried(setup: Setup) -> None:
    watcher, bucket = setup.watcher, setup.bucket()
    bucket.put("a", b"one")
    await watcher.wait_until(lambda: watcher.problem() is None, 2)

    bucket.put("a", b"boom")
    await watcher.wait_until(lambda: setup.metric("test_words_watch_failures_total") >= 2, 2)
    assert watcher.problem() == "RuntimeError: a bug"
    assert view(setup) == {"a": "one@1"}

    bucket.put("a", b"fixed", seen=False)
    await watcher.wait_until(lambda: watcher.problem() is None, 2)
    assert view(setup) == {"a": "fixed@3"}


async def test_closed_it_stops_watching_and_says_so(setup: Setup) -> None:
    watcher, bucket = setup.watcher, setup.bucket()
    await watcher.wait_until(lambda: watcher.problem() is None, 2)
    await watcher.close()
    assert watcher.problem() == "stopped"
    assert setup.metric("test_words_synced") == 0
    assert bucket.listeners == []
    with pytest.raises(TimeoutError):
        await watcher.wait_until(lambda: False, 0.05)
