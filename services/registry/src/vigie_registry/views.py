"""Scene views: a picture of a camera's scene without its people, for operators to draw counting lines on.

An administrator asks for one (:meth:`SceneViews.request`): the registry records the camera's one current
request (:class:`~vigie_registry.camera.SceneViewRequest`; a new one replaces the older), audits it with its
motive and republishes the camera's policy carrying it (``view_request``). The inference replica analysing
the camera builds the view inside the boundary and publishes a ``vigie.v1.SceneViewResult``
(``proto/vigie_proto/v1/views.proto``) on ``vigie.views.<camera>``, into the stream VIEWS of the registry's
NATS account, which keeps one message per camera. When asked, the registry reads that message (a direct
get: no consumer) and accepts it only if it answers the camera's current request; anything else is ignored:
counted (``vigie_registry_views_rejected_total{reason}``), logged without its content and recorded once as
a boundary fault.

A request is answered within its ``sample_seconds`` plus ten minutes or never (inference does not carry out
an older one): after that the view is ``expired`` and the operator asks again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from google.protobuf.message import DecodeError

from vigie_core.audit import AuditAction, AuditOutcome, AuditPublisher
from vigie_core.permissions import LOCAL_API
from vigie_core.streams import ViewsStream, views_subject
from vigie_proto.v1.views_pb2 import SceneViewResult
from vigie_registry.camera import SceneViewRequest, StoredCamera
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.publication import CameraPublisher
from vigie_registry.settings import SceneViewSettings
from vigie_registry.storage.store import RegistryStore

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = [
    "ANSWER_WITHIN_S",
    "PUBLIC_VIEW_TTL_S",
    "SCENE_VIEW_SCHEMA_VERSION",
    "CameraNotAnalysedError",
    "MemoryViewReader",
    "NatsViewReader",
    "PublishedView",
    "SceneView",
    "SceneViewStateName",
    "SceneViews",
    "TooSoonError",
    "ViewReader",
    "ViewsUnavailableError",
    "judge_view",
]

logger = logging.getLogger("vigie.registry.views")

SCENE_VIEW_SCHEMA_VERSION = 1
# How long after its sampling a request may still be answered (policy.proto, ViewRequest).
ANSWER_WITHIN_S = 600
# How long the public site shows a camera's view as read, before reading VIEWS again (SceneViews.recent).
PUBLIC_VIEW_TTL_S = 5.0
# What an answer may say of why no view was made, as shown (inference writes a sentence).
_REASON_MAX = 500
_JPEG_START = b"\xff\xd8"
VIEWS_STREAM = ViewsStream().config().name or "VIEWS"

SceneViewStateName = Literal["none", "pending", "ready", "refused", "expired"]
# Why a message was not accepted: a closed list (a metric label).
RejectReason = Literal["malformed", "unknown_schema", "other_camera", "not_requested"]


class ViewsUnavailableError(Exception):
    """The views cannot be read now (NATS, or the stream VIEWS not provisioned)."""


class CameraNotAnalysedError(Exception):
    """The camera is not active: inference does not analyse it, so no view can be made."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TooSoonError(Exception):
    """A request for this camera was made less than ``min_interval_s`` ago."""

    def __init__(self, retry_after_s: int, min_interval_s: int) -> None:
        super().__init__(
            f"one view request per camera every {min_interval_s} s at most (views are not a way to sample "
            f"the street continuously): ask again in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class PublishedView:
    """The latest message on a camera's subject of VIEWS, as stored: its bytes and its stream sequence."""

    data: bytes
    sequence: int


class ViewReader(Protocol):
    """Where the registry reads each camera's latest scene view."""

    async def latest(self, camera_id: str) -> PublishedView | None:
        """The latest message of the camera (None: none); :class:`ViewsUnavailableError` if unreadable."""
        ...


class NatsViewReader:
    """The stream VIEWS, in the registry's own account, read by direct gets of a subject's last message (no
    consumer: the server answers the requester alone)."""

    def __init__(self, nc: Client, *, api: str = LOCAL_API, timeout_s: float = 2.0) -> None:
        self._nc = nc
        self._subject = f"{api}.DIRECT.GET.{VIEWS_STREAM}"
        self._timeout_s = timeout_s

    async def latest(self, camera_id: str) -> PublishedView | None:
        from nats.errors import Error as NatsError
        from nats.errors import NoRespondersError

        try:
            message = await self._nc.request(
                f"{self._subject}.{views_subject(camera_id)}", b"", timeout=self._timeout_s
            )
        except NoRespondersError:
            raise ViewsUnavailableError(
                f"the stream {VIEWS_STREAM} does not exist yet (the provisioner creates it)"
            ) from None
        except (NatsError, TimeoutError, OSError) as error:
            raise ViewsUnavailableError(f"NATS did not answer ({type(error).__name__})") from None
        headers = message.headers or {}
        status = headers.get("Status")
        if status == "404":
            return None
        if status is not None:
            raise ViewsUnavailableError(f"direct get from {VIEWS_STREAM}: status {status}")
        return PublishedView(message.data, int(headers.get("Nats-Sequence", "0")))


class MemoryViewReader:
    """In-memory views for unit tests: :meth:`publish` as inference would; ``fail`` makes reads raise."""

    def __init__(self) -> None:
        self.views: dict[str, PublishedView] = {}
        self.fail = False
        self.reads = 0
        self._sequence = 0

    def publish(self, camera_id: str, data: bytes) -> None:
        self._sequence += 1
        self.views[camera_id] = PublishedView(data, self._sequence)

    async def latest(self, camera_id: str) -> PublishedView | None:
        self.reads += 1
        if self.fail:
            raise ViewsUnavailableError("simulated NATS outage")
        return self.views.get(camera_id)


@dataclass(frozen=True, slots=True)
class SceneView:
    """What the registry says of a camera's view: its current request and, once accepted, the answer."""

    state: SceneViewStateName
    request: SceneViewRequest | None
    answer: SceneViewResult | None = None

    @property
    def answer_by(self) -> int | None:
        """Unix seconds after which the request is no longer carried out."""
        if self.request is None:
            return None
        return self.request.requested_at + self.request.sample_seconds + ANSWER_WITHIN_S

    @property
    def reason(self) -> str | None:
        if self.answer is None or self.state != "refused":
            return None
        return " ".join(self.answer.refused.split())[:_REASON_MAX]

    @property
    def jpeg(self) -> bytes | None:
        return self.answer.image.jpeg if self.answer is not None and self.state == "ready" else None


def _rejection(
    camera_id: str, request: SceneViewRequest | None, data: bytes
) -> RejectReason | SceneViewResult:
    try:
        result = SceneViewResult.FromString(data)
    except DecodeError:
        return "malformed"
    if result.schema_version != SCENE_VIEW_SCHEMA_VERSION:
        return "unknown_schema"
    if result.camera_id != camera_id:
        return "other_camera"
    if request is None or result.request_id != request.request_id:
        return "not_requested"
    kind = result.WhichOneof("result")
    if kind == "image":
        image = result.image
        if not image.jpeg.startswith(_JPEG_START) or not image.width or not image.height:
            return "malformed"
    elif kind != "refused" or not result.refused.strip():
        return "malformed"
    return result


def judge_view(
    camera_id: str, request: SceneViewRequest | None, published: PublishedView | None, now: float
) -> tuple[SceneView, RejectReason | None]:
    """The camera's view given its current request and the latest message published for it, and why that
    message was not accepted (None: accepted, or none)."""
    rejected: RejectReason | None = None
    if published is not None:
        judged = _rejection(camera_id, request, published.data)
        if isinstance(judged, SceneViewResult):
            return SceneView("ready" if judged.HasField("image") else "refused", request, judged), None
        rejected = judged
    if request is None:
        return SceneView("none", None), rejected
    view = SceneView("pending", request)
    if view.answer_by is not None and now >= view.answer_by:
        view = replace(view, state="expired")
    return view, rejected


class SceneViews:
    """Asking for a camera's view (record, audit, republish the policy) and reading it back."""

    def __init__(
        self,
        *,
        store: RegistryStore,
        publisher: CameraPublisher,
        audit: AuditPublisher,
        reader: ViewReader,
        settings: SceneViewSettings,
        metrics: RegistryMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._audit = audit
        self._reader = reader
        self.settings = settings
        self._metrics = metrics
        self._clock = clock
        # The last message rejected per camera (its stream sequence), counted once however often it is read.
        self._rejected: dict[str, int] = {}

    async def request(
        self, camera_id: str, *, actor: str, motive: str, sample_seconds: int | None = None
    ) -> StoredCamera:
        """Record a new request for ``camera_id``'s view, replacing any older one; its policy carries it.

        Raises :class:`CameraNotAnalysedError`, :class:`TooSoonError`,
        :class:`~vigie_registry.storage.store.CameraNotFoundError`, and the audit publisher's errors (what
        cannot be audited is not done).
        """
        now = int(self._clock())
        wanted = SceneViewRequest(
            request_id=str(uuid.uuid4()),
            requested_at=now,
            sample_seconds=sample_seconds or self.settings.default_sample_seconds,
        )

        def ask(camera: StoredCamera) -> StoredCamera:
            if camera.status != "active":
                raise CameraNotAnalysedError(
                    f"camera {camera.id!r} is {camera.status}: inference does not analyse it, so no view of "
                    "it can be made (activate it first)"
                )
            last = camera.view_request
            if last is not None and now < last.requested_at + self.settings.min_interval_s:
                interval = self.settings.min_interval_s
                raise TooSoonError(max(1, last.requested_at + interval - now), interval)
            return replace(camera, view_request=wanted)

        async def audit_request(old: StoredCamera | None, new: StoredCamera | None) -> None:
            assert old is not None
            assert new is not None
            replaced = old.view_request
            await self._audit.record(
                AuditAction.AUDIT_ACTION_POLICY_CHANGE,
                actor=actor,
                motive=motive,
                camera_ids=[new.id],
                records=[("camera", new.id), ("view_request", wanted.request_id)],
                details={
                    "version": str(new.version),
                    "changed": "view_request",
                    "status": new.status,
                    "sample_seconds": str(wanted.sample_seconds),
                    **({"replaces": replaced.request_id} if replaced is not None else {}),
                },
            )

        _old, new = await self._store.change(camera_id, ask, now=now, before_commit=audit_request)
        self._metrics.view_requests.inc()
        await self._publisher.publish(new)
        return new

    async def view(self, camera: StoredCamera) -> SceneView:
        """The camera's view now; :class:`ViewsUnavailableError` when VIEWS cannot be read."""
        request = camera.view_request
        published = await self._reader.latest(camera.id)
        view, rejected = judge_view(camera.id, request, published, self._clock())
        if rejected is not None and published is not None:
            await self._reject(camera.id, rejected, published.sequence)
        return view

    def recent(self, ttl_s: float = PUBLIC_VIEW_TTL_S) -> Callable[[StoredCamera], Awaitable[SceneView]]:
        """:meth:`view` for anonymous visitors (the public site): each camera's view read from VIEWS at most
        once every ``ttl_s`` for its current request, so that page loads cannot make the registry read up
        to 256 KiB from NATS each. A failed read is not kept."""
        kept: dict[str, tuple[str | None, float, SceneView]] = {}

        async def recent_view(camera: StoredCamera) -> SceneView:
            asked = camera.view_request.request_id if camera.view_request is not None else None
            now = self._clock()
            hit = kept.get(camera.id)
            if hit is not None and hit[0] == asked and now < hit[1]:
                return hit[2]
            view = await self.view(camera)
            kept[camera.id] = (asked, now + ttl_s, view)
            return view

        return recent_view

    async def _reject(self, camera_id: str, reason: RejectReason, sequence: int) -> None:
        if self._rejected.get(camera_id) == sequence:
            return
        self._rejected[camera_id] = sequence
        self._metrics.views_rejected.labels(reason).inc()
        logger.warning("camera %s: a scene view was ignored (%s)", camera_id, reason)
        if reason == "not_requested":
            return  # an answer to a request since replaced, most often: not a fault of the boundary
        try:
            await self._audit.record_throttled(
                ("scene_view", camera_id, reason),
                AuditAction.AUDIT_ACTION_BOUNDARY_FAULT,
                motive="a message in VIEWS that is no answer to this camera's view request: ignored",
                camera_ids=[camera_id],
                outcome=AuditOutcome.AUDIT_OUTCOME_DENIED,
                details={"stream": VIEWS_STREAM, "reason": reason, "sequence": str(sequence)},
            )
        except Exception as error:  # the view is ignored anyway; the metric and the log say so
            logger.warning("camera %s: the ignored view could not be audited (%s)", camera_id, error)
