"""What one image installs: its Vigie package and the Vigie packages it depends on (followed through their
pyproject.toml, with the extras asked for), each pinned third-party dependency coming from requirements.txt
read as a constraints file. Standard library only: it runs in the bare base image (docker/Dockerfile), and
in ``make image-closures``, which does the same install into a fresh virtualenv per image.

    python docker/closure.py requirements SERVICE          # ./services/x, ./libs/...[extras]: pip's -r
    python docker/closure.py constraints requirements.txt  # its pins, as pip's -c
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

# SERVICE of docker/Dockerfile -> (the package folder, its extras). "models": Triton's init container.
IMAGES = {
    "ingest": ("services/ingest", ()),
    "inference": ("services/inference", ()),
    "anonymiser": ("services/anonymiser", ()),
    "aggregation": ("services/aggregation", ()),
    "registry": ("services/registry", ()),
    "audit": ("services/audit", ()),
    "models": ("libs/vigie-models", ("build",)),
}
# The folders that hold Vigie's packages (those of the build context).
PACKAGE_FOLDERS = ("libs", "services")
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._/-]*)\s*(?:\[([^\]]*)\])?")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(text: str) -> tuple[str, tuple[str, ...]]:
    """``name[extra,...] ...`` -> (name, extras); versions and markers are left out."""
    match = _REQUIREMENT.match(text)
    if not match:
        raise SystemExit(f"not a requirement: {text!r}")
    extras = tuple(sorted(e.strip() for e in (match[2] or "").split(",") if e.strip()))
    return match[1], extras


def _local_packages(root: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Normalised name -> (folder relative to root, [project] table) of every Vigie package."""
    found = {}
    for folder in PACKAGE_FOLDERS:
        for pyproject in sorted((root / folder).glob("*/pyproject.toml")):
            project = tomllib.loads(pyproject.read_text())["project"]
            found[normalize(project["name"])] = (str(pyproject.parent.relative_to(root)), project)
    return found


def image_requirements(root: Path, image: str) -> list[str]:
    """The requirement lines of ``image``: its package first, then the Vigie packages it needs, each with
    the union of the extras asked of it. Third-party requirements stay in the packages' metadata: pip
    resolves them, under the constraints."""
    if image not in IMAGES:
        raise SystemExit(f"unknown image {image!r}: one of {', '.join(IMAGES)}")
    packages = _local_packages(root)
    by_folder = {folder: name for name, (folder, _) in packages.items()}
    folder, extras = IMAGES[image]
    start = by_folder[folder]
    wanted: dict[str, set[str]] = {start: set(extras)}
    pending = [(start, tuple(extras))]
    while pending:
        name, asked = pending.pop()
        project = packages[name][1]
        requirements = list(project.get("dependencies", []))
        optional = project.get("optional-dependencies", {})
        for extra in asked:
            requirements += optional[extra]
        for requirement in requirements:
            dependency, dependency_extras = parse_requirement(requirement)
            dependency = normalize(dependency)
            if dependency not in packages:
                continue
            new = set(dependency_extras) - wanted.get(dependency, set())
            if dependency not in wanted or new:
                wanted.setdefault(dependency, set()).update(dependency_extras)
                pending.append((dependency, tuple(sorted(wanted[dependency]))))
    order = [start, *sorted((n for n in wanted if n != start), key=lambda n: packages[n][0])]
    lines = []
    for name in order:
        extras_text = f"[{','.join(sorted(wanted[name]))}]" if wanted[name] else ""
        lines.append(f"./{packages[name][0]}{extras_text}")
    return lines


def constraints(requirements_text: str) -> list[str]:
    """requirements.txt's pins as constraints: no comment, option, editable package or extra (pip refuses
    extras in a constraints file)."""
    lines = []
    for raw in requirements_text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        lines.append(re.sub(r"\[[^\]]*\]", "", line).replace(" ", ""))
    return lines


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "requirements":
        print("\n".join(image_requirements(Path.cwd(), argv[1])))
    elif len(argv) == 2 and argv[0] == "constraints":
        print("\n".join(constraints(Path(argv[1]).read_text())))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
