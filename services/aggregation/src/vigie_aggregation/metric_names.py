"""Names of the aggregation's Prometheus metrics, defined once (the Grafana dashboards use them).

Published figures (``vigie_published_*``) are gauges describing each site's latest released window: they
are already anonymous and disclosure-controlled, exactly what the API serves for that window. A suppressed
cell has no series at all (Grafana shows a gap); ``vigie_published_suppressed_cells`` says how many there
are. Label ``direction`` is ``left_to_right``, ``right_to_left`` or ``all`` (both); ``object_class`` is a
class or ``all``; ``dwell`` a bucket like ``60-300`` (seconds, upper bound excluded; ``300-``: no bound) or
``all``. When summing series in a dashboard, exclude the ``all`` totals to avoid counting twice.
"""

from __future__ import annotations

# -- published figures (latest released window of each site) -----------------------------------------

# Crossings of one line: {site, camera, line, direction, object_class}.
PUBLISHED_LINE_CROSSINGS = "vigie_published_line_crossings"
# Crossings of all the lines of a camera, both directions: {site, camera, object_class}.
PUBLISHED_CAMERA_CROSSINGS = "vigie_published_camera_crossings"
# Crossings of all the cameras of a site: {site, object_class}.
PUBLISHED_SITE_CROSSINGS = "vigie_published_site_crossings"
# Mean number of objects in a zone over the analysed part of the window: {site, camera, zone, object_class}.
PUBLISHED_ZONE_OCCUPANCY_MEAN = "vigie_published_zone_occupancy_mean"
# The most objects of one class in a zone at once: {site, camera, zone, object_class} (no "all").
PUBLISHED_ZONE_OCCUPANCY_MAX = "vigie_published_zone_occupancy_max"
# Stays in a zone that ended in the window: {site, camera, zone, object_class, dwell}.
PUBLISHED_ZONE_DWELL_STAYS = "vigie_published_zone_dwell_stays"
# Share of the window the camera was analysed (0 to 1): {site, camera}.
PUBLISHED_COVERAGE_RATIO = "vigie_published_coverage_ratio"
# Start of the window the published gauges describe, Unix seconds: {site}.
PUBLISHED_WINDOW_START = "vigie_published_window_start_seconds"
# Length of that window, seconds: {site}.
PUBLISHED_WINDOW_LENGTH = "vigie_published_window_length_seconds"
# Cells of that window withheld by disclosure control or the privacy budget: {site, family}.
PUBLISHED_SUPPRESSED_CELLS = "vigie_published_suppressed_cells"

PUBLISHED_METRICS = (
    PUBLISHED_LINE_CROSSINGS,
    PUBLISHED_CAMERA_CROSSINGS,
    PUBLISHED_SITE_CROSSINGS,
    PUBLISHED_ZONE_OCCUPANCY_MEAN,
    PUBLISHED_ZONE_OCCUPANCY_MAX,
    PUBLISHED_ZONE_DWELL_STAYS,
    PUBLISHED_COVERAGE_RATIO,
    PUBLISHED_WINDOW_START,
    PUBLISHED_WINDOW_LENGTH,
    PUBLISHED_SUPPRESSED_CELLS,
)

# -- the service's own operation ---------------------------------------------------------------------

# Counters (exposed with the _total suffix).
REPORTS_STORED = "vigie_aggregation_reports_stored"
REPORTS_DUPLICATE = "vigie_aggregation_reports_duplicate"
REPORTS_LATE = "vigie_aggregation_reports_late"
REPORTS_UNASSIGNED = "vigie_aggregation_reports_unassigned"
REPORTS_DEADLETTERED = "vigie_aggregation_reports_deadlettered"  # {field}
STORAGE_ERRORS = "vigie_aggregation_storage_errors"
RELEASES = "vigie_aggregation_releases"  # {granularity}
SUPPRESSED_CELLS = "vigie_aggregation_suppressed_cells"  # {family, granularity}
CERTIFICATE_LINKS = "vigie_aggregation_certificate_links"  # {link}: backward, forward, vertical
BUDGET_REFUSALS = "vigie_aggregation_budget_refusals"
DAYS_WITHHELD = "vigie_aggregation_days_withheld"
RETENTION_DELETED_ROWS = "vigie_aggregation_retention_deleted_rows"
STATISTICS_READS = "vigie_aggregation_statistics_reads"  # {family, format}
# Histograms.
STORE_SECONDS = "vigie_aggregation_store_seconds"
RELEASE_SECONDS = "vigie_aggregation_release_seconds"
# Gauges.
RELEASE_LAG_SECONDS = "vigie_aggregation_release_lag_seconds"  # {site}: now - end of the latest release
