"""The registry's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["RegistryMetrics"]


class RegistryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.objections = Counter(
            "vigie_registry_objections",
            "Objections received, by outcome: paused, extended (a pause in progress was extended), refused "
            "(the camera is not analysing, or objection is restricted by law)",
            ["outcome"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "vigie_registry_objections_rate_limited",
            "Objections refused by the per-client rate limit (a sustained rate is an abuse: alert on it)",
            registry=registry,
        )
        self.changes = Counter(
            "vigie_registry_changes",
            "Changes of the cameras' declarations, by action (create, update, status, delete, expiry)",
            ["action"],
            registry=registry,
        )
        self.refused = Counter(
            "vigie_registry_declarations_refused",
            "Declarations refused by a privacy rule, by rule",
            ["rule"],
            registry=registry,
        )
        self.view_requests = Counter(
            "vigie_registry_view_requests",
            "Requests for a view of a camera's scene without its people, made by administrators",
            registry=registry,
        )
        self.views_rejected = Counter(
            "vigie_registry_views_rejected",
            "Messages in VIEWS ignored, by reason: not_requested (no answer to the camera's current "
            "request), other_camera, unknown_schema, malformed; each message counted once",
            ["reason"],
            registry=registry,
        )
