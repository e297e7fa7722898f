"""The README's first command: the embedded platform on the sample video shows the published figures, and
Ctrl-C then leaves nothing behind (one run of the demo for both: it takes minutes)."""

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "inference", "anonymiser", "aggregation", "registry", "audit")


def _lines(stream: object, into: "queue.Queue[str]") -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def test_the_demo_shows_the_figures_and_ctrl_c_stops_every_process(
    sample_video: Path, model_repository: Path
) -> None:
    command = [sys.executable, "-m", "vigie_embedded", "demo", "--video", str(sample_video)]
    command += ["--model-repository", str(model_repository), "--sample-fps", "1", "--json", "--serve"]
    demo = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_lines, args=(demo.stdout, out), daemon=True).start()
        # With --json, the summary is one line, printed once the film's figures are published; with
        # --serve, the platform then stays up until Ctrl-C.
        try:
            line = out.get(timeout=400)
        except queue.Empty:
            pytest.fail("the demo printed nothing within 400 s")
        assert demo.poll() is None, demo.stderr.read()[-3000:] if demo.stderr else ""
        result = json.loads(line)
        progress = result["progress"]
        assert progress["camera_state"] == "finished"
        assert progress["frames_counted"] == progress["frames_analysed"] == progress["frames_published"] >= 55
        assert progress["windows_closed"] >= 1
        assert "tracks" not in json.dumps(progress), "no count of people or vehicles, even in the demo"
        # It ends with what the statistics API published: the film's windows, with coverage.
        assert result["windows"]
        assert sum(window["coverage"] for window in result["windows"]) > 0.5
        assert all(window["suppressed"] == (window["crossings"] is None) for window in result["windows"])
        assert result["crossings"]
        assert result["audit_entries"] > 0

        # Every component runs while the platform serves; Ctrl-C stops them all.
        children = psutil.Process(demo.pid).children(recursive=True)
        seen = {
            word
            for child in children
            for word in (child.name(), *child.cmdline()[-1:], *child.cmdline()[2:3])
        }
        wanted = {"nats-server", "tritonserver", *(f"vigie_{service}" for service in SERVICES)}
        assert wanted <= seen, f"children seen: {seen}"
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=60)
        assert demo.returncode == 130, err[-3000:]
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"left behind: {[p.name() for p in alive]}"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=30)
