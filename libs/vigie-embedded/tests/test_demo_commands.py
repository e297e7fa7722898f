"""What the demo prints for a person to try (vigie_embedded.demo): the commands name today's reporting
windows and routes that exist, and answer 200 from the statistics and audit APIs as the platform runs
them; its summary says what "suppressed" means."""

import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from vigie_aggregation.api.app import statistics_app
from vigie_aggregation.service import API_PREFIX
from vigie_aggregation.settings import AggregationSettings, CameraSiteConfig
from vigie_aggregation.sites import ConfigSiteDirectory
from vigie_aggregation.storage.store import StatisticsStore
from vigie_audit.api import AuditApi
from vigie_audit.signer import TreeHeadSigner
from vigie_audit.store import JournalStore
from vigie_audit.tree_head import TreeHeadSigningKey
from vigie_core.audit import AuditPublisher, MemoryAuditSink
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier
from vigie_embedded.demo import TRY_IT_MOTIVE, suppression_explained, try_it_commands
from vigie_embedded.platform import CAMERA_ID, SITE_ID
from vigie_embedded.testing import curl_requests

URLS = {"aggregation": "http://aggregation.test", "audit": "http://audit.test"}


def _film_period() -> tuple[int, int]:
    """Two one-minute windows from this one, as the demo's film would fall in."""
    start = int(time.time()) // 60 * 60
    return start, start + 120


def test_the_statistics_command_asks_for_today_s_windows_of_the_camera() -> None:
    start, end = _film_period()
    token_line, statistics, _ = try_it_commands(URLS, "a.b.c", (start, end))
    assert token_line == "TOKEN='a.b.c'"
    (url, headers), _ = curl_requests([token_line, statistics, _])
    assert headers == {"Authorization": "Bearer a.b.c"}
    query = parse_qs(urlsplit(url).query)
    assert query["camera"] == [CAMERA_ID]
    assert query["level"] == ["camera"]
    assert query["motive"] == [TRY_IT_MOTIVE]
    today = datetime.now(UTC).date().isoformat()
    assert query["from"][0].startswith(today) or query["to"][0].startswith(today)
    assert datetime.fromisoformat(query["from"][0]).timestamp() == start
    assert datetime.fromisoformat(query["to"][0]).timestamp() == end


def test_with_a_view_a_fourth_command_saves_it_as_a_person_would() -> None:
    urls = {**URLS, "registry": "http://registry.test"}
    assert len(try_it_commands(urls, "a.b.c", _film_period())) == 3
    *_, view = try_it_commands(urls, "a.b.c", _film_period(), view=True)
    assert view.endswith(" -o view.jpg")
    ((url, headers),) = curl_requests(["TOKEN='a.b.c'", view])
    assert headers == {"Authorization": "Bearer a.b.c"}
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("registry.test", f"/v1/cameras/{CAMERA_ID}/view.jpg")
    assert parse_qs(parts.query)["motive"] == [TRY_IT_MOTIVE]


async def test_the_printed_commands_answer_from_the_apis(tmp_path: Path) -> None:
    """Each printed command, read as a shell would, against the statistics API and the audit API as the
    platform mounts them: 200, and the statistics read is audited with the printed motive."""
    issuer = LocalTokenIssuer.generate()
    verifier = TokenVerifier(AuthSettings(), local_issuer=issuer)
    sink = MemoryAuditSink()
    statistics_audit = AuditPublisher("aggregation", sink)
    await statistics_audit.start()
    statistics = await StatisticsStore.open(f"sqlite+aiosqlite:///{tmp_path / 'statistics.sqlite3'}")
    journal = await JournalStore.open(f"sqlite+aiosqlite:///{tmp_path / 'journal.sqlite3'}")
    journal_audit = AuditPublisher("audit", MemoryAuditSink())
    await journal_audit.start()
    settings = AggregationSettings(cameras=[CameraSiteConfig(id=CAMERA_ID, site=SITE_ID)])
    aggregation = FastAPI(openapi_url=None)
    aggregation.mount(
        API_PREFIX,
        statistics_app(
            engine=statistics.engine,
            sites=ConfigSiteDirectory(settings.cameras),
            audit=statistics_audit,
            verifier=verifier,
            settings=settings,
        ),
    )
    audit = FastAPI(openapi_url=None)
    signer = TreeHeadSigner(journal, TreeHeadSigningKey.generate(), "vigie-test")
    audit.mount("/", AuditApi(journal, signer, journal_audit).app(verifier))
    token = issuer.mint("demo-operator", ["stats:read", "audit:read"], ttl_s=3600)
    mounts = {
        f"{URLS['aggregation']}/": httpx.ASGITransport(app=aggregation),
        f"{URLS['audit']}/": httpx.ASGITransport(app=audit),
    }
    try:
        async with httpx.AsyncClient(mounts=mounts) as client:
            for url, headers in curl_requests(try_it_commands(URLS, token, _film_period())):
                response = await client.get(url, headers=headers)
                assert response.status_code == 200, (url, response.text)
    finally:
        await statistics_audit.close()
        await journal_audit.close()
        await statistics.close()
        await journal.close()
    (read,) = sink.events()
    assert (read.actor, read.motive) == ("demo-operator", TRY_IT_MOTIVE)


def test_suppression_is_explained_in_plain_words() -> None:
    text = suppression_explained(11)
    assert "from 1 to 10" in text
    assert "zero is published" in text
