"""The rendered chart, scanned by a maintained policy scanner: checkov (``make checkov``; its version is
requirements-checkov.txt's), on the default values and every ci/*-values.yaml. Every finding fails the test
unless ci/checkov-skips.yaml accepts it, with its reason; an exception that no longer matches a finding
fails too. The Pod Security Standards' "restricted" profile: checkov's checks of it must have passed on
every pod, and the controls it has no check for are tested here (the others in test_chart.py).

Trivy (its k8s-pss-restricted compliance), kubescape, kube-linter and polaris install from no registry
this project uses (PyPI, npm, Debian): checkov is the one scanner here.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
CHART = REPOSITORY / "charts" / "vigie"
CHECKOV = REPOSITORY / "var" / "tools" / "checkov" / "bin" / "checkov"
SKIPS = CHART / "ci" / "checkov-skips.yaml"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
# conftest.py's RENDERINGS, by name.
RENDERINGS = [
    "default",
    "default+prometheus-operator",
    *(p.name.removesuffix("-values.yaml") for p in sorted((CHART / "ci").glob("*-values.yaml"))),
]

Manifest = dict[str, Any]

# checkov's checks of the Pod Security Standards (baseline and restricted), and of what the chart adds to
# them (read-only root filesystem, no service account token, a high UID): each must pass on every pod.
POD_SECURITY_CHECKS = {
    "CKV_K8S_16": "not privileged",
    "CKV_K8S_17": "no host PID namespace",
    "CKV_K8S_18": "no host IPC namespace",
    "CKV_K8S_19": "no host network",
    "CKV_K8S_20": "allowPrivilegeEscalation: false",
    "CKV_K8S_22": "read-only root filesystem",
    "CKV_K8S_23": "runAsNonRoot",
    "CKV_K8S_25": "no capability added",
    "CKV_K8S_26": "no hostPort",
    "CKV_K8S_27": "no docker socket",
    "CKV_K8S_28": "no NET_RAW",
    "CKV_K8S_31": "seccomp RuntimeDefault",
    "CKV_K8S_37": "capabilities dropped",
    "CKV_K8S_38": "no service account token",
    "CKV_K8S_39": "no SYS_ADMIN",
    "CKV_K8S_40": "a high UID",
}
# The volume types the restricted profile allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t")
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def _checkov() -> Path:
    if not os.access(CHECKOV, os.X_OK):
        pytest.fail(f"{CHECKOV} is missing: run 'make checkov'")
    return CHECKOV


@pytest.fixture(scope="module")
def scan(render: Callable[[str], Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run over every rendering: {"failed": [...], "passed": [...]}, each finding
    (rendering, check id, Kind/name)."""
    folder = tmp_path_factory.mktemp("rendered")
    for name in RENDERINGS:
        (folder / f"{name}.yaml").write_text(render(name).text)
    result = subprocess.run(
        [
            str(_checkov()),
            "--directory",
            str(folder),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--compact",
            "--skip-download",  # offline: no Prisma Cloud guidelines, severities or custom policies
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-4000:]  # 1: some check failed
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    [kubernetes] = [r for r in reports if r["check_type"] == "kubernetes"]
    assert kubernetes["summary"]["parsing_errors"] == 0, kubernetes["summary"]
    return {
        outcome: [_finding(check) for check in kubernetes["results"][f"{outcome}_checks"]]
        for outcome in ("failed", "passed")
    }


def _finding(check: dict[str, Any]) -> tuple[str, str, str]:
    kind, _namespace, name = check["resource"].split(".", 2)
    return Path(check["file_path"]).stem, check["check_id"], f"{kind}/{name}"


def _skips() -> list[dict[str, Any]]:
    skips: list[dict[str, Any]] = yaml.safe_load(SKIPS.read_text())["skips"]
    return skips


def _accepted(check: str, resource: str) -> dict[str, Any] | None:
    for skip in _skips():
        if skip["check"] == check and any(fnmatch.fnmatchcase(resource, p) for p in skip["resources"]):
            return skip
    return None


def test_every_exception_has_a_reason() -> None:
    for skip in _skips():
        assert set(skip) == {"check", "title", "resources", "reason"}, skip
        assert len(skip["reason"].split()) >= 10, f"{skip['check']}: say why"
        assert skip["resources"], skip["check"]


def test_checkov_finds_nothing_but_the_accepted_exceptions(scan: dict[str, Any]) -> None:
    unexpected = sorted({f for f in scan["failed"] if _accepted(f[1], f[2]) is None})
    assert not unexpected, "checkov findings, to fix or to accept in ci/checkov-skips.yaml: " + "\n".join(
        f"{rendering}: {check} {resource}" for rendering, check, resource in unexpected
    )


def test_every_exception_still_matches_a_finding(scan: dict[str, Any]) -> None:
    found = {(check, resource) for _, check, resource in scan["failed"]}
    stale = [
        f"{skip['check']} {pattern}"
        for skip in _skips()
        for pattern in skip["resources"]
        if not any(c == skip["check"] and fnmatch.fnmatchcase(r, pattern) for c, r in found)
    ]
    assert not stale, f"exceptions of ci/checkov-skips.yaml that match no finding any more: {stale}"


def test_checkovs_pod_security_checks_pass_on_every_pod(
    scan: dict[str, Any], render: Callable[[str], Any]
) -> None:
    passed = {(rendering, check, resource) for rendering, check, resource in scan["passed"]}
    for name in RENDERINGS:
        for workload in render(name).of_kind(*WORKLOADS):
            resource = f"{workload['kind']}/{workload['metadata']['name']}"
            missing = [c for c in POD_SECURITY_CHECKS if (name, c, resource) not in passed]
            assert not missing, f"{name}: {resource}: not passed: {[POD_SECURITY_CHECKS[c] for c in missing]}"


def _pod_template(workload: Manifest) -> Manifest:
    spec = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    pod: Manifest = spec["template"]
    return pod


def _pods(rendering: Any) -> Iterator[tuple[str, Manifest]]:
    for workload in rendering.of_kind(*WORKLOADS):
        yield f"{workload['kind']}/{workload['metadata']['name']}", _pod_template(workload)


def test_the_restricted_controls_checkov_has_no_check_for(rendering: Any) -> None:
    """Volume types, sysctls, /proc mount, SELinux, AppArmor, Windows host processes: the Pod Security
    Standards' "restricted" profile (Kubernetes 1.32)."""
    for where, template in _pods(rendering):
        pod = template["spec"]
        for volume in pod.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{where}: volume {volume['name']}: {kinds}"
        context = pod.get("securityContext", {})
        for sysctl in context.get("sysctls", []):
            assert sysctl["name"] in SAFE_SYSCTLS, f"{where}: sysctl {sysctl['name']}"
        containers = [*pod.get("initContainers", []), *pod["containers"], *pod.get("ephemeralContainers", [])]
        for scope in [context, *(c.get("securityContext", {}) for c in containers)]:
            assert scope.get("procMount", "Default") == "Default", where
            selinux = scope.get("seLinuxOptions", {})
            assert selinux.get("type", "") in SELINUX_TYPES, where
            assert not (set(selinux) & {"user", "role"}), where
            assert scope.get("appArmorProfile", {}).get("type", "RuntimeDefault") != "Unconfined", where
            assert not scope.get("windowsOptions", {}).get("hostProcess"), where
            assert scope.get("runAsUser", 1) != 0, where
        annotations = template["metadata"].get("annotations", {})
        assert not any(v == "unconfined" for k, v in annotations.items() if "apparmor" in k), where


def test_digests_pin_the_images(helm_template: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """What CKV_K8S_43 asks for, once the city knows its images' digests."""
    digest = "sha256:" + "ab" * 32
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    sets = ("image.digests.vigie-ingest", "image.digests.vigie-models", "triton.image.digest")
    result = helm_template(sets=tuple(f"{name}={digest}" for name in sets))
    assert result.returncode == 0, result.stderr
    images = {
        c["image"]
        for m in yaml.safe_load_all(result.stdout)
        if m and m["kind"] in WORKLOADS
        for c in [
            *_pod_template(m)["spec"].get("initContainers", []),
            *_pod_template(m)["spec"]["containers"],
        ]
    }
    assert f"vigie-ingest:{version}@{digest}" in images
    assert f"vigie-models:{version}@{digest}" in images
    assert any(i.startswith("nvcr.io/nvidia/tritonserver:") and i.endswith(f"@{digest}") for i in images)
    assert f"vigie-inference:{version}" in images  # no digest given: the tag alone
    bad = helm_template(sets=("image.digests.vigie-ingest=sha256:short",))
    assert bad.returncode != 0
