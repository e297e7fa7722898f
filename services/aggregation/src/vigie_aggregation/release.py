"""The release job: publishes each site's windows once they are closed, then each day.

A window is released ``release_delay_s`` after it ends, and only when the EVENTS consumer is drained, so
that the parts closing it have been stored. Windows are released in order and without gaps (a window with
no figures is released empty), each in one transaction with the state the next window of the same day
needs; after the last window of a UTC day, the day. A release is final: figures are never recomputed, and a
part stored after its window was released is kept but not published (``vigie_aggregation_reports_late``).
Changing a published figure would itself publish the difference.

Replicas may all run this job: the first to write a release wins, the others find it stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from vigie_aggregation.disclosure.day import DayReleases, DayState, day_leaves
from vigie_aggregation.disclosure.noise import NoiseSource, budget_period_start, decide_budget
from vigie_aggregation.disclosure.table import Table
from vigie_aggregation.families import CROSSINGS, DWELL, FAMILIES, CameraWindowFigures, family_leaves
from vigie_aggregation.metrics import AggregationMetrics, SiteWindow
from vigie_aggregation.publication import (
    REASON_DAY_WITHHELD,
    REASON_DISCLOSURE,
    noisy_leaves,
    published_cells,
    withheld_cells,
)
from vigie_aggregation.settings import DAY_S, AggregationSettings
from vigie_aggregation.sites import SiteDirectory
from vigie_aggregation.storage.cells import Granularity
from vigie_aggregation.storage.store import (
    AlreadyReleasedError,
    CoverageRow,
    FamilyState,
    ReleaseRecord,
    StatisticsStore,
)

__all__ = ["STATUS_BUDGET", "ReleaseJob"]

logger = logging.getLogger("vigie.aggregation.release")

STATUS_BUDGET = "privacy_budget_exhausted"
_NOISED = (CROSSINGS.name, DWELL.name)


class ReleaseJob:
    def __init__(
        self,
        store: StatisticsStore,
        sites: SiteDirectory,
        settings: AggregationSettings,
        *,
        noise: NoiseSource,
        metrics: AggregationMetrics | None = None,
        clock: Callable[[], float] = time.time,
        on_window: Callable[[SiteWindow], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._sites = sites
        self._disclosure = settings.disclosure
        self._noise_settings = settings.noise
        self._noise = noise
        self._metrics = metrics
        self._clock = clock
        self._on_window = on_window
        self._window_s = settings.disclosure.window_s
        self._windows_per_day = DAY_S // self._window_s
        # Per site: (day start, last window released, the day's state after it). Rebuilding the state from
        # the database reads every earlier release of the day; this keeps it across the day's windows and
        # falls back to the database whenever the last release is not the one it knows (a restart, or
        # another replica released meanwhile).
        self._day_states: dict[str, tuple[int, int, dict[str, DayState]]] = {}

    async def run_once(self) -> int:
        """Release every period that is due; the number of releases written."""
        now = self._clock()
        written = 0
        for site_id, cameras in sorted(self._sites.sites().items()):
            written += await self._release_site(site_id, cameras, now)
        return written

    async def _release_site(self, site_id: str, cameras: frozenset[str], now: float) -> int:
        w = self._window_s
        written = 0
        released = await self._store.released_until(site_id, Granularity.WINDOW)
        if released is not None and (released + w) % DAY_S == 0:
            # The day's last window is out: make sure the day is too (a crash may have come between).
            written += await self._release_day(site_id, released + w - DAY_S)
        start = released + w if released is not None else await self._store.first_window(cameras)
        if start is None:
            return written
        due_until = int(now - self._disclosure.release_delay_s) - w + 1  # windows starting before are due
        with_figures = await self._store.windows_with_figures(cameras, start, due_until)
        while start + w + self._disclosure.release_delay_s <= now:
            written += await self._release_window(site_id, cameras, start, now, start in with_figures)
            if (start + w) % DAY_S == 0:
                written += await self._release_day(site_id, start + w - DAY_S)
            start += w
        if self._metrics is not None:
            self._metrics.release_lag.labels(site_id).set(max(0.0, now - start))
        return written

    async def _release_window(
        self, site_id: str, cameras: frozenset[str], start: int, now: float, has_figures: bool
    ) -> int:
        began = time.perf_counter()
        w = self._window_s
        figures = await self._store.camera_window_figures(cameras, start) if has_figures else []
        included, refused, budget = await self._budget(figures, start)
        day_start = start - start % DAY_S
        cached = self._day_states.pop(site_id, None)
        if cached is not None and cached[0] == day_start and cached[1] == start - w:
            states = cached[2]
        elif start == day_start:
            states = {name: DayState() for name in FAMILIES}
        else:
            states = await self._store.day_state(site_id, day_start, start, w)
        cells, family_states = {}, {}
        links: dict[str, int] = {}
        withheld_figures = [f for f in figures if f.camera_id in refused]
        for name, spec in FAMILIES.items():
            leaves = family_leaves(spec, included)
            if self._noise_settings.enabled and name in _NOISED:
                leaves = noisy_leaves(
                    leaves, epsilon=self._noise_settings.epsilon_per_window, source=self._noise
                )
            table = Table(spec, leaves)
            releases = DayReleases(
                spec,
                threshold=self._disclosure.threshold,
                windows_per_day=self._windows_per_day,
                state=states[name],
            )
            protection = releases.release_window(start, table, has_next_window=(start + w) % DAY_S != 0)
            cells[name] = published_cells(table, protection.suppressed)
            if withheld_figures:
                cells[name] += withheld_cells(Table(spec, family_leaves(spec, withheld_figures)))
            family_states[name] = FamilyState(
                dict(protection.certificates), list(protection.next_window), set(protection.day)
            )
            for link, n in protection.links.items():
                links[link] = links.get(link, 0) + n
        coverage = self._window_coverage(cameras, figures, refused)
        record = ReleaseRecord(
            site_id,
            Granularity.WINDOW,
            start,
            int(now),
            cells,
            coverage,
            family_states,
            budget,
            note={"refused": sorted(refused)} if refused else {},
        )
        try:
            await self._store.save_release(record)
        except AlreadyReleasedError:
            logger.info("site %s window %d was released by another replica", site_id, start)
            return 0
        self._day_states[site_id] = (day_start, start, states)
        if self._metrics is not None:
            self._metrics.releases.labels("window").inc()
            self._metrics.release_seconds.labels("window").observe(time.perf_counter() - began)
            self._metrics.budget_refusals.inc(len(refused))
            for name, published in cells.items():
                self._metrics.suppressed.labels(name, "window").inc(sum(1 for c in published if c.suppressed))
            for link, n in links.items():
                self._metrics.links.labels(link).inc(n)
        if self._on_window is not None:
            await self._on_window(SiteWindow(site_id, start, w, cells, coverage))
        return 1

    async def _budget(
        self, figures: Sequence[CameraWindowFigures], start: int
    ) -> tuple[list[CameraWindowFigures], set[str], list[tuple[str, int, float]]]:
        """The cameras whose figures may be released (all of them without noise), the refused ones, and
        the ledger entries the release spends."""
        settings = self._noise_settings
        if not settings.enabled:
            return list(figures), set(), []
        period = budget_period_start(start, settings.budget_period_days)
        spent = await self._store.budget_spent([f.camera_id for f in figures], period)
        decision = decide_budget(
            (f.camera_id for f in figures),
            spent,
            epsilon=settings.epsilon_per_window,
            budget=settings.budget_epsilon,
        )
        for camera in sorted(decision.refused):
            logger.warning(
                "camera %s: privacy budget of %.3g spent for the period from %d: window %d withheld",
                camera,
                settings.budget_epsilon,
                period,
                start,
            )
        included = [f for f in figures if f.camera_id in decision.granted]
        ledger = [(f.camera_id, period, settings.epsilon_per_window) for f in included]
        return included, set(decision.refused), ledger

    def _window_coverage(
        self, cameras: frozenset[str], figures: Sequence[CameraWindowFigures], refused: set[str]
    ) -> list[CoverageRow]:
        by_camera = {f.camera_id: f for f in figures}
        rows = []
        for camera in sorted(cameras):
            found = by_camera.get(camera)
            if found is None:
                rows.append(CoverageRow(camera, self._window_s, 0.0, 0, ""))
                continue
            rows.append(
                CoverageRow(
                    camera,
                    self._window_s,
                    min(found.covered_seconds, float(self._window_s)),
                    found.frames,
                    ",".join(found.geometry_versions)[:400],
                    STATUS_BUDGET if camera in refused else None,
                )
            )
        return rows

    async def _release_day(self, site_id: str, day_start: int) -> int:
        released = await self._store.released_until(site_id, Granularity.DAY)
        if released is not None and released >= day_start:
            return 0
        began = time.perf_counter()
        day_end = day_start + DAY_S
        states = await self._store.day_state(site_id, day_start, day_end, self._window_s)
        cells = {}
        withheld = []
        for name, spec in FAMILIES.items():
            windows = await self._store.day_window_leaves(site_id, name, day_start, day_end)
            table = Table(spec, day_leaves(spec, windows))
            releases = DayReleases(
                spec,
                threshold=self._disclosure.threshold,
                windows_per_day=self._windows_per_day,
                state=states[name],
            )
            protection = releases.release_day(table)
            if protection.withheld:
                withheld.append(name)
                logger.error(
                    "site %s day %d: no certificate for a %s cell, day withheld", site_id, day_start, name
                )
            reason = REASON_DAY_WITHHELD if protection.withheld else REASON_DISCLOSURE
            cells[name] = published_cells(table, protection.suppressed, reason=reason)
        coverage = await self._store.day_coverage(site_id, day_start, day_end)
        record = ReleaseRecord(
            site_id,
            Granularity.DAY,
            day_start,
            int(self._clock()),
            cells,
            coverage,
            note={"withheld": withheld} if withheld else {},
        )
        try:
            await self._store.save_release(record)
        except AlreadyReleasedError:
            return 0
        if self._metrics is not None:
            self._metrics.releases.labels("day").inc()
            self._metrics.release_seconds.labels("day").observe(time.perf_counter() - began)
            self._metrics.days_withheld.inc(len(withheld))
            for name, published in cells.items():
                self._metrics.suppressed.labels(name, "day").inc(sum(1 for c in published if c.suppressed))
        return 1
