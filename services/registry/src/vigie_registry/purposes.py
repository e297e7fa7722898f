"""The closed list of purposes, and what each allows (docs/privacy.md rules 1, 5 and 7).

A camera has exactly one purpose; the purpose decides which outputs exist and which classes of objects
are counted. Anything not listed here does not exist for a camera: there is no free-form purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vigie_proto.v1.policy_pb2 import AnalysisOutput, Purpose, SecurityEventKind
from vigie_proto.v1.tracks_pb2 import ObjectClass

__all__ = [
    "OBJECT_CLASSES",
    "OUTPUTS",
    "PURPOSES",
    "SECURITY_EVENT_KINDS",
    "ZONE_OUTPUTS",
    "PurposeDefinition",
    "class_code",
    "output_code",
    "purpose_code",
    "security_event_code",
]

# The classes the detector knows (vigie.v1.ObjectClass), by their API names.
OBJECT_CLASSES: tuple[str, ...] = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
VEHICLES: tuple[str, ...] = ("bicycle", "car", "motorcycle", "bus", "truck")

OUTPUTS: Mapping[str, str] = {
    "line_crossings": "counts of objects crossing a counting line, by direction and class",
    "zone_occupancy": "how many objects are in a zone (mean, and most at once)",
    "dwell_time": "how long stays in a zone last, in buckets (no individual duration)",
    "security_alerts": "alerts of the decree's closed list, each confirmed or dismissed by an operator",
}
# Outputs measured in zones: a zone is only meaningful with one of them.
ZONE_OUTPUTS = frozenset({"zone_occupancy", "dwell_time", "security_alerts"})

# The closed list of décret 2023-828 art. 3 (docs/privacy.md rule 5).
SECURITY_EVENT_KINDS: Mapping[str, str] = {
    "abandoned_object": "an object left unattended",
    "weapon": "presence or use of a weapon",
    "wrong_way": "a person or vehicle going the wrong way",
    "forbidden_zone_intrusion": "presence or intrusion in a forbidden or sensitive zone",
    "person_on_ground": "a person on the ground after a fall",
    "crowd_movement": "a crowd movement",
    "excessive_density": "an excessive density of people",
    "fire": "a fire outbreak",
}


@dataclass(frozen=True, slots=True)
class PurposeDefinition:
    name: str
    title: str
    description: str
    outputs: tuple[str, ...]
    object_classes: tuple[str, ...]
    # docs/privacy.md rule 5: off by default, needs a legal text and an authorisation window.
    needs_authorisation: bool = False


PURPOSES: Mapping[str, PurposeDefinition] = {
    p.name: p
    for p in (
        PurposeDefinition(
            "traffic_flow_statistics",
            "Traffic flow statistics",
            "Anonymous counts of vehicles and bicycles crossing counting lines, and how many are in a zone, "
            "to plan roads, cycle lanes and public transport.",
            outputs=("line_crossings", "zone_occupancy"),
            object_classes=VEHICLES,
        ),
        PurposeDefinition(
            "pedestrian_flow_statistics",
            "Pedestrian flow statistics",
            "Anonymous counts of pedestrians crossing counting lines, to plan pavements, crossings and "
            "public spaces.",
            outputs=("line_crossings",),
            object_classes=("person",),
        ),
        PurposeDefinition(
            "occupancy_statistics",
            "Occupancy statistics",
            "Anonymous figures of how many people and vehicles use a space and for how long (occupancy and "
            "dwell-time buckets), to plan squares, markets and car parks.",
            outputs=("zone_occupancy", "dwell_time"),
            object_classes=OBJECT_CLASSES,
        ),
        PurposeDefinition(
            "security_events",
            "Security events (legal authorisation required)",
            "Detection of the closed list of events of décret 2023-828 art. 3, each alert confirmed or "
            "dismissed by an operator, only under a recorded legal text and within the dates of an "
            "authorising decision; off by default.",
            outputs=("security_alerts",),
            object_classes=OBJECT_CLASSES,
            needs_authorisation=True,
        ),
    )
}


def purpose_code(name: str) -> Purpose.ValueType:
    return Purpose.Value(f"PURPOSE_{name.upper()}")


def output_code(name: str) -> AnalysisOutput.ValueType:
    return AnalysisOutput.Value(f"ANALYSIS_OUTPUT_{name.upper()}")


def class_code(name: str) -> ObjectClass.ValueType:
    return ObjectClass.Value(f"OBJECT_CLASS_{name.upper()}")


def security_event_code(name: str) -> SecurityEventKind.ValueType:
    return SecurityEventKind.Value(f"SECURITY_EVENT_KIND_{name.upper()}")
