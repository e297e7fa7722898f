"""The anonymiser: the only reader of TRACKS; turns tracks into anonymous window reports on EVENTS.

The domain (no network): `Anonymiser` holds one `CameraAnonymiser` per camera, fed `TrackObservation`s
(from `parse_track_frame`) in order, and returns `WindowReport`s, which `report_message` puts on the wire.
The service's edge is `vigie_anonymiser.service.serve`; `python -m vigie_anonymiser` runs it.
"""

from vigie_anonymiser.camera import Anonymiser, CameraAnonymiser, Dropped, FrameOutcome, crossings_total
from vigie_anonymiser.config import (
    CameraGeometry,
    CameraGeometryConfig,
    CountingParams,
    LineConfig,
    ZoneConfig,
)
from vigie_anonymiser.events import report_message
from vigie_anonymiser.geometry import Anchor, CountingLine, CrossingDirection, Zone
from vigie_anonymiser.geometry_source import CameraGeometrySource, ConfigGeometrySource, GeometryUpdate
from vigie_anonymiser.observations import (
    InvalidTrackFrameError,
    ObservedObject,
    TrackObservation,
    parse_track_frame,
)
from vigie_anonymiser.windows import (
    LineCrossingCount,
    ReportClosure,
    WindowReport,
    ZoneDwellCount,
    ZoneOccupancy,
)

__all__ = [
    "Anchor",
    "Anonymiser",
    "CameraAnonymiser",
    "CameraGeometry",
    "CameraGeometryConfig",
    "CameraGeometrySource",
    "ConfigGeometrySource",
    "CountingLine",
    "CountingParams",
    "CrossingDirection",
    "Dropped",
    "FrameOutcome",
    "GeometryUpdate",
    "InvalidTrackFrameError",
    "LineConfig",
    "LineCrossingCount",
    "ObservedObject",
    "ReportClosure",
    "TrackObservation",
    "WindowReport",
    "Zone",
    "ZoneConfig",
    "ZoneDwellCount",
    "ZoneOccupancy",
    "crossings_total",
    "parse_track_frame",
    "report_message",
]
