"""The repository stands on its own.

- No file refers to a document kept outside the repository (the team's design notes are not part of it).
- Every privacy rule the code, its messages and its documentation cite as "docs/privacy.md rule N" (or
  "section X") exists in docs/privacy.md, and so does every rule the registry can refuse a declaration
  under.
- The relative links of every Markdown file resolve to something inside the repository (and, for a
  heading anchor, to a heading of that file).
- The documented image builds name every image docker/Dockerfile builds, and docs/operating.md has a
  section for every alert the chart ships.
"""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
import unicodedata
from collections.abc import Iterator
from functools import cache
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]
PRIVACY = REPOSITORY / "docs" / "privacy.md"
OPERATING = REPOSITORY / "docs" / "operating.md"

# Folders never part of the repository, for when git is not there to say what is.
_UNTRACKED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "var",
        "build",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
    }
)
# Names of documents kept outside the repository, spelled so that this file does not name them itself.
_OUTSIDE_DOCUMENTS = tuple(f"{name}.md" for name in ("PRIVACY", "DEPENDENCIES", "ARCHITECTURE", "STYLE"))
_OUTSIDE_FOLDER = "shared" + "/design"


@cache
def repository_files() -> tuple[Path, ...]:
    """Every file of the repository: tracked, or new and not ignored (what the next commit may hold)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPOSITORY,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
        paths = [REPOSITORY / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [
            path
            for path in REPOSITORY.rglob("*")
            if not _UNTRACKED_DIRS.intersection(path.relative_to(REPOSITORY).parts)
            and not any(part.endswith(".egg-info") for part in path.parts)
        ]
    return tuple(sorted(path for path in paths if path.is_file() and not path.is_symlink()))


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def texts() -> Iterator[tuple[Path, str]]:
    for path in repository_files():
        text = text_of(path)
        if text is not None:
            yield path, text


def where(path: Path, text: str, offset: int) -> str:
    return f"{path.relative_to(REPOSITORY)}:{text.count(chr(10), 0, offset) + 1}"


# -- nothing outside --------------------------------------------------------------------------------------


def test_no_file_refers_to_a_document_outside_the_repository() -> None:
    present = {path.name for path in repository_files()}
    outside = [name for name in _OUTSIDE_DOCUMENTS if name not in present]
    names = "|".join(re.escape(name) for name in outside)
    pattern = re.compile(rf"(?<![\w-])(?:{names})|{re.escape(_OUTSIDE_FOLDER)}")
    found = [
        f"{where(path, text, match.start())}: {match.group()}"
        for path, text in texts()
        for match in pattern.finditer(text)
    ]
    assert not found, "references to documents outside the repository:\n" + "\n".join(found)


# -- privacy rules ----------------------------------------------------------------------------------------

# "docs/privacy.md rule 5", "docs/privacy.md rules 1, 5 and 7", "docs/privacy.md rules 20-22",
# "docs/privacy.md section F", "docs/privacy.md,\n# section F" (a comment wrapped).
_CITATION = re.compile(
    r"docs/privacy\.md,?[\s#/*]+(?:rules?[\s#/*]+(?P<rules>\d+(?:\s*(?:,|-|\u2013|and|or)\s*\d+)*)"
    r"|section[\s#/*]+(?P<section>[A-Z])\b)"
)


def privacy_rules() -> tuple[list[int], set[str]]:
    """The numbered rules of docs/privacy.md, in their order, and its lettered sections."""
    text = PRIVACY.read_text()
    rules = [int(number) for number in re.findall(r"^(\d+)\. \*\*", text, re.MULTILINE)]
    sections = set(re.findall(r"^## ([A-Z])\. ", text, re.MULTILINE))
    return rules, sections


def cited_rules(citation: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"\s*(?:,|and|or)\s*", citation):
        low, _, high = part.replace("\u2013", "-").partition("-")
        numbers += range(int(low), int(high or low) + 1)
    return numbers


def test_privacy_rules_are_numbered_once_in_order() -> None:
    rules, sections = privacy_rules()
    assert rules, "docs/privacy.md has no numbered rule ('N. **Title.** ...')"
    assert rules == sorted(set(rules)), f"rules out of order or repeated: {rules}"
    assert sections, "docs/privacy.md has no lettered section ('## A. ...')"


def test_every_cited_privacy_rule_exists() -> None:
    rules, sections = privacy_rules()
    citations = [(path, text, match) for path, text in texts() for match in _CITATION.finditer(text)]
    # The code cites the rules in dozens of places: finding few means this test no longer sees them.
    assert len(citations) > 50, f"only {len(citations)} citations of docs/privacy.md found"
    missing = [
        f"{where(path, text, match.start())}: {match.group()!r}"
        for path, text, match in citations
        if (match["rules"] and not set(cited_rules(match["rules"])) <= set(rules))
        or (match["section"] and match["section"] not in sections)
    ]
    assert not missing, "citations of rules docs/privacy.md does not have:\n" + "\n".join(missing)


def test_every_rule_the_registry_refuses_under_exists() -> None:
    """The registry names its rules at run time ("docs/privacy.md rule {n}"): they are its RULES' keys."""
    source = REPOSITORY / "services" / "registry" / "src" / "vigie_registry" / "rules.py"
    tree = ast.parse(source.read_text())
    values = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign | ast.Assign)
        and node.value is not None
        and any(
            isinstance(target, ast.Name) and target.id == "RULES"
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
    ]
    assert len(values) == 1, "vigie_registry.rules.RULES not found"
    refused = set(ast.literal_eval(values[0]))
    rules, _ = privacy_rules()
    assert refused, "vigie_registry.rules.RULES is empty"
    missing = sorted(refused - set(rules))
    assert not missing, f"rules the registry refuses under, missing from docs/privacy.md: {missing}"


# -- Markdown links ---------------------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose(markdown: str) -> str:
    """The Markdown without its code blocks and code spans, where a link is only an example."""
    return _CODE_SPAN.sub("", _FENCE.sub("", markdown))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _FENCE.sub("", markdown), re.MULTILINE):
        base = slug(heading)
        name, n = base, 0
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def test_relative_links_in_markdown_resolve() -> None:
    broken = []
    for path in repository_files():
        if path.suffix.lower() != ".md":
            continue
        text = path.read_text()
        for match in _LINK.finditer(prose(text)):
            target = match[1]
            if _SCHEME.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            problem = None
            if not resolved.is_relative_to(REPOSITORY):
                problem = "leads outside the repository"
            elif not resolved.exists():
                problem = "does not exist"
            elif anchor and resolved.suffix.lower() == ".md" and anchor not in anchors(resolved.read_text()):
                problem = f"has no heading #{anchor}"
            if problem:
                broken.append(f"{path.relative_to(REPOSITORY)}: ({target}) {problem}")
    assert not broken, "broken links:\n" + "\n".join(broken)


# -- what the documentation promises ----------------------------------------------------------------------


def dockerfile_services() -> set[str]:
    dockerfile = (REPOSITORY / "docker" / "Dockerfile").read_text()
    match = re.search(r'case "\$SERVICE" in\s*\\?\s*([a-z|]+)\)', dockerfile)
    assert match, "docker/Dockerfile: the case listing the SERVICE build argument's values not found"
    return set(match[1].split("|"))


def test_documented_image_builds_build_every_image() -> None:
    images = dockerfile_services()
    assert {"ingest", "inference", "anonymiser", "aggregation", "registry", "audit"} <= images
    loops = []
    for path in repository_files():
        if path.suffix.lower() != ".md":
            continue
        text = path.read_text()
        if "--build-arg SERVICE=$service" not in text:
            continue
        for match in re.finditer(r"for service in ([a-z ]+); do", text):
            loops.append((where(path, text, match.start()), set(match[1].split())))
    assert loops, "no documented image build loop found"
    wrong = [f"{place}: misses {sorted(images - built)}" for place, built in loops if built != images]
    assert not wrong, "image build loops that do not build every image:\n" + "\n".join(wrong)


def test_every_shipped_alert_is_explained() -> None:
    shipped = (REPOSITORY / "charts" / "vigie" / "files" / "alerts.yaml").read_text()
    alerts = set(re.findall(r"^\s*- alert: (\w+)", shipped, re.MULTILINE))
    assert alerts, "no alert found in charts/vigie/files/alerts.yaml"
    explained = set(re.findall(r"^### (Vigie\w+)\s*$", OPERATING.read_text(), re.MULTILINE))
    assert not alerts - explained, f"alerts docs/operating.md does not explain: {sorted(alerts - explained)}"
    assert not explained - alerts, f"docs/operating.md explains alerts not shipped: {explained - alerts}"


def test_the_licence_is_the_one_the_packages_declare() -> None:
    licence = (REPOSITORY / "LICENSE").read_text()
    assert "Apache License" in licence
    assert "Version 2.0, January 2004" in licence
    declared = {}
    for path in repository_files():
        if path.name == "pyproject.toml":
            project = tomllib.loads(path.read_text()).get("project", {})
            if isinstance(project.get("license"), str):
                declared[str(path.relative_to(REPOSITORY))] = project["license"]
    assert declared, "no pyproject.toml declares a licence"
    assert set(declared.values()) == {"Apache-2.0"}, declared
