"""A NATS key-value bucket of per-camera entries, read whole and then followed: the loop behind the
policy watcher (``vigie-policy``, :mod:`vigie_core.policy`) and ingest's sources watcher (``vigie-sources``).

The buckets live in the registry's NATS account (:mod:`vigie_core.accounts`). A reader in another account
creates no consumer there (a push consumer's deliver subject would be a subject of the registry's account,
chosen by the reader: a confused deputy). It reads through :class:`NatsBucket`, which needs two imports:

- **entries by direct get**: ``<api>.DIRECT.GET.KV_<bucket>`` in batches for the whole bucket, one key at a
  time after a change (the server sends the reply back to the requester's account alone);
- **changes by notification**: the bucket's stream announces each write it stores on
  ``vigie.kv.<bucket>.<key>``, headers only (no value), imported one way. A notification only says which
  key changed; the entry is then got from the bucket.

A :class:`KeyValueWatcher` reads every entry of its bucket, then applies each change as it comes, and keeps
the result in memory as a *view* (key: the camera id; value: what the subclass's ``_decode`` makes of the
entry's bytes, a protobuf message or whatever stands for an entry it refuses). What it guarantees:

- **One consistent view.** Notifications are listened to before the bucket is read, so nothing written
  during the read is missed. The initial read fills a separate snapshot; the view is replaced by it as a
  whole at the end of the read, never half-read. After a lost watch the old view stays until the bucket has
  been read again, then is replaced (keys deleted meanwhile disappear then).
- **It says when it may be stale.** :meth:`~KeyValueWatcher.problem` is None only while the bucket is read
  and watched on the current connection: not before the first read, not while NATS is disconnected, not
  after a reconnection until the bucket is read again (notifications may have been missed). What to do
  meanwhile (fail closed, or keep the last view) is the user's business.
- **It retries for ever.** A missing bucket, a lost connection or a failed read ends the watch; it is
  started again every ``retry_s``, counted in ``watch_failures`` and logged (each loss of a synced view,
  then the 1st, 10th and every 100th failure in a row).
- **Waiting for changes.** :attr:`~KeyValueWatcher.generation` goes up at every change of the view and
  :meth:`~KeyValueWatcher.wait_until` waits for a condition, checked at every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

from prometheus_client import Counter, Gauge

from vigie_core.streams import bucket_notifications
from vigie_core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = [
    "BucketEntry",
    "BucketMissingError",
    "KeyValueWatcher",
    "NatsBucket",
    "WatchMetrics",
    "WatchedBucket",
]

T = TypeVar("T")

_KV_DELETE_OPERATIONS = frozenset({"DEL", "PURGE"})
# Entries asked for in one direct-get batch.
_BATCH = 256


class WatchMetrics(Protocol):
    """The metrics the watcher keeps, named by its user (``vigie_policy_synced``, …)."""

    synced: Gauge  # 1 while problem() is None (as last known to the watch), else 0
    watch_failures: Counter  # watches lost or that could not start


@dataclass(frozen=True, slots=True)
class BucketEntry:
    """One stored revision of a key: its value, or a delete marker (``deleted``)."""

    key: str
    value: bytes
    revision: int
    deleted: bool = False


class BucketMissingError(Exception):
    """The bucket does not exist (yet): nothing answers its direct gets."""


class WatchedBucket(Protocol):
    """What the watcher needs of a bucket: :class:`NatsBucket`, or an in-memory one in unit tests."""

    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    async def listen(self, changed: Callable[[str], None]) -> Callable[[], object]:
        """Call ``changed(key)`` for every key written from now on; returns what stops listening."""

    async def read_all(self) -> list[BucketEntry]:
        """Every stored revision, oldest first (:class:`BucketMissingError` when there is no bucket)."""

    async def get(self, key: str) -> BucketEntry | None:
        """The key's last revision; None when it has none (never written, or purged)."""


class _WatchLostError(Exception):
    """The watch no longer reflects the bucket (disconnected, reconnected, bucket missing)."""


class NatsBucket:
    """A bucket read over NATS with direct gets under ``api`` (``$JS.API`` in its own account,
    ``$JS.REGISTRY.API`` from another, :func:`vigie_core.permissions.api_prefix`) and followed through its
    notifications (:func:`vigie_core.streams.bucket_notifications`)."""

    def __init__(self, nc: Client, bucket: str, api: str, *, timeout_s: float = 5.0) -> None:
        self._nc = nc
        self.bucket = bucket
        self._api = api
        self._stream = f"KV_{bucket}"
        self._prefix = f"$KV.{bucket}."
        self._notifications = f"{bucket_notifications(bucket)}."
        self._timeout_s = timeout_s

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    @property
    def reconnects(self) -> int:
        return int(self._nc.stats["reconnects"])

    async def listen(self, changed: Callable[[str], None]) -> Callable[[], object]:
        async def notified(message: Msg) -> None:
            changed(message.subject.removeprefix(self._notifications))

        subscription = await self._nc.subscribe(f"{self._notifications}>", cb=notified)
        await self._nc.flush(max(1, round(self._timeout_s)))  # listening before the bucket is read
        return subscription.unsubscribe

    async def read_all(self) -> list[BucketEntry]:
        entries: list[BucketEntry] = []
        sequence = 1
        while True:
            batch, more = await self._batch(sequence)
            entries += batch
            if not more or not batch:
                return entries
            sequence = batch[-1].revision + 1

    async def _batch(self, sequence: int) -> tuple[list[BucketEntry], bool]:
        """The entries stored from ``sequence`` on (at most a batch), and whether more follow."""
        from nats.errors import TimeoutError as NatsTimeoutError

        inbox = self._nc.new_inbox()
        subscription = await self._nc.subscribe(inbox)
        try:
            request = {"seq": sequence, "next_by_subj": f"{self._prefix}>", "batch": _BATCH}
            await self._nc.publish(
                f"{self._api}.DIRECT.GET.{self._stream}", json.dumps(request).encode(), reply=inbox
            )
            entries: list[BucketEntry] = []
            while True:
                try:
                    message = await subscription.next_msg(timeout=self._timeout_s)
                except NatsTimeoutError:
                    raise BucketMissingError(
                        f"no answer from the bucket's stream {self._stream} (missing, or not readable here)"
                    ) from None
                status = (message.headers or {}).get("Status")
                if status == "503":  # no responders: the stream does not exist
                    raise BucketMissingError(
                        f"the bucket does not exist yet (the provisioner creates {self.bucket})"
                    )
                if status == "404":
                    return entries, False
                if status is not None:  # 204: the end of the batch
                    return entries, int((message.headers or {}).get("Nats-Num-Pending", "0")) > 0
                entries.append(self._entry(message))
        finally:
            await subscription.unsubscribe()

    async def get(self, key: str) -> BucketEntry | None:
        from nats.errors import NoRespondersError

        try:
            message = await self._nc.request(
                f"{self._api}.DIRECT.GET.{self._stream}.{self._prefix}{key}", b"", timeout=self._timeout_s
            )
        except NoRespondersError:
            raise BucketMissingError(
                f"the bucket does not exist yet (the provisioner creates {self.bucket})"
            ) from None
        status = (message.headers or {}).get("Status")
        if status == "404":
            return None
        if status is not None:
            raise RuntimeError(f"direct get of {key!r} in {self._stream}: status {status}")
        return self._entry(message)

    def _entry(self, message: Msg) -> BucketEntry:
        headers = message.headers or {}
        return BucketEntry(
            key=headers.get("Nats-Subject", "").removeprefix(self._prefix),
            value=message.data,
            revision=int(headers.get("Nats-Sequence", "0")),
            deleted=headers.get("KV-Operation") in _KV_DELETE_OPERATIONS,
        )


class KeyValueWatcher(ABC, Generic[T]):
    """Reads and watches one bucket; see the module's doc. A subclass says how to read an entry
    (:meth:`_decode`) and names itself in the class attributes below."""

    # How messages name the bucket ("policy bucket"); what happens while it cannot be read (said in the log
    # line of a lost watch); where to log.
    _subject: ClassVar[str]
    _while_lost: ClassVar[str]
    _logger: ClassVar[logging.Logger]

    def __init__(
        self, bucket: WatchedBucket, name: str, metrics: WatchMetrics, *, retry_s: float, check_s: float
    ) -> None:
        self._source = bucket
        self._bucket = name
        self._watch_metrics = metrics
        self._retry_s = retry_s
        self._check_s = check_s
        self._view: dict[str, T] | None = None
        self._synced = False
        self._watch_reconnects = -1
        self._problem: str | None = f"the {self._subject} has not been read yet"
        self._task: asyncio.Task[None] | None = None
        self._changes = asyncio.Condition()
        # Bumped at every change of the view: a follower applies each generation once.
        self.generation = 0

    # -- what the subclass says -------------------------------------------------------------------------

    @abstractmethod
    def _decode(self, key: str, value: bytes, revision: int) -> T:
        """The view's value for an entry put under ``key``. An exception other than the subclass's own
        (which it turns into a value) ends the watch, which is then started again."""

    def _entry_read(self, key: str, before: T | None, after: T | None, *, live: bool) -> None:
        """After each entry read (``after`` None: deleted); ``live``: a change after the initial read."""

    def _view_changed(self) -> None:
        """After each change of the view (the initial read, then each live change): metrics."""

    # -- what users ask ---------------------------------------------------------------------------------

    def problem(self) -> str | None:
        """None while the bucket is read and watched; otherwise why not (the view may be stale or absent)."""
        if not self._source.connected:
            return f"not connected to NATS: the {self._subject} cannot be read"
        if self._synced and self._source.reconnects != self._watch_reconnects:
            return f"reconnected to NATS: reading the {self._subject} again"
        if not self._synced:
            return self._problem or f"reading the {self._subject}"
        return None

    def entries(self) -> Mapping[str, T] | None:
        """A copy of the last complete view, None before the bucket was first read."""
        return None if self._view is None else dict(self._view)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, checked at every change (TimeoutError after ``timeout_s``)."""

        async def wait() -> None:
            async with self._changes:
                while not predicate():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changes.wait(), self._check_s)

        await asyncio.wait_for(wait(), timeout_s)

    # -- the watch --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start watching in the background; returns at once."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"kv-watcher-{self._bucket}")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._set_unsynced("stopped")

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # anything: the loop retries, problem() says so meanwhile
                failures += 1
                self._watch_metrics.watch_failures.inc()
                reason = (
                    str(error)
                    if isinstance(error, _WatchLostError | BucketMissingError)
                    else f"{type(error).__name__}: {error}"
                )
                was_synced = self._synced
                self._set_unsynced(reason)
                log = (
                    self._logger.warning
                    if was_synced or failures in (1, 10) or failures % 100 == 0
                    else self._logger.debug
                )
                log("%s %s: %s; %s", self._subject, self._bucket, reason, self._while_lost)
            await self._pause_before_retry()

    async def _pause_before_retry(self) -> None:
        """``retry_s``, or less when the connection was lost: it is read again as soon as the connection is
        back (a broker restart then costs the services no more than the restart itself)."""
        lost = not self._source.connected
        deadline = asyncio.get_running_loop().time() + self._retry_s
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(min(self._check_s, self._retry_s))
            if lost and self._source.connected:
                return

    async def _watch(self) -> None:
        source = self._source
        if not source.connected:
            raise _WatchLostError("not connected to NATS")
        reconnects = source.reconnects
        changed: asyncio.Queue[str] = asyncio.Queue()
        stop_listening = await source.listen(changed.put_nowait)
        try:
            # The bucket keeps a few revisions of each key: only the last one counts.
            last = {entry.key: entry for entry in await source.read_all()}
            snapshot: dict[str, T] = {}
            for key, entry in last.items():
                self._apply(snapshot, key, entry, live=False)
            await self._read_whole(snapshot, reconnects)
            while True:
                try:
                    key = await asyncio.wait_for(changed.get(), self._check_s)
                except TimeoutError:
                    if not source.connected or source.reconnects != reconnects:
                        raise _WatchLostError("the connection to NATS was lost") from None
                    continue
                assert self._view is not None
                self._apply(self._view, key, await source.get(key), live=True)
                await self._notify()
        finally:
            with contextlib.suppress(Exception):
                await _maybe_await(stop_listening())

    def _apply(self, target: dict[str, T], key: str, entry: BucketEntry | None, *, live: bool) -> None:
        before = target.get(key)
        if entry is None or entry.deleted:
            target.pop(key, None)
            self._entry_read(key, before, None, live=live)
            return
        after = self._decode(key, entry.value, entry.revision)
        target[key] = after
        self._entry_read(key, before, after, live=live)

    async def _read_whole(self, snapshot: dict[str, T], reconnects: int) -> None:
        self._view = snapshot
        self._watch_reconnects = reconnects
        self._synced = True
        self._problem = None
        self._logger.info("%s %s read: %d camera(s)", self._subject, self._bucket, len(snapshot))
        await self._notify()

    def _set_unsynced(self, reason: str) -> None:
        self._synced = False
        self._problem = reason
        self._watch_metrics.synced.set(0)

    async def _notify(self) -> None:
        self.generation += 1
        self._watch_metrics.synced.set(1 if self._synced else 0)
        self._view_changed()
        async with self._changes:
            self._changes.notify_all()


async def _maybe_await(result: object) -> None:
    if asyncio.iscoroutine(result):
        await result
