"""The README's first command: the embedded platform on the sample video shows the published figures, the
commands and addresses it prints for a person to try work as printed, and Ctrl-C then leaves nothing
behind (one run of the demo for all: it takes minutes)."""

import asyncio
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from vigie_embedded.demo import TRY_IT_MOTIVE
from vigie_embedded.platform import CAMERA_ID
from vigie_embedded.testing import curl_requests, offline_docs_problems

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
        # The view asked for while the film played: made inside the boundary and let out (the inference
        # tests show that no one is on such a view); its size only, never the picture, in the summary.
        view = result["view"]
        assert view["state"] == "ready", view
        assert view["frames"] >= 9
        assert 0 < view["bytes"] <= 200_000
        _the_printed_commands_work(result)

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
        try:
            # About 6 s on an idle machine; generous for one busy with the rest of the suite.
            _, err = demo.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            lingering = [f"{c.pid} {' '.join(c.cmdline()[:3])}" for c in children if c.is_running()]
            demo.kill()
            _, err = demo.communicate(timeout=30)
            pytest.fail(f"not stopped 120 s after Ctrl-C; still running: {lingering}; stderr: {err[-3000:]}")
        assert demo.returncode == 130, err[-3000:]
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"left behind: {[p.name() for p in alive]}"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=30)


def _the_printed_commands_work(result: dict[str, Any]) -> None:
    """What the demo prints while it serves, as a person would use it: the curl commands give the figures
    it showed and the audit journal's record of that read; every API's docs page works offline."""
    (statistics, statistics_headers), (audit, audit_headers), (view, view_headers) = curl_requests(
        result["commands"]
    )
    with httpx.Client(timeout=10) as client:
        response = client.get(statistics, headers=statistics_headers)
        assert response.status_code == 200, response.text
        shown = [(window["period_start"], window["crossings"]) for window in result["windows"]]
        assert [(item["period_start"], item["count"]) for item in response.json()["items"]] == shown
        deadline = time.monotonic() + 30
        while True:  # the read reaches the journal through the AUDIT stream
            response = client.get(audit, headers=audit_headers)
            assert response.status_code == 200, response.text
            if any(entry["motive"] == TRY_IT_MOTIVE for entry in response.json()["entries"]):
                break
            assert time.monotonic() < deadline, response.json()
            time.sleep(0.5)
        picture = client.get(view, headers=view_headers)
        assert picture.status_code == 200, picture.text
        assert picture.headers["content-type"] == "image/jpeg"
        assert len(picture.content) == result["view"]["bytes"]
        # The operator console's one-time link signs in and shows the demo camera.
        console = client.get(result["console_link"], follow_redirects=True)
        assert console.status_code == 200, console.text
        assert CAMERA_ID in console.text
        assert client.get(result["console_link"]).status_code == 400, "a sign-in link works once"
    docs = [url.removesuffix("/docs") for name, url in result["endpoints"].items() if name.endswith("docs")]
    assert len(docs) == 3, result["endpoints"]

    async def problems() -> list[str]:
        async with httpx.AsyncClient(timeout=10) as client:
            return [problem for api in docs for problem in await offline_docs_problems(client, api)]

    assert asyncio.run(problems()) == []
