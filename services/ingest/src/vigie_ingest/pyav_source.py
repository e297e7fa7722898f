"""Camera sources read with PyAV (FFmpeg): video files, RTSP and HTTP streams.

Each run of a source decodes on a thread of its own. PyAV blocks (network reads, decoding) and its
objects must stay on one thread, so a dedicated thread owns the container from open to close and
hands kept frames to the event loop through a small queue. A thread per camera costs little next
to its decoder's own threads, and unlike `asyncio.to_thread` per packet it neither pays a hop per
packet nor competes for the default executor's few workers with the rest of the service.

The thread reads the camera's `CameraControl` for every packet (the registry's policy, followed by the
event loop). While the camera may not be analysed (an objection's pause, a camera not active, a policy
that cannot be read) the stream stays connected but no packet is decoded: no picture of it exists, not
even in the decoder. When analysis resumes the decoder is flushed and starts again at the stream's next
keyframe. Privacy masks are blanked here, right after resizing, before the frame leaves the thread.

A file whose position is kept (`vigie_ingest.file_position`) starts its first run in the process where a
previous ingest left it: the timeline of that opening, a seek to the keyframe before the position, the
frames up to it decoded and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
import traceback
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Literal, Protocol

import av
from av.video.reformatter import Interpolation
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from vigie_core.masks import NO_MASKS, PrivacyMasks
from vigie_ingest.camera import CameraConfig, LiveConnectionPolicy
from vigie_ingest.directives import CameraControl
from vigie_ingest.file_position import FilePosition, FilePositions, file_source_digest
from vigie_ingest.frame import CapturedFrame, RgbPixels
from vigie_ingest.resize import DEFAULT_INTERPOLATION, DEFAULT_TARGET_SIZE, FrameResizer
from vigie_ingest.sampling import RateSampler
from vigie_ingest.source import CameraSourceError, CameraState, CameraStatus, CameraStatusRecorder

logger = logging.getLogger("vigie.ingest.source")

# FFmpeg's decoder threading. AUTO (frame and slice threads) decodes faster than NONE but costs more CPU
# per frame (measured on 2 cores, H.264 High with B-frames, non-reference frames skipped): 640x360, 29 %
# more CPU for no gain in speed; 1280x720, 24 % more for 1.1x; 1920x1080, 17 % more for 1.25x. A camera
# paced by its own clock (live, or a file played in real time) never needs to decode faster than it plays
# (NONE decodes 1080p at about 4 ms a frame), so CPU per camera is what counts: ADAPTIVE, the default,
# decodes those with NONE and files read as fast as possible with AUTO.
DecoderThreadType = Literal["ADAPTIVE", "AUTO", "FRAME", "SLICE", "NONE"]


def decoder_threading(thread_type: DecoderThreadType, config: CameraConfig) -> str:
    """The FFmpeg thread type a camera's decoder uses (ADAPTIVE resolved for this camera)."""
    if thread_type != "ADAPTIVE":
        return thread_type
    return "NONE" if config.live or config.realtime else "AUTO"


# Kept frames waiting for the consumer. Small: a frame is worth little once it is late.
DEFAULT_QUEUE_CAPACITY = 2
# How often a thread waiting for room in the queue looks whether it was stopped (a safety net:
# stopping also wakes it).
_STOP_POLL_S = 0.5
# Log the first few decoding errors of a run, then one in this many.
_DECODE_ERROR_LOG_EVERY = 100
# A file whose position is kept, not analysed (policy): its position moves on once per this much media time.
_WITHHELD_POSITION_EVERY_S = 1.0


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words for an error, without the errno and file name PyAV adds around them (a live
    source's file name is its URL, credentials included)."""
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    if getattr(exc, "filename", None):
        return type(exc).__name__
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, eq=False)
class _KeptFrame:
    captured_at: datetime
    source_width: int
    source_height: int
    pixels: RgbPixels
    masked_with: PrivacyMasks = NO_MASKS
    position: FilePosition | None = None


@dataclass(frozen=True)
class _PositionPassed:
    """A file not analysed (policy) has been read up to `position`: nothing before it is to be published
    after a restart (the stretch withheld was deliberately not analysed)."""

    position: FilePosition


@dataclass(frozen=True)
class _RunEnded:
    error: CameraSourceError | None
    # A file whose position is kept, played to its end: its last position, marked finished.
    finished: FilePosition | None = None


class _FrameHandoff:
    """Carries kept frames from a decoding thread to the event loop, at most `capacity` waiting.

    Files wait for room, so back-pressure reaches the reader. Live sources replace the oldest waiting
    frame instead: a camera does not wait for us, and a slow consumer should get fresh frames rather
    than a growing delay.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int,
        *,
        drop_oldest: bool,
        on_drop: Callable[[], None],
    ) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1, got {capacity}")
        self._loop = loop
        self._queue: asyncio.Queue[_KeptFrame | _PositionPassed | _RunEnded] = asyncio.Queue()
        self._capacity = capacity
        self._room = threading.Semaphore(capacity)
        self._drop_oldest = drop_oldest
        self._on_drop = on_drop
        self.thread_finished = asyncio.Event()

    # Decoding thread side.

    def put(self, frame: _KeptFrame, stop: threading.Event) -> bool:
        """Hand a frame over; False when the run was stopped or the event loop is gone."""
        if self._drop_oldest:
            return self._call_in_loop(self._put_replacing_oldest, frame)
        while not self._room.acquire(timeout=_STOP_POLL_S):
            if stop.is_set():
                return False
        if stop.is_set():  # woken by `wake_thread`
            return False
        return self._call_in_loop(self._queue.put_nowait, frame)

    def passed(self, position: FilePosition) -> None:
        # Behind the frames handed over before it: saved once they have been taken.
        self._call_in_loop(self._queue.put_nowait, _PositionPassed(position))

    def end(self, error: CameraSourceError | None, finished: FilePosition | None = None) -> None:
        self._call_in_loop(self._queue.put_nowait, _RunEnded(error, finished))

    def mark_thread_finished(self) -> None:
        self._call_in_loop(self.thread_finished.set)

    def _call_in_loop(self, callback: Callable[..., object], *args: object) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The event loop is closed: nobody is listening any more.
            return False
        return True

    # Event loop side.

    def _put_replacing_oldest(self, frame: _KeptFrame) -> None:
        if self._queue.qsize() >= self._capacity:
            self._queue.get_nowait()
            self._on_drop()
        self._queue.put_nowait(frame)

    def wake_thread(self) -> None:
        """Let a thread waiting for room see at once that it was stopped."""
        self._room.release()

    async def get(self) -> _KeptFrame | _PositionPassed | _RunEnded:
        item = await self._queue.get()
        if isinstance(item, _KeptFrame) and not self._drop_oldest:
            self._room.release()
        return item


class _Timeline(Protocol):
    """Gives each packet and frame a time on the sampling timeline, and each kept frame its date."""

    def packet_time(self, packet: Any) -> float: ...

    def frame_time(self, frame: Any) -> float: ...

    def captured_at(self, time_s: float) -> datetime: ...

    def position(self, time_s: float) -> FilePosition | None: ...


class _MediaTimeline:
    """A file's media time, continued across passes when looping, dated from when the file was opened.

    Media time 0 is the stream's start (the first frame's time), even when reading starts elsewhere (a
    file resumed after a seek): the times of a frame are the same whichever way it is reached.
    """

    def __init__(self, stream: Any, *, offset_s: float, opened_at: datetime, source: str | None) -> None:
        self._time_base: Fraction | None = stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        self.frame_duration_s = 1 / float(rate) if rate else 0.04
        self._offset_s = offset_s
        self._opened_at = opened_at
        self._source = source
        # Without a start time in the container, the first timestamp read.
        self.origin_pts: int | None = stream.start_time
        self._last_s: float | None = None
        self.end_s = offset_s

    def _time_of(self, pts: int | None) -> float:
        if pts is None or self._time_base is None:
            # No timestamp: assume the next frame at the stream's nominal rate.
            time_s = self._offset_s if self._last_s is None else self._last_s + self.frame_duration_s
        else:
            if self.origin_pts is None:
                self.origin_pts = pts
            time_s = self._offset_s + float((pts - self.origin_pts) * self._time_base)
        self._last_s = time_s
        self.end_s = max(self.end_s, time_s + self.frame_duration_s)
        return time_s

    def packet_time(self, packet: Any) -> float:
        return self._time_of(packet.pts if packet.pts is not None else packet.dts)

    def frame_time(self, frame: Any) -> float:
        return self._time_of(frame.pts)

    def captured_at(self, time_s: float) -> datetime:
        return self._opened_at + timedelta(seconds=time_s)

    def position(self, time_s: float) -> FilePosition | None:
        """Where the file stands once the frame at ``time_s`` is published (None: positions not kept)."""
        if self._source is None:
            return None
        return FilePosition(self._source, self._opened_at, self._offset_s, time_s)

    def pts_at(self, pass_s: float) -> int | None:
        """The timestamp ``pass_s`` seconds into this pass (None: the stream gives no way to tell)."""
        if self.origin_pts is None or not self._time_base:
            return None
        return self.origin_pts + math.floor(pass_s / self._time_base)


class _LiveTimeline:
    """Wall-clock time: live sources' timestamps are often only counters (MJPEG over HTTP)."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def packet_time(self, packet: Any) -> float:
        return time.monotonic() - self._start

    def frame_time(self, frame: Any) -> float:
        return time.monotonic() - self._start

    def captured_at(self, time_s: float) -> datetime:
        return datetime.now(UTC)

    def position(self, time_s: float) -> FilePosition | None:
        return None  # a live camera's downtime is lost time, never made up


class _NonRefSkipping:
    """Leaves non-reference frames (most B-frames) undecoded while the sampler keeps few frames.

    Nothing depends on those frames, so skipping them changes no other picture; it only moves a kept
    frame by a source frame or two. It turns itself off for good if the frames left are ever more than
    half a sampling interval apart, so that sampling never loses a slot for lack of a frame.
    """

    def __init__(self, codec_context: Any, max_gap_s: float, describe: str) -> None:
        self._codec_context = codec_context
        self._max_gap_s = max_gap_s
        self._describe = describe
        self._last_s: float | None = None
        self.active = True
        codec_context.skip_frame = "NONREF"

    @classmethod
    def start_if_worthwhile(cls, stream: Any, sampler: RateSampler, describe: str) -> _NonRefSkipping | None:
        rate = stream.average_rate
        if not rate or float(rate) < 2 * sampler.sample_fps:
            return None
        return cls(stream.codec_context, sampler.interval / 2, describe)

    def resample(self, sampler: RateSampler) -> None:
        """The sampling rate changed: frames may now be needed closer together (or further apart)."""
        self._max_gap_s = sampler.interval / 2

    def restart(self) -> None:
        """Decoding starts again after a gap (a pause): that gap says nothing about skipped frames."""
        self._last_s = None

    def observe(self, frame: Any) -> None:
        if not self.active:
            return
        frame_s: float | None = frame.time
        if frame_s is None:
            self._stop("frames without timestamps")
        elif self._last_s is not None and frame_s - self._last_s > self._max_gap_s:
            self._stop(f"a gap of {frame_s - self._last_s:.3f} s between decoded frames")
        self._last_s = frame_s

    def _stop(self, why: str) -> None:
        self._codec_context.skip_frame = "DEFAULT"
        self.active = False
        logger.debug("%s: decoding every frame from now on (%s)", self._describe, why)


def _already_published(time_s: float, skip_until_s: float | None) -> bool:
    """Whether the frame at ``time_s`` was published before a restart (at or before ``skip_until_s``)."""
    # The same frame gets the same time (same origin, same arithmetic); the margin is for rounding only.
    return skip_until_s is not None and time_s <= skip_until_s + 1e-6


class _LiveSourceLostError(Exception):
    """A live session ended: connection refused, timed out, or the stream ended or broke."""

    def __init__(self, message: str, frames_decoded: int) -> None:
        super().__init__(message)
        self.frames_decoded = frames_decoded


class _BackoffSinceLastFrame:
    """Exponential back-off with jitter, counted from the last session that delivered frames.

    A camera that streamed for hours and then dropped is retried after the initial delay again,
    not after the delay its first outage had grown to.
    """

    def __init__(self, policy: LiveConnectionPolicy) -> None:
        self._policy = policy
        self._failures = 0

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        lost = outcome.exception() if outcome is not None else None
        if isinstance(lost, _LiveSourceLostError) and lost.frames_decoded > 0:
            self._failures = 0
        self._failures += 1
        policy = self._policy
        exponential = policy.backoff_initial_s * 2.0 ** min(self._failures - 1, 62)
        return min(exponential, policy.backoff_max_s) + random.uniform(0, policy.backoff_jitter_s)


class _DecodingRun:
    """One run of one camera, on its own thread: open, decode, sample, resize, hand over."""

    def __init__(
        self,
        config: CameraConfig,
        *,
        recorder: CameraStatusRecorder,
        handoff: _FrameHandoff,
        resizer: FrameResizer,
        policy: LiveConnectionPolicy,
        skip_nonref: bool,
        thread_type: DecoderThreadType,
        control: CameraControl,
        source: str | None = None,
        resume: FilePosition | None = None,
    ) -> None:
        self._config = config
        self._control = control
        # Files whose position is kept: the source's digest, and where a previous ingest stopped.
        self._source = source
        self._resume = resume
        self._finished: FilePosition | None = None
        self._thread_type = thread_type
        self._recorder = recorder
        self._handoff = handoff
        self._resizer = resizer
        self._policy = policy
        self._skip_nonref = skip_nonref
        self._describe = f"camera {config.id!r}"
        self.stop = threading.Event()
        # Per opened container.
        self._frames_decoded = 0
        self._decode_errors = 0
        self._packets_withheld = 0
        # Files whose position is kept: the latest media time handed over (a frame, a position passed).
        self._handed_s = resume.media_s if resume is not None else -math.inf
        # Files played in real time: the monotonic time at which media time 0 is due (a resumed file: set
        # by its first frame after the position, due at once).
        self._paced = False
        self._pace_origin: float | None = None

    def _traceback(self, exc: BaseException) -> str:
        """The traceback of a surprise, as logger.exception would write it, without the camera's URL or
        secrets (an exception's text may quote them)."""
        return self._config.redacted("".join(traceback.format_exception(exc)).rstrip())

    def run(self) -> None:
        error: CameraSourceError | None = None
        try:
            if self._config.live:
                self._run_live()
            else:
                self._run_file()
            self._recorder.set_state(CameraState.STOPPED if self.stop.is_set() else CameraState.FINISHED)
        except CameraSourceError as exc:
            error = exc
            self._recorder.set_state(CameraState.FAILED, exc.problem)
        except Exception as exc:
            # A surprise from FFmpeg or a bug: contained to this camera, never silent.
            logger.error("%s: unexpected error\n%s", self._describe, self._traceback(exc))
            # Not chained to exc: wherever the error goes, the original's text (the URL?) must not follow.
            error = CameraSourceError(
                self._config.id, f"unexpected error: {self._config.redacted(repr(exc))}"
            )
            self._recorder.set_state(CameraState.FAILED, error.problem)
        finally:
            self._handoff.end(error, self._finished)
            self._handoff.mark_thread_finished()

    # Files.

    def _run_file(self) -> None:
        path = self._config.file_path
        resume = self._resume
        # Resumed: the timeline of the first opening, so that capture times go on where they were.
        opened_at = resume.opened_at if resume is not None else datetime.now(UTC)
        if resume is not None and resume.finished:
            self._recorder.count(opened_at=opened_at)
            logger.info(
                "%s: a previous ingest played the file to its end; not playing it again", self._describe
            )
            return
        sampler = RateSampler(self._control.current.sample_fps)
        offset_s = 0.0
        # Media time of the last frame published before a restart: decoding goes on after it.
        skip_until_s: float | None = None
        if resume is not None:
            offset_s, skip_until_s = resume.pass_offset_s, resume.media_s
            # That frame took its sampling slot: the next one kept is the one that would have been.
            sampler.keep(resume.media_s)
            logger.info(
                "%s: resuming the file at %.1f s (a previous ingest stopped there)",
                self._describe,
                resume.media_s - resume.pass_offset_s,
            )
        if self._config.realtime:
            self._paced = True
            self._pace_origin = time.monotonic() if resume is None else None
        self._recorder.set_state(CameraState.CONNECTING)
        while not self.stop.is_set():
            try:
                container = av.open(str(path), options=dict(self._config.options))
            except (av.FFmpegError, OSError) as exc:
                raise CameraSourceError(self._config.id, f"cannot open '{path}': {_reason(exc)}") from exc
            self._recorder.count(connections=1, opened_at=opened_at)
            try:
                timeline = self._decode_file(container, path, sampler, offset_s, opened_at, skip_until_s)
            finally:
                container.close()
            if self.stop.is_set():
                return
            resumed, skip_until_s = skip_until_s is not None, None
            # A resumed pass may hold nothing after its position: the film's end.
            if self._frames_decoded == 0 and not self._packets_withheld and not resumed:
                problem = f"no decodable video frame in '{path}'"
                if self._decode_errors:
                    problem += f" ({self._decode_errors} packets failed to decode)"
                raise CameraSourceError(self._config.id, problem)
            if not self._config.loop:
                if self._source is not None:
                    self._finished = FilePosition(
                        self._source, opened_at, offset_s, timeline.end_s, finished=True
                    )
                return
            offset_s = timeline.end_s
            logger.debug("%s: end of '%s', playing it again", self._describe, path)

    def _decode_file(
        self,
        container: Any,
        path: object,
        sampler: RateSampler,
        offset_s: float,
        opened_at: datetime,
        skip_until_s: float | None,
    ) -> _MediaTimeline:
        if not container.streams.video:
            raise CameraSourceError(self._config.id, f"'{path}' has no video stream")
        stream = container.streams.video[0]
        timeline = _MediaTimeline(stream, offset_s=offset_s, opened_at=opened_at, source=self._source)
        if skip_until_s is not None:
            # The pass reached that far before the restart, whatever is read of it now.
            timeline.end_s = max(timeline.end_s, skip_until_s)
            self._seek(container, stream, timeline, skip_until_s - offset_s)
        try:
            self._decode(container, stream, sampler, timeline, skip_until_s)
        except (av.FFmpegError, OSError) as exc:
            raise CameraSourceError(
                self._config.id,
                f"cannot read '{path}' after {self._frames_decoded} frames: {_reason(exc)}",
            ) from exc
        return timeline

    def _seek(self, container: Any, stream: Any, timeline: _MediaTimeline, pass_s: float) -> None:
        """Move to the keyframe at or before ``pass_s`` seconds into the file; the frames from there to the
        resumed position are decoded and dropped. Without a start time or a successful seek the file is
        decoded from its beginning instead: slower, the same frames."""
        target = timeline.pts_at(pass_s)
        if target is None:
            return
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError) as exc:
            logger.warning(
                "%s: cannot seek to %.1f s (%s): decoding from the beginning up to there",
                self._describe,
                pass_s,
                _reason(exc),
            )

    # Live streams.

    def _run_live(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(_LiveSourceLostError),
            wait=_BackoffSinceLastFrame(self._policy),
            stop=self._stop_requested,
            sleep=self._sleep_unless_stopped,
            before_sleep=self._on_backing_off,
            reraise=True,
        )
        # Raised once the run is stopped: the loss that was being waited out no longer matters.
        with contextlib.suppress(_LiveSourceLostError):
            retrying(self._live_session)

    def _live_session(self) -> None:
        """Connect once and stream until the stream ends; every end is a loss, unless stopped."""
        if self.stop.is_set():
            return
        config = self._config
        self._recorder.set_state(CameraState.CONNECTING)
        options = {"rtsp_transport": "tcp"} if config.scheme in {"rtsp", "rtsps"} else {}
        options.update(config.options)
        try:
            container = av.open(
                config.url,
                options=options,
                timeout=(self._policy.open_timeout_s, self._policy.read_timeout_s),
            )
        except (av.FFmpegError, OSError) as exc:
            raise _LiveSourceLostError(
                f"cannot connect to {config.display_url!r}: {_reason(exc)}", 0
            ) from exc
        self._recorder.count(connections=1, opened_at=datetime.now(UTC))
        try:
            if not container.streams.video:
                raise _LiveSourceLostError(f"{config.display_url!r} has no video stream", 0)
            stream = container.streams.video[0]
            self._decode(container, stream, RateSampler(self._control.current.sample_fps), _LiveTimeline())
        except (av.FFmpegError, OSError) as exc:
            # FFmpeg reports a dead HTTP server as an I/O error and a silent one as an exit request.
            raise _LiveSourceLostError(
                f"lost {config.display_url!r}: {_reason(exc)}", self._frames_decoded
            ) from exc
        except Exception as exc:
            # A live camera is retried whatever went wrong (an odd stream, a bug); the traceback is logged.
            logger.error(
                "%s: unexpected error reading %r\n%s",
                self._describe,
                config.display_url,
                self._traceback(exc),
            )
            raise _LiveSourceLostError(
                f"lost {config.display_url!r}: {config.redacted(repr(exc))}", self._frames_decoded
            ) from exc
        finally:
            container.close()
        if self.stop.is_set():
            return
        # A dead RTSP server ends the stream like the end of a file.
        raise _LiveSourceLostError(f"{config.display_url!r} ended the stream", self._frames_decoded)

    def _stop_requested(self, retry_state: RetryCallState) -> bool:
        return self.stop.is_set()

    def _sleep_unless_stopped(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _on_backing_off(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        lost = outcome.exception() if outcome is not None else None
        message = str(lost) if lost is not None else "connection lost"
        self._recorder.set_state(CameraState.BACKING_OFF, message)
        logger.warning("%s: %s; reconnecting in %.1f s", self._describe, message, retry_state.upcoming_sleep)

    # Both.

    def _decode(
        self,
        container: Any,
        stream: Any,
        sampler: RateSampler,
        timeline: _Timeline,
        skip_until_s: float | None = None,
    ) -> None:
        """Demux and decode one opened container, keeping the frames the sampler wants, none of those up to
        ``skip_until_s`` (a resumed file's last frame published)."""
        self._frames_decoded = 0
        self._decode_errors = 0
        self._packets_withheld = 0
        codec_context = stream.codec_context
        codec_context.thread_type = decoder_threading(self._thread_type, self._config)
        try:
            # Each JPEG of an MJPEG stream stands alone: the sampler can drop packets undecoded.
            intra_only = bool(codec_context.codec.intra_only)
        except (av.FFmpegError, AttributeError, ValueError) as exc:
            raise CameraSourceError(
                self._config.id, f"unsupported video codec in {self._config.display_url!r}: {_reason(exc)}"
            ) from exc
        skipping = None
        if self._skip_nonref and not intra_only:
            skipping = _NonRefSkipping.start_if_worthwhile(stream, sampler, self._describe)
        withholding = False
        for packet in container.demux(stream):
            if self.stop.is_set():
                return
            directives = self._control.current
            if not directives.analyse:
                # Not analysed now: the packet is read (the stream stays connected, a file keeps its
                # pace) and dropped undecoded.
                withholding = True
                if packet.size:
                    self._packets_withheld += 1
                    self._recorder.count(withheld=1)
                    packet_s = timeline.packet_time(packet)
                    if _already_published(packet_s, skip_until_s):
                        continue
                    if self._paced and not self._wait_until_due(packet_s):
                        return
                    self._pass_withheld(timeline, packet_s)
                continue
            if withholding:
                # Analysis resumes: forget the references from before the pause; FFmpeg's decoder then
                # outputs nothing until the next keyframe (or recovery point), so no frame is corrupt.
                withholding = False
                codec_context.flush_buffers()
                if skipping is not None:
                    skipping.restart()
            if directives.sample_fps != sampler.sample_fps:
                sampler = RateSampler(directives.sample_fps)
                if skipping is not None:
                    skipping.resample(sampler)
                logger.info("%s: sampling %.3g frames per second", self._describe, sampler.sample_fps)
            # The flush packet at the end (size 0) returns the frames the decoder's threads still hold.
            if intra_only and packet.size:
                packet_s = timeline.packet_time(packet)
                if _already_published(packet_s, skip_until_s) or not sampler.keep(packet_s):
                    self._recorder.count(skipped=1)
                    continue
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                self._count_decode_error(exc)
                continue
            for frame in frames:
                self._frames_decoded += 1
                if self._frames_decoded == 1:
                    self._on_first_frame(codec_context, frame)
                if skipping is not None:
                    skipping.observe(frame)
                frame_s = timeline.frame_time(frame)
                self._recorder.count(decoded=1)
                if _already_published(frame_s, skip_until_s):
                    continue
                keep = intra_only or sampler.keep(frame_s)
                if keep and not self._deliver(frame, frame_s, timeline):
                    return

    def _pass_withheld(self, timeline: _Timeline, packet_s: float) -> None:
        """Move a file's kept position past a withheld stretch, now and then: after a restart, what was not
        to be analysed is not read again (and analysed, were the policy to allow it by then)."""
        if packet_s < self._handed_s + _WITHHELD_POSITION_EVERY_S:
            return
        position = timeline.position(packet_s)
        if position is not None:
            self._handed_s = packet_s
            self._handoff.passed(position)

    def _wait_until_due(self, media_s: float) -> bool:
        """Files played in real time: wait until media time ``media_s`` is due; False if stopped meanwhile."""
        if self._pace_origin is None:
            # A resumed file's first frame after its position: due now, the next ones at the file's pace.
            self._pace_origin = time.monotonic() - media_s
        delay = self._pace_origin + media_s - time.monotonic()
        return not (delay > 0 and self.stop.wait(delay))

    def _on_first_frame(self, codec_context: Any, frame: Any) -> None:
        if self._recorder.snapshot().state is CameraState.STREAMING:
            return  # a looping file starting again
        self._recorder.set_state(CameraState.STREAMING)
        logger.info(
            "%s: streaming %s %dx%d from %r",
            self._describe,
            codec_context.name,
            frame.width,
            frame.height,
            self._config.display_url,
        )

    def _deliver(self, frame: Any, frame_s: float, timeline: _Timeline) -> bool:
        """Resize a kept frame, blank its masked areas and hand it over; False once the run should stop."""
        masks = self._control.current.masks
        pixels = self._resizer.to_rgb(frame, masks)
        captured_at = timeline.captured_at(frame_s)
        if self._paced and not self._wait_until_due(frame_s):
            return False
        self._recorder.count(kept=1, frame_at=captured_at)
        kept = _KeptFrame(captured_at, frame.width, frame.height, pixels, masks, timeline.position(frame_s))
        if not self._handoff.put(kept, self.stop):
            self.stop.set()
            return False
        self._handed_s = max(self._handed_s, frame_s)
        return True

    def _count_decode_error(self, exc: av.FFmpegError) -> None:
        self._decode_errors += 1
        self._recorder.count(decode_errors=1)
        if self._decode_errors <= 3 or self._decode_errors % _DECODE_ERROR_LOG_EVERY == 0:
            logger.warning(
                "%s: skipped a packet that failed to decode (%d in this stream): %s",
                self._describe,
                self._decode_errors,
                _reason(exc),
            )


class PyAVCameraSource:
    """A `FrameSource` for one camera, read with PyAV: files, RTSP(S) and HTTP(S) streams.

    Files end at their end (or loop), and a file that cannot be opened or holds no decodable video
    raises `CameraSourceError`. Live streams reconnect with exponential back-off until stopped.

    With ``positions``, a file's frames carry where the file stands once they are published (the
    publisher saves it), and the camera's first opening in the process goes on from where a previous
    ingest left the file (`vigie_ingest.file_position`); a file played to its end is marked so.
    """

    def __init__(
        self,
        config: CameraConfig,
        *,
        target_size: int = DEFAULT_TARGET_SIZE,
        interpolation: Interpolation = DEFAULT_INTERPOLATION,
        live_policy: LiveConnectionPolicy | None = None,
        skip_nonref: bool = True,
        thread_type: DecoderThreadType = "ADAPTIVE",
        queue_capacity: int = DEFAULT_QUEUE_CAPACITY,
        control: CameraControl | None = None,
        positions: FilePositions | None = None,
    ) -> None:
        self.config = config
        self.control = control or CameraControl.unrestricted(config)
        # Never a live camera's: its downtime is lost time.
        self._positions = None if config.live else positions
        self._thread_type: DecoderThreadType = thread_type
        self._target_size = target_size
        self._interpolation = interpolation
        self._live_policy = live_policy or LiveConnectionPolicy()
        self._skip_nonref = skip_nonref
        self._queue_capacity = queue_capacity
        self._recorder = CameraStatusRecorder(config.id)

    @property
    def camera_id(self) -> str:
        return self.config.id

    def status(self) -> CameraStatus:
        return self._recorder.snapshot()

    async def frames(self) -> AsyncGenerator[CapturedFrame, None]:
        """Start a run of this camera on a new thread and yield its frames; closing it stops the run."""
        handoff = _FrameHandoff(
            asyncio.get_running_loop(),
            self._queue_capacity,
            drop_oldest=self.config.live,
            on_drop=lambda: self._recorder.count(dropped=1),
        )
        positions = self._positions
        source: str | None = None
        resume: FilePosition | None = None
        if positions is not None:
            source = file_source_digest(self.config)
            resume = positions.resume_point(self.config.id, source)
        run = _DecodingRun(
            self.config,
            recorder=self._recorder,
            handoff=handoff,
            resizer=FrameResizer(self._target_size, self._interpolation),
            policy=self._live_policy,
            skip_nonref=self._skip_nonref,
            thread_type=self._thread_type,
            control=self.control,
            source=source,
            resume=resume,
        )
        run_id = uuid.uuid4().hex
        thread = threading.Thread(target=run.run, name=f"vigie-camera-{self.config.id}", daemon=True)
        thread.start()
        try:
            sequence = 0
            while True:
                item = await handoff.get()
                if isinstance(item, _RunEnded):
                    if item.error is not None:
                        raise item.error
                    if item.finished is not None and positions is not None:
                        # Every frame before was taken and published (or lost) by the consumer.
                        positions.save(self.config.id, item.finished)
                    return
                if isinstance(item, _PositionPassed):
                    if positions is not None:
                        positions.save(self.config.id, item.position)
                    continue
                yield CapturedFrame(
                    camera_id=self.config.id,
                    run_id=run_id,
                    sequence=sequence,
                    captured_at=item.captured_at,
                    source_width=item.source_width,
                    source_height=item.source_height,
                    pixels=item.pixels,
                    masked_with=item.masked_with,
                    position=item.position,
                )
                sequence += 1
        finally:
            run.stop.set()
            handoff.wake_thread()
            # The thread closes its container itself (PyAV objects stay on their thread); waiting
            # for it means a stopped source holds no file, socket or decoder thread.
            await handoff.thread_finished.wait()
