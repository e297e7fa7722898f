"""Optional noise on published counts (docs/privacy.md rule 12), with a privacy budget per camera and period.

Mechanism. Each leaf count of a window (one camera, line, direction, class; or zone, class, dwell bucket)
gets two-sided geometric noise (the discrete Laplace distribution, P(k) proportional to exp(-epsilon |k|)),
drawn from the operating system's random source (``random.SystemRandom``: nothing predictable seeds it),
and is clamped at zero. One crossing or stay changes one leaf by one, so the window's leaves are
epsilon-differentially private for each counted event (event-level, not person-level: a person who crosses
twice counts twice). Everything else published (aggregates, the day, suppression decisions) is computed
from the noisy leaves only, which is post-processing and costs no further budget. The noisy leaves are
drawn once, when the window is released, and stored: asking again returns the same figures, it does not
spend budget or average the noise away.

Budget. Releasing a window spends ``epsilon`` for each camera in it. The ledger (stored in the database)
refuses a camera whose spending in the budget period would exceed the budget: its figures for that window
are withheld and say so. Occupancy (object-seconds) is not noised: its sensitivity is a whole window of
seconds per object, for which this mechanism would say nothing useful; it relies on suppression alone.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BudgetDecision",
    "NoiseSource",
    "SystemNoise",
    "budget_period_start",
    "decide_budget",
    "two_sided_geometric",
]

_DAY_S = 86_400


class NoiseSource(Protocol):
    def uniform(self) -> float:
        """A uniform number in [0, 1)."""
        ...


class SystemNoise:
    """Uniform numbers from the operating system (os.urandom): no seed, nothing to predict."""

    def __init__(self) -> None:
        self._random = random.SystemRandom()

    def uniform(self) -> float:
        return self._random.random()


def _geometric(alpha: float, source: NoiseSource) -> int:
    # Failures before the first success with success probability 1 - alpha: P(k) = (1 - alpha) alpha^k.
    u = 1.0 - source.uniform()  # in (0, 1]
    return math.floor(math.log(u) / math.log(alpha))


def two_sided_geometric(epsilon: float, source: NoiseSource) -> int:
    """A draw of the discrete Laplace distribution with scale 1/epsilon (sensitivity 1)."""
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    alpha = math.exp(-epsilon)
    return _geometric(alpha, source) - _geometric(alpha, source)


def budget_period_start(window_start: int, period_days: int) -> int:
    """The start of the ledger period containing a window (periods of whole UTC days from the epoch)."""
    period = period_days * _DAY_S
    return window_start - window_start % period


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    granted: frozenset[str]
    refused: frozenset[str]


def decide_budget(
    cameras: Iterable[str], spent: Mapping[str, float], *, epsilon: float, budget: float
) -> BudgetDecision:
    """Which cameras may release one more window: those whose spending stays within the budget."""
    granted, refused = set(), set()
    for camera in cameras:
        # A small tolerance so that 72 windows of 0.5 fit a budget of exactly 36 despite rounding.
        if spent.get(camera, 0.0) + epsilon <= budget + 1e-9:
            granted.add(camera)
        else:
            refused.add(camera)
    return BudgetDecision(frozenset(granted), frozenset(refused))
