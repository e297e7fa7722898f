"""Each camera's policy as the services read it: may this camera be analysed now, with which masks,
sampling, lines, zones and outputs.

The registry publishes one :class:`CameraPolicy` (``proto/vigie_proto/v1/policy.proto``) per camera to the
NATS key-value bucket ``vigie-policy`` (:data:`~vigie_core.permissions.POLICY_BUCKET`, key: the camera
id). A service watches it with a :class:`PolicyWatcher` and asks, for every frame or track::

    policies = await start_policy_watcher(runtime, nc)
    decision = policies.decision(camera_id)
    if not decision.analyse:
        ...  # drop it; decision.reason says why

**Fail closed.** A camera is analysed only when its policy is known and says so: a camera with no entry,
an entry that does not decode or has a ``schema_version`` this code does not know, and every camera while
the bucket cannot be read (not yet created, NATS disconnected, the watch being re-established after a
reconnection) is *not analysed*. The watcher says so on ``/readyz`` (check ``policy``), in the metrics
``vigie_policy_synced`` and ``vigie_policy_unreadable_entries``, and in a log line when it happens.

:func:`decide` is the rule itself (status, objection pause, authorisation window), pure and clock-free;
every decision names its cause from :data:`DECISION_CAUSES` (a bounded metric label).
:class:`StaticPolicies` is an in-memory :class:`PolicyView` for unit tests.

Each consuming service has a ``policy`` settings section (:class:`PolicySettings`) and starts its watcher
with :func:`policy_view`, which waits for a first read of the bucket at start. ``policy.enabled`` is true
by default; false runs on the service's static configuration alone (no registry: tools, unit tests), and
says so in a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field

from vigie_core.kv import KeyValueWatcher, NatsBucket
from vigie_core.permissions import LOCAL_API, POLICY_BUCKET
from vigie_proto.v1.policy_pb2 import (
    AnalysisOutput,
    CameraPolicy,
    CameraStatus,
    LineDirections,
    PositionAnchor,
    Purpose,
    SecurityEventKind,
)
from vigie_proto.v1.tracks_pb2 import ObjectClass

if TYPE_CHECKING:
    from nats.aio.client import Client

    from vigie_core.lifecycle import ServiceRuntime

__all__ = [
    "DECISION_CAUSES",
    "POLICY_BUCKET",
    "POLICY_SCHEMA_VERSION",
    "AnalysisDecision",
    "CameraPolicy",
    "PolicySettings",
    "PolicyView",
    "PolicyWatcher",
    "StaticPolicies",
    "UnreadablePolicyError",
    "class_name",
    "decide",
    "decode_policy",
    "encode_policy",
    "geometry_document",
    "policy_view",
    "start_policy_watcher",
    "timestamp",
]

logger = logging.getLogger("vigie.policy")

# The format this code reads and writes. A consumer refuses (fails closed on) any other: a newer registry
# may have added a rule (a new kind of mask, say) that an older consumer would otherwise silently ignore,
# since protobuf skips unknown fields.
POLICY_SCHEMA_VERSION = 1


# Why a camera is, or is not, analysed: bounded values for metric labels (``AnalysisDecision.cause``).
DECISION_CAUSES = (
    "analysing",
    "policy_unavailable",  # the bucket cannot be read now (missing, NATS lost, being read again)
    "no_policy",  # no entry for this camera
    "unreadable_policy",  # an entry this code cannot apply
    "inactive",  # status draft, paused or retired
    "objection_pause",  # paused by a citizen's objection
    "outside_authorisation",  # security_events outside its authorisation window
)


class PolicySettings(BaseModel):
    """How a service follows the policy bucket (the ``policy`` section of ingest, inference, anonymiser).

    ``enabled`` is true by default: a camera is analysed only when the registry's policy allows it, and
    nothing is analysed while the policy cannot be read (fail closed). False runs on the static
    configuration alone, as before the registry existed: for a deployment without a registry, tools and
    unit tests; it is logged as a warning at start.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True, description="follow the registry's policy bucket (false: static configuration only)"
    )
    startup_wait_s: float = Field(
        10.0,
        ge=0,
        le=300,
        description="how long to wait at start for a first complete read of the bucket before working "
        "anyway (failing closed meanwhile), so that a camera is not refused only because the read was late",
    )


class UnreadablePolicyError(ValueError):
    """A bucket entry that is not a policy this code can apply: the camera is not analysed."""


def _seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def encode_policy(policy: CameraPolicy) -> bytes:
    """The bucket value of a policy (deterministic, so an unchanged policy has unchanged bytes)."""
    _check(policy.camera_id, policy)
    return policy.SerializeToString(deterministic=True)


def decode_policy(key: str, payload: bytes) -> CameraPolicy:
    """The policy stored under ``key``; raises :class:`UnreadablePolicyError` naming what is wrong."""
    policy = CameraPolicy()
    try:
        policy.ParseFromString(payload)
    except DecodeError as error:
        raise UnreadablePolicyError(f"not a vigie.v1.CameraPolicy message ({error})") from None
    _check(key, policy)
    return policy


def _check(key: str, policy: CameraPolicy) -> None:
    if policy.schema_version != POLICY_SCHEMA_VERSION:
        raise UnreadablePolicyError(
            f"schema_version {policy.schema_version}, this service reads {POLICY_SCHEMA_VERSION} only"
        )
    if policy.camera_id != key:
        raise UnreadablePolicyError(f"the entry of camera {key!r} is the policy of {policy.camera_id!r}")
    if policy.status not in CameraStatus.values() or policy.status == CameraStatus.CAMERA_STATUS_UNSPECIFIED:
        raise UnreadablePolicyError(f"status {policy.status} is not a known camera status")
    if policy.purpose not in Purpose.values() or policy.purpose == Purpose.PURPOSE_UNSPECIFIED:
        raise UnreadablePolicyError(f"purpose {policy.purpose} is not a known purpose")
    # Enums are open in proto3: a value this code does not know is a rule it cannot apply.
    known: list[tuple[str, Iterable[int], Iterable[int]]] = [
        ("outputs", policy.outputs, AnalysisOutput.values()),
        ("object_classes", policy.object_classes, ObjectClass.values()),
        ("security_events", policy.security_events, SecurityEventKind.values()),
        ("anchor", [policy.anchor], PositionAnchor.values()),
    ]
    for line in policy.lines:
        known.append((f"line {line.id}", line.classes, ObjectClass.values()))
        known.append((f"line {line.id}", [line.directions], LineDirections.values()))
    for zone in policy.zones:
        known.append((f"zone {zone.id}", zone.classes, ObjectClass.values()))
    for field, values, allowed in known:
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise UnreadablePolicyError(f"{field}: unknown value(s) {unknown} (a newer registry?)")


@dataclass(frozen=True, slots=True)
class AnalysisDecision:
    """Whether a camera may be analysed now, and why (for logs, metrics and the coverage of figures)."""

    camera_id: str
    analyse: bool
    reason: str
    policy: CameraPolicy | None = None
    # One of DECISION_CAUSES: ``reason`` for metrics.
    cause: str = "analysing"

    @property
    def version(self) -> int | None:
        return self.policy.version if self.policy is not None else None


def decide(camera_id: str, policy: CameraPolicy, now: float) -> AnalysisDecision:
    """The rule of ``policy.proto``: ACTIVE, not paused by an objection, within any authorisation window."""
    if policy.status != CameraStatus.CAMERA_STATUS_ACTIVE:
        status = CameraStatus.Name(policy.status).removeprefix("CAMERA_STATUS_").lower()
        return AnalysisDecision(camera_id, False, f"the camera's status is {status}", policy, "inactive")
    if policy.HasField("paused_until") and now < _seconds(policy.paused_until):
        until = policy.paused_until.ToDatetime(UTC).isoformat()
        return AnalysisDecision(
            camera_id, False, f"paused by an objection until {until}", policy, "objection_pause"
        )
    if policy.purpose == Purpose.PURPOSE_SECURITY_EVENTS:
        # docs/privacy.md rule 5: security_events runs only inside its authorisation window, whatever
        # its status.
        if not (policy.HasField("authorised_from") and policy.HasField("authorised_until")):
            return AnalysisDecision(
                camera_id,
                False,
                "security_events without an authorisation window",
                policy,
                "outside_authorisation",
            )
        if not _seconds(policy.authorised_from) <= now < _seconds(policy.authorised_until):
            return AnalysisDecision(
                camera_id, False, "outside the authorisation window", policy, "outside_authorisation"
            )
    return AnalysisDecision(camera_id, True, "analysing", policy)


class PolicyView(Protocol):
    """What a service asks about policies; :class:`PolicyWatcher` in production, :class:`StaticPolicies`
    in unit tests."""

    def decision(self, camera_id: str, now: float | None = None) -> AnalysisDecision: ...

    def policy(self, camera_id: str) -> CameraPolicy | None: ...

    def problem(self) -> str | None: ...

    def cameras(self) -> list[str]: ...


class StaticPolicies:
    """Policies held in memory (unit tests, tools): the same answers as the watcher, with no NATS."""

    def __init__(
        self, policies: Iterable[CameraPolicy] = (), *, clock: Callable[[], float] = time.time
    ) -> None:
        self._policies = {p.camera_id: p for p in policies}
        self._clock = clock

    def set(self, policy: CameraPolicy) -> None:
        _check(policy.camera_id, policy)
        self._policies[policy.camera_id] = policy

    def remove(self, camera_id: str) -> None:
        self._policies.pop(camera_id, None)

    def policy(self, camera_id: str) -> CameraPolicy | None:
        return self._policies.get(camera_id)

    def problem(self) -> str | None:
        return None

    def cameras(self) -> list[str]:
        return sorted(self._policies)

    def decision(self, camera_id: str, now: float | None = None) -> AnalysisDecision:
        policy = self._policies.get(camera_id)
        if policy is None:
            return AnalysisDecision(camera_id, False, "no policy for this camera", cause="no_policy")
        return decide(camera_id, policy, self._clock() if now is None else now)


@dataclass(frozen=True, slots=True)
class _Entry:
    policy: CameraPolicy | None
    revision: int
    error: str | None = None


class _WatcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.synced = Gauge(
            "vigie_policy_synced",
            "1 when this service knows the current policy of every camera; 0: nothing is analysed",
            registry=registry,
        )
        self.entries = Gauge("vigie_policy_entries", "Cameras with a policy in the bucket", registry=registry)
        self.unreadable = Gauge(
            "vigie_policy_unreadable_entries",
            "Cameras whose policy entry cannot be read (they are not analysed)",
            registry=registry,
        )
        self.updates = Counter(
            "vigie_policy_updates", "Policy entries received (puts and deletes)", registry=registry
        )
        self.last_update = Gauge(
            "vigie_policy_last_update_timestamp_seconds",
            "When this service last applied a change read from the policy bucket (Unix time)",
            registry=registry,
        )
        self.watch_failures = Counter(
            "vigie_policy_watch_failures",
            "Times the watch of the policy bucket was lost or could not start (and was retried)",
            registry=registry,
        )


class PolicyWatcher(KeyValueWatcher[_Entry]):
    """Watches the policy bucket (the loop of :class:`~vigie_core.kv.KeyValueWatcher`) and answers from
    memory; fails closed (see the module's doc): nothing is analysed while :meth:`problem` says why not.

    ``start`` returns at once; :meth:`wait_synced` waits for the first complete view of the bucket.
    """

    _subject = "policy bucket"
    _while_lost = "no camera is analysed until it is read again"
    _logger = logger

    def __init__(
        self,
        nc: Client,
        *,
        api: str = LOCAL_API,
        bucket: str = POLICY_BUCKET,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        retry_s: float = 1.0,
        check_s: float = 0.25,
    ) -> None:
        """``api``: the JetStream API prefix the bucket is reached under (the registry's account's, from
        another account: :func:`vigie_core.messaging.jetstream_api`)."""
        self._metrics = _WatcherMetrics(registry or CollectorRegistry())
        super().__init__(NatsBucket(nc, bucket, api), bucket, self._metrics, retry_s=retry_s, check_s=check_s)
        self._clock = clock
        self._warned_unknown: set[str] = set()

    # -- what services ask ------------------------------------------------------------------------------

    def policy(self, camera_id: str) -> CameraPolicy | None:
        """The camera's current policy, or None when it is unknown or unreadable (do not analyse)."""
        if self.problem() is not None:
            return None
        entry = (self._view or {}).get(camera_id)
        return entry.policy if entry is not None else None

    def decision(self, camera_id: str, now: float | None = None) -> AnalysisDecision:
        problem = self.problem()
        if problem is not None:
            return AnalysisDecision(
                camera_id, False, f"policy unknown: {problem}", cause="policy_unavailable"
            )
        entry = (self._view or {}).get(camera_id)
        if entry is None:
            if camera_id not in self._warned_unknown:
                self._warned_unknown.add(camera_id)
                logger.warning("camera %s has no policy in %s: it is not analysed", camera_id, self._bucket)
            return AnalysisDecision(
                camera_id, False, f"no policy for this camera in {self._bucket}", cause="no_policy"
            )
        if entry.policy is None:
            return AnalysisDecision(
                camera_id, False, f"unreadable policy: {entry.error}", cause="unreadable_policy"
            )
        return decide(camera_id, entry.policy, self._clock() if now is None else now)

    def cameras(self) -> list[str]:
        """The cameras with an entry (readable or not) in the bucket."""
        return sorted(self._view or ())

    @property
    def synced(self) -> bool:
        return self.problem() is None

    async def wait_synced(self, timeout_s: float = 10.0) -> None:
        await self.wait_until(lambda: self.synced, timeout_s)

    # -- the watch's entries ----------------------------------------------------------------------------

    def _decode(self, key: str, value: bytes, revision: int) -> _Entry:
        try:
            policy = decode_policy(key, value)
        except UnreadablePolicyError as error:
            logger.error("camera %s: unreadable policy (revision %d), not analysed: %s", key, revision, error)
            return _Entry(None, revision, str(error))
        self._warned_unknown.discard(key)
        return _Entry(policy, revision)

    def _entry_read(self, key: str, before: _Entry | None, after: _Entry | None, *, live: bool) -> None:
        self._metrics.updates.inc()
        if not live:
            return
        if after is None:
            if before is not None:
                self._metrics.last_update.set(self._clock())
                logger.info("camera %s: policy removed, it is no longer analysed", key)
        elif after.policy is not None:
            self._metrics.last_update.set(self._clock())
            logger.info("camera %s: policy version %d applied", key, after.policy.version)

    def _view_changed(self) -> None:
        entries = self._view or {}
        self._metrics.entries.set(len(entries))
        self._metrics.unreadable.set(sum(1 for e in entries.values() if e.policy is None))


async def start_policy_watcher(runtime: ServiceRuntime, nc: Client, **options: Any) -> PolicyWatcher:
    """The service's watcher on its NATS connection: ``policy`` readiness check, closed with the runtime.

    Call it after registering ``nc.drain`` on the runtime's exit stack, so the watcher stops first.
    """
    from vigie_core.messaging import jetstream_api

    options.setdefault("api", jetstream_api(runtime.settings.nats, runtime.name, f"KV_{POLICY_BUCKET}"))
    watcher = PolicyWatcher(nc, registry=runtime.registry, **options)
    await watcher.start()
    runtime.exit_stack.push_async_callback(watcher.close)
    runtime.readiness.add("policy", watcher.problem)
    return watcher


async def policy_view(
    runtime: ServiceRuntime, nc: Client, settings: PolicySettings, **options: Any
) -> PolicyWatcher | None:
    """The service's watcher when ``settings.enabled``, once it has read the bucket (or after
    ``startup_wait_s``, failing closed until it does); None, with a warning, when the policy is off."""
    if not settings.enabled:
        logger.warning(
            "policy.enabled is false: the registry's policy (pauses, masks, purposes) is NOT applied; "
            "every configured camera is analysed with the static configuration"
        )
        return None
    watcher = await start_policy_watcher(runtime, nc, **options)
    try:
        await watcher.wait_synced(settings.startup_wait_s)
    except TimeoutError:
        logger.error(
            "the policy bucket %s could not be read within %.1f s (%s): no camera is analysed until it is",
            POLICY_BUCKET,
            settings.startup_wait_s,
            watcher.problem(),
        )
    return watcher


# -- the shapes the anonymiser configures itself with --------------------------------------------------

_CLASS_NAMES: Mapping[int, str] = {
    value: name.removeprefix("OBJECT_CLASS_").lower()
    for name, value in ObjectClass.items()
    if value != ObjectClass.OBJECT_CLASS_UNSPECIFIED
}
_DIRECTIONS: Mapping[int, str] = {
    LineDirections.LINE_DIRECTIONS_BOTH: "both",
    LineDirections.LINE_DIRECTIONS_LEFT_TO_RIGHT: "left_to_right",
    LineDirections.LINE_DIRECTIONS_RIGHT_TO_LEFT: "right_to_left",
}
_ANCHORS: Mapping[int, str] = {
    PositionAnchor.POSITION_ANCHOR_BOTTOM_CENTRE: "bottom_centre",
    PositionAnchor.POSITION_ANCHOR_CENTRE: "centre",
}


def class_name(value: int) -> str:
    return _CLASS_NAMES[value]


def geometry_document(policy: CameraPolicy) -> dict[str, Any]:
    """The camera's lines, zones and window in the shape of the anonymiser's ``CameraGeometryConfig``.

    Only what the purpose's outputs allow: no line without line crossings, no zone without an output that
    measures zones. A line or zone without classes counts the classes of the camera's purpose (the
    policy's ``object_classes``), never all six.
    """
    outputs = set(policy.outputs)
    lines = policy.lines if AnalysisOutput.ANALYSIS_OUTPUT_LINE_CROSSINGS in outputs else []
    zone_outputs = {AnalysisOutput.ANALYSIS_OUTPUT_ZONE_OCCUPANCY, AnalysisOutput.ANALYSIS_OUTPUT_DWELL_TIME}
    zones = policy.zones if outputs & zone_outputs else []
    return {
        "id": policy.camera_id,
        "reporting_window_s": policy.reporting_window_seconds,
        "reporting_window_justification": policy.reporting_window_justification,
        "anchor": _ANCHORS.get(policy.anchor, "bottom_centre"),
        "lines": [
            {
                "id": line.id,
                "start": (line.start.x, line.start.y),
                "end": (line.end.x, line.end.y),
                "directions": _DIRECTIONS.get(line.directions, "both"),
                "classes": [class_name(c) for c in line.classes or policy.object_classes],
            }
            for line in lines
        ],
        "zones": [
            {
                "id": zone.id,
                "polygon": [(p.x, p.y) for p in zone.polygon],
                "classes": [class_name(c) for c in zone.classes or policy.object_classes],
            }
            for zone in zones
        ],
        "dwell_buckets_s": list(policy.dwell_bucket_seconds) or [30, 120, 600],
    }


def timestamp(value: datetime) -> Timestamp:
    """A protobuf timestamp of an aware datetime."""
    if value.tzinfo is None:
        raise ValueError("a datetime with a timezone is needed")
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp
