"""The aggregation's tables (SQLAlchemy Core). The migrations in ``vigie_aggregation/migrations`` create
them; this module describes them for queries. Times are Unix seconds (UTC) in BIGINT columns: every
period is aligned on the epoch, and integer ranges index and compare the same on SQLite and PostgreSQL.

Stored exactly as reported (inside the trust boundary, never served as such):

- ``applied_reports``: one row per report id ever stored: the unique key that makes storing a report
  happen at most once, written in the same transaction as its counts.
- ``camera_windows``: per camera and publication window, covered seconds, frames and parts.
- ``window_members``: the lines and zones each camera had configured in each window (a member with no
  count counted zero; one not listed has no figure) with the classes each counted and the directions each
  line counted, the dwell buckets the camera's reports listed, and the geometry versions its parts were
  counted with.
- ``crossing_buckets``, ``occupancy_buckets``, ``dwell_buckets``: the bucketed figures.

Published (frozen once released; the API serves only these):

- ``releases``: one row per site and released period (window or day), with the state the next
  release of the same day needs (certificates and obligations, see ``disclosure.day``).
- ``published_cells``: every cell of every view of every release, with its figure (exact, or noisy when
  noise is on) and whether it is suppressed. A suppressed figure is kept for the day's sums, never served.
- ``published_coverage``: per released period and camera, how much was analysed.
- ``privacy_budget_ledger``: the privacy loss each camera's released windows spent.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()


def class_mask(classes: Iterable[int]) -> int:
    """Classes as ``window_members.object_classes`` stores them: bit ``2**code`` for each class code."""
    mask = 0
    for code in classes:
        mask |= 1 << code
    return mask


def mask_classes(mask: int) -> frozenset[int]:
    """The class codes of a ``class_mask``."""
    return frozenset(code for code in range(mask.bit_length()) if mask >> code & 1)


# Directions are stored as classes are: bit 2**code for each CrossingDirection code.
direction_mask = class_mask
mask_directions = mask_classes


ID = String(64)

applied_reports = Table(
    "applied_reports",
    metadata,
    Column("report_id", String(32), primary_key=True),
    Column("camera_id", ID, nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("closed_by", SmallInteger, nullable=False),
    Column("geometry_version", ID, nullable=False),
    Column("received_at", BigInteger, nullable=False),
)
Index("ix_applied_reports_window_start", applied_reports.c.window_start)

camera_windows = Table(
    "camera_windows",
    metadata,
    Column("camera_id", ID, primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("covered_seconds", Float, nullable=False),
    Column("frames", BigInteger, nullable=False),
    Column("parts", Integer, nullable=False),
)
Index("ix_camera_windows_window_start", camera_windows.c.window_start)

window_members = Table(
    "window_members",
    metadata,
    Column("camera_id", ID, primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    # "line", "zone", "geom" (a geometry version) or "dwel" (a dwell bucket, vocabulary.dwell_bucket_key)
    Column("kind", String(4), primary_key=True),
    Column("member_id", ID, primary_key=True),
    # A line's or zone's classes, bit 2**code for ObjectClass code (class_mask). NULL: all six (rows stored
    # before reports said which; and NULL | anything is NULL in SQL, so the union stays all six). Unused by
    # the other kinds.
    Column("object_classes", Integer),
    # A line's directions, bit 2**code for CrossingDirection code (direction_mask). NULL: both (rows stored
    # before reports said which; NULL absorbs any union, as above). Unused by the other kinds.
    Column("directions", Integer),
)

crossing_buckets = Table(
    "crossing_buckets",
    metadata,
    Column("camera_id", ID, primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("line_id", ID, primary_key=True),
    Column("direction", SmallInteger, primary_key=True),
    Column("object_class", SmallInteger, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

occupancy_buckets = Table(
    "occupancy_buckets",
    metadata,
    Column("camera_id", ID, primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("zone_id", ID, primary_key=True),
    Column("object_class", SmallInteger, primary_key=True),
    Column("object_seconds", Float, nullable=False),
    Column("max_objects", Integer, nullable=False),
)

dwell_buckets = Table(
    "dwell_buckets",
    metadata,
    Column("camera_id", ID, primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("zone_id", ID, primary_key=True),
    Column("object_class", SmallInteger, primary_key=True),
    Column("dwell_bucket", String(32), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

releases = Table(
    "releases",
    metadata,
    Column("site_id", ID, primary_key=True),
    Column("granularity", SmallInteger, primary_key=True),
    Column("period_start", BigInteger, primary_key=True),
    Column("released_at", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
)

published_cells = Table(
    "published_cells",
    metadata,
    Column("family", SmallInteger, primary_key=True),
    Column("granularity", SmallInteger, primary_key=True),
    Column("site_id", ID, primary_key=True),
    # 0: a site total, 1: a camera total, 2: a line or zone. In the keys so that each level of a query is
    # one range of the index (a site's day totals do not scan its line cells).
    Column("level", SmallInteger, primary_key=True),
    Column("period_start", BigInteger, primary_key=True),
    Column("camera_id", ID, primary_key=True),  # '' for a site total
    Column("item_id", ID, primary_key=True),  # line or zone; '' for a camera or site total
    Column("direction", SmallInteger, primary_key=True),  # 0: both directions
    Column("object_class", SmallInteger, primary_key=True),  # 0: every class
    Column("dwell_bucket", String(32), primary_key=True),  # '': every bucket
    Column("value", Float, nullable=False),
    Column("max_objects", Integer),
    Column("suppressed", Boolean, nullable=False),
    Column("reason", String(32)),
)
Index(
    "ix_published_cells_camera",
    published_cells.c.family,
    published_cells.c.granularity,
    published_cells.c.camera_id,
    published_cells.c.level,
    published_cells.c.period_start,
    published_cells.c.item_id,
    published_cells.c.direction,
    published_cells.c.object_class,
    published_cells.c.dwell_bucket,
)

published_coverage = Table(
    "published_coverage",
    metadata,
    Column("granularity", SmallInteger, primary_key=True),
    Column("site_id", ID, primary_key=True),
    Column("period_start", BigInteger, primary_key=True),
    Column("camera_id", ID, primary_key=True),
    Column("period_seconds", Integer, nullable=False),
    Column("covered_seconds", Float, nullable=False),
    Column("frames", BigInteger, nullable=False),
    Column("geometry_versions", String(400), nullable=False),
    Column("status", String(32)),  # None: published; otherwise why the camera's figures are withheld
)

privacy_budget_ledger = Table(
    "privacy_budget_ledger",
    metadata,
    Column("camera_id", ID, primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("budget_period_start", BigInteger, nullable=False),
    Column("epsilon", Float, nullable=False),
)
Index(
    "ix_privacy_budget_ledger_period",
    privacy_budget_ledger.c.camera_id,
    privacy_budget_ledger.c.budget_period_start,
)

# Tables whose rows belong to a period, with the column that dates them: what retention deletes.
DATED_TABLES: tuple[tuple[Table, str], ...] = (
    (applied_reports, "window_start"),
    (camera_windows, "window_start"),
    (window_members, "window_start"),
    (crossing_buckets, "window_start"),
    (occupancy_buckets, "window_start"),
    (dwell_buckets, "window_start"),
    (releases, "period_start"),
    (published_cells, "period_start"),
    (published_coverage, "period_start"),
    (privacy_budget_ledger, "window_start"),
)
