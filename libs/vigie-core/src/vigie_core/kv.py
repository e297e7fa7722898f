"""A NATS key-value bucket of per-camera entries, read whole and then followed: the loop behind the
policy watcher (``vigie-policy``, :mod:`vigie_core.policy`) and ingest's sources watcher (``vigie-sources``).

A :class:`KeyValueWatcher` reads every entry of its bucket, then applies each change as it comes, and keeps
the result in memory as a *view* (key: the camera id; value: what the subclass's ``_decode`` makes of the
entry's bytes, a protobuf message or whatever stands for an entry it refuses). What it guarantees:

- **One consistent view.** The initial read fills a separate snapshot; the view is replaced by it as a whole
  at the end of the read, never half-read. After a lost watch the old view stays until the bucket has been
  read again, then is replaced (keys deleted meanwhile disappear then).
- **It says when it may be stale.** :meth:`~KeyValueWatcher.problem` is None only while the bucket is read
  and watched on the current connection: not before the first read, not while NATS is disconnected, not
  after a reconnection until the bucket is read again (the watch may have missed changes). What to do
  meanwhile (fail closed, or keep the last view) is the user's business.
- **It retries for ever.** A missing bucket, a lost connection or a stopped watch ends the watch; it is
  started again every ``retry_s``, counted in ``watch_failures`` and logged (each loss of a synced view,
  then the 1st, 10th and every 100th failure in a row).
- **Waiting for changes.** :attr:`~KeyValueWatcher.generation` goes up at every change of the view and
  :meth:`~KeyValueWatcher.wait_until` waits for a condition, checked at every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["KeyValueWatcher", "WatchMetrics"]

T = TypeVar("T")

_KV_DELETE_OPERATIONS = frozenset({"DEL", "PURGE"})


class WatchMetrics(Protocol):
    """The metrics the watcher keeps, named by its user (``vigie_policy_synced``, …)."""

    synced: Gauge  # 1 while problem() is None (as last known to the watch), else 0
    watch_failures: Counter  # watches lost or that could not start


class _WatchLostError(Exception):
    """The watch no longer reflects the bucket (disconnected, reconnected, bucket missing)."""


class KeyValueWatcher(ABC, Generic[T]):
    """Reads and watches one bucket; see the module's doc. A subclass says how to read an entry
    (:meth:`_decode`) and names itself in the class attributes below."""

    # How messages name the bucket ("policy bucket"); what happens while it cannot be read (said in the log
    # line of a lost watch); where to log.
    _subject: ClassVar[str]
    _while_lost: ClassVar[str]
    _logger: ClassVar[logging.Logger]

    def __init__(
        self, nc: Client, bucket: str, metrics: WatchMetrics, *, retry_s: float, check_s: float
    ) -> None:
        self._nc = nc
        self._bucket = bucket
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
        if not self._nc.is_connected:
            return f"not connected to NATS: the {self._subject} cannot be read"
        if self._synced and self._nc.stats["reconnects"] != self._watch_reconnects:
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
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
                    str(error) if isinstance(error, _WatchLostError) else f"{type(error).__name__}: {error}"
                )
                was_synced = self._synced
                self._set_unsynced(reason)
                log = (
                    self._logger.warning
                    if was_synced or failures in (1, 10) or failures % 100 == 0
                    else self._logger.debug
                )
                log("%s %s: %s; %s", self._subject, self._bucket, reason, self._while_lost)
            await asyncio.sleep(self._retry_s)

    async def _watch(self) -> None:
        from nats.errors import TimeoutError as NatsTimeoutError
        from nats.js.errors import BucketNotFoundError
        from nats.js.kv import StopIterSentinel

        if not self._nc.is_connected:
            raise _WatchLostError("not connected to NATS")
        reconnects = self._nc.stats["reconnects"]
        try:
            kv = await self._nc.jetstream().key_value(self._bucket)
        except BucketNotFoundError:
            raise _WatchLostError("the bucket does not exist yet (the registry creates it)") from None
        watch = await kv.watchall()
        snapshot: dict[str, T] | None = {}  # the initial read, until its end
        try:
            while True:
                try:
                    entry = await watch.updates(timeout=self._check_s)  # type: ignore[no-untyped-call]
                except NatsTimeoutError:
                    if not self._nc.is_connected or self._nc.stats["reconnects"] != reconnects:
                        raise _WatchLostError("the connection to NATS was lost") from None
                    continue
                if isinstance(entry, StopIterSentinel):
                    raise _WatchLostError("the watch stopped")
                if entry is None:  # the end of the initial read
                    if snapshot is not None:
                        await self._read_whole(snapshot, reconnects)
                        snapshot = None
                    continue
                live = snapshot is None
                target = self._view if snapshot is None else snapshot
                assert target is not None  # a live change comes after the initial read
                self._apply(target, entry.key, entry.value, entry.revision or 0, entry.operation, live=live)
                if live:
                    await self._notify()
        finally:
            with contextlib.suppress(Exception):
                await watch.stop()  # type: ignore[no-untyped-call]

    def _apply(
        self,
        target: dict[str, T],
        key: str,
        value: bytes | None,
        revision: int,
        operation: str | None,
        *,
        live: bool,
    ) -> None:
        before = target.get(key)
        if operation in _KV_DELETE_OPERATIONS:
            target.pop(key, None)
            self._entry_read(key, before, None, live=live)
            return
        after = self._decode(key, value or b"", revision)
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
