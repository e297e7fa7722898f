"""Ingest service: camera sources (files, RTSP, HTTP) sampled and resized into frames for the model."""

from vigie_core.masks import PrivacyMasks
from vigie_ingest.camera import CameraConfig, LiveConnectionPolicy
from vigie_ingest.camera_set import CameraSet, Publish
from vigie_ingest.directives import CameraControl, CameraDirectives
from vigie_ingest.frame import CapturedFrame
from vigie_ingest.policy_gate import PolicyGate
from vigie_ingest.pyav_source import PyAVCameraSource
from vigie_ingest.resize import FrameResizer, fit_within
from vigie_ingest.sampling import RateSampler
from vigie_ingest.source import (
    CameraSourceError,
    CameraState,
    CameraStatus,
    FrameSource,
    InMemoryFrameSource,
)

__all__ = [
    "CameraConfig",
    "CameraControl",
    "CameraDirectives",
    "CameraSet",
    "CameraSourceError",
    "CameraState",
    "CameraStatus",
    "CapturedFrame",
    "FrameResizer",
    "FrameSource",
    "InMemoryFrameSource",
    "LiveConnectionPolicy",
    "PolicyGate",
    "PrivacyMasks",
    "Publish",
    "PyAVCameraSource",
    "RateSampler",
    "fit_within",
]
