"""The service waits out a PostgreSQL outage, through a proxy that cuts the database off: readiness turns red
during it and green after, reports published meanwhile are stored once it is back, none is lost and none is
counted twice; so when the database is down as the service starts, and when its connections are reset in
the middle of transactions."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from pydantic import SecretStr

from vigie_aggregation.service import API_PREFIX, serve
from vigie_aggregation.settings import AggregationSettings
from vigie_aggregation.synthetic import T0, random_report
from vigie_core.auth import LocalTokenIssuer
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.proxy import TcpProxy
from vigie_embedded.testing import (
    PostgresSchema,
    connections_reset_mid_transaction,
    postgres_schema,
    running_service,
)
from vigie_proto.v1.events_pb2 import WindowReport

from .test_service import (
    CAMERAS,
    W,
    applied,
    crossing_totals,
    expected_totals,
    make_settings,
    publish,
    sample,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

BODY = functools.partial(serve, clock=lambda: float(T0))


@pytest.fixture
async def postgres() -> AsyncIterator[PostgresSchema]:
    async with postgres_schema("aggoutage") as found:
        yield found


@pytest.fixture
def proxy(postgres: PostgresSchema) -> Iterator[TcpProxy]:
    with TcpProxy.for_url(postgres.url, default_port=5432) as started:
        yield started


class Database:
    """The service's database as the service sees it (through the proxy) and as the test reads it."""

    def __init__(self, postgres: PostgresSchema, proxy: TcpProxy) -> None:
        self.url = proxy.redirect(postgres.url)
        self.schema = postgres.schema
        self.direct = PostgresSchema(postgres.url, postgres.schema)


@pytest.fixture
def settings(nats_server: EmbeddedNats, postgres: PostgresSchema, proxy: TcpProxy) -> AggregationSettings:
    return make_settings(nats_server.url, Database(postgres, proxy))


@pytest.fixture
async def js(nats_server: EmbeddedNats) -> AsyncIterator[JetStreamContext]:
    import nats

    client = await nats.connect(nats_server.url)
    try:
        yield client.jetstream()
    finally:
        await client.drain()


def direct(settings: AggregationSettings, postgres: PostgresSchema) -> AggregationSettings:
    """The same settings, the database reached without the proxy: how the test reads what was stored."""
    return settings.model_copy(update={"database_url": SecretStr(postgres.url)})


async def readiness(runtime: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{runtime.http_url}/readyz")
    body: dict[str, Any] = response.json()
    return {**body, "code": response.status_code}


async def eventually(condition: Any, timeout_s: float = 15.0, runtime: Any = None) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            shown = await readiness(runtime) if runtime is not None else ""
            raise AssertionError(f"condition not met in time {shown}")
        await asyncio.sleep(0.05)


def reports(rng: random.Random, first_window: int, windows: int) -> list[WindowReport]:
    return [
        random_report(camera, T0 + (first_window + i) * W, rng) for i in range(windows) for camera in CAMERAS
    ]


async def stored(settings: AggregationSettings, n: int) -> bool:
    try:
        return await applied(settings) >= n
    except Exception:  # the tables may not exist yet
        return False


async def test_an_outage_turns_readiness_red_and_loses_and_doubles_nothing(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    postgres: PostgresSchema,
    proxy: TcpProxy,
    settings: AggregationSettings,
) -> None:
    rng = random.Random(5)
    reader = direct(settings, postgres)
    before, during = reports(rng, 0, 4), reports(rng, 4, 4)
    async with running_service("aggregation", settings, BODY) as runtime:
        for report in before:
            await publish(js, report)
        await eventually(lambda: stored(reader, len(before)))

        async def ready() -> bool:
            return (await readiness(runtime))["code"] == 200

        await eventually(ready, runtime=runtime)

        proxy.cut()  # PostgreSQL is gone: its connections reset, new ones refused
        for report in during:
            await publish(js, report)

        async def database_red() -> bool:
            state = await readiness(runtime)
            return state["code"] == 503 and "database" in state.get("reasons", {})

        await eventually(database_red)
        await asyncio.sleep(2.0)  # the consumer fails and waits, again and again
        assert await applied(reader) == len(before)
        assert not runtime.stop_requested.is_set(), "the service kept running"
        assert (await readiness(runtime))["code"] == 503
        token = LocalTokenIssuer.from_settings(settings.auth).mint("operator-7", ["stats:read"])
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            response = await http.get(
                f"{runtime.http_url}{API_PREFIX}/crossings",
                params={"site": "centre", "from": "2023-11-15T00:00:00Z", "to": "2023-11-16T00:00:00Z"},
                headers={"X-Vigie-Motive": "outage check"},
            )
        assert (response.status_code, response.headers.get("Retry-After")) == (503, "5"), response.text

        proxy.restore()
        await eventually(lambda: stored(reader, len(before) + len(during)))
        await eventually(ready, runtime=runtime)
        # Copies JetStream cannot recognise (no Nats-Msg-Id): the database does.
        for report in before[:3] + during[:3]:
            await publish(js, report, msg_id=False)
        await asyncio.sleep(1.0)
    assert await applied(reader) == len(before) + len(during)
    assert await crossing_totals(reader) == expected_totals(before + during)


async def test_a_service_started_while_the_database_is_down_waits_for_it(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    postgres: PostgresSchema,
    proxy: TcpProxy,
    settings: AggregationSettings,
) -> None:
    rng = random.Random(6)
    reader = direct(settings, postgres)
    published = reports(rng, 0, 4)
    for report in published:
        await publish(js, report)
    proxy.cut()
    async with running_service("aggregation", settings, BODY) as runtime:

        async def waiting_for_the_database() -> bool:
            state = await readiness(runtime)
            return state["code"] == 503 and "database unreachable" in state["reasons"].get("database", "")

        await eventually(waiting_for_the_database)
        await asyncio.sleep(2.0)
        assert not runtime.stop_requested.is_set(), "the service kept waiting"
        assert (await readiness(runtime))["code"] == 503

        proxy.restore()
        await eventually(lambda: stored(reader, len(published)))

        async def ready() -> bool:
            return (await readiness(runtime))["code"] == 200

        await eventually(ready, runtime=runtime)
    assert await applied(reader) == len(published)
    assert await crossing_totals(reader) == expected_totals(published)


@pytest.fixture
def resets_mid_transaction(proxy: TcpProxy) -> Iterator[list[str]]:
    """Reset the service's connections (those through the proxy) in the middle of its transactions: before
    its first three bucket upserts, after the reports were marked applied, and before its first commit.
    Yields what was reset."""
    with connections_reset_mid_transaction(
        proxy.port, "INSERT INTO applied_reports", "INSERT INTO crossing_buckets", 3, proxy.reset
    ) as done:
        yield done


async def test_connections_reset_in_the_middle_of_transactions_lose_and_double_nothing(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    postgres: PostgresSchema,
    settings: AggregationSettings,
    resets_mid_transaction: list[str],
) -> None:
    rng = random.Random(7)
    reader = direct(settings, postgres)
    published = reports(rng, 0, 20)
    for report in published:
        await publish(js, report)
    async with running_service("aggregation", settings, BODY) as runtime:
        await eventually(lambda: stored(reader, len(published)))
        await asyncio.sleep(0.5)  # anything stored twice would be now
        assert not runtime.stop_requested.is_set()
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{runtime.http_url}/metrics")).text
    assert resets_mid_transaction == ["statement"] * 3 + ["commit"]
    assert sample(metrics, "vigie_aggregation_storage_errors_total") == 4
    assert await applied(reader) == len(published)
    assert await crossing_totals(reader) == expected_totals(published)
