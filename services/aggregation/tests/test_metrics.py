"""The published gauges: the latest released window of each site, suppressed cells absent."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vigie_aggregation import metric_names
from vigie_aggregation.disclosure import Table, protect_window
from vigie_aggregation.families import CROSSINGS, DWELL, OCCUPANCY, CameraWindowFigures, family_leaves
from vigie_aggregation.metrics import PublishedFigures, SiteWindow
from vigie_aggregation.publication import published_cells
from vigie_aggregation.storage.store import CoverageRow


def window(start: int, persons: int) -> SiteWindow:
    figures = CameraWindowFigures("cam", covered_seconds=600.0, line_ids={"l1"}, zone_ids={"z1"})
    figures.crossings = {("l1", 1, 1): persons, ("l1", 2, 1): persons, ("l1", 1, 5): 2}
    figures.occupancy = {("z1", 1): (6000.0, 20)}
    figures.dwell = {("z1", 1, "60-300"): 30}
    cells = {}
    for spec in (CROSSINGS, OCCUPANCY, DWELL):
        table = Table(spec, family_leaves(spec, [figures]))
        protection = protect_window(table, threshold=11, has_next_window=False, windows_per_day=72)
        cells[spec.name] = published_cells(table, protection.suppressed)
    return SiteWindow("centre", start, 1200, cells, [CoverageRow("cam", 1200, 600.0, 3000, "g1")])


def samples(collector: PublishedFigures) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_latest_window_of_each_site_is_on_metrics_without_its_suppressed_cells() -> None:
    collector = PublishedFigures()
    collector.update(window(1200, 30))
    collector.update(window(0, 99))  # an older window never replaces a newer one
    found = samples(collector)
    line = {"site": "centre", "camera": "cam", "line": "l1"}

    def value(name: str, **labels: str) -> float | None:
        return found.get((name, frozenset(labels.items())))

    assert (
        value(metric_names.PUBLISHED_LINE_CROSSINGS, **line, direction="left_to_right", object_class="person")
        == 30
    )
    assert value(metric_names.PUBLISHED_LINE_CROSSINGS, **line, direction="all", object_class="person") == 60
    assert (
        value(metric_names.PUBLISHED_LINE_CROSSINGS, **line, direction="left_to_right", object_class="bus")
        is None
    )
    assert (
        value(metric_names.PUBLISHED_CAMERA_CROSSINGS, site="centre", camera="cam", object_class="person")
        == 60
    )
    assert value(metric_names.PUBLISHED_SITE_CROSSINGS, site="centre", object_class="person") == 60
    zone = {"site": "centre", "camera": "cam", "zone": "z1", "object_class": "person"}
    assert value(metric_names.PUBLISHED_ZONE_OCCUPANCY_MEAN, **zone) == 10.0  # 6000 object-seconds / 600 s
    assert value(metric_names.PUBLISHED_ZONE_OCCUPANCY_MAX, **zone) == 20
    assert value(metric_names.PUBLISHED_ZONE_DWELL_STAYS, **zone, dwell="60-300") == 30
    assert value(metric_names.PUBLISHED_COVERAGE_RATIO, site="centre", camera="cam") == 0.5
    assert value(metric_names.PUBLISHED_WINDOW_START, site="centre") == 1200
    assert value(metric_names.PUBLISHED_SUPPRESSED_CELLS, site="centre", family="crossings")
    names = {name for name, _ in found}
    assert set(metric_names.PUBLISHED_METRICS) <= names
