"""Debian's Prometheus and GStreamer RTSP server for the tests, without root: unpacked under ``var/tools``.

A few tests need programs that no PyPI or npm package carries: ``promtool`` and ``prometheus`` (the alert
rules and the dashboards' queries), and GStreamer's RTSP server with Debian's ``python3-gi`` (a live RTSP
camera). Where they are installed (``make system-packages``, as root) nothing more is needed. Elsewhere, on a
Debian or Ubuntu machine, ``python -m vigie_embedded.debian_tools fetch`` (``make test`` runs it) downloads
the packages with ``apt-get download`` (no root needed; with package lists of its own, fetched by
``apt-get update`` under ``var/tools``, when the machine's were cleared) with what they depend on that the
machine lacks, and unpacks them with ``dpkg-deb -x`` under ``var/tools/debian``: nothing is installed,
nothing outside ``var/`` is written, and ``make clean`` removes them. :func:`tool` and
:func:`gstreamer_environment` say where the tests find them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "GSTREAMER_LEAVES",
    "GSTREAMER_PACKAGES",
    "PROMETHEUS_PACKAGES",
    "DebianToolsError",
    "apt_options",
    "debian_root",
    "fetch",
    "gstreamer_environment",
    "missing_packages",
    "tool",
]

# Its two programs are static but for libc; what the package depends on is its web pages' JavaScript.
PROMETHEUS_PACKAGES = ("prometheus",)
# What services/ingest/tests/rtsp_camera.py needs: GStreamer's RTSP server, its GObject bindings for
# Debian's python3, filesrc (core), qtdemux and rtph264pay (good), h264parse (bad, with its codec parsers).
GSTREAMER_PACKAGES = (
    "gir1.2-gst-rtsp-server-1.0",
    "python3-gi",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "libgstreamer-plugins-bad1.0-0",
)
# Fetched alone: the libraries the four elements need come with the packages above.
GSTREAMER_LEAVES = ("gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-bad")
_MULTIARCH_FALLBACK = "x86_64-linux-gnu"


class DebianToolsError(RuntimeError):
    """The packages could not be downloaded or unpacked."""


def debian_root() -> Path:
    """Where the packages are unpacked: ``var/tools/debian`` of this checkout (``VIGIE_DEBIAN_ROOT``)."""
    configured = os.environ.get("VIGIE_DEBIAN_ROOT")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[4] / "var" / "tools" / "debian"


def tool(name: str, root: Path | None = None) -> Path | None:
    """A program on PATH, else the one unpacked under ``root`` (``usr/bin``), else None."""
    found = shutil.which(name)
    if found:
        return Path(found)
    unpacked = (root or debian_root()) / "usr" / "bin" / name
    return unpacked if os.access(unpacked, os.X_OK) else None


def _multiarch() -> str:
    """Debian's name for this machine's library folder (x86_64-linux-gnu, aarch64-linux-gnu...)."""
    return str(getattr(sys.implementation, "_multiarch", "") or _MULTIARCH_FALLBACK)


def gstreamer_environment(root: Path | None = None) -> dict[str, str]:
    """The variables that make Debian's python3 find GStreamer, its plugins and its bindings unpacked under
    ``root``, after the machine's own (nothing when nothing is unpacked there)."""
    root = root or debian_root()
    lib = root / "usr" / "lib" / _multiarch()
    if not (lib / "gstreamer-1.0").is_dir():
        return {}

    def joined(name: str, *paths: Path) -> str:
        existing = os.environ.get(name, "")
        return os.pathsep.join([*(str(p) for p in paths), *([existing] if existing else [])])

    scanner = lib / "gstreamer1.0" / "gstreamer-1.0" / "gst-plugin-scanner"
    environment = {
        "LD_LIBRARY_PATH": joined("LD_LIBRARY_PATH", lib, root / "lib" / _multiarch()),
        "GI_TYPELIB_PATH": joined("GI_TYPELIB_PATH", lib / "girepository-1.0"),
        "GST_PLUGIN_PATH": joined("GST_PLUGIN_PATH", lib / "gstreamer-1.0"),
        "PYTHONPATH": joined("PYTHONPATH", root / "usr" / "lib" / "python3" / "dist-packages"),
        # The registry of plugins found, kept beside them rather than in the user's cache.
        "GST_REGISTRY": str(root / "gstreamer-registry.bin"),
    }
    if scanner.exists():
        environment["GST_PLUGIN_SCANNER"] = str(scanner)
    return environment


def _run(command: Sequence[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as error:
        raise DebianToolsError(f"{command[0]}: {error}") from error
    if result.returncode != 0:
        raise DebianToolsError(f"{' '.join(command[:3])} ...: {result.stderr.strip()[-500:]}")
    return result.stdout


def _installed(packages: Sequence[str]) -> set[str]:
    """Those of ``packages`` dpkg says are installed on this machine."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\\t${db:Status-Status}\\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = set()
    for line in result.stdout.splitlines():
        name, _, status = line.partition("\t")
        if status == "installed":
            installed.add(name.split(":")[0])
    return installed


def _has_candidate(package: str, options: Sequence[str]) -> bool:
    """Whether apt knows a version of ``package`` to download (its package lists are there)."""
    result = subprocess.run(
        ["apt-cache", *options, "policy", package], capture_output=True, text=True, check=False
    )
    lines = result.stdout.splitlines()
    candidates = [line.split(":", 1)[1].strip() for line in lines if "Candidate:" in line]
    return bool(candidates) and candidates[0] != "(none)"


def apt_options(package: str, state: Path) -> list[str]:
    """apt's options to find ``package``: none when the machine's package lists have it; else lists of its
    own under ``state``, fetched with ``apt-get update`` there (no root needed: a machine whose lists were
    cleared, as container images do)."""
    if _has_candidate(package, []):
        return []
    lists, cache = state / "lists", state / "cache"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    options = [f"-oDir::State::Lists={lists}", f"-oDir::Cache={cache}", "-oDebug::NoLocking=1"]
    _run(["apt-get", *options, "update"])
    if not _has_candidate(package, options):
        raise DebianToolsError(f"no package {package} in this machine's apt sources")
    return options


def _direct_dependencies(packages: Sequence[str], options: Sequence[str] = ()) -> dict[str, list[str]]:
    """Each package's Depends and Pre-Depends (the first choice of an alternative; a virtual package's first
    provider), from ``apt-cache depends``."""
    output = _run(
        [
            "apt-cache",
            *options,
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *packages,
        ]
    )
    found: dict[str, list[str]] = {}
    current: list[str] = []
    virtual = False  # the last line named a virtual package: its providers follow, indented deeper
    alternative = False  # the last line was a "|Depends:": the next choice is not needed
    for line in output.splitlines():
        if line[:1].isalnum():
            current = found.setdefault(line.strip(), [])
            virtual = alternative = False
        elif line.startswith("    ") and virtual:
            current.append(line.strip())
            virtual = False
        elif line.strip().startswith(("Depends:", "PreDepends:", "|Depends:", "|PreDepends:")):
            kind, _, name = line.strip().partition(" ")
            chosen = not alternative
            alternative = kind.startswith("|")
            if not chosen:
                continue
            if name.startswith("<"):
                virtual = True
            else:
                current.append(name.split(":")[0])
    return found


def missing_packages(
    packages: Sequence[str], leaves: Sequence[str] = (), options: Sequence[str] = ()
) -> list[str]:
    """``packages`` and everything they depend on (not what they only recommend), less what is installed;
    ``leaves`` are fetched without what they depend on (GStreamer's plugin collections: most of their
    plugins are not needed, and would bring a gigabyte of codecs, sound fonts and fonts)."""
    wanted: set[str] = set()
    frontier = list(dict.fromkeys(packages))
    while frontier:
        installed = _installed(frontier)
        missing = [name for name in frontier if name not in installed]
        wanted.update(missing)
        followed = [name for name in missing if name not in leaves]
        dependencies = _direct_dependencies(followed, options) if followed else {}
        frontier = sorted({d for ds in dependencies.values() for d in ds} - wanted)
    return sorted(wanted)


def fetch(packages: Sequence[str], root: Path, leaves: Sequence[str] = ()) -> list[str]:
    """Download ``packages`` and what they need that is not installed (``leaves``: without what they need),
    and unpack them under ``root``; the names of the packages unpacked."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DebianToolsError("not a Debian or Ubuntu machine (no apt-get, dpkg-deb)")
    options = apt_options(packages[0], root.with_name(f"{root.name}-apt"))
    wanted = missing_packages(packages, leaves, options)
    if not wanted:
        return []
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vigie-debs-") as downloads:
        _run(["apt-get", *options, "download", *wanted], cwd=Path(downloads))
        debs = sorted(Path(downloads).glob("*.deb"))
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(root)])
    return wanted


def _gstreamer_ready(root: Path) -> bool:
    checker = Path(__file__).resolve().parents[4] / "services" / "ingest" / "tests" / "rtsp_camera.py"
    if not Path("/usr/bin/python3").exists() or not checker.exists():
        return False
    result = subprocess.run(
        ["/usr/bin/python3", str(checker), "--check"],
        env={**os.environ, **gstreamer_environment(root)},
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vigie_embedded.debian_tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fetching = commands.add_parser("fetch", help="download and unpack what the machine lacks")
    fetching.add_argument("--out", type=Path, default=None, help="where to unpack (var/tools/debian)")
    args = parser.parse_args(argv)
    root = args.out or debian_root()
    needed: list[tuple[str, Sequence[str], Sequence[str]]] = []
    if tool("promtool", root) is None or tool("prometheus", root) is None:
        needed.append(("Prometheus", PROMETHEUS_PACKAGES, PROMETHEUS_PACKAGES))
    if not _gstreamer_ready(root):
        needed.append(("GStreamer's RTSP server", GSTREAMER_PACKAGES, GSTREAMER_LEAVES))
    for what, packages, leaves in needed:
        try:
            unpacked = fetch(packages, root, leaves)
        except DebianToolsError as error:
            # Not fatal: the tests that need them skip and say why (make system-packages installs them).
            print(f"debian-tools: {what} not available: {error}", file=sys.stderr)
            continue
        print(f"debian-tools: {what}: {len(unpacked)} package(s) unpacked under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
