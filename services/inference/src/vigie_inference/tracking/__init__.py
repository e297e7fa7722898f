"""Building blocks of the tracker: a constant-velocity Kalman filter on boxes, and IoU association."""
