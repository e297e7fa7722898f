"""Prometheus: the service's operational metrics, and the published figures of each site's latest window.

The published gauges are produced by a collector from a snapshot that each window release replaces, so a
line or camera that disappears leaves no stale series behind, and a suppressed cell never has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vigie_aggregation import metric_names as names
from vigie_aggregation.families import CROSSINGS, DWELL, FAMILIES, OCCUPANCY
from vigie_aggregation.publication import PublishedCell
from vigie_aggregation.storage.cells import row_key
from vigie_aggregation.storage.store import CoverageRow
from vigie_aggregation.vocabulary import ALL, DIRECTION_NAMES, OBJECT_CLASS_NAMES
from vigie_proto.v1.events_pb2 import WindowReport

__all__ = ["AggregationMetrics", "PublishedFigures", "SiteWindow"]


class AggregationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.stored = Counter(names.REPORTS_STORED, "Window reports stored (each once)", registry=registry)
        self.duplicates = Counter(
            names.REPORTS_DUPLICATE,
            "Reports whose id was already stored (redelivered or republished)",
            registry=registry,
        )
        self.late = Counter(
            names.REPORTS_LATE,
            "Reports stored after their window was published (kept, never published)",
            registry=registry,
        )
        self.unassigned = Counter(
            names.REPORTS_UNASSIGNED,
            "Reports of cameras no site lists (kept, not published)",
            registry=registry,
        )
        self.deadlettered = Counter(
            names.REPORTS_DEADLETTERED,
            "Messages set aside on vigie.deadletter.aggregation, by offending field",
            ["field"],
            registry=registry,
        )
        # The fields a report can be refused for show as 0 until it happens ("message": not a report).
        for field in ("message", *WindowReport.DESCRIPTOR.fields_by_name):
            self.deadlettered.labels(field)
        self.storage_errors = Counter(
            names.STORAGE_ERRORS, "Failed storage transactions (retried)", registry=registry
        )
        self.store_seconds = Histogram(
            names.STORE_SECONDS,
            "One batch of reports: storage transaction and acknowledgements",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=registry,
        )
        self.releases = Counter(names.RELEASES, "Periods released", ["granularity"], registry=registry)
        self.release_seconds = Histogram(
            names.RELEASE_SECONDS,
            "Computing and storing one release",
            ["granularity"],
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
            registry=registry,
        )
        self.suppressed = Counter(
            names.SUPPRESSED_CELLS,
            "Published cells withheld (small counts and their complements)",
            ["family", "granularity"],
            registry=registry,
        )
        self.links = Counter(
            names.CERTIFICATE_LINKS,
            "How suppressed window cells were protected across time",
            ["link"],
            registry=registry,
        )
        self.budget_refusals = Counter(
            names.BUDGET_REFUSALS,
            "Camera windows withheld because the privacy budget was spent",
            registry=registry,
        )
        self.days_withheld = Counter(
            names.DAYS_WITHHELD, "Day releases withheld whole (no certificate found)", registry=registry
        )
        self.retention_deleted = Counter(
            names.RETENTION_DELETED_ROWS, "Rows deleted at the end of their retention", registry=registry
        )
        self.reads = Counter(
            names.STATISTICS_READS, "Statistics API reads", ["family", "format"], registry=registry
        )
        for family in FAMILIES.values():  # every kind of read shows as 0 until it happens
            for output in ("json", "csv"):
                self.reads.labels(family.name, output)
        self.release_lag = Gauge(
            names.RELEASE_LAG_SECONDS,
            "Seconds between now and the end of the site's latest released window",
            ["site"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class SiteWindow:
    """What one site's latest released window published."""

    site_id: str
    period_start: int
    period_seconds: int
    cells: Mapping[str, Sequence[PublishedCell]]  # by family
    coverage: Sequence[CoverageRow]


def _class(code: int) -> str:
    return OBJECT_CLASS_NAMES.get(code, ALL)


def _direction(code: int) -> str:
    return DIRECTION_NAMES.get(code, ALL)


class PublishedFigures(Collector):
    """The ``vigie_published_*`` gauges, from the latest released window of each site."""

    def __init__(self) -> None:
        self._sites: dict[str, SiteWindow] = {}

    def update(self, window: SiteWindow) -> None:
        current = self._sites.get(window.site_id)
        if current is None or current.period_start <= window.period_start:
            self._sites[window.site_id] = window

    def latest(self, site_id: str) -> SiteWindow | None:
        return self._sites.get(site_id)

    def collect(self) -> Iterable[Metric]:
        line = GaugeMetricFamily(
            names.PUBLISHED_LINE_CROSSINGS,
            "Crossings of a line in the latest published window",
            labels=["site", "camera", "line", "direction", "object_class"],
        )
        camera = GaugeMetricFamily(
            names.PUBLISHED_CAMERA_CROSSINGS,
            "Crossings of all the lines of a camera in the latest published window",
            labels=["site", "camera", "object_class"],
        )
        site = GaugeMetricFamily(
            names.PUBLISHED_SITE_CROSSINGS,
            "Crossings of all the cameras of a site in the latest published window",
            labels=["site", "object_class"],
        )
        mean = GaugeMetricFamily(
            names.PUBLISHED_ZONE_OCCUPANCY_MEAN,
            "Mean number of objects in a zone over the analysed part of the latest published window",
            labels=["site", "camera", "zone", "object_class"],
        )
        most = GaugeMetricFamily(
            names.PUBLISHED_ZONE_OCCUPANCY_MAX,
            "Most objects of a class in a zone at once in the latest published window",
            labels=["site", "camera", "zone", "object_class"],
        )
        dwell = GaugeMetricFamily(
            names.PUBLISHED_ZONE_DWELL_STAYS,
            "Stays in a zone that ended in the latest published window, by duration",
            labels=["site", "camera", "zone", "object_class", "dwell"],
        )
        coverage = GaugeMetricFamily(
            names.PUBLISHED_COVERAGE_RATIO,
            "Share of the latest published window the camera was analysed",
            labels=["site", "camera"],
        )
        start = GaugeMetricFamily(
            names.PUBLISHED_WINDOW_START,
            "Start of the latest published window (Unix seconds)",
            labels=["site"],
        )
        length = GaugeMetricFamily(
            names.PUBLISHED_WINDOW_LENGTH, "Length of the latest published window (seconds)", labels=["site"]
        )
        suppressed = GaugeMetricFamily(
            names.PUBLISHED_SUPPRESSED_CELLS,
            "Cells of the latest published window withheld by disclosure control or the privacy budget",
            labels=["site", "family"],
        )
        for site_id, window in sorted(self._sites.items()):
            start.add_metric([site_id], window.period_start)
            length.add_metric([site_id], window.period_seconds)
            covered = {row.camera_id: row for row in window.coverage}
            for row in window.coverage:
                if row.status is None and row.period_seconds > 0:
                    coverage.add_metric(
                        [site_id, row.camera_id], min(1.0, row.covered_seconds / row.period_seconds)
                    )
            for family, cells in sorted(window.cells.items()):
                spec = FAMILIES[family]
                suppressed.add_metric([site_id, family], sum(1 for c in cells if c.suppressed))
                for cell in cells:
                    if cell.suppressed:
                        continue
                    key = row_key(spec, cell.cell)
                    if spec is CROSSINGS:
                        if key.item_id:
                            labels = [site_id, key.camera_id, key.item_id, _direction(key.direction)]
                            line.add_metric([*labels, _class(key.object_class)], cell.value)
                        elif key.camera_id:
                            camera.add_metric([site_id, key.camera_id, _class(key.object_class)], cell.value)
                        else:
                            site.add_metric([site_id, _class(key.object_class)], cell.value)
                    elif spec is OCCUPANCY:
                        labels = [site_id, key.camera_id, key.item_id, _class(key.object_class)]
                        seconds = covered.get(key.camera_id)
                        if seconds is not None and seconds.covered_seconds > 0:
                            mean.add_metric(labels, cell.value / seconds.covered_seconds)
                        if key.object_class and cell.max_objects is not None:
                            most.add_metric(labels, cell.max_objects)
                    elif spec is DWELL:
                        bucket = key.dwell_bucket or ALL
                        labels = [site_id, key.camera_id, key.item_id, _class(key.object_class), bucket]
                        dwell.add_metric(labels, cell.value)
        yield from (line, camera, site, mean, most, dwell, coverage, start, length, suppressed)
