"""Where the tests find Debian's Prometheus and GStreamer when they are unpacked rather than installed."""

import os
import shutil
import sys
from pathlib import Path

import pytest

from vigie_embedded.debian_tools import debian_root, gstreamer_environment, missing_packages, tool


def test_a_program_on_path_comes_first_then_the_unpacked_one(tmp_path: Path) -> None:
    unpacked = tmp_path / "usr" / "bin" / "vigie-test-tool"
    assert tool("vigie-test-tool", tmp_path) is None
    unpacked.parent.mkdir(parents=True)
    unpacked.write_text("#!/bin/sh\n")
    assert tool("vigie-test-tool", tmp_path) is None, "not executable: not a tool"
    unpacked.chmod(0o755)
    assert tool("vigie-test-tool", tmp_path) == unpacked
    assert tool("sh", tmp_path) == Path(shutil.which("sh") or "")


def test_the_default_root_is_the_checkouts_var_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VIGIE_DEBIAN_ROOT", raising=False)
    assert debian_root().parts[-3:] == ("var", "tools", "debian")
    assert (debian_root().parents[2] / "Makefile").exists()
    monkeypatch.setenv("VIGIE_DEBIAN_ROOT", str(tmp_path))
    assert debian_root() == tmp_path


def test_gstreamer_is_looked_for_in_the_unpacked_tree_before_the_machines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert gstreamer_environment(tmp_path) == {}, "nothing unpacked: nothing changed"
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/elsewhere")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    multiarch = getattr(sys.implementation, "_multiarch", "") or "x86_64-linux-gnu"
    (tmp_path / "usr" / "lib" / multiarch / "gstreamer-1.0").mkdir(parents=True)
    environment = gstreamer_environment(tmp_path)
    assert environment["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(tmp_path / "usr" / "lib" / multiarch)
    assert environment["LD_LIBRARY_PATH"].split(os.pathsep)[-1] == "/opt/elsewhere"
    assert environment["GST_PLUGIN_PATH"].startswith(str(tmp_path))
    assert environment["PYTHONPATH"] == str(tmp_path / "usr" / "lib" / "python3" / "dist-packages")
    assert environment["GI_TYPELIB_PATH"].startswith(str(tmp_path))


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian or Ubuntu machine")
def test_what_is_installed_is_never_fetched() -> None:
    # libc6 and its own dependencies are on every Debian machine.
    assert missing_packages(["libc6"]) == []


APT_CACHE_DEPENDS = """\
python3-gi
  Depends: gir1.2-glib-2.0
  Depends: <python3:any>
    python3
  |Depends: libffi8
  Depends: libffi7
  PreDepends: libc6
libgstrtspserver-1.0-0
  Depends: libgstreamer1.0-0
"""


def test_each_package_needs_the_first_choice_of_an_alternative_and_a_virtual_packages_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import vigie_embedded.debian_tools as debian_tools

    monkeypatch.setattr(debian_tools, "_run", lambda command, cwd=None: APT_CACHE_DEPENDS)
    assert debian_tools._direct_dependencies(["python3-gi", "libgstrtspserver-1.0-0"]) == {
        "python3-gi": ["gir1.2-glib-2.0", "python3", "libffi8", "libc6"],
        "libgstrtspserver-1.0-0": ["libgstreamer1.0-0"],
    }


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian or Ubuntu machine")
def test_the_machines_package_lists_are_used_when_they_know_the_package(tmp_path: Path) -> None:
    from vigie_embedded.debian_tools import apt_options

    assert apt_options("libc6", tmp_path / "apt") == []
    assert not (tmp_path / "apt").exists(), "nothing fetched"
