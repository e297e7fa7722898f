"""Window reports on the wire: the `vigie.v1.WindowReport` message published to EVENTS."""

from __future__ import annotations

from vigie_anonymiser.windows import WindowReport
from vigie_proto.v1 import events_pb2
from vigie_proto.v1.tracks_pb2 import ObjectClass

__all__ = ["report_from_message", "report_message"]


def report_message(report: WindowReport) -> events_pb2.WindowReport:
    message = events_pb2.WindowReport(
        report_id=report.report_id,
        camera_id=report.camera_id,
        window_seconds=report.window_s,
        closed_by=events_pb2.ReportClosure.ValueType(report.closed_by),
        geometry_version=report.geometry_version,
        line_ids=report.line_ids,
        zone_ids=report.zone_ids,
        frames=report.frames,
        covered_seconds=report.covered_s,
        crossings=[
            events_pb2.LineCrossingCount(
                line_id=c.line_id,
                direction=events_pb2.CrossingDirection.ValueType(c.direction),
                object_class=ObjectClass.ValueType(c.object_class),
                count=c.count,
            )
            for c in report.crossings
        ],
        occupancy=[
            events_pb2.ZoneOccupancy(
                zone_id=o.zone_id,
                object_class=ObjectClass.ValueType(o.object_class),
                object_seconds=o.object_seconds,
                max_objects=o.max_objects,
            )
            for o in report.occupancy
        ],
        dwell=[
            events_pb2.ZoneDwellCount(
                zone_id=d.zone_id,
                object_class=ObjectClass.ValueType(d.object_class),
                min_seconds=d.min_s,
                max_seconds=d.max_s or 0,
                count=d.count,
            )
            for d in report.dwell
        ],
        models=report.models,
        object_classes=[ObjectClass.ValueType(c) for c in report.object_classes],
        member_classes=[
            events_pb2.MemberClasses(
                member_id=member, object_classes=[ObjectClass.ValueType(c) for c in classes]
            )
            for member, classes in report.member_classes
        ],
        dwell_bucket_seconds=report.dwell_bounds,
        one_way_lines=[
            events_pb2.OneWayLine(line_id=line, direction=events_pb2.CrossingDirection.ValueType(direction))
            for line, direction in report.one_way_lines
        ],
    )
    message.window_start.seconds = report.window_start
    return message


def report_from_message(data: bytes) -> events_pb2.WindowReport:
    """Decode an EVENTS message (for the aggregation's tests and tools)."""
    return events_pb2.WindowReport.FromString(data)
