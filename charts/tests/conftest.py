"""Rendering the chart offline: the real helm binary (``make helm``) on a copy of the chart whose NATS
dependency is a stub (fixtures/nats-stub: same name and version, renders nothing), since the official
chart cannot be fetched here. ``VIGIE_NATS_CHART=/path/to/nats`` uses a local copy of the official chart
instead (e.g. ``helm pull nats/nats --version 2.14.2 --untar``), and the same tests then cover its pods.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
CHART = REPOSITORY / "charts" / "vigie"
HELM = REPOSITORY / "var" / "tools" / "helm"
KUBE_VERSION = "1.32.0"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
RELEASE = "vigie"
NAMESPACE = "vigie"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendering:
    """One ``helm template`` of the chart: its name (for test ids), the command and the manifests."""

    name: str
    values_files: tuple[Path, ...]
    manifests: tuple[Manifest, ...]
    text: str

    def of_kind(self, *kinds: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] in kinds]

    def named(self, kind: str, name: str) -> Manifest:
        found = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found in {self.name}"
        return found[0]


def helm_binary() -> Path:
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"{HELM} is missing: run 'make helm'")
    return HELM


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_binary()


@pytest.fixture(scope="session")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of charts/vigie with its NATS dependency in place (the stub, or VIGIE_NATS_CHART)."""
    chart = tmp_path_factory.mktemp("chart") / "vigie"
    shutil.copytree(CHART, chart)
    nats_chart = Path(os.environ.get("VIGIE_NATS_CHART", Path(__file__).parent / "fixtures" / "nats-stub"))
    shutil.copytree(nats_chart, chart / "charts" / "nats")
    return chart


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60, check=False)


def template(
    helm: Path,
    chart: Path,
    *values_files: Path,
    api_versions: tuple[str, ...] = (),
    sets: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for values in values_files:
        args += ["--values", str(values)]
    for api in api_versions:
        args += ["--api-versions", api]
    for item in sets:
        args += ["--set", item]
    return run_helm(helm, *args)


CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# (name, values files, cluster has the Prometheus Operator)
RENDERINGS = [
    ("default", (), False),
    ("default+prometheus-operator", (), True),
    *[(path.name.removesuffix("-values.yaml"), (path,), True) for path in CI_VALUES],
]


@pytest.fixture(scope="session")
def render(helm: Path, chart_dir: Path) -> Callable[[str], Rendering]:
    """``render(name)``: one of RENDERINGS, rendered once per session."""
    cache: dict[str, Rendering] = {}

    def rendering(name: str) -> Rendering:
        if name not in cache:
            _, files, operator = next(r for r in RENDERINGS if r[0] == name)
            copied = tuple(chart_dir / "ci" / f.name for f in files)
            api = (SERVICE_MONITOR_API, PROMETHEUS_RULE_API) if operator else ()
            result = template(helm, chart_dir, *copied, api_versions=api)
            assert result.returncode == 0, result.stderr
            manifests = tuple(m for m in yaml.safe_load_all(result.stdout) if m)
            cache[name] = Rendering(name, copied, manifests, result.stdout)
        return cache[name]

    return rendering


@pytest.fixture(scope="session")
def helm_template(helm: Path, chart_dir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``helm_template(*values_files, api_versions=(), sets=())`` on the chart copy."""

    def run(
        *values_files: Path, api_versions: tuple[str, ...] = (), sets: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return template(helm, chart_dir, *values_files, api_versions=api_versions, sets=sets)

    return run


@pytest.fixture(params=[r[0] for r in RENDERINGS])
def rendering(request: pytest.FixtureRequest, render: Callable[[str], Rendering]) -> Rendering:
    """Every rendering in turn."""
    return render(request.param)
