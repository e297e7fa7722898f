"""Vigie's Grafana dashboards as code (grafana-foundation-sdk).

``python -m vigie_dashboards --out charts/vigie/dashboards`` (``make dashboards``) writes one JSON file per
dashboard, which the Helm chart ships as ConfigMaps for Grafana's dashboard sidecar. The chart tests fail
when the committed JSON differs from what this code builds.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from .audit import audit_dashboard
from .counts import counts_dashboard
from .pipeline import pipeline_dashboard

__all__ = ["DASHBOARDS", "render_all"]

# File name (without .json) -> builder.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "vigie-counts": counts_dashboard,
    "vigie-pipeline": pipeline_dashboard,
    "vigie-audit": audit_dashboard,
}


def render_all() -> dict[str, str]:
    """Each dashboard's file name and JSON text, stable from one run to the next."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    rendered = {}
    for name, build in DASHBOARDS.items():
        # Round-trip through json so the text does not depend on the encoder's own formatting choices.
        document = json.loads(encoder.encode(build().build()))
        # Grafana wants a distinct id per panel; the builders leave them all at 0.
        for number, panel in enumerate(document.get("panels", []), start=1):
            panel["id"] = number
        rendered[f"{name}.json"] = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return rendered
