"""The shapes the registry API returns (and the small bodies it takes besides a camera's declaration)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vigie_core.settings import CameraId
from vigie_registry.camera import SAMPLE_SECONDS_MAX, SAMPLE_SECONDS_MIN
from vigie_registry.declaration import CameraDeclaration, CameraStatusName

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

__all__ = [
    "CameraOut",
    "CameraPage",
    "NamedDescription",
    "ObjectionReceipt",
    "ObjectionRequest",
    "PublicCamera",
    "PublicCameraPage",
    "PurposeOut",
    "PurposesPage",
    "ReceiptCheck",
    "ReceiptVerdict",
    "SceneViewOut",
    "SourceOut",
    "StatusChange",
    "ViewRequestAccepted",
    "ViewRequestBody",
    "policy_document",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceOut(_Body):
    display_url: str = Field(description="the source URL without its password nor query values")
    has_credentials: bool


class CameraOut(CameraDeclaration):
    """A camera as the admin API shows it: its declaration, status, policy version and live state."""

    id: CameraId
    status: CameraStatusName
    status_reason: str = Field(description="why the registry itself last set the status, if it did")
    source: SourceOut
    version: int = Field(description="the policy version of the last change")
    policy_published: bool = Field(description="whether the policy bucket holds this version")
    paused_until: str | None = Field(description="the end of the latest objection's pause (ISO 8601)")
    live_state: Literal["analysing", "paused_by_objection", "off"]
    created_at: str
    updated_at: str


class CameraPage(_Body):
    cameras: list[CameraOut]


class StatusChange(_Body):
    status: CameraStatusName


class NamedDescription(_Body):
    name: str
    description: str


class PurposeOut(_Body):
    name: str
    title: str
    description: str
    outputs: list[NamedDescription]
    object_classes: list[str]
    needs_authorisation: bool = Field(
        description="needs a legal text and an authorisation window (security_events, docs/privacy.md rule 5)"
    )


class PurposesPage(_Body):
    purposes: list[PurposeOut]
    security_event_kinds: list[NamedDescription]


class ObjectionRequest(_Body):
    duration_s: int | None = Field(
        None,
        ge=60,
        le=86_400,
        description="how long to pause; default and maximum are the registry's settings",
    )


class ReceiptCheck(_Body):
    """A receipt as the objection returned it."""

    receipt_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    camera_id: CameraId
    recorded_at: int = Field(ge=0, le=2**40)
    paused_until: int = Field(ge=0, le=2**40)
    signature: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="base64url, as returned")


class ObjectionReceipt(_Body):
    receipt: ReceiptCheck
    paused_until: str = Field(description="the end of the pause (ISO 8601)")
    extended: bool = Field(description="the camera was already paused: the pause was extended, not stacked")
    applied: bool = Field(
        description="the pause is in the policy bucket (false: recorded, being applied within seconds)"
    )


class ReceiptVerdict(_Body):
    valid: bool = Field(description="the signature is the registry's")
    recorded: bool = Field(description="the objection is in the registry's records (kept for a year)")


class PublicCamera(_Body):
    camera_id: str
    name: str
    address: str
    latitude: float
    longitude: float
    purpose: str
    purpose_title: str
    state: Literal["analysing", "paused_by_objection", "off"]
    paused_until: str | None
    objection_available: bool


class PublicCameraPage(_Body):
    cameras: list[PublicCamera]


class ViewRequestBody(_Body):
    motive: str = Field(
        min_length=1,
        max_length=1000,
        description="why a view of this camera is needed (recorded in the audit journal)",
        examples=["drawing the counting line of the north gate"],
    )
    sample_seconds: int | None = Field(
        None,
        ge=SAMPLE_SECONDS_MIN,
        le=SAMPLE_SECONDS_MAX,
        description="how long frames are sampled (long enough for passers-by to vanish); default: the "
        "registry's setting (60 s)",
    )

    @field_validator("motive")
    @classmethod
    def _said(cls, value: str) -> str:
        text = value.strip()
        if not text or _CONTROL.search(text):
            raise ValueError("say why, in at most 1000 characters without control characters: it is audited")
        return text


class ViewRequestAccepted(_Body):
    request_id: str = Field(description="the request the view will answer (a UUID)")
    requested_at: str = Field(description="ISO 8601")
    sample_seconds: int
    state: Literal["pending"]
    answer_by: str = Field(
        description="after this (ISO 8601) the request is no longer carried out: the view is then expired"
    )


class SceneViewOut(_Body):
    """A camera's view of its scene without its people, or where its current request stands."""

    camera_id: str
    state: Literal["none", "pending", "ready", "refused", "expired"] = Field(
        description="none: never asked; pending: asked, no answer yet; ready: the picture is at image_url; "
        "refused: inference could not make one (reason); expired: no answer in time, ask again"
    )
    request_id: str | None = None
    requested_at: str | None = Field(None, description="ISO 8601")
    sample_seconds: int | None = None
    answer_by: str | None = Field(None, description="ISO 8601: when a pending request expires")
    reason: str | None = Field(None, description="refused: why, in words an operator can act on")
    built_at: str | None = Field(None, description="ISO 8601")
    frames: int | None = Field(None, description="frames sampled")
    sampled_seconds: float | None = Field(None, description="over how long")
    width: int | None = None
    height: int | None = None
    image_url: str | None = Field(None, description="ready: the picture (image/jpeg)")


def policy_document(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    document: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return document
