"""The policy at ingest, without NATS: the gate before publishing (pauses, masks, fail closed) and the
decoding thread following its camera's control (nothing decoded while paused, masks blanked in the
thread, the policy's sampling rate)."""

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from prometheus_client import CollectorRegistry

from vigie_core.masks import PrivacyMasks
from vigie_core.policy import StaticPolicies
from vigie_embedded.policies import camera_policy
from vigie_ingest import CameraConfig, CameraState, CapturedFrame, PyAVCameraSource
from vigie_ingest.directives import CameraControl, CameraDirectives
from vigie_ingest.policy_gate import PolicyGate
from vigie_proto.v1.policy_pb2 import CameraStatus

CAMERA = CameraConfig(id="parvis", url="parvis.mp4", sample_fps=5)
LEFT_HALF = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]


def frame(pixels: np.ndarray | None = None) -> CapturedFrame:
    if pixels is None:
        pixels = np.full((250, 416, 3), 200, np.uint8)
        pixels.flags.writeable = False
    return CapturedFrame("parvis", "run", 0, datetime.now(UTC), 160, 96, pixels)


def withheld(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value(
        "vigie_ingest_frames_withheld_total", {"camera": "parvis", "reason": reason}
    )
    return value or 0.0


def test_without_a_policy_for_the_camera_nothing_is_published() -> None:
    registry = CollectorRegistry()
    gate = PolicyGate([CAMERA], StaticPolicies(), registry)
    assert not gate.controls["parvis"].current.analyse, "closed before the first refresh"
    gate.refresh()
    assert gate.controls["parvis"].current.cause == "no_policy"
    assert gate.admit(frame()) is None
    assert withheld(registry, "no_policy") == 1


def test_a_pause_withholds_frames_and_its_end_lets_them_through() -> None:
    now = [1_800_000_000.0]
    policies = StaticPolicies([camera_policy("parvis")], clock=lambda: now[0])
    registry = CollectorRegistry()
    gate = PolicyGate([CAMERA], policies, registry)
    gate.refresh()
    assert gate.admit(frame()) is not None
    policies.set(camera_policy("parvis", version=2, paused_until=now[0] + 60))
    assert gate.stale()
    # The gate checks the policy itself: a frame decoded before the control was refreshed is withheld.
    assert gate.admit(frame()) is None
    assert withheld(registry, "objection_pause") == 1
    assert not gate.controls["parvis"].current.analyse, "the decoding thread stops decoding too"
    assert not gate.stale()
    now[0] += 61  # the pause ends by itself, without a new policy
    assert gate.stale()
    assert gate.refresh() == ["parvis"]
    assert gate.controls["parvis"].current.analyse
    assert gate.admit(frame()) is not None


def test_the_gate_blanks_masks_the_frame_was_decoded_without() -> None:
    policies = StaticPolicies([camera_policy("parvis", masks=[LEFT_HALF])])
    gate = PolicyGate([CAMERA], policies, CollectorRegistry())
    gate.refresh()
    masks = gate.controls["parvis"].current.masks
    assert len(masks) == 1
    original = frame()
    published = gate.admit(original)
    assert published is not None
    assert not published.pixels[:, :208].any()
    assert (published.pixels[:, 210:] == 200).all()
    assert not published.pixels.flags.writeable
    assert (original.pixels == 200).all(), "the decoded frame is not changed in place"
    assert published.masked_with == masks
    # A frame the decoding thread already blanked with these masks is published as it is.
    again = gate.admit(published)
    assert again is published


def test_the_policy_sets_the_sampling_rate_and_bad_masks_fail_closed() -> None:
    policies = StaticPolicies([camera_policy("parvis", sample_fps=2)])
    gate = PolicyGate([CAMERA], policies, CollectorRegistry())
    gate.refresh()
    assert gate.controls["parvis"].current.sample_fps == 2
    policies.set(camera_policy("parvis", version=2, masks=[[(0.0, 0.0), (1.5, 0.0), (0.0, 1.0)]]))
    gate.refresh()
    directives = gate.controls["parvis"].current
    assert not directives.analyse
    assert directives.cause == "unreadable_policy"
    assert "masks" in directives.reason
    policies.set(camera_policy("parvis", version=3, status=CameraStatus.CAMERA_STATUS_RETIRED))
    gate.refresh()
    assert gate.controls["parvis"].current.cause == "inactive"


def test_with_the_policy_off_everything_configured_is_published_unmasked() -> None:
    gate = PolicyGate([CAMERA], None, CollectorRegistry())
    assert gate.refresh() == []
    assert gate.controls["parvis"].current == CameraDirectives(analyse=True, sample_fps=5)
    original = frame()
    assert gate.admit(original) is original


# -- the decoding thread -------------------------------------------------------------------------------


async def read_all(source: PyAVCameraSource) -> list[CapturedFrame]:
    frames: list[CapturedFrame] = []
    async with contextlib.aclosing(source.frames()) as stream:
        async for captured in stream:
            frames.append(captured)
    return frames


def source_with(path: object, control: CameraControl, **settings: object) -> PyAVCameraSource:
    config = CameraConfig.model_validate({"id": "parvis", "url": str(path), **settings})
    return PyAVCameraSource(config, control=control)


async def test_masks_are_blanked_in_the_decoding_thread_at_the_policys_rate(videos) -> None:
    control = CameraControl(CameraDirectives(analyse=True, sample_fps=1, masks=PrivacyMasks([LEFT_HALF])))
    source = source_with(videos.write("h264.mp4", frames=50, fps=25), control, sample_fps=5, realtime=False)
    frames = await read_all(source)
    assert len(frames) == 2, "1 frame/s of a 2 s video, not 5"
    assert frames[1].captured_at - frames[0].captured_at == timedelta(seconds=1)
    for captured in frames:
        assert not captured.pixels[:, :208].any()
        assert captured.pixels[:, 212:].any()
        assert captured.masked_with == control.current.masks
        assert not captured.pixels.flags.writeable


async def test_nothing_is_decoded_while_not_analysed_and_decoding_resumes_at_a_keyframe(videos) -> None:
    """A file played in real time (3 s at 25 frames/s, a keyframe every 5 frames) is paused for 0.8 s: its
    packets keep their pace but none is decoded, and the frames resume cleanly."""
    video = videos.write("gop5.mp4", frames=75, fps=25, options={"preset": "ultrafast", "g": "5"})
    control = CameraControl(CameraDirectives(analyse=True, sample_fps=25))
    source = source_with(video, control, sample_fps=25, realtime=True)
    delivered: list[tuple[int, float]] = []  # (frame index, when it came out of the source)

    async def read() -> None:
        async with contextlib.aclosing(source.frames()) as stream:
            async for captured in stream:
                delivered.append((videos.index_of(captured.pixels), time.monotonic()))

    reading = asyncio.create_task(read())
    await asyncio.sleep(0.8)
    control.set(CameraDirectives(analyse=False, sample_fps=25, cause="objection_pause"))
    paused_at = time.monotonic()
    await asyncio.sleep(0.8)
    control.set(CameraDirectives(analyse=True, sample_fps=25))
    resumed_at = time.monotonic()
    await reading

    # Frame i is due at origin + i/25 (the file's pace); the origin, from the first frame delivered.
    origin = delivered[0][1]
    indices = [index for index, _ in delivered]
    assert delivered[-1][1] - origin >= 2.7, "the paused packets kept the file's pace"
    paused, resumed = (paused_at - origin) * 25, (resumed_at - origin) * 25  # in frames
    assert [i for i in indices if i < paused - 3], "frames before the pause"
    assert [i for i in indices if i > resumed + 8], "frames after it"
    # Nothing from the paused stretch (a frame or two of margin for the thread's timing either side).
    assert not [i for i in indices if paused + 2 < i < resumed - 2]
    # Decoding resumed at a keyframe: the first frame after the pause is one, and none is corrupt.
    first_after = min(i for i in indices if i > paused + 2)
    assert first_after % 5 == 0
    assert indices == sorted(indices)
    status = source.status()
    assert status.packets_withheld >= 12
    assert status.decode_errors == 0
    assert status.state is CameraState.FINISHED


async def test_a_file_never_analysed_ends_without_being_called_unreadable(videos) -> None:
    control = CameraControl(CameraDirectives(analyse=False, sample_fps=5, cause="inactive"))
    source = source_with(videos.write("h264.mp4", frames=50, fps=25), control, realtime=False)
    assert await read_all(source) == []
    status = source.status()
    assert status.state is CameraState.FINISHED
    assert status.frames_decoded == 0
    assert status.packets_withheld == 50
