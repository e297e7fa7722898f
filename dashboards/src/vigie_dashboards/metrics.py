"""The metric names the dashboards query, in one place: the aggregation's from its own names module, the
other services' as their code defines them (a test finds each one there).

Prometheus adds ``_total`` to counters and ``_bucket`` to histograms: names here are as queried.
"""

from __future__ import annotations

from vigie_aggregation import metric_names as aggregation

# ingest (services/ingest/src/vigie_ingest/service.py)
INGEST_FRAMES_DECODED = "vigie_ingest_frames_decoded_total"  # {camera}
INGEST_FRAMES_PUBLISHED = "vigie_ingest_frames_published_total"  # {camera}
INGEST_FRAMES_DROPPED = "vigie_ingest_frames_dropped_total"  # {camera}: publishing was behind
INGEST_DECODE_ERRORS = "vigie_ingest_decode_errors_total"  # {camera}
INGEST_CONNECTIONS = "vigie_ingest_connections_total"  # {camera}
INGEST_CAMERA_STATE = "vigie_ingest_camera_state"  # {camera, state}: 1 for the current state

# inference (services/inference/src/vigie_inference/service.py)
INFERENCE_FRAMES = "vigie_inference_frames_total"  # {camera}
INFERENCE_FRAMES_DROPPED = "vigie_inference_frames_dropped_total"  # {reason}
INFERENCE_MODEL_SECONDS = "vigie_inference_model_seconds_bucket"
INFERENCE_CAPTURE_TO_TRACKS_SECONDS = "vigie_inference_capture_to_tracks_seconds_bucket"

# anonymiser (services/anonymiser/src/vigie_anonymiser/service.py)
ANONYMISER_FRAMES = "vigie_anonymiser_frames_total"  # {camera}
ANONYMISER_FRAMES_DROPPED = "vigie_anonymiser_frames_dropped_total"  # {reason}
ANONYMISER_MESSAGES_REJECTED = "vigie_anonymiser_messages_rejected_total"  # {field}
ANONYMISER_REPORTS_PUBLISHED = "vigie_anonymiser_reports_published_total"  # {camera, closed_by}
ANONYMISER_REPORTS_WAITING = "vigie_anonymiser_reports_waiting"

# every service's audit publisher (libs/vigie-core/src/vigie_core/audit.py)
AUDIT_EVENTS_PUBLISHED = "vigie_audit_publisher_published_events_total"
AUDIT_FAILED_ATTEMPTS = "vigie_audit_publisher_failed_attempts_total"
AUDIT_EVENTS_LOST = "vigie_audit_publisher_lost_events_total"  # {reason}
AUDIT_EVENTS_BUFFERED = "vigie_audit_publisher_buffered_events"

# each consuming service's own durable consumer, read from the NATS server (vigie_core.lag)
CONSUMER_PENDING = "vigie_consumer_pending_messages"  # {stream, consumer}
CONSUMER_ACK_PENDING = "vigie_consumer_ack_pending_messages"  # {stream, consumer}

# The aggregation service names its metrics once, for these dashboards: vigie_aggregation.metric_names.
# Published figures are gauges of each site's latest released window; "all" label values are totals.
PUBLISHED_LINE_CROSSINGS = (
    aggregation.PUBLISHED_LINE_CROSSINGS
)  # {site, camera, line, direction, object_class}
PUBLISHED_CAMERA_CROSSINGS = aggregation.PUBLISHED_CAMERA_CROSSINGS  # {site, camera, object_class}
PUBLISHED_SITE_CROSSINGS = aggregation.PUBLISHED_SITE_CROSSINGS  # {site, object_class}
PUBLISHED_ZONE_OCCUPANCY_MEAN = (
    aggregation.PUBLISHED_ZONE_OCCUPANCY_MEAN
)  # {site, camera, zone, object_class}
PUBLISHED_ZONE_OCCUPANCY_MAX = aggregation.PUBLISHED_ZONE_OCCUPANCY_MAX  # {site, camera, zone, object_class}
PUBLISHED_ZONE_DWELL_STAYS = (
    aggregation.PUBLISHED_ZONE_DWELL_STAYS
)  # {site, camera, zone, object_class, dwell}
PUBLISHED_COVERAGE_RATIO = aggregation.PUBLISHED_COVERAGE_RATIO  # {site, camera}
PUBLISHED_WINDOW_LENGTH = aggregation.PUBLISHED_WINDOW_LENGTH  # {site}
PUBLISHED_SUPPRESSED_CELLS = aggregation.PUBLISHED_SUPPRESSED_CELLS  # {site, family}
AGGREGATION_REPORTS_STORED = f"{aggregation.REPORTS_STORED}_total"
AGGREGATION_REPORTS_DEADLETTERED = f"{aggregation.REPORTS_DEADLETTERED}_total"  # {field}
AGGREGATION_STORAGE_ERRORS = f"{aggregation.STORAGE_ERRORS}_total"
AGGREGATION_RELEASE_LAG = aggregation.RELEASE_LAG_SECONDS  # {site}
AGGREGATION_STATISTICS_READS = f"{aggregation.STATISTICS_READS}_total"  # {family, format}

EXISTING = (
    INGEST_FRAMES_DECODED,
    INGEST_FRAMES_PUBLISHED,
    INGEST_FRAMES_DROPPED,
    INGEST_DECODE_ERRORS,
    INGEST_CONNECTIONS,
    INGEST_CAMERA_STATE,
    INFERENCE_FRAMES,
    INFERENCE_FRAMES_DROPPED,
    INFERENCE_MODEL_SECONDS,
    INFERENCE_CAPTURE_TO_TRACKS_SECONDS,
    ANONYMISER_FRAMES,
    ANONYMISER_FRAMES_DROPPED,
    ANONYMISER_MESSAGES_REJECTED,
    ANONYMISER_REPORTS_PUBLISHED,
    ANONYMISER_REPORTS_WAITING,
    AUDIT_EVENTS_PUBLISHED,
    AUDIT_FAILED_ATTEMPTS,
    AUDIT_EVENTS_LOST,
    AUDIT_EVENTS_BUFFERED,
    CONSUMER_PENDING,
    CONSUMER_ACK_PENDING,
)
"""Metrics a Vigie service already exposes (a test finds each one's name in the services' code)."""
