"""The shapes the registry API returns (and the small bodies it takes besides a camera's declaration)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vigie_core.settings import CameraId
from vigie_registry.declaration import CameraDeclaration, CameraStatusName

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
    "SourceOut",
    "StatusChange",
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


def policy_document(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    document: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return document
