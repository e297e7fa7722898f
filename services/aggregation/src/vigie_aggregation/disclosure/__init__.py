"""Statistical disclosure control: pure domain code (no FastAPI, no SQL, no NATS).

- :mod:`.table`: the table of one release, its hierarchies and the views the API publishes;
- :mod:`.certificates`: why a suppressed cell cannot be computed from the published ones;
- :mod:`.protection`: primary and secondary suppression, window after window, then the day;
- :mod:`.noise`: optional geometric noise and the privacy-budget decision.
"""

from vigie_aggregation.disclosure.certificates import Certificate, Factor
from vigie_aggregation.disclosure.day import DayReleases, DayState, day_leaves
from vigie_aggregation.disclosure.noise import (
    BudgetDecision,
    NoiseSource,
    SystemNoise,
    budget_period_start,
    decide_budget,
    two_sided_geometric,
)
from vigie_aggregation.disclosure.protection import (
    DayProtection,
    Obligation,
    TimeLink,
    WindowPattern,
    WindowProtection,
    is_primary,
    protect_day,
    protect_window,
)
from vigie_aggregation.disclosure.table import (
    Cell,
    CellFigures,
    Hierarchy,
    LeafFigures,
    Node,
    SensitivityRule,
    Table,
    TableSpec,
)

__all__ = [
    "BudgetDecision",
    "Cell",
    "CellFigures",
    "Certificate",
    "DayProtection",
    "DayReleases",
    "DayState",
    "Factor",
    "Hierarchy",
    "LeafFigures",
    "Node",
    "NoiseSource",
    "Obligation",
    "SensitivityRule",
    "SystemNoise",
    "Table",
    "TableSpec",
    "TimeLink",
    "WindowPattern",
    "WindowProtection",
    "budget_period_start",
    "day_leaves",
    "decide_budget",
    "is_primary",
    "protect_day",
    "protect_window",
    "two_sided_geometric",
]
