"""For the IT team: is every camera analysed, how fast, and where frames wait or are lost."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, prometheus

from . import metrics as m
from .panels import CAMERA, camera_variable, datasource_variable, graph, query, row, single

RATE = "[$__rate_interval]"
STREAMS = 'stream=~"FRAMES|TRACKS|EVENTS|AUDIT"'


def _per_second(metric: str, by: str = "camera") -> str:
    """The rate of a counter, summed by ``by``; filtered by the selected cameras when by camera."""
    selector = f"{{{CAMERA}}}" if by == "camera" else ""
    return f"sum by ({by}) (rate({metric}{selector}{RATE}))"


def _quantiles(histogram: str, legend: str) -> list[prometheus.Dataquery]:
    return [
        query(
            f"histogram_quantile({q}, sum by (le) (rate({histogram}{RATE})))",
            f"{legend} p{int(q * 100)}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


def _lag(metric: str) -> str:
    return f"sum by (stream, consumer) ({metric}{{{STREAMS}}})"


def pipeline_dashboard() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard("Vigie / Pipeline health")
        .uid("vigie-pipeline")
        .description("Frames from the cameras to the anonymous events: throughput, lag, losses, latency.")
        .tags(["vigie", "operations"])
        .time("now-3h", "now")
        .refresh("30s")
        .readonly()
        .with_variable(datasource_variable())
        .with_variable(camera_variable(m.INGEST_FRAMES_PUBLISHED))
        .with_row(row("Throughput"))
        .with_panel(single("Frames published /s", "short", f"sum({_per_second(m.INGEST_FRAMES_PUBLISHED)})"))
        .with_panel(single("Frames analysed /s", "short", f"sum({_per_second(m.INFERENCE_FRAMES)})"))
        # No count of tracks or detections: the services expose none (a head count per camera at scrape
        # resolution); how many cameras are being analysed is what operations needs.
        .with_panel(
            single(
                "Cameras analysed",
                "short",
                f"count({_per_second(m.INFERENCE_FRAMES)} > 0) or vector(0)",
                description="Cameras with frames analysed over the last few minutes.",
            )
        )
        .with_panel(
            single(
                "Cameras not streaming",
                "short",
                f'count({m.INGEST_CAMERA_STATE}{{{CAMERA}, state!="streaming"}} == 1) or vector(0)',
            )
        )
        .with_panel(
            graph(
                "Frames per second",
                "short",
                query(_per_second(m.INGEST_FRAMES_PUBLISHED), "published {{camera}}"),
                query(_per_second(m.INFERENCE_FRAMES), "analysed {{camera}}", "B"),
                query(_per_second(m.INGEST_FRAMES_DECODED), "decoded {{camera}}", "C"),
            )
        )
        .with_panel(
            graph(
                "Camera state",
                "short",
                query(f"{m.INGEST_CAMERA_STATE}{{{CAMERA}}} == 1", "{{camera}} {{state}}"),
            ).description(
                "1 while a camera is in a state: streaming, connecting, backing_off (lost), failed."
            )
        )
        .with_row(row("Lag and losses"))
        .with_panel(
            graph(
                "Consumer lag (messages waiting)",
                "short",
                query(_lag(m.CONSUMER_PENDING), "{{stream}} / {{consumer}}"),
                query(
                    _lag(m.CONSUMER_ACK_PENDING),
                    "{{stream}} / {{consumer}} (in progress)",
                    "B",
                ),
            ).description("Each consuming service's durable consumer, read from the NATS server every 5 s.")
        )
        .with_panel(
            graph(
                "Frames dropped /s",
                "short",
                query(_per_second(m.INFERENCE_FRAMES_DROPPED, by="reason"), "inference: {{reason}}"),
                query(_per_second(m.INGEST_FRAMES_DROPPED), "ingest: {{camera}}", "B"),
                query(_per_second(m.INGEST_DECODE_ERRORS), "decode errors: {{camera}}", "C"),
                stacked=True,
            )
        )
        .with_row(row("Latency"))
        .with_panel(graph("Detector request", "s", *_quantiles(m.INFERENCE_MODEL_SECONDS, "model")))
        .with_panel(
            graph(
                "Capture to tracks",
                "s",
                *_quantiles(m.INFERENCE_CAPTURE_TO_TRACKS_SECONDS, "capture to tracks"),
            )
        )
        .with_row(row("Anonymiser"))
        .with_panel(
            graph(
                "Track frames counted /s",
                "short",
                query(_per_second(m.ANONYMISER_FRAMES), "{{camera}}"),
                query(_per_second(m.ANONYMISER_FRAMES_DROPPED, by="reason"), "dropped: {{reason}}", "B"),
            )
        )
        .with_panel(
            graph(
                "Window reports",
                "short",
                query(
                    f"sum by (closed_by) (increase({m.ANONYMISER_REPORTS_PUBLISHED}[$__interval]))",
                    "published ({{closed_by}})",
                ),
                query(f"sum({m.ANONYMISER_REPORTS_WAITING})", "waiting for EVENTS", "B"),
            )
        )
        .with_row(row("Aggregation"))
        .with_panel(
            graph(
                "Reports stored /s",
                "short",
                query(f"sum(rate({m.AGGREGATION_REPORTS_STORED}{RATE}))", "stored"),
                query(
                    _per_second(m.AGGREGATION_REPORTS_DEADLETTERED, by="field"), "set aside: {{field}}", "B"
                ),
                query(f"sum(rate({m.AGGREGATION_STORAGE_ERRORS}{RATE}))", "storage errors", "C"),
            )
        )
        .with_panel(
            graph(
                "Publication lag",
                "s",
                query(f"max by (site) ({m.AGGREGATION_RELEASE_LAG})", "{{site}}"),
            ).description("Time since the end of each site's latest published window.")
        )
    )
