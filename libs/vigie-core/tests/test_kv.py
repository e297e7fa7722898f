"""The watch of a key-value bucket, against an in-memory bucket: the view is read whole and then followed,
stays as it was while the bucket cannot be read, is replaced as a whole once it is read again, and the
watch is retried for ever. The policy and sources watchers test the same loop on a real nats-server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import BucketNotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge

from vigie_core.kv import KeyValueWatcher

BUCKET = "vigie-words"


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes | None
    revision: int
    operation: str | None = None


@dataclass
class Watch:
    """The updates of ``KeyValue.watchall()``: the initial read, ``None``, then the live changes."""

    queue: asyncio.Queue[Entry | None] = field(default_factory=asyncio.Queue)
    stopped: bool = False

    async def updates(self, timeout: float) -> Entry | None:  # noqa: ASYNC109 (nats.py's signature)
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise NatsTimeoutError from None

    async def stop(self) -> None:
        self.stopped = True


@dataclass
class Bucket:
    entries: dict[str, Entry] = field(default_factory=dict)
    watches: list[Watch] = field(default_factory=list)
    revision: int = 0

    async def watchall(self) -> Watch:
        watch = Watch()
        for entry in self.entries.values():
            watch.queue.put_nowait(entry)
        watch.queue.put_nowait(None)
        self.watches.append(watch)
        return watch

    def put(self, key: str, value: bytes, *, seen: bool = True) -> None:
        self._write(Entry(key, value, self._next()), seen)

    def delete(self, key: str, *, seen: bool = True) -> None:
        self._write(Entry(key, None, self._next(), "DEL"), seen)

    def _next(self) -> int:
        self.revision += 1
        return self.revision

    def _write(self, entry: Entry, seen: bool) -> None:
        # seen=False: a change the watch misses (made while this client was disconnected).
        self.entries[entry.key] = entry
        if seen:
            for watch in self.watches:
                if not watch.stopped:
                    watch.queue.put_nowait(entry)


class Nats:
    """What the watcher uses of a NATS client: connected or not, reconnections, its buckets."""

    def __init__(self) -> None:
        self.is_connected = True
        self.stats = {"reconnects": 0}
        self.buckets: dict[str, Bucket] = {}

    def jetstream(self) -> Nats:
        return self

    async def key_value(self, bucket: str) -> Bucket:
        if bucket not in self.buckets:
            raise BucketNotFoundError
        return self.buckets[bucket]


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.synced = Gauge("test_words_synced", "synced", registry=registry)
        self.watch_failures = Counter("test_words_watch_failures", "failures", registry=registry)


class Words(KeyValueWatcher[str]):
    """A watcher of text entries; ``bad`` does not decode, ``boom`` breaks the watch."""

    _subject = "words bucket"
    _while_lost = "the words stay as they are"
    _logger = logging.getLogger("test.kv")

    def __init__(self, nc: Nats, registry: CollectorRegistry) -> None:
        super().__init__(cast(Client, nc), BUCKET, Metrics(registry), retry_s=0.01, check_s=0.01)
        self.read: list[tuple[str, str | None, str | None, bool]] = []

    def _decode(self, key: str, value: bytes, revision: int) -> str:
        if value == b"boom":
            raise RuntimeError("a bug")
        return "?" if value == b"bad" else f"{value.decode()}@{revision}"

    def _entry_read(self, key: str, before: str | None, after: str | None, *, live: bool) -> None:
        self.read.append((key, before, after, live))


@dataclass
class Setup:
    nc: Nats
    watcher: Words
    registry: CollectorRegistry

    def metric(self, name: str) -> float:
        return self.registry.get_sample_value(name) or 0.0

    def bucket(self) -> Bucket:
        return self.nc.buckets.setdefault(BUCKET, Bucket())


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    nc, registry = Nats(), CollectorRegistry()
    watcher = Words(nc, registry)
    await watcher.start()
    try:
        yield Setup(nc, watcher, registry)
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

    setup.nc.is_connected = False
    assert watcher.problem() == "not connected to NATS: the words bucket cannot be read"
    bucket.delete("a", seen=False)
    bucket.put("c", b"three", seen=False)
    await watcher.wait_until(lambda: setup.metric("test_words_synced") == 0, 2)
    assert view(setup) == {"a": "one@1", "b": "two@2"}, "the last view stays"
    assert "words bucket vigie-words: the connection to NATS was lost; the words stay as they are" in (
        caplog.text
    )

    setup.nc.stats["reconnects"] += 1
    setup.nc.is_connected = True
    await watcher.wait_until(lambda: watcher.problem() is None, 2)
    assert view(setup) == {"b": "two@2", "c": "three@4"}, "replaced as a whole"
    assert setup.metric("test_words_synced") == 1
    assert all(watch.stopped for watch in bucket.watches[:-1])


async def test_a_reconnection_is_not_trusted_until_the_bucket_is_read_again(setup: Setup) -> None:
    watcher, bucket = setup.watcher, setup.bucket()
    await watcher.wait_until(lambda: watcher.problem() is None, 2)
    setup.nc.stats["reconnects"] += 1  # the watch may have missed changes meanwhile
    assert watcher.problem() == "reconnected to NATS: reading the words bucket again"
    await watcher.wait_until(lambda: len(bucket.watches) == 2 and watcher.problem() is None, 2)


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
    assert bucket.watches[-1].stopped
    with pytest.raises(TimeoutError):
        await watcher.wait_until(lambda: False, 0.05)
