"""A local Prometheus scraping the embedded platform's services, for the dashboard checks.

It uses the ``prometheus`` binary on PATH (Debian's ``prometheus`` package; ``.ci/run`` installs it) or the
one ``make test`` unpacks under ``var/tools/debian`` (:mod:`vigie_embedded.debian_tools`), with
its storage in a temporary folder removed on stop. Scrapes are frequent (1 s by default) so that a short
run gives every rate and quantile of the dashboards enough samples.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from vigie_embedded.debian_tools import tool
from vigie_embedded.processes import free_port, stop_process_group

__all__ = ["EmbeddedPrometheus", "prometheus_binary"]


def prometheus_binary() -> Path | None:
    return tool("prometheus")


class EmbeddedPrometheus:
    """``targets``: job name → base URL of a service whose ``/metrics`` is scraped."""

    def __init__(self, targets: Mapping[str, str], *, scrape_interval_s: int = 1) -> None:
        self.targets = dict(targets)
        self.scrape_interval_s = scrape_interval_s
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log: IO[bytes] | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": f"{self.scrape_interval_s}s",
                "evaluation_interval": f"{self.scrape_interval_s}s",
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [url.split("://", 1)[1]]}]}
                for job, url in self.targets.items()
            ],
        }

    def start(self, timeout_s: float = 30.0) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise FileNotFoundError(
                "prometheus not found: make test unpacks Debian's prometheus package, or install it"
            )
        self._workdir = tempfile.TemporaryDirectory(prefix="vigie-prometheus-")
        workdir = Path(self._workdir.name)
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps(self._config()))  # YAML is a superset of JSON
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = log = (workdir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                str(binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = (workdir / "prometheus.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"prometheus did not start: {tail}")
            time.sleep(0.2)

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful Prometheus HTTP API answer; raises on an error answer."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {body.get('error', response.text)}")
        return body["data"]

    def stop(self) -> None:
        if self._process is not None:
            stop_process_group(self._process, grace_s=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
