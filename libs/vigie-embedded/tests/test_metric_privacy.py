"""No metric counts the people or vehicles a camera sees: every metric declared in the services' and
libraries' code is found by reading it (any Prometheus metric or metric family constructed anywhere),
and its name and label names are checked against the rule of ``vigie_embedded.testing``. A new metric
counting tracks, detections, crossings or occupancy, by class or not, fails here before it is scraped.

The integration tests check the same rule on what the running services actually expose (e2e)."""

from __future__ import annotations

import ast
import gc
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vigie_aggregation import metric_names
from vigie_embedded.testing import metric_privacy_problem, metric_privacy_problems, repository_root

# Everything prometheus_client can expose: the metrics and the families a custom collector yields.
_METRIC_TYPES = frozenset(
    {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}
    | {f"{kind}MetricFamily" for kind in ("Counter", "Gauge", "Histogram", "Summary", "Info", "StateSet")}
    | {"UnknownMetricFamily", "GaugeHistogramMetricFamily"}
)
_PLACEHOLDER = "\x00"
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class DeclaredMetric:
    where: str
    names: tuple[str, ...]  # one, or every expansion of an f-string's template
    labels: tuple[str, ...]


def _sources() -> list[Path]:
    root = repository_root()
    return sorted(
        path
        for pattern in ("services/*/src/**/*.py", "libs/*/src/**/*.py")
        for path in root.glob(pattern)
        if not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    )


def _parse(source: str) -> ast.Module:
    # CPython 3.11 keeps the AST constructor's recursion depth in state shared by the whole interpreter:
    # a traceback formatted meanwhile (it parses source lines to place its carets), by a finalizer an
    # earlier test left or by another thread, makes it raise "AST constructor recursion depth mismatch".
    # No garbage collection meanwhile, and another try if it happens all the same.
    for attempt in range(3):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return ast.parse(source)
        except SystemError:
            if attempt == 2:
                raise
        finally:
            if enabled:
                gc.enable()
    raise AssertionError("unreachable")


def _constants(trees: dict[str, ast.Module]) -> dict[str, str]:
    """Module-level ``NAME = "text"`` of every module (metric names defined once, as metric_names does)."""
    found = {}
    for tree in trees.values():
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                        found[target.id] = node.value.value
    return found


def _prometheus_names(tree: ast.Module) -> set[str]:
    """The names under which a module imported prometheus_client's metric types."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus_client"):
            names |= {alias.asname or alias.name for alias in node.names if alias.name in _METRIC_TYPES}
    return names


def _text(node: ast.expr, constants: dict[str, str]) -> str | None:
    """A string expression's value; an f-string's with a placeholder for each replacement field."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = [
            _text(value, constants) if isinstance(value, ast.Constant) else _PLACEHOLDER
            for value in node.values
        ]
        return "".join(p or "" for p in parts)
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.Attribute):  # metric_names.REPORTS_STORED
        return constants.get(node.attr)
    return None


def _expansions(template: str, words: set[str]) -> tuple[str, ...]:
    """A template's every value, each placeholder replaced by any identifier-like string of its module
    (where built names take their parts from: ``f"vigie_ingest_{name}"`` over a dict's keys)."""
    holes = template.count(_PLACEHOLDER)
    if not holes:
        return (template,)
    pieces = template.split(_PLACEHOLDER)
    names = {template.replace(_PLACEHOLDER, "")}
    for fill in itertools.product(sorted(words), repeat=holes):
        names.add(pieces[0] + "".join(f + p for f, p in zip(fill, pieces[1:], strict=True)))
    return tuple(sorted(names))


def declared_metrics(source: str, where: str, constants: dict[str, str]) -> Iterator[DeclaredMetric]:
    """Every metric a module's code constructs, its name resolved; AssertionError for one that cannot be
    (a name computed some other way would escape this check)."""
    tree = _parse(source)
    kinds = _prometheus_names(tree)
    if not kinds:
        return
    words = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and _IDENTIFIER.match(n.value)
    }
    # Label lists named before use (labels = ["stream", "consumer"]), anywhere in the module.
    lists: dict[str, list[ast.expr]] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.List | ast.Tuple):
            for target in n.targets:
                if isinstance(target, ast.Name):
                    lists.setdefault(target.id, []).extend(n.value.elts)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in kinds):
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        name_node = node.args[0] if node.args else keywords.get("name")
        at = f"{where}:{node.lineno}"
        assert name_node is not None, f"{at}: a metric without a name"
        name = _text(name_node, constants)
        assert name is not None, f"{at}: the metric's name is not a string this test can read"
        family = node.func.id.endswith("MetricFamily")
        labels_node = keywords.get("labels") if family else keywords.get("labelnames")
        if labels_node is None and not family and len(node.args) > 2:
            labels_node = node.args[2]
        labels: list[str] = []
        if labels_node is not None:
            if isinstance(labels_node, ast.Name) and labels_node.id in lists:
                elements = lists[labels_node.id]
            else:
                assert isinstance(labels_node, ast.List | ast.Tuple), f"{at}: labels this test cannot read"
                elements = labels_node.elts
            for element in elements:
                label = _text(element, constants)
                assert label is not None, f"{at}: a label this test cannot read"
                assert _PLACEHOLDER not in label, f"{at}: a label built at run time"
                labels.append(label)
        yield DeclaredMetric(at, _expansions(name, words), tuple(labels))


@pytest.fixture(scope="module")
def every_metric() -> list[DeclaredMetric]:
    root = repository_root()
    texts = {str(path.relative_to(root)): path.read_text() for path in _sources()}
    constants = _constants({where: _parse(text) for where, text in texts.items()})
    return [metric for where, text in texts.items() for metric in declared_metrics(text, where, constants)]


def test_the_scan_finds_the_metrics_of_every_service_and_library(every_metric: list[DeclaredMetric]) -> None:
    names = {name for metric in every_metric for name in metric.names}
    for expected in (
        "vigie_ingest_frames_decoded",  # built: f"vigie_ingest_{name}"
        "vigie_ingest_frames_published",
        "vigie_inference_frames",
        "vigie_anonymiser_reports_published",
        "vigie_aggregation_reports_stored",  # through metric_names
        "vigie_published_line_crossings",  # a collector's family
        "vigie_audit_journal_appended_entries",
        "vigie_registry_objections",
        "vigie_policy_updates",  # libs
        "vigie_audit_publisher_published_events",
    ):
        assert expected in names, expected
    assert {m.where.split("/")[1] for m in every_metric} >= {
        "ingest",
        "inference",
        "anonymiser",
        "aggregation",
        "audit",
        "registry",
        "vigie-core",
    }


def test_no_declared_metric_counts_what_a_camera_sees_or_names_a_client(
    every_metric: list[DeclaredMetric],
) -> None:
    problems = [
        f"{metric.where}: {problem}"
        for metric in every_metric
        for name in metric.names
        if (problem := metric_privacy_problem(name, metric.labels)) is not None
    ]
    assert not problems, "\n".join(problems)


def test_only_the_published_figures_count_and_only_the_aggregation_publishes_them(
    every_metric: list[DeclaredMetric],
) -> None:
    published = {
        (metric.where.split(":")[0], name)
        for metric in every_metric
        for name in metric.names
        if name.startswith("vigie_published_")
    }
    assert {name for _, name in published} == set(metric_names.PUBLISHED_METRICS)
    assert {where for where, _ in published} == {"services/aggregation/src/vigie_aggregation/metrics.py"}


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ('Gauge("vigie_inference_live_tracks", "Tracks alive")', "'vigie_inference_live_tracks' counts"),
        (
            'Counter("vigie_inference_frames_seen", "frames", ["object_class"])',
            "'object_class' counts objects",
        ),
        ('Counter("vigie_x_detections", "d", labelnames=("reason",))', "counts objects"),
        ('Counter(NAME, "d")', "counts objects"),  # through a constant
        ('Counter(f"vigie_x_{kind}", "d")\nKINDS = {"frames": 1, "crossings": 2}', "crossings"),
        ('Counter("vigie_registry_requests", "r", ["client_ip"])', "client address"),
        ('GaugeMetricFamily("vigie_ingest_camera_up", "u", labels=["camera", "url"])', "camera source"),
        ('Counter(name_of(3), "d")', "not a string this test can read"),
    ],
)
def test_the_scan_fails_on_a_metric_that_counts_objects_or_names_a_client(code: str, problem: str) -> None:
    imports = (
        "from prometheus_client import Counter, Gauge\nfrom prometheus_client.core import GaugeMetricFamily"
    )
    source = f"{imports}\n{code}\n"
    try:
        found = [
            p
            for m in declared_metrics(source, "example.py", {"NAME": "vigie_inference_tracks_started"})
            for n in m.names
            if (p := metric_privacy_problem(n, m.labels)) is not None
        ]
    except AssertionError as error:
        found = [str(error)]
    assert any(problem in p for p in found), found


def test_a_scraped_page_is_checked_the_same_way() -> None:
    page = (
        "# TYPE vigie_inference_frames_total counter\n"
        'vigie_inference_frames_total{camera="c"} 3.0\n'
        "# TYPE vigie_inference_capture_to_tracks_seconds histogram\n"
        'vigie_inference_capture_to_tracks_seconds_bucket{le="0.1"} 1.0\n'
        "vigie_inference_capture_to_tracks_seconds_count 1.0\n"
        "vigie_inference_capture_to_tracks_seconds_sum 0.05\n"
        "# TYPE vigie_published_site_crossings gauge\n"
        'vigie_published_site_crossings{site="s",object_class="person"} 12.0\n'
    )
    assert metric_privacy_problems(page) == []
    leaking = (
        page
        + "# TYPE vigie_inference_tracks_started counter\n"
        + 'vigie_inference_tracks_started_total{object_class="person"} 2.0\n'
    )
    problems = metric_privacy_problems(leaking)
    assert problems
    assert all("vigie_inference_tracks_started" in p for p in problems)
