"""Faults injected into the embedded platform while it counts the sample film, and what they cost.

A run plays the film as a live camera (``PlatformOptions.realtime``), applies each `Fault` at its moment
(seconds after ingest opened the film), waits until every service is ready again and the stored figures no
longer change, and reads what the aggregation stored: crossings by line and direction, covered seconds and
frames (`FilmCounts`). Compared with a run without faults (`compare`), a fault may cost coverage (frames
that could not be analysed: the camera's own data lost while the broker was away, frames that expired
while the model server restarted), never a count twice, and never a count without the coverage to show
for it.

What a fault does:

- ``kill <service>``, ``kill tritonserver``: SIGKILL (the process group), then started again at once, as
  Kubernetes restarts a container;
- ``kill nats-server``: SIGKILL and started again on the same ports and storage, provisioned again (the
  chart's reconciling CronJob does this in a cluster); ``restart nats-server``: the same, gracefully;
- ``outage postgresql``: the statistics and audit databases (PostgreSQL, through a `TcpProxy`) are cut for
  ``duration_s`` (open connections reset, new ones refused), then restored.

`e2e/test_chaos.py` runs a few faults in ``make test``; ``bench/chaos.py`` runs many at random.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from vigie_embedded.platform import (
    CAMERA_ID,
    EmbeddedPlatform,
    PlatformFailedError,
    PlatformOptions,
    film_duration_s,
    scrape,
)
from vigie_embedded.proxy import TcpProxy

__all__ = [
    "KILLABLE",
    "ChaosRun",
    "Fault",
    "FilmCounts",
    "compare",
    "postgres_databases",
    "random_faults",
    "run_film",
]

SERVICES = ("ingest", "inference", "anonymiser", "aggregation", "registry", "audit")
# Every process a chaos run may kill.
KILLABLE = (*SERVICES, "tritonserver", "nats-server")
# The stored figures must stay the same this long before a run is over (longer than the anonymiser's wait
# for its predecessor's unacknowledged messages, 10 s).
SETTLE_S = 15.0


@dataclass(frozen=True)
class Fault:
    at_s: float  # after ingest opened the film
    action: str  # "kill", "restart" (nats-server, gracefully) or "outage" (postgresql)
    target: str
    duration_s: float = 0.0

    def __str__(self) -> str:
        lasting = f" for {self.duration_s:.0f} s" if self.duration_s else ""
        return f"{self.at_s:5.1f} s  {self.action} {self.target}{lasting}"


@dataclass(frozen=True)
class FilmCounts:
    """What the aggregation stored for the film's camera."""

    crossings: dict[tuple[str, int], int]  # (line, direction) -> count
    covered_s: float
    frames: int

    @property
    def total(self) -> int:
        return sum(self.crossings.values())


@dataclass
class ChaosRun:
    counts: FilmCounts
    applied: list[tuple[float, Fault]] = field(default_factory=list)  # when each fault really happened
    duration_s: float = 0.0


def random_faults(
    rng: random.Random,
    *,
    kills: int,
    within_s: float,
    targets: Sequence[str] = KILLABLE,
    broker_restart: bool = False,
    database_outage_s: float = 0.0,
) -> list[Fault]:
    """``kills`` SIGKILLs of processes drawn from ``targets`` at random moments of [3 s, ``within_s``],
    plus a graceful broker restart and a database outage at random moments, in time order."""
    faults = [Fault(round(rng.uniform(3.0, within_s), 1), "kill", rng.choice(targets)) for _ in range(kills)]
    if broker_restart:
        faults.append(Fault(round(rng.uniform(3.0, within_s), 1), "restart", "nats-server"))
    if database_outage_s:
        faults.append(
            Fault(round(rng.uniform(3.0, within_s / 2), 1), "outage", "postgresql", database_outage_s)
        )
    return sorted(faults, key=lambda f: f.at_s)


@contextmanager
def postgres_databases(url: str, names: Sequence[str]) -> Iterator[dict[str, str]]:
    """Fresh databases on the PostgreSQL server of ``url`` (SQLAlchemy, asyncpg), one per name, dropped
    afterwards; their URLs by name."""
    import asyncpg  # the driver the services use with PostgreSQL

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    base, _, _ = url.rpartition("/")
    created = {name: f"vigie_chaos_{name}_{uuid.uuid4().hex[:8]}" for name in names}

    async def each(statement: str) -> None:
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            for database in created.values():
                await connection.execute(statement.format(database))
        finally:
            await connection.close()

    asyncio.run(each('CREATE DATABASE "{}"'))
    try:
        yield {name: f"{base}/{database}" for name, database in created.items()}
    finally:
        asyncio.run(each('DROP DATABASE IF EXISTS "{}" WITH (FORCE)'))


def read_counts(database_url: str, camera_id: str = CAMERA_ID) -> FilmCounts:
    """The crossings, coverage and frames the aggregation stored for ``camera_id``."""

    async def read() -> FilmCounts:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text(
                        "SELECT line_id, direction, SUM(count) FROM crossing_buckets "
                        "WHERE camera_id = :camera GROUP BY line_id, direction"
                    ),
                    {"camera": camera_id},
                )
                crossings = {(str(line), int(direction)): int(n) for line, direction, n in rows}
                covered, frames = (
                    await connection.execute(
                        text(
                            "SELECT COALESCE(SUM(covered_seconds), 0), COALESCE(SUM(frames), 0) "
                            "FROM camera_windows WHERE camera_id = :camera"
                        ),
                        {"camera": camera_id},
                    )
                ).one()
        finally:
            await engine.dispose()
        return FilmCounts(crossings, round(float(covered), 1), int(frames))

    return asyncio.run(read())


class _Injector:
    """Applies faults to a running platform; an outage ends by itself, in a timer thread."""

    def __init__(self, platform: EmbeddedPlatform, proxy: TcpProxy | None) -> None:
        self._platform = platform
        self._proxy = proxy
        self._outages: list[threading.Timer] = []

    def apply(self, fault: Fault) -> None:
        platform = self._platform
        if fault.action == "outage":
            if self._proxy is None:
                raise ValueError("a database outage needs the databases behind a proxy (postgres_url)")
            self._proxy.cut()
            timer = threading.Timer(fault.duration_s, self._proxy.restore)
            timer.start()
            self._outages.append(timer)
        elif fault.target == "nats-server":
            platform.restart_nats(kill=fault.action == "kill")
        elif fault.target == "tritonserver":
            platform.restart_triton(kill=True)
        elif fault.action == "kill" and fault.target in SERVICES:
            platform.kill(fault.target)
        else:
            raise ValueError(f"no such fault: {fault}")

    @property
    def outage(self) -> bool:
        return any(timer.is_alive() for timer in self._outages)

    def end_outages(self) -> None:
        for timer in self._outages:
            timer.cancel()
        if self._proxy is not None:
            self._proxy.restore()


def _ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _film_finished(platform: EmbeddedPlatform, client: httpx.Client) -> bool:
    try:
        samples = scrape(client, platform.urls["ingest"])
    except httpx.HTTPError:
        return False
    finished = {
        dict(labels).get("camera")
        for (metric, labels), value in samples.items()
        if metric == "vigie_ingest_camera_state" and dict(labels).get("state") == "finished" and value == 1
    }
    return set(platform.options.camera_ids) <= finished


def _opened(platform: EmbeddedPlatform, client: httpx.Client) -> bool:
    try:
        samples = scrape(client, platform.urls["ingest"])
    except httpx.HTTPError:
        return False
    return any(metric == "vigie_ingest_camera_opened_timestamp_seconds" for metric, _ in samples)


def run_film(
    options: PlatformOptions,
    faults: Sequence[Fault] = (),
    *,
    postgres_url: str | None = None,
    timeout_s: float = 900.0,
    say: Callable[[str], None] = lambda _: None,
) -> ChaosRun:
    """Count the film on a fresh platform (``options.state_dir`` must be empty) while ``faults`` happen.
    ``postgres_url``: the statistics and audit databases on that PostgreSQL server (fresh databases),
    reached through a proxy that an ``outage`` cuts; else SQLite files in the state folder."""
    if postgres_url is None:
        if any(f.action == "outage" for f in faults):
            raise ValueError("a database outage needs postgres_url")
        return _run(options, faults, None, timeout_s, say)
    with (
        postgres_databases(postgres_url, ("statistics", "audit")) as urls,
        TcpProxy.for_url(postgres_url, 5432) as proxy,
    ):
        proxied = tuple((name, proxy.redirect(url)) for name, url in urls.items())
        return _run(replace(options, databases=proxied), faults, proxy, timeout_s, say)


def _run(
    options: PlatformOptions,
    faults: Sequence[Fault],
    proxy: TcpProxy | None,
    timeout_s: float,
    say: Callable[[str], None],
) -> ChaosRun:
    started = time.monotonic()
    deadline = started + timeout_s
    film_s = film_duration_s(options.video)
    with EmbeddedPlatform(options) as platform, httpx.Client(timeout=5) as client:
        injector = _Injector(platform, proxy)
        try:
            while not _opened(platform, client):
                _check(platform, deadline, "ingest to open the film")
                time.sleep(0.2)
            opened = time.monotonic()
            applied: list[tuple[float, Fault]] = []
            for fault in sorted(faults, key=lambda f: f.at_s):
                while time.monotonic() < opened + fault.at_s:
                    _check(platform, deadline, "the next fault")
                    time.sleep(0.05)
                at = time.monotonic() - opened
                say(f"{at:6.1f} s  {fault.action} {fault.target}")
                injector.apply(fault)
                applied.append((round(at, 1), fault))
            counts = _settled(platform, client, injector, opened + film_s, deadline)
        finally:
            injector.end_outages()
    return ChaosRun(counts, applied, round(time.monotonic() - started, 1))


def _check(platform: EmbeddedPlatform, deadline: float, waiting_for: str) -> None:
    platform.check_running()
    if time.monotonic() > deadline:
        raise PlatformFailedError(f"timed out waiting for {waiting_for}")


def _settled(
    platform: EmbeddedPlatform, client: httpx.Client, injector: _Injector, film_end: float, deadline: float
) -> FilmCounts:
    """The stored figures, once the film is over, every service is ready and they stop changing."""
    database = platform.database_url("statistics")
    last: FilmCounts | None = None
    stable_since = time.monotonic()
    while True:
        _check(platform, deadline, "the figures to settle")
        time.sleep(1.0)
        if time.monotonic() < film_end or injector.outage:
            continue
        if not all(_ready(client, url) for url in platform.urls.values()):
            stable_since = time.monotonic()
            continue
        if not _film_finished(platform, client):
            stable_since = time.monotonic()
            continue
        counts = read_counts(database)
        if counts != last:
            last, stable_since = counts, time.monotonic()
        elif time.monotonic() - stable_since >= SETTLE_S:
            return counts


def compare(clean: FilmCounts, faulty: FilmCounts, tolerance_s: float = 0.5) -> list[str]:
    """What the faulty run got wrong against the clean one: a count above the clean run's (counted twice),
    coverage above it (claimed more than was analysed), or, with the same coverage, different counts
    (counts lost without the coverage saying so). Empty: right, or honestly short."""
    problems = []
    lines = set(clean.crossings) | set(faulty.crossings)
    for key in sorted(lines):
        if faulty.crossings.get(key, 0) > clean.crossings.get(key, 0):
            problems.append(
                f"line {key[0]} direction {key[1]}: {faulty.crossings.get(key, 0)} counted, "
                f"{clean.crossings.get(key, 0)} without faults (counted twice)"
            )
    if faulty.covered_s > clean.covered_s + tolerance_s:
        problems.append(f"coverage {faulty.covered_s} s, above the {clean.covered_s} s of the clean run")
    elif faulty.covered_s >= clean.covered_s - tolerance_s and Counter(faulty.crossings) != Counter(
        clean.crossings
    ):
        problems.append(
            f"{faulty.total} crossings against {clean.total} with the same coverage "
            f"({faulty.covered_s} s): a loss the coverage does not show"
        )
    return problems
