"""The Grafana dashboards: generated from code (dashboards/), committed under charts/vigie/dashboards."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vigie_embedded.debian_tools import tool

REPOSITORY = Path(__file__).resolve().parents[2]
GENERATED = REPOSITORY / "charts" / "vigie" / "dashboards"
_METRIC = re.compile(r"\b((?:vigie|nats)_[a-z0-9_]+)")


@pytest.fixture(scope="module")
def dashboards() -> ModuleType:
    return importlib.import_module("vigie_dashboards")


@pytest.fixture(scope="module")
def metric_names() -> ModuleType:
    return importlib.import_module("vigie_dashboards.metrics")


def _panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = document["panels"]
    return [p for p in panels if p["type"] != "row"]


def _expressions(document: dict[str, Any]) -> list[str]:
    expressions = [t["expr"] for p in _panels(document) for t in p["targets"]]
    expressions += [v["query"] for v in document["templating"]["list"] if v["type"] == "query"]
    return expressions


def test_the_committed_json_is_what_the_code_builds(dashboards: ModuleType) -> None:
    rendered: dict[str, str] = dashboards.render_all()
    committed = {path.name: path.read_text() for path in GENERATED.glob("*.json")}
    assert committed == rendered, "charts/vigie/dashboards differs from dashboards/: run 'make dashboards'"


def test_every_query_uses_a_named_metric(dashboards: ModuleType, metric_names: ModuleType) -> None:
    known = {value for name, value in vars(metric_names).items() if name.isupper() and isinstance(value, str)}
    for text in dashboards.render_all().values():
        for expression in _expressions(json.loads(text)):
            for metric in _METRIC.findall(expression):
                assert metric in known, f"{metric} in {expression!r} is not in vigie_dashboards.metrics"


def test_the_services_expose_the_metrics_the_dashboards_read(metric_names: ModuleType) -> None:
    sources = "".join(
        path.read_text()
        for pattern in ("services/*/src/**/*.py", "libs/*/src/**/*.py")
        for path in REPOSITORY.glob(pattern)
    )
    for metric in metric_names.EXISTING:
        # prometheus_client names a counter without _total and a histogram without _bucket.
        base = re.sub(r"_(total|bucket)$", "", metric)
        # ingest names its per-camera counters f"vigie_ingest_{name}" from a table of names.
        built = '"vigie_ingest_{name}"' in sources and f'"{base.removeprefix("vigie_ingest_")}"' in sources
        assert f'"{base}"' in sources or (base.startswith("vigie_ingest_") and built), (
            f"no service defines {metric}"
        )


def test_the_dashboards_are_self_consistent(dashboards: ModuleType) -> None:
    uids = []
    for name, text in dashboards.render_all().items():
        document = json.loads(text)
        uids.append(document["uid"])
        assert name == f"{document['uid']}.json"
        ids = [p["id"] for p in document["panels"]]
        assert len(ids) == len(set(ids)), name
        variables = {v["name"] for v in document["templating"]["list"]}
        assert "datasource" in variables
        for panel in _panels(document):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                expression = target["expr"]
                assert expression.count("(") == expression.count(")"), expression
                assert expression.count("{") == expression.count("}"), expression
                for variable in re.findall(r"\$([a-z_]+)", expression):
                    assert variable in variables or variable.startswith("__"), expression
    assert len(uids) == len(set(uids))


def test_the_pipeline_dashboard_covers_the_issue(dashboards: ModuleType) -> None:
    """Frames per second, consumer lag, dropped frames, both latencies and the cameras analysed; no count
    of tracks or detections (no service exposes one)."""
    text = dashboards.render_all()["vigie-pipeline.json"]
    for metric in (
        "vigie_ingest_frames_published_total",
        "vigie_inference_frames_total",
        "vigie_consumer_pending_messages",
        "vigie_inference_frames_dropped_total",
        "vigie_inference_model_seconds_bucket",
        "vigie_inference_capture_to_tracks_seconds_bucket",
    ):
        assert metric in text, metric
    assert "Cameras analysed" in text
    for removed in ("live_tracks", "tracks_started", "detections_discarded", "Live tracks"):
        assert removed not in text, removed


def test_the_check_mode_reports_drift(dashboards: ModuleType, tmp_path: Path) -> None:
    main = importlib.import_module("vigie_dashboards.__main__").main
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "vigie-audit.json").write_text("{}")
    (tmp_path / "stale.json").write_text("{}")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(dashboards.render_all())


# Grafana's variables, as a dashboard would expand them.
_GRAFANA_VARIABLES = {
    "$__rate_interval": "2m",
    "$__interval": "1m",
    "$__range": "1h",
    "$camera": ".*",
    "$site": ".*",
    "$object_class": ".*",
}


def test_every_query_is_valid_promql(dashboards: ModuleType, tmp_path: Path) -> None:
    """promtool (Debian's prometheus package, unpacked by make test where not installed) parses every
    expression."""
    promtool = os.environ.get("VIGIE_PROMTOOL") or tool("promtool")
    if promtool is None:
        pytest.skip("promtool not found: make test fetches Debian's prometheus, or set VIGIE_PROMTOOL")
    rules = []
    for name, text in dashboards.render_all().items():
        for number, expression in enumerate(_expressions(json.loads(text))):
            if expression.startswith("label_values("):
                continue
            for variable, value in _GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            rules.append(
                {
                    "record": f"vigie:{name.removesuffix('.json').replace('-', '_')}:{number}",
                    "expr": expression,
                }
            )
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
