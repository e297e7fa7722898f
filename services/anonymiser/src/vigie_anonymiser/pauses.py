"""When a camera was not to be analysed, so that such time never counts as covered.

A report's ``covered_seconds`` says how much of its window was analysed; figures are read against it (a
window half covered has about half the counts). Time during which the policy forbade analysis (a
citizen's objection, a camera switched off, an authorisation window closed) was not analysed, whatever
frames arrive around it: `PausedTime` holds those intervals of capture time, per camera, learnt from each
version of its policy, and `CameraAnonymiser` subtracts them from every stretch of time it covers.

A policy version says what holds from its ``issued_at`` on: earlier versions stand for the time before
it. Only a few intervals are kept (the ones that can still touch an open window).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from vigie_proto.v1.policy_pb2 import CameraPolicy, CameraStatus, Purpose

__all__ = ["PausedTime"]

_MAX_INTERVALS = 64


def _seconds(policy: CameraPolicy, field: str) -> float | None:
    if not policy.HasField(field):  # type: ignore[arg-type]
        return None
    stamp = getattr(policy, field)
    return float(stamp.seconds + stamp.nanos / 1e9)


class PausedTime:
    """Disjoint, sorted intervals [start, end) of capture time (Unix seconds) that were not analysed."""

    def __init__(self) -> None:
        self._intervals: list[tuple[float, float]] = []
        self.policy_version: int | None = None

    @classmethod
    def restored(cls, intervals: Iterable[tuple[float, float]], policy_version: int | None) -> PausedTime:
        """What `intervals` and `policy_version` of another instance said (a checkpoint)."""
        paused = cls()
        for start, end in intervals:
            paused.pause(start, end)
        paused.policy_version = policy_version
        return paused

    @property
    def intervals(self) -> tuple[tuple[float, float], ...]:
        return tuple(self._intervals)

    def pause(self, start: float, end: float) -> None:
        """Add [start, end), merged with what it touches."""
        if not end > start:
            return
        merged: list[tuple[float, float]] = []
        for a, b in self._intervals:
            if b < start or a > end:
                merged.append((a, b))
            else:
                start, end = min(a, start), max(b, end)
        merged.append((start, end))
        merged.sort()
        self._intervals = merged[-_MAX_INTERVALS:]

    def resume(self, at: float) -> None:
        """Nothing is known to be paused from ``at`` on (a newer policy says what holds from then)."""
        self._intervals = [(a, min(b, at)) for a, b in self._intervals if a < at]

    def overlap(self, start: float, end: float) -> float:
        """Seconds of [start, end) that were paused."""
        total = 0.0
        for a, b in self._intervals:
            if b <= start:
                continue
            if a >= end:
                break
            total += min(b, end) - max(a, start)
        return total

    def forget_before(self, at: float) -> None:
        """Drop intervals that ended before ``at`` (no open window reaches back that far)."""
        self._intervals = [(a, b) for a, b in self._intervals if b > at]

    def follow(self, policy: CameraPolicy) -> bool:
        """Learn from a policy version (once each); whether it was new."""
        if policy.version == self.policy_version:
            return False
        self.policy_version = policy.version
        issued = _seconds(policy, "issued_at")
        if issued is None:  # the registry always sets it; without it, only the pause itself is known
            issued = -math.inf
        self.resume(issued)
        if policy.status != CameraStatus.CAMERA_STATUS_ACTIVE:
            self.pause(issued, math.inf)
            return True
        until = _seconds(policy, "paused_until")
        if until is not None:
            self.pause(issued, until)
        if policy.purpose == Purpose.PURPOSE_SECURITY_EVENTS:
            allowed_from = _seconds(policy, "authorised_from")
            allowed_until = _seconds(policy, "authorised_until")
            if allowed_from is None or allowed_until is None:
                self.pause(issued, math.inf)
            else:
                self.pause(issued, allowed_from)
                self.pause(max(issued, allowed_until), math.inf)
        return True
