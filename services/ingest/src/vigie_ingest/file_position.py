"""Where a file camera stands in its file, kept on disk so that a restarted ingest goes on from there.

Without it, an ingest killed in the middle of a film opens the file anew after its restart: a new origin
of the capture times, from the first frame, and the part already analysed is analysed again, under new
capture times: counted twice. With it, the service writes each file camera's position after every frame
FRAMES accepted (:class:`FilePositions` in ``state_dir``), and the camera's first opening in the next
process goes on from there, on the same timeline: the same origin of the capture times, the next frame
after the last one published, a new run (the seam is not covered, which is honest).

Live cameras are never kept: their downtime is lost time, and shows as a gap in coverage. A position says
nothing of what the camera sees: a digest of the source (camera id, path, loop flag, the file's size;
never the path in clear), the origin of the capture times, a media time, whether the film ended. Never a
frame, never a pixel.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from vigie_ingest.camera import CameraConfig

__all__ = [
    "FILE_POSITION_FORMAT",
    "FilePosition",
    "FilePositions",
    "UnreadableFilePositionError",
    "decode_position",
    "encode_position",
    "file_source_digest",
]

logger = logging.getLogger("vigie.ingest.positions")

# Bumped when the record changes shape: a record of another format is not used (said, not guessed), and
# the file is played from its beginning, as before positions were kept.
FILE_POSITION_FORMAT = 1
# What became of a position found at a camera's first opening: a bounded label.
POSITION_OUTCOMES = ("resumed", "finished", "other_source", "unreadable")
# Log the first write failure, then one in this many.
_WRITE_FAILURE_LOG_EVERY = 1000


class UnreadableFilePositionError(ValueError):
    """A record that is not a file position this code reads (another format, garbage, a truncated write)."""


@dataclass(frozen=True, slots=True)
class FilePosition:
    """Where a file camera stands: its last frame FRAMES accepted, on the timeline of its first opening."""

    # `file_source_digest` of the camera's configuration: a position applies to that source only.
    source: str
    # The origin of the capture times (a frame is captured at `opened_at` + its media time).
    opened_at: datetime
    # Media time of the start of the pass the position is in (a looping file's passes follow each other).
    pass_offset_s: float
    # Media time of the last frame published, `pass_offset_s` included.
    media_s: float
    # The film was played to its end (not looping): not to be played again.
    finished: bool = False


def file_source_digest(config: CameraConfig) -> str:
    """What identifies a file camera's source, as 16 hex digits: the camera id, the file's absolute path,
    the loop flag and the file's size (another file put at the same path is another source)."""
    path = config.file_path
    try:
        size = path.stat().st_size
    except OSError:
        size = -1  # the opening will fail and say why
    text = "\0".join((config.id, os.path.abspath(path), str(config.loop), str(size)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_position(position: FilePosition) -> bytes:
    return json.dumps(
        {
            "format": FILE_POSITION_FORMAT,
            "source": position.source,
            "opened_at": position.opened_at.isoformat(),
            "pass_offset_s": position.pass_offset_s,
            "media_s": position.media_s,
            "finished": position.finished,
        }
    ).encode()


def decode_position(data: bytes) -> FilePosition:
    """The position in ``data``; raises :class:`UnreadableFilePositionError` saying what is wrong."""
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnreadableFilePositionError("not JSON (a truncated write?)") from None
    if not isinstance(record, dict):
        raise UnreadableFilePositionError("not a file position")
    if record.get("format") != FILE_POSITION_FORMAT:
        raise UnreadableFilePositionError(
            f"format {record.get('format')!r}, this service reads {FILE_POSITION_FORMAT} only"
        )
    try:
        source, opened, offset, media, finished = (
            record[key] for key in ("source", "opened_at", "pass_offset_s", "media_s", "finished")
        )
        opened_at = datetime.fromisoformat(opened)
    except (KeyError, TypeError, ValueError) as error:
        raise UnreadableFilePositionError(f"not a file position ({type(error).__name__}: {error})") from None
    times_ok = all(
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        for value in (offset, media)
    )
    if not (
        isinstance(source, str)
        and isinstance(finished, bool)
        and times_ok
        and 0 <= offset <= media
        and opened_at.tzinfo is not None
    ):
        raise UnreadableFilePositionError("not a file position (a field of the wrong type or out of range)")
    return FilePosition(source, opened_at, float(offset), float(media), finished)


class FilePositions:
    """The positions of one ingest process's file cameras, one small JSON file per camera in ``directory``.

    :meth:`resume_point` gives a camera's position at its first opening in this process only: later
    openings (the registry starting the camera again, a loop) begin as they always did. :meth:`save`
    replaces a camera's record atomically (a temporary file renamed over it): a kill leaves the previous
    record or the new one, never half of one. Used from the event loop.
    """

    def __init__(self, directory: Path, registry: CollectorRegistry | None = None) -> None:
        self.directory = directory
        self._opened: set[str] = set()
        self._write_failures = 0
        registry = registry or CollectorRegistry()
        self._found = Counter(
            "vigie_ingest_file_positions_found",
            "Positions of file cameras found at their first opening: resumed there, finished (not played "
            "again), or not used (another source's, unreadable: played from the beginning)",
            ["camera", "outcome"],
            registry=registry,
        )
        self._failures = Counter(
            "vigie_ingest_file_position_write_failures",
            "Positions of file cameras that could not be written (a restart would replay from the last one)",
            registry=registry,
        )
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            logger.error(
                "cannot create the state directory %s (%s): file cameras will play from their beginning "
                "after a restart",
                directory,
                error.strerror or type(error).__name__,
            )

    def _path(self, camera_id: str) -> Path:
        # A camera id is one NATS subject token ([A-Za-z0-9_-]): a safe file name.
        return self.directory / f"{camera_id}.file-position.json"

    def resume_point(self, camera_id: str, source: str) -> FilePosition | None:
        """Where the camera's file stands after a previous ingest, at its first opening in this process;
        None to play it from its beginning (no record, another source's, unreadable, a later opening)."""
        if camera_id in self._opened:
            return None
        self._opened.add(camera_id)
        path = self._path(camera_id)
        try:
            position = decode_position(path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as error:
            self._not_used(camera_id, "unreadable", f"{path} cannot be read ({error.strerror})")
            return None
        except UnreadableFilePositionError as error:
            self._not_used(camera_id, "unreadable", f"{path} cannot be read: {error}")
            return None
        if position.source != source:
            self._not_used(
                camera_id,
                "other_source",
                f"{path} is the position of another source (another file, loop flag or camera)",
            )
            return None
        self._found.labels(camera_id, "finished" if position.finished else "resumed").inc()
        return position

    def _not_used(self, camera_id: str, outcome: str, why: str) -> None:
        self._found.labels(camera_id, outcome).inc()
        logger.warning(
            "camera %s: %s; playing the file from its beginning (the record is replaced)", camera_id, why
        )

    def save(self, camera_id: str, position: FilePosition) -> None:
        """Replace the camera's record; a failure is logged and counted, never raised (the camera goes on)."""
        path = self._path(camera_id)
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            temporary.write_bytes(encode_position(position))
            # No fsync: the record must survive the process (a kill, a container restart), which the page
            # cache does; a lost node loses the emptyDir that holds it anyway.
            os.replace(temporary, path)
        except OSError as error:
            self._failures.inc()
            self._write_failures += 1
            if self._write_failures == 1 or self._write_failures % _WRITE_FAILURE_LOG_EVERY == 0:
                logger.warning(
                    "camera %s: its file position cannot be written to %s (%s; %d failures): a restart would "
                    "play the file again from the last position written",
                    camera_id,
                    path,
                    error.strerror or type(error).__name__,
                    self._write_failures,
                )
            return
        if self._write_failures:
            logger.info("file positions are written again, after %d failures", self._write_failures)
            self._write_failures = 0
