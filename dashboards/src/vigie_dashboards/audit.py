"""For the data protection officer: the audit trail is being written, and nothing fell outside it."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from . import metrics as m
from .panels import datasource_variable, graph, query, row, single

RATE = "[$__rate_interval]"


def audit_dashboard() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard("Vigie / Audit activity")
        .uid("vigie-audit")
        .description(
            "Audit events every service records (configuration changes, data reads and exports, objections, "
            "boundary faults) on their way to the tamper-evident journal. The journal itself is read through "
            "the audit API."
        )
        .tags(["vigie", "audit", "privacy"])
        .time("now-7d", "now")
        .refresh("5m")
        .readonly()
        .with_variable(datasource_variable())
        .with_row(row("Audit events"))
        .with_panel(
            single("Events recorded (range)", "short", f"sum(increase({m.AUDIT_EVENTS_PUBLISHED}[$__range]))")
        )
        .with_panel(
            single(
                "Events lost (range)",
                "short",
                f"sum(increase({m.AUDIT_EVENTS_LOST}[$__range])) or vector(0)",
                description="Events a service could not deliver to the journal: must stay at 0.",
            )
        )
        .with_panel(
            single(
                "Events waiting",
                "short",
                f"sum({m.AUDIT_EVENTS_BUFFERED})",
                description="Buffered by services while the AUDIT stream is unreachable.",
            )
        )
        .with_panel(
            single(
                "Rejected track messages (range)",
                "short",
                f"sum(increase({m.ANONYMISER_MESSAGES_REJECTED}[$__range])) or vector(0)",
                description="TRACKS messages the anonymiser set aside as malformed (a boundary fault).",
            )
        )
        .with_panel(
            graph(
                "Events recorded per service",
                "short",
                query(f"sum by (job) (increase({m.AUDIT_EVENTS_PUBLISHED}[$__interval]))", "{{job}}"),
                width=24,
                stacked=True,
            )
        )
        .with_panel(
            graph(
                "Statistics read through the API",
                "short",
                query(
                    f"sum by (family, format) (increase({m.AGGREGATION_STATISTICS_READS}[$__interval]))",
                    "{{family}} ({{format}})",
                ),
                width=24,
                stacked=True,
            ).description("Every read is also an audit event of the aggregation service.")
        )
        .with_panel(
            graph(
                "Delivery problems",
                "short",
                query(f"sum by (job) (rate({m.AUDIT_FAILED_ATTEMPTS}{RATE}))", "failed attempts {{job}}"),
                query(
                    f"sum by (job, reason) (rate({m.AUDIT_EVENTS_LOST}{RATE}))",
                    "lost {{job}} ({{reason}})",
                    "B",
                ),
                width=24,
            )
        )
    )
