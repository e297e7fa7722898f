"""The README's first command: the embedded platform on the sample video, and Ctrl-C leaving nothing."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


def _demo(sample_video: Path, model_repository: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "vigie_embedded", "demo", "--video", str(sample_video)]
    command += ["--model-repository", str(model_repository), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_demo_analyses_the_sample_video(sample_video: Path, model_repository: Path) -> None:
    demo = _demo(sample_video, model_repository, "--sample-fps", "1", "--json")
    out, err = demo.communicate(timeout=400)
    assert demo.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    progress = result["progress"]
    assert progress["camera_state"] == "finished"
    assert progress["frames_counted"] == progress["frames_analysed"] == progress["frames_published"] >= 55
    assert progress["tracks_by_class"].get("person", 0) >= 3
    # It ends with what the statistics API published: the film's windows, with coverage.
    assert result["windows"]
    assert sum(window["coverage"] for window in result["windows"]) > 0.5
    assert all(window["suppressed"] == (window["crossings"] is None) for window in result["windows"])
    assert result["crossings"]
    assert result["audit_entries"] > 0


def test_ctrl_c_stops_every_process(sample_video: Path, model_repository: Path) -> None:
    demo = _demo(sample_video, model_repository, "--serve")
    parent = psutil.Process(demo.pid)
    wanted = {
        "nats-server",
        "tritonserver",
        *(
            f"vigie_{service}"
            for service in ("ingest", "inference", "anonymiser", "aggregation", "registry", "audit")
        ),
    }
    seen: set[str] = set()
    # The camera starts with the next one-minute reporting window.
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not wanted <= seen:
        time.sleep(0.5)
        children = parent.children(recursive=True)
        seen = {
            word
            for child in children
            for word in (child.name(), *child.cmdline()[-1:], *child.cmdline()[2:3])
        }
    assert wanted <= seen, f"children seen: {seen}"
    demo.send_signal(signal.SIGINT)
    _, err = demo.communicate(timeout=60)
    assert demo.returncode == 130, err[-3000:]
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left behind: {[p.name() for p in alive]}"
