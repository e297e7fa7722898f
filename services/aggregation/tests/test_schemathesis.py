"""Schemathesis against the OpenAPI document: generated requests (valid and not) never get a 5xx, and
every response matches the document. A bounded number of examples per operation keeps it under 30 s."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given
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
from vigie_embedded.testing import ThreadedServer, fuzz_settings

W = 1200
# The OpenAPI examples name this site and these times: the explicit-examples phase reaches real figures.
SETTINGS = AggregationSettings(cameras=[CameraSiteConfig(id="north-gate", site="centre")])
DAY_OF_EXAMPLES = 1_777_593_600  # 2026-05-01T00:00:00Z


class LiveApi(ThreadedServer):
    """The statistics API on a free port, with released figures for the OpenAPI examples' site and day."""

    def __init__(self, database: Path) -> None:
        self.issuer = issuer = LocalTokenIssuer.generate()

        async def build(stack: contextlib.AsyncExitStack) -> FastAPI:
            store = await StatisticsStore.open(f"sqlite+aiosqlite:///{database}")
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
                verifier=TokenVerifier(AuthSettings(), local_issuer=issuer),
                settings=SETTINGS,
            )
            stack.push_async_callback(store.close)
            stack.push_async_callback(audit.close)
            return app

        super().__init__(build)

    @property
    def url(self) -> str:
        return self.base_url


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
        @fuzz_settings(25)
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"},
                checks=[not_a_server_error, response_schema_conformance],
            )

        call()
