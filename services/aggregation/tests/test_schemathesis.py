"""Schemathesis against the OpenAPI document: generated requests (valid and not) never get a 5xx, and
every response matches the document. A bounded number of examples per operation keeps it under 30 s."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from vigie_aggregation.api.app import statistics_app
from vigie_aggregation.disclosure.noise import SystemNoise
from vigie_aggregation.release import ReleaseJob
from vigie_aggregation.reports import parse_window_report
from vigie_aggregation.settings import AggregationSettings, CameraSiteConfig
from vigie_aggregation.sites import ConfigSiteDirectory
from vigie_aggregation.storage.store import StatisticsStore
from vigie_aggregation.synthetic import random_report
from vigie_core.audit import AuditPublisher, MemoryAuditSink
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier

W = 1200
# The OpenAPI examples name this site and these times: the explicit-examples phase reaches real figures.
SETTINGS = AggregationSettings(cameras=[CameraSiteConfig(id="north-gate", site="centre")])
DAY_OF_EXAMPLES = 1_777_593_600  # 2026-05-01T00:00:00Z


class LiveApi:
    """The statistics API on a free port, served by uvicorn in a thread with its own event loop."""

    def __init__(self, database: Path) -> None:
        self.issuer = LocalTokenIssuer.generate()
        self.url = ""
        self._database = database
        self._ready = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        store = await StatisticsStore.open(f"sqlite+aiosqlite:///{self._database}")
        rng = random.Random(5)
        parts = [
            parse_window_report(
                "vigie.events.north-gate",
                random_report("north-gate", DAY_OF_EXAMPLES + 6 * 3600 + i * W, rng).SerializeToString(),
                None,
                publication_window_s=W,
                now=DAY_OF_EXAMPLES,
            )
            for i in range(9)
        ]
        await store.apply_parts(parts, now=DAY_OF_EXAMPLES)
        sites = ConfigSiteDirectory(SETTINGS.cameras)
        job = ReleaseJob(
            store, sites, SETTINGS, noise=SystemNoise(), clock=lambda: DAY_OF_EXAMPLES + 86_400 + 600.0
        )
        await job.run_once()
        audit = AuditPublisher("aggregation", MemoryAuditSink())
        await audit.start()
        app = statistics_app(
            engine=store.engine,
            sites=sites,
            audit=audit,
            verifier=TokenVerifier(AuthSettings(), local_issuer=self.issuer),
            settings=SETTINGS,
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
        self._server = uvicorn.Server(config)
        task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self._ready.set()
        await task
        await audit.close()
        await store.close()

    def __enter__(self) -> LiveApi:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the API did not start")
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.should_exit = True
        self._thread.join(30)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("schemathesis") / "statistics.sqlite3") as api:
        yield api


# "scoped": valid requests about the site and day that have figures, so that generation explores levels,
# granularities, selectors, pages and formats on real data instead of unknown sites.
SCOPED = {"motive": "fuzzing", "from": "2026-05-01T00:00:00Z", "to": "2026-05-02T00:00:00Z"}


@pytest.mark.parametrize(
    ("mode", "query"),
    [
        (GenerationMode.POSITIVE, SCOPED),
        (GenerationMode.POSITIVE, None),
        (GenerationMode.NEGATIVE, None),
    ],
    ids=["scoped", "valid", "invalid"],
)
def test_no_generated_request_gets_a_server_error(
    live_api: LiveApi, mode: GenerationMode, query: dict[str, str] | None
) -> None:
    # schemathesis' pytest plugin (from_fixture) reads a pytest internal that pytest 9 removed; its
    # strategies are driven with Hypothesis directly instead.
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json")
    token = live_api.issuer.mint("operator-fuzz", ["stats:read"], ttl_s=3600)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {o.path for o in operations} == {"/crossings", "/occupancy", "/dwell", "/sites"}
    for operation in operations:
        fixed = None
        if query is not None and operation.path != "/sites":
            fixed = {**query, "site": "centre"}

        @given(case=operation.as_strategy(generation_mode=mode, query=fixed))
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"},
                checks=[not_a_server_error, response_schema_conformance],
            )

        call()
