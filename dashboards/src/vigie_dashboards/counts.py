"""For the city's departments: what the cameras counted, and how much of the time they could count."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from . import metrics as m
from .panels import datasource_variable, graph, label_variable, query, row, single

SITE = 'site=~"$site"'
CAMERA = f'{SITE}, camera=~"$camera"'
# Published series carry "all" totals besides each direction and class: summing must leave them out.
CLASSES = 'object_class=~"$object_class", object_class!="all"'


def counts_dashboard() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard("Vigie / Counts")
        .uid("vigie-counts")
        .description(
            "Anonymous statistics published by the aggregation service: each value is the latest released "
            "window of a site, after disclosure control (a suppressed figure shows as a gap). No image, "
            "trajectory or identifier is behind these numbers."
        )
        .tags(["vigie", "statistics"])
        .time("now-7d", "now")
        .refresh("5m")
        .readonly()
        .with_variable(datasource_variable())
        .with_variable(label_variable("site", "Site", m.PUBLISHED_SITE_CROSSINGS))
        .with_variable(label_variable("camera", "Camera", f"{m.PUBLISHED_CAMERA_CROSSINGS}{{{SITE}}}"))
        .with_variable(
            label_variable("object_class", "Class", f'{m.PUBLISHED_CAMERA_CROSSINGS}{{object_class!="all"}}')
        )
        .with_row(row("Counts"))
        .with_panel(
            graph(
                "Crossings per line and direction",
                "short",
                query(
                    f"sum by (camera, line, direction) "
                    f'({m.PUBLISHED_LINE_CROSSINGS}{{{CAMERA}, {CLASSES}, direction!="all"}})',
                    "{{camera}} / {{line}} / {{direction}}",
                ),
                width=24,
            ).description("People and vehicles that crossed each counting line, per published window.")
        )
        .with_panel(
            graph(
                "Crossings per class",
                "short",
                query(
                    f"sum by (object_class) ({m.PUBLISHED_CAMERA_CROSSINGS}{{{CAMERA}, {CLASSES}}})",
                    "{{object_class}}",
                ),
                stacked=True,
            )
        )
        .with_panel(
            graph(
                "Crossings per site",
                "short",
                query(f'{m.PUBLISHED_SITE_CROSSINGS}{{{SITE}, object_class="all"}}', "{{site}}"),
            )
        )
        .with_panel(
            graph(
                "Zone occupancy (mean)",
                "short",
                query(
                    f"sum by (camera, zone) ({m.PUBLISHED_ZONE_OCCUPANCY_MEAN}{{{CAMERA}, {CLASSES}}})",
                    "{{camera}} / {{zone}}",
                ),
            ).description("Mean number of people or vehicles present in each zone over the window.")
        )
        .with_panel(
            graph(
                "Zone occupancy (most at once)",
                "short",
                query(
                    f"max by (camera, zone) ({m.PUBLISHED_ZONE_OCCUPANCY_MAX}{{{CAMERA}, {CLASSES}}})",
                    "{{camera}} / {{zone}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Time spent in zones",
                "short",
                query(
                    f"sum by (dwell) "
                    f'({m.PUBLISHED_ZONE_DWELL_STAYS}{{{CAMERA}, object_class="all", dwell!="all"}})',
                    "{{dwell}} s",
                ),
                width=24,
                stacked=True,
            ).description("Stays that ended in the window, by duration bucket (seconds).")
        )
        .with_row(row("Coverage"))
        .with_panel(
            single(
                "Analysed",
                "percentunit",
                f"avg({m.PUBLISHED_COVERAGE_RATIO}{{{CAMERA}}})",
                description="Share of the latest window the selected cameras were analysed.",
            )
        )
        .with_panel(
            single(
                "Not analysed",
                "percentunit",
                f"1 - avg({m.PUBLISHED_COVERAGE_RATIO}{{{CAMERA}}})",
                description="Paused by the policy, stopped by an objection, or down: counts are partial.",
            )
        )
        .with_panel(
            single(
                "Cameras down now",
                "short",
                f'count({m.INGEST_CAMERA_STATE}{{camera=~"$camera", state=~"backing_off|failed"}} == 1) '
                "or vector(0)",
                description="Live sources lost (reconnecting) or failed, as ingest sees them.",
            )
        )
        .with_panel(
            single(
                "Figures withheld",
                "short",
                f"sum({m.PUBLISHED_SUPPRESSED_CELLS}{{{SITE}}})",
                description="Cells of the latest window withheld by disclosure control (too few to publish).",
            )
        )
        .with_panel(
            graph(
                "Share of each window analysed, per camera",
                "percentunit",
                query(f"{m.PUBLISHED_COVERAGE_RATIO}{{{CAMERA}}}", "{{site}} / {{camera}}"),
                width=24,
            ).max(1)
        )
    )
