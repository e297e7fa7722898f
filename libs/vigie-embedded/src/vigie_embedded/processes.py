"""Child processes of the embedded platform: started in their own process groups, stopped in reverse
order with SIGTERM (the services drain), then SIGKILL after a grace period, so none is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the child binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM to the process's group (it was started with ``start_new_session``), SIGKILL after
    ``grace_s``; returns once it has exited."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stop_process_groups(processes: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """:func:`stop_process_group` for several processes at once: SIGTERM to each group, in this order, then
    one shared ``grace_s`` before SIGKILL to those still running; returns once all have exited."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class ServiceProcess:
    name: str
    module: str
    env: dict[str, str]
    log: IO[bytes]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, grace_s: float = 15.0) -> None:
        if self.process is not None:
            stop_process_group(self.process, grace_s)


@dataclass
class ProcessSet:
    """Services started in order and stopped in reverse order."""

    log_dir: Path
    services: list[ServiceProcess] = field(default_factory=list)

    def start(self, name: str, module: str, env: dict[str, str]) -> ServiceProcess:
        log = (self.log_dir / f"{name}.log").open("ab")
        service = ServiceProcess(name, module, env, log)
        service.start()
        self.services.append(service)
        return service

    def stop(self, name: str) -> None:
        for service in self.services:
            if service.name == name:
                service.stop()

    def kill(self, name: str) -> ServiceProcess:
        """SIGKILL a service's process group, as a crash or an OOM kill would, and start it again at once,
        as Kubernetes restarts a container."""
        for service in self.services:
            if service.name == name:
                if service.process is not None and service.process.poll() is None:
                    os.killpg(service.process.pid, signal.SIGKILL)
                    service.process.wait()
                service.start()
                return service
        raise KeyError(f"no service {name!r} here")

    def stop_all(self, grace_s: float = 15.0) -> None:
        """SIGTERM to every service, in reverse order, then wait for them together, SIGKILL after ``grace_s``:
        one slow to drain no longer delays the others' stop (Ctrl-C took up to 15 s a service)."""
        running = [s.process for s in reversed(self.services) if s.process is not None]
        stop_process_groups([p for p in running if p.poll() is None], grace_s)
        for service in self.services:
            service.log.close()
        self.services.clear()

    def crashed(self) -> list[str]:
        return [s.name for s in self.services if s.exited() not in (None, 0)]
