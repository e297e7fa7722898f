"""The chart, rendered with helm (``make helm``) for the default values and every ci/*-values.yaml.

kubernetes-validate knows only Kubernetes' own kinds: the core ones are validated strictly against the
1.32 schemas; the custom resources (ServiceMonitor, PodMonitor, CloudNativePG Cluster) are checked here
for the fields Vigie sets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigie_embedded.debian_tools import tool

REPOSITORY = Path(__file__).resolve().parents[2]
CHART = REPOSITORY / "charts" / "vigie"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
CUSTOM_GROUPS = {"monitoring.coreos.com", "postgresql.cnpg.io"}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
VIGIE_SERVICES = ("ingest", "inference", "anonymiser", "aggregation", "registry", "audit")
PLACEHOLDERS = ("changeme", "change-me", "change_me", "todo", "fixme", "example.com", "example.org", "xxx")

Manifest = dict[str, Any]


def _group(manifest: Manifest) -> str:
    api_version: str = manifest["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def _pod_spec(workload: Manifest) -> Manifest:
    template = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    spec: Manifest = template["template"]["spec"]
    return spec


def _pod_labels(workload: Manifest) -> dict[str, str]:
    spec = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    labels: dict[str, str] = spec["template"]["metadata"]["labels"]
    return labels


def _containers(pod: Manifest) -> Iterator[Manifest]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _env(container: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_helm_lint(helm: Path, chart_dir: Path) -> None:
    for values in [None, *sorted((chart_dir / "ci").glob("*-values.yaml"))]:
        args = ["lint", str(chart_dir), "--strict", "--kube-version", "1.32.0"]
        result = subprocess.run(
            [str(helm), *args, *(["--values", str(values)] if values else [])],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{values}: {result.stdout}{result.stderr}"


def test_core_kinds_are_valid_for_kubernetes_1_32(rendering: Any, tmp_path: Path) -> None:
    core = [m for m in rendering.manifests if _group(m) not in CUSTOM_GROUPS]
    path = tmp_path / f"{rendering.name}.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("kubernetes-validate")), "-k", "1.32.0", "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_custom_resources_are_well_formed(rendering: Any) -> None:
    for monitor in rendering.of_kind("ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["selector"]["matchLabels"]
        assert all(e["port"] for e in monitor["spec"]["endpoints"])
    for monitor in rendering.of_kind("PodMonitor"):
        assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "prom-metrics", "interval": "30s"}]
    for cluster in rendering.of_kind("Cluster"):
        assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
        assert cluster["spec"]["instances"] >= 1
        assert cluster["spec"]["bootstrap"]["initdb"]["database"]
    kinds = {m["kind"] for m in rendering.manifests if _group(m) in CUSTOM_GROUPS}
    assert kinds <= {"ServiceMonitor", "PodMonitor", "PrometheusRule", "Cluster"}


def test_every_pod_meets_the_restricted_pod_security_standard(rendering: Any) -> None:
    """Pod Security Standards, "restricted" profile, plus a read-only root filesystem everywhere."""
    for workload in rendering.of_kind(*WORKLOADS):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = _pod_spec(workload)
        pod_context = pod.get("securityContext", {})
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert pod.get("automountServiceAccountToken") is False, where
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, where
        for container in _containers(pod):
            context = {**pod_context, **container.get("securityContext", {})}
            name = f"{where}/{container['name']}"
            assert context.get("runAsNonRoot") is True, name
            assert context.get("runAsUser", 1) != 0, name
            assert context.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), name
            assert context.get("allowPrivilegeEscalation") is False, name
            assert context.get("privileged", False) is False, name
            assert "ALL" in context.get("capabilities", {}).get("drop", []), name
            assert set(context.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, name
            assert context.get("readOnlyRootFilesystem") is True, name
            assert not any(p.get("hostPort") for p in container.get("ports", [])), name


def test_every_container_has_requests_and_limits(rendering: Any) -> None:
    for workload in rendering.of_kind(*WORKLOADS):
        for container in _containers(_pod_spec(workload)):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resources.get(kind, {}).get(resource), (
                        f"{workload['metadata']['name']}/{container['name']}: no {kind}.{resource}"
                    )


def test_every_service_has_health_probes_and_triton_a_startup_probe(rendering: Any) -> None:
    for workload in rendering.of_kind("Deployment", "StatefulSet"):
        component = _pod_labels(workload)["app.kubernetes.io/component"]
        container = _pod_spec(workload)["containers"][0]
        if component in VIGIE_SERVICES:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        elif component == "triton":
            assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
            assert (
                container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
                >= 300
            )
            assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
            assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_every_workload_is_selected_by_a_network_policy(rendering: Any) -> None:
    policies = rendering.of_kind("NetworkPolicy")
    for workload in rendering.of_kind(*WORKLOADS):
        labels = _pod_labels(workload)
        selecting = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
        names = [p["metadata"]["name"] for p in selecting]
        assert any(p["metadata"]["name"].endswith("-default-deny") for p in selecting), workload["metadata"]
        assert len(selecting) >= 2, f"{workload['metadata']['name']}: only {names}"
        for policy in selecting:
            assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def _egress_peers(rendering: Any, component: str) -> list[Manifest]:
    """Every peer the NetworkPolicies of a component's pods allow egress to."""
    labels = {"app.kubernetes.io/instance": "vigie", "app.kubernetes.io/component": component}
    labels |= {"app.kubernetes.io/name": "vigie", "app.kubernetes.io/part-of": "vigie"}
    peers = []
    for policy in rendering.of_kind("NetworkPolicy"):
        if _selects(policy["spec"]["podSelector"], labels):
            for rule in policy["spec"].get("egress", []):
                peers += rule.get("to", [{"any": True}])
    return peers


def test_only_inference_reaches_triton_and_triton_reaches_nothing(rendering: Any) -> None:
    components = {_pod_labels(w)["app.kubernetes.io/component"] for w in rendering.of_kind(*WORKLOADS)}
    for component in (*VIGIE_SERVICES, "triton"):
        reaches_triton = any(
            p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "triton"
            for p in _egress_peers(rendering, component)
        )
        expected = component == "inference" and {"inference", "triton"} <= components
        assert reaches_triton == expected, component
    for policy in rendering.of_kind("NetworkPolicy"):
        if policy["metadata"]["name"].endswith("-triton"):
            assert policy["spec"]["egress"] == []
            sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
            assert sources[0] == {
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "vigie",
                        "app.kubernetes.io/instance": "vigie",
                        "app.kubernetes.io/component": "inference",
                    }
                }
            }


def test_only_ingest_reaches_the_camera_networks(render: Callable[[str], Any]) -> None:
    rendering = render("production")
    for component in VIGIE_SERVICES:
        cidrs = {p["ipBlock"]["cidr"] for p in _egress_peers(rendering, component) if "ipBlock" in p}
        assert ("10.20.0.0/16" in cidrs) == (component == "ingest"), component
    # The boundary's services reach nothing but DNS, NATS, cameras (ingest) and Triton (inference).
    for component in ("ingest", "inference", "anonymiser"):
        for peer in _egress_peers(rendering, component):
            assert "any" not in peer, f"{component} may reach any address"


def test_no_placeholder_in_the_defaults(render: Callable[[str], Any]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for text in (json.dumps(values).lower(), render("default").text.lower()):
        for placeholder in PLACEHOLDERS:
            assert placeholder not in text, placeholder


def test_no_image_is_latest_or_unpinned(rendering: Any) -> None:
    for workload in rendering.of_kind(*WORKLOADS):
        for container in _containers(_pod_spec(workload)):
            image: str = container["image"]
            assert "@sha256:" in image or ":" in image.rsplit("/", 1)[-1], image
            assert not image.endswith(":latest"), image


def test_replica_k_consumes_partition_k(render: Callable[[str], Any]) -> None:
    rendering = render("production")
    inference = rendering.named("StatefulSet", "vigie-inference")
    assert inference["spec"]["replicas"] == 3
    env = _env(_pod_spec(inference)["containers"][0])
    assert env["VIGIE_INFERENCE_PARTITION"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["VIGIE_INFERENCE_PARTITIONS"] == "3"
    assert env["VIGIE_INFERENCE_TRITON_URL"] == "vigie-triton.vigie.svc:8001"
    assert env["VIGIE_INFERENCE_TRACKS_PARTITIONS"] == "2"
    anonymiser = rendering.named("StatefulSet", "vigie-anonymiser")
    assert anonymiser["spec"]["replicas"] == 2
    assert _env(_pod_spec(anonymiser)["containers"][0])["VIGIE_ANONYMISER_PARTITIONS"] == "2"
    ingest = rendering.named("Deployment", "vigie-ingest")
    assert _env(_pod_spec(ingest)["containers"][0])["VIGIE_INGEST_FRAMES_PARTITIONS"] == "3"
    assert ingest["spec"]["strategy"] == {"type": "Recreate"}
    # A file camera's position outlives a container restart: in the pod's /tmp, an emptyDir in memory.
    pod = _pod_spec(ingest)
    assert _env(pod["containers"][0])["VIGIE_INGEST_STATE_DIR"].startswith("/tmp/")
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]
    assert next(v for v in pod["volumes"] if v["name"] == "tmp")["emptyDir"]["medium"] == "Memory"


def test_ingest_runs_as_n_shards_of_the_registry_cameras(
    render: Callable[[str], Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """replicas > 1: a StatefulSet whose pod k reads shard k of the registry's cameras, and no static one."""
    from cryptography.fernet import Fernet

    from vigie_ingest.settings import IngestSettings

    rendering = render("sharded-ingest")
    assert not [m for m in rendering.of_kind("Deployment") if m["metadata"]["name"] == "vigie-ingest"]
    ingest = rendering.named("StatefulSet", "vigie-ingest")
    assert ingest["spec"]["replicas"] == 3
    assert ingest["spec"]["podManagementPolicy"] == "Parallel"
    assert "strategy" not in ingest["spec"]  # a StatefulSet runs at most one pod per ordinal
    [container] = _pod_spec(ingest)["containers"]
    env = _env(container)
    assert env["VIGIE_INGEST_SOURCES__SHARD_INDEX"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["VIGIE_INGEST_SOURCES__SHARD_COUNT"] == "3"
    assert env["VIGIE_INGEST_CAMERAS"] == "[]"
    assert env["VIGIE_INGEST_SOURCES__ENABLED"] == "true"
    assert env["VIGIE_INGEST_FRAMES_PARTITIONS"] == "2"
    # Its governing Service exists, selects its pods and is the one the ServiceMonitor scrapes.
    service = rendering.named("Service", ingest["spec"]["serviceName"])
    assert _selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(ingest))
    assert _selects(ingest["spec"]["selector"], _pod_labels(ingest))
    monitor = rendering.named("ServiceMonitor", "vigie-ingest")
    assert _selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    # What pod 2 makes of these variables (the pod index label resolved, a key in place of the Secret's),
    # even with a settings file that lists cameras (an existingSettingsSecret the chart cannot read).
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(
        rendering.named("Secret", "vigie-ingest-settings")["stringData"]["settings.toml"]
        + '\n[[cameras]]\nid = "north-gate"\nurl = "rtsp://10.20.0.11/stream1"\n'
    )
    resolved = {
        "VIGIE_INGEST_SOURCES__SHARD_INDEX": "2",
        "VIGIE_INGEST_SOURCES__SOURCE_KEY": Fernet.generate_key().decode(),
    }
    for name, value in env.items():
        if name.startswith(("VIGIE_INGEST_SOURCES__", "VIGIE_INGEST_CAMERAS")):
            monkeypatch.setenv(name, resolved.get(name, value))
    settings = IngestSettings.load(settings_file)
    assert settings.cameras == []
    assert (settings.sources.shard_index, settings.sources.shard_count) == (2, 3)
    assert settings.target_size == 416


def test_one_ingest_replica_stays_a_single_reader_deployment(rendering: Any) -> None:
    workloads = [w for w in rendering.of_kind(*WORKLOADS) if w["metadata"]["name"] == "vigie-ingest"]
    if rendering.name == "sharded-ingest":
        assert [w["kind"] for w in workloads] == ["StatefulSet"]
        return
    [ingest] = workloads
    assert ingest["kind"] == "Deployment"
    assert ingest["spec"]["replicas"] == 1
    assert ingest["spec"]["strategy"] == {"type": "Recreate"}
    env = _env(_pod_spec(ingest)["containers"][0])
    assert not any("SHARD" in name for name in env)
    assert "VIGIE_INGEST_CAMERAS" not in env


def test_the_sharded_rendering_is_valid_for_the_minimum_kubernetes(
    render: Callable[[str], Any], tmp_path: Path
) -> None:
    """Chart.yaml's kubeVersion: 1.28, the first to label StatefulSet pods with their ordinal."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.28.0-0"
    core = [m for m in render("sharded-ingest").manifests if _group(m) not in CUSTOM_GROUPS]
    path = tmp_path / "sharded-ingest.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("kubernetes-validate")), "-k", "1.28.0", "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_service_connects_as_its_own_nats_user(rendering: Any) -> None:
    for workload in rendering.of_kind("Deployment", "StatefulSet"):
        component = _pod_labels(workload)["app.kubernetes.io/component"]
        if component not in VIGIE_SERVICES:
            continue
        env = _env(_pod_spec(workload)["containers"][0])
        prefix = f"VIGIE_{component.upper()}_NATS__"
        assert env[f"{prefix}USER"] == component
        assert env[f"{prefix}PASSWORD"]["secretKeyRef"]["key"] == component
        assert env[f"{prefix}URL"].startswith("nats://")


def test_the_service_settings_file_is_valid_for_the_service(render: Callable[[str], Any]) -> None:
    import tomllib

    from vigie_ingest.settings import IngestSettings

    rendering = render("production")
    secret = rendering.named("Secret", "vigie-ingest-settings")
    text = secret["stringData"]["settings.toml"]
    assert tomllib.loads(text)["cameras"][0]["id"] == "north-gate"
    settings_file = Path(rendering.values_files[0]).parent / "ingest-settings.toml"
    settings_file.write_text(text)
    settings = IngestSettings.load(settings_file)
    assert [c.id for c in settings.cameras] == ["north-gate", "market-square"]
    ingest = rendering.named("Deployment", "vigie-ingest")
    assert _pod_spec(ingest)["containers"][0]["args"] == ["--config", "/etc/vigie/settings.toml"]


def test_service_monitors_follow_the_cluster_capabilities(render: Callable[[str], Any]) -> None:
    assert not render("default").of_kind("ServiceMonitor", "PodMonitor")
    assert not render("no-servicemonitor").of_kind("ServiceMonitor", "PodMonitor")
    with_operator = render("default+prometheus-operator")
    monitored = {
        m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for m in with_operator.of_kind("ServiceMonitor")
    }
    assert monitored == {*VIGIE_SERVICES, "triton"}
    assert len(with_operator.of_kind("PodMonitor")) == 1


def test_dashboards_are_configmaps_for_the_grafana_sidecar(render: Callable[[str], Any]) -> None:
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert files, "no dashboard: run 'make dashboards'"
    configmaps = [m for m in render("default").of_kind("ConfigMap") if "-dashboard-" in m["metadata"]["name"]]
    assert len(configmaps) == len(files)
    for configmap in configmaps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        [(name, text)] = configmap["data"].items()
        assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())
    assert not [m for m in render("minimal").of_kind("ConfigMap") if "-dashboard-" in m["metadata"]["name"]]


def test_the_ingress_routes_only_to_the_services_with_an_api(render: Callable[[str], Any]) -> None:
    [ingress] = render("production").of_kind("Ingress")
    routes = {
        p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]
    }
    assert routes == {
        "/api/statistics": "vigie-aggregation",
        "/": "vigie-registry",
        "/api/audit": "vigie-audit",
    }
    assert ingress["spec"]["tls"] == [{"hosts": ["vigie.ville.test"], "secretName": "vigie-tls"}]


def test_cloudnativepg_provides_the_database_url(render: Callable[[str], Any]) -> None:
    rendering = render("production")
    audit = _env(_pod_spec(rendering.named("Deployment", "vigie-audit"))["containers"][0])
    assert audit["PGUSER"] == {"secretKeyRef": {"name": "vigie-postgresql-app", "key": "username"}}
    assert audit["VIGIE_AUDIT_DATABASE_URL"] == (
        "postgresql+asyncpg://$(PGUSER):$(PGPASSWORD)@vigie-postgresql-rw.vigie.svc:5432/vigie"
    )
    assert audit["VIGIE_AUDIT_DATABASE_SCHEMA"] == "audit"
    [cluster] = rendering.of_kind("Cluster")
    assert (
        "CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION vigie"
        in cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    )
    external = _env(_pod_spec(render("external-nats").named("Deployment", "vigie-registry"))["containers"][0])
    assert external["VIGIE_REGISTRY_DATABASE_URL"] == {
        "secretKeyRef": {"name": "vigie-database", "key": "url"}
    }


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ("components.ingest.replicas=2",),
            "components.ingest.replicas: 2 shards share the cameras the registry declares: "
            "set sourceKey.existingSecret",
        ),
        (
            (
                "components.ingest.replicas=3",
                "sourceKey.existingSecret=k",
                "components.ingest.registryCameras=false",
            ),
            "components.ingest.replicas: 3 shards share the cameras the registry declares: "
            "set components.ingest.registryCameras to true",
        ),
        (
            (
                "components.ingest.replicas=3",
                "sourceKey.existingSecret=k",
                "components.ingest.settings.cameras[0].id=north-gate",
                "components.ingest.settings.cameras[0].url=rtsp://10.20.0.11/stream1",
            ),
            "components.ingest.settings.cameras: each of the 3 shards would read these cameras",
        ),
        (
            (
                "components.ingest.replicas=3",
                "sourceKey.existingSecret=k",
                "components.ingest.env.VIGIE_INGEST_CAMERAS=x",
            ),
            "components.ingest.env.VIGIE_INGEST_CAMERAS: each of the 3 shards would read these cameras",
        ),
        (
            ("components.ingest.settings.sources.shard_count=2",),
            "components.ingest.settings.sources.shard_count: set by the chart from "
            "components.ingest.replicas",
        ),
        (("components.ingest.env.VIGIE_INGEST_SOURCES__SHARD_INDEX=1",), "components.ingest.env"),
        (
            ("components.ingest.replicas=1025",),
            "components.ingest.replicas: Must be less than or equal to 1024",
        ),
        (("components.billing.enabled=true",), "Additional property billing is not allowed"),
        (("triton.image.tag=latest",), "triton.image.tag: Must not validate the schema"),
        (
            ("networkPolicy.cameras.cidrs={10.0.0.1}",),
            "networkPolicy.cameras.cidrs.0: Does not match pattern",
        ),
        (("nats.enabled=false",), "messaging.url: set the URL of your NATS server"),
        (("ingress.enabled=true",), "ingress.host: set the host name"),
        (("components.ingest.resources=null",), "components.ingest"),
        (("sourceKey.existingSecret=Not_A_Name",), "sourceKey.existingSecret: Does not match pattern"),
        (("components.ingest.registryCameras=yes",), "components.ingest.registryCameras: Invalid type"),
        (("provisioner.env.VIGIE_PROVISION_NATS__USER=registry",), "provisioner.env"),
        (("provisioner.image=busybox",), "provisioner.image: Does not match pattern"),
        (
            ("provisioner.streamReplicas=3",),
            "provisioner.streamReplicas: 3 copies of each stream need a NATS cluster",
        ),
        (
            (
                "provisioner.streamReplicas=3",
                "nats.config.cluster.enabled=true",
                "nats.config.cluster.replicas=2",
            ),
            "provisioner.streamReplicas: 3 copies of each stream need as many NATS servers, "
            "nats.config.cluster.replicas is 2",
        ),
        (
            ("provisioner.streamReplicas=2",),
            "provisioner.streamReplicas must be one of the following: 1, 3, 5",
        ),
        (("provisioner.env.VIGIE_PROVISION_STREAM_REPLICAS=3",), "provisioner.env"),
    ],
)
def test_invalid_values_are_refused_with_a_clear_message(
    helm_template: Callable[..., subprocess.CompletedProcess[str]], sets: tuple[str, ...], message: str
) -> None:
    result = helm_template(sets=sets)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_the_alerts_are_valid_rules_on_known_metrics(render: Callable[[str], Any], tmp_path: Path) -> None:
    """files/alerts.yaml: promtool accepts it, its metrics exist, and it is rendered only with the CRD."""
    alerts = CHART / "files" / "alerts.yaml"
    promtool = tool("promtool")
    if promtool is None:
        message = "promtool not found: make test fetches Debian's prometheus, or make system-packages"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [promtool, "check", "rules", str(alerts)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    groups = yaml.safe_load(alerts.read_text())["groups"]
    sources = "".join(
        path.read_text()
        for pattern in ("services/*/src/**/*.py", "libs/*/src/**/*.py")
        for path in REPOSITORY.glob(pattern)
    )
    for rule in (rule for group in groups for rule in group["rules"]):
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        for metric in re.findall(r"\b(vigie_[a-z0-9_]+)", rule["expr"]):
            base = re.sub(r"_(total|bucket)$", "", metric)
            built = base.startswith("vigie_ingest_") and '"vigie_ingest_{name}"' in sources
            assert f'"{base}"' in sources or built, f"{rule['alert']}: no service defines {metric}"
    [rules] = render("default+prometheus-operator").of_kind("PrometheusRule")
    assert rules["spec"] == {"groups": groups}
    assert not render("default").of_kind("PrometheusRule")


def test_the_registry_behind_the_ingress_sees_the_citizen_and_links_to_the_city_host(
    render: Callable[[str], Any],
    helm_template: Callable[..., subprocess.CompletedProcess[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vigie_registry.settings import RegistrySettings

    registry = render("production").named("Deployment", "vigie-registry")
    env = _env(_pod_spec(registry)["containers"][0])
    assert env["VIGIE_REGISTRY_OBJECTION__FORWARDED_HOPS"] == "1"
    assert env["VIGIE_REGISTRY_PUBLIC__BASE_URL"] == "https://vigie.ville.test"
    # X-Forwarded-For is believed from the Ingress controller's pod networks only: by default the private
    # ranges, as the service reads them.
    for name in ("VIGIE_REGISTRY_OBJECTION__FORWARDED_HOPS", "VIGIE_REGISTRY_OBJECTION__TRUSTED_PROXIES"):
        monkeypatch.setenv(name, env[name])
    objection = RegistrySettings.load().objection
    assert objection.forwarded_hops == 1
    assert [str(n) for n in objection.trusted_proxies] == [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ]
    # Narrowed to the cluster's pod network.
    result = helm_template(
        CHART / "ci" / "production-values.yaml", sets=("ingress.trustedProxies={10.244.0.0/16}",)
    )
    assert result.returncode == 0, result.stderr
    [narrowed] = [
        m
        for m in yaml.safe_load_all(result.stdout)
        if m and m["kind"] == "Deployment" and m["metadata"]["name"] == "vigie-registry"
    ]
    assert _env(_pod_spec(narrowed)["containers"][0])["VIGIE_REGISTRY_OBJECTION__TRUSTED_PROXIES"] == (
        '["10.244.0.0/16"]'
    )
    refused = helm_template(sets=("ingress.trustedProxies={ingress-nginx}",))
    assert refused.returncode != 0
    assert "trustedProxies" in refused.stderr
    # Without the Ingress, no proxy to trust: the client is the TCP peer.
    default = _env(_pod_spec(render("default").named("Deployment", "vigie-registry"))["containers"][0])
    assert "VIGIE_REGISTRY_OBJECTION__FORWARDED_HOPS" not in default
    assert "VIGIE_REGISTRY_OBJECTION__TRUSTED_PROXIES" not in default


def test_the_registry_and_ingest_share_the_source_key_and_ingest_reads_the_registry_cameras(
    render: Callable[[str], Any], helm_template: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    from vigie_ingest.settings import IngestSettings

    rendering = render("production")
    key = {"secretKeyRef": {"name": "vigie-source-key", "key": "source-key"}}
    registry = _env(_pod_spec(rendering.named("Deployment", "vigie-registry"))["containers"][0])
    assert registry["VIGIE_REGISTRY_SOURCE_KEY"] == key
    ingest = _env(_pod_spec(rendering.named("Deployment", "vigie-ingest"))["containers"][0])
    assert ingest["VIGIE_INGEST_SOURCES__ENABLED"] == "true"
    assert ingest["VIGIE_INGEST_SOURCES__SOURCE_KEY"] == key
    # What the service makes of these variables (with a key of the right form in place of the Secret's).
    from cryptography.fernet import Fernet

    settings = IngestSettings.model_validate(
        {"sources": {"enabled": ingest["VIGIE_INGEST_SOURCES__ENABLED"], "source_key": Fernet.generate_key()}}
    )
    assert settings.sources.enabled
    # Only the registry and ingest get the key.
    for workload in rendering.of_kind("Deployment", "StatefulSet"):
        env = _env(_pod_spec(workload)["containers"][0])
        holders = {name for name, value in env.items() if value == key}
        component = _pod_labels(workload)["app.kubernetes.io/component"]
        assert bool(holders) == (component in ("registry", "ingest")), component
    # Without the Secret, nothing: ingest reads the cameras of its settings alone.
    for name in ("default", "minimal"):
        for workload in render(name).of_kind("Deployment", "StatefulSet"):
            env = _env(_pod_spec(workload)["containers"][0])
            assert not any("SOURCE" in variable for variable in env), workload["metadata"]["name"]
    # With it, but registryCameras off: the registry has its key, ingest does not follow it.
    result = helm_template(sets=("sourceKey.existingSecret=k", "components.ingest.registryCameras=false"))
    assert result.returncode == 0, result.stderr
    manifests = [m for m in yaml.safe_load_all(result.stdout) if m]
    [ingest_workload] = [
        m for m in manifests if m["metadata"]["name"] == "vigie-ingest" and m["kind"] == "Deployment"
    ]
    assert "VIGIE_INGEST_SOURCES__ENABLED" not in _env(_pod_spec(ingest_workload)["containers"][0])


def test_the_provisioner_job_creates_the_streams_as_its_own_user_and_reaches_nats_only(
    render: Callable[[str], Any],
) -> None:
    """No service may create or change a stream (vigie_core.permissions): a Job does, as the NATS user
    provisioner, sizing FRAMES and TRACKS to the replicas that consume them."""
    rendering = render("production")
    [job] = rendering.of_kind("Job")
    assert job["metadata"]["name"] == "vigie-provision-1"  # one per revision: each upgrade runs it again
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    pod = _pod_spec(job)
    assert pod["restartPolicy"] == "OnFailure"
    [container] = pod["containers"]
    assert container["command"] == ["python", "-m", "vigie_core.provision"]
    assert container["image"].split("/")[-1].startswith("vigie-")
    env = _env(container)
    assert env["VIGIE_PROVISION_NATS__USER"] == "provisioner"
    assert env["VIGIE_PROVISION_NATS__PASSWORD"]["secretKeyRef"] == {
        "name": "vigie-nats-users",
        "key": "provisioner",
    }
    assert env["VIGIE_PROVISION_NATS__URL"].startswith("nats://")
    assert (env["VIGIE_PROVISION_FRAMES_PARTITIONS"], env["VIGIE_PROVISION_TRACKS_PARTITIONS"]) == ("3", "2")

    labels = _pod_labels(job)
    policies = [p for p in rendering.of_kind("NetworkPolicy") if _selects(p["spec"]["podSelector"], labels)]
    for policy in policies:
        assert not policy["spec"].get("ingress"), policy["metadata"]["name"]
    ports = {
        port["port"]
        for policy in policies
        for rule in policy["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }
    assert ports == {53, 4222}


def _provisioner_env(rendering: Any) -> list[dict[str, Any]]:
    """The environment of the provisioner Job and of its reconciling CronJob."""
    workloads = [rendering.named("Job", "vigie-provision-1"), rendering.named("CronJob", "vigie-reconcile")]
    return [_env(_pod_spec(workload)["containers"][0]) for workload in workloads]


def _merged(base: Manifest, override: Manifest) -> Manifest:
    """``override`` over ``base`` as helm merges values files: maps merged, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        merged[key] = _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def _nats_values(*values_files: Path) -> Manifest:
    values: Manifest = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in values_files:
        values = _merged(values, yaml.safe_load(path.read_text()))
    nats: Manifest = values["nats"]
    return nats


def _official_nats_chart(rendering: Any) -> Manifest | None:
    """The NATS StatefulSet, when the official chart renders (VIGIE_NATS_CHART) rather than the stub."""
    found = [m for m in rendering.of_kind("StatefulSet") if m["metadata"]["name"] == "vigie-nats"]
    assert len(found) == (1 if os.environ.get("VIGIE_NATS_CHART") else 0)
    return found[0] if found else None


def test_production_runs_nats_as_a_cluster_holding_three_copies_of_every_stream(
    render: Callable[[str], Any],
) -> None:
    """One NATS server restarting (a rolling upgrade, a node drained or lost) loses nothing: three servers,
    on three nodes, each holding a copy of every stream, memory streams included."""
    rendering = render("production")
    for env in _provisioner_env(rendering):
        assert env["VIGIE_PROVISION_STREAM_REPLICAS"] == "3"

    nats = _nats_values(CHART / "ci" / "production-values.yaml")
    assert nats["enabled"] is True
    assert nats["config"]["cluster"]["enabled"] is True
    assert nats["config"]["cluster"]["replicas"] == 3
    jetstream = nats["config"]["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["memoryStore"] == {"enabled": True, "maxSize": "1Gi"}
    assert jetstream["fileStore"]["pvc"]["size"] == "20Gi"
    spread = nats["podTemplate"]["topologySpreadConstraints"]["kubernetes.io/hostname"]
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"

    statefulset = _official_nats_chart(rendering)
    if statefulset is not None:
        assert statefulset["spec"]["replicas"] == 3
        [claim] = statefulset["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
        [constraint] = statefulset["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert constraint["topologyKey"] == "kubernetes.io/hostname"
        config = rendering.named("ConfigMap", "vigie-nats-config")["data"]["nats.conf"]
        assert config.count("vigie-nats-headless:6222") == 3
        budget = rendering.named("PodDisruptionBudget", "vigie-nats")
        assert budget["spec"]["maxUnavailable"] == 1

    # The servers reach each other's cluster routes, and only each other.
    policy = rendering.named("NetworkPolicy", "vigie-nats")
    nats_pods = policy["spec"]["podSelector"]
    routes = {"port": 6222, "protocol": "TCP"}
    assert {"from": [{"podSelector": nats_pods}], "ports": [routes]} in policy["spec"]["ingress"]
    assert {"to": [{"podSelector": nats_pods}], "ports": [routes]} in policy["spec"]["egress"]


@pytest.mark.parametrize("name", ["default", "minimal"])
def test_a_trial_install_runs_one_nats_server_and_one_copy_of_each_stream(
    render: Callable[[str], Any], name: str
) -> None:
    rendering = render(name)
    for env in _provisioner_env(rendering):
        assert env["VIGIE_PROVISION_STREAM_REPLICAS"] == "1"
    nats = _nats_values(*rendering.values_files)
    assert nats["config"]["cluster"]["enabled"] is False
    statefulset = _official_nats_chart(rendering)
    if statefulset is not None:
        assert statefulset["spec"]["replicas"] == 1
