"""The tritonserver bundled in the nvidia-pytriton wheel, run as a local process on a model repository.

That build only has the python backend; ``python -m vigie_models build`` writes a ``python`` variant of
the repository for it (``model.py`` running onnxruntime). What the process needs, found the hard way
(see docs/components.md, "Triton Inference Server"):

- the python backend stub for this interpreter's version at ``<backends>/python/``; the wheel keeps one
  stub per Python version elsewhere, so we lay out a private backends folder of symbolic links;
- ``LD_LIBRARY_PATH`` starting with the interpreter's own lib dir (or the stub loads the system's
  libpython and models fail with ``'_thread.RLock' object has no attribute '_recursion_count'``), then
  the wheel's ``nvidia_pytriton.libs``;
- our interpreter's ``bin`` first on ``PATH``: the stub's embedded Python ignores ``PYTHONPATH`` and
  finds its prefix, and with it our site-packages (numpy, onnxruntime for model.py), from the
  ``python3`` on ``PATH``; with the system's python3 first it fails with ``No module named '_struct'``.

Usable as a context manager or with ``start()``/``stop()``; ``python -m vigie_embedded.triton`` runs it
in the foreground until SIGTERM or SIGINT (how the demo runner starts it).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import importlib.util
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

from vigie_embedded.processes import free_port

logger = logging.getLogger("vigie.embedded.triton")

HOST = "127.0.0.1"
# The python backend's shared memory per model instance; one 416x416 frame in and out is ~1.4 MB.
SHM_DEFAULT_BYTES = 8 * 1024 * 1024
SHM_GROWTH_BYTES = 8 * 1024 * 1024
LOG_TAIL_LINES = 12
LOG_ERROR_LINES = 10
# Triton's log lines start with a severity letter and the date: "E1126 11:17:48.327057 ...".
_ERROR_LINE = re.compile(r"^E\d{4} ")


class TritonError(RuntimeError):
    """The server could not be found, did not start, or died; the message ends with its log's tail."""


@dataclass(frozen=True)
class TritonDistribution:
    """Where the nvidia-pytriton wheel keeps the server, its python backend and libraries."""

    binary: Path
    python_backend: Path  # libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub built for this interpreter's Python version
    libs: Path  # nvidia_pytriton.libs: the shared libraries the wheel vendors

    @classmethod
    def find(cls) -> TritonDistribution:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise TritonError("nvidia-pytriton is not installed: it bundles the tritonserver binary")
        package = Path(next(iter(spec.submodule_search_locations)))
        server = package / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        found = cls(
            binary=server / "bin" / "tritonserver",
            python_backend=server / "backends" / "python",
            stub=server / "python_backend_stubs" / version / "triton_python_backend_stub",
            libs=package.parent / "nvidia_pytriton.libs",
        )
        for path in (found.binary, found.python_backend, found.stub, found.libs):
            if not path.exists():
                raise TritonError(f"nvidia-pytriton has no {path} (Python {version} may not be supported)")
        return found

    def backends_directory(self, root: Path) -> Path:
        """A ``backends`` folder under ``root`` whose python backend has this interpreter's stub."""
        python = root / "backends" / "python"
        python.mkdir(parents=True, exist_ok=True)
        links = {entry.name: entry for entry in self.python_backend.iterdir() if entry.is_file()}
        links["triton_python_backend_stub"] = self.stub
        for name, target in links.items():
            (python / name).symlink_to(target)
        return root / "backends"


def tritonserver_environment(
    distribution: TritonDistribution, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment the server and its python stubs need, on top of ``base`` (default: ours)."""
    env = dict(os.environ if base is None else base)

    def prepend(name: str, *paths: str) -> None:
        existing = [path for path in env.get(name, "").split(os.pathsep) if path]
        env[name] = os.pathsep.join(dict.fromkeys([*paths, *existing]))

    libdir = sysconfig.get_config_var("LIBDIR")
    prepend("LD_LIBRARY_PATH", *([libdir] if libdir else []), str(distribution.libs))
    # The stub's embedded interpreter ignores PYTHONPATH and takes its prefix from the first
    # ``python3`` on PATH: ours, in a venv, brings the venv's site-packages (numpy, onnxruntime).
    prepend("PATH", sysconfig.get_path("scripts"))
    return env


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send SIGTERM to the server if the starting thread dies.

    Protects against orphans when our process is killed without a chance to stop the server. libc is
    loaded here, before the fork, because only the prctl call is safe between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


class EmbeddedTriton:
    """A tritonserver process on ``model_repository``, bound to 127.0.0.1.

    Ports left as None are chosen free at start. The server's output goes to ``log_path`` (default: a
    file in a private temporary folder, removed at stop). ``start()`` returns once every model is
    loaded (``/v2/health/ready``), or raises :class:`TritonError` with the end of the log.

    Call ``start()`` from a thread that lives as long as the server (normally the main thread): Linux
    stops the server when the thread that started it exits.
    """

    def __init__(
        self,
        model_repository: Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_repository = Path(model_repository)
        self._requested_ports = (http_port, grpc_port, metrics_port)
        self._ports: tuple[int, int, int] | None = None
        self._requested_log_path = log_path
        self._log_path: Path | None = None
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    # -- addresses ------------------------------------------------------------------------------

    def _port(self, index: int) -> int:
        if self._ports is None:
            raise TritonError("tritonserver is not started")
        return self._ports[index]

    @property
    def http_port(self) -> int:
        return self._port(0)

    @property
    def grpc_port(self) -> int:
        return self._port(1)

    @property
    def metrics_port(self) -> int:
        return self._port(2)

    @property
    def grpc_url(self) -> str:
        """``127.0.0.1:PORT``, as tritonclient.grpc and grpc channels take it."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT`` (tritonclient.http wants it without the scheme)."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            raise TritonError("tritonserver is not started")
        return self._log_path

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_excerpt(self) -> str:
        """The server's error lines and its last lines: what explains a failed start.

        The error lines are picked out because the end of the log is mostly wide status tables.
        """
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        lines = self._log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        errors = [line for line in lines if _ERROR_LINE.match(line)][-LOG_ERROR_LINES:]
        # Tracebacks are logged as one line with escaped newlines.
        errors = [line.replace("\\n", "\n  ") for line in errors]
        return "\n".join([f"log {self._log_path}, errors:", *errors, "last lines:", *lines[-LOG_TAIL_LINES:]])

    # -- lifecycle ------------------------------------------------------------------------------

    def _command(self, binary: Path, backends: Path) -> list[str]:
        http, grpc, metrics = self._port(0), self._port(1), self._port(2)
        shm_prefix = f"vigie{os.getpid()}-{secrets.token_hex(4)}-"  # shared memory names are global
        return [
            str(binary),
            f"--model-repository={self.model_repository.resolve()}",
            f"--backend-directory={backends}",
            f"--http-address={HOST}",
            f"--http-port={http}",
            f"--grpc-address={HOST}",
            f"--grpc-port={grpc}",
            f"--metrics-address={HOST}",
            f"--metrics-port={metrics}",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",  # no GPU here; avoids a failing CUDA allocation
            f"--exit-timeout-secs={max(1, int(self.stop_timeout) // 2)}",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
            *self._extra_args,
        ]

    def start(self) -> None:
        if self._process is not None:
            raise TritonError(f"tritonserver already started (pid {self._process.pid})")
        if not self.model_repository.is_dir():
            raise TritonError(f"model repository {self.model_repository} not found: run 'make models'")
        distribution = TritonDistribution.find()
        self._workdir = tempfile.TemporaryDirectory(prefix="vigie-triton-")
        workdir = Path(self._workdir.name)
        self._log_path = self._requested_log_path or workdir / "tritonserver.log"
        self._ports = (
            self._requested_ports[0] or free_port(),
            self._requested_ports[1] or free_port(),
            self._requested_ports[2] or free_port(),
        )
        started = time.monotonic()
        logger.info("starting tritonserver on %s (log: %s)", self.model_repository, self._log_path)
        try:
            command = self._command(distribution.binary, distribution.backends_directory(workdir))
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            with self._log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=tritonserver_environment(distribution),
                    start_new_session=True,  # its own process group: stop() reaches the python stubs too
                    preexec_fn=_die_with_parent(),
                )
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        logger.info("tritonserver ready in %.1f s: grpc %s", time.monotonic() - started, self.grpc_url)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1.0) as response:
                return bool(response.status == 200)
        except (OSError, http.client.HTTPException):  # not listening yet, or 400 while loading
            return False

    def _wait_ready(self, started: float) -> None:
        assert self._process is not None
        while not self._ready():
            code = self._process.poll()
            if code is not None:
                raise TritonError(
                    f"tritonserver exited with code {code} while starting:\n{self.log_excerpt()}"
                )
            if time.monotonic() - started > self.ready_timeout:
                raise TritonError(
                    f"tritonserver not ready after {self.ready_timeout:.0f} s:\n{self.log_excerpt()}"
                )
            time.sleep(0.05)

    def wait(self, timeout: float | None = None) -> int:
        """Block until the server exits; its exit code."""
        if self._process is None:
            raise TritonError("tritonserver is not started")
        return self._process.wait(timeout)

    def restart(self, *, kill: bool = False) -> None:
        """Stop the server (``kill``: SIGKILL, as a crash would) and start it again on the same ports."""
        if self._ports is None:
            raise TritonError("tritonserver is not started")
        ports = self._ports
        if kill and self._process is not None:
            _signal_group(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self.stop()
        self._requested_ports = ports
        self.start()

    def stop(self) -> None:
        """SIGTERM the server's process group, then SIGKILL it if it has not exited in time."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("tritonserver did not stop in %.0f s; killing it", self.stop_timeout)
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait()
            # A python stub that outlived the server would be an orphan.
            _signal_group(process.pid, signal.SIGKILL)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        self._ports = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


class _StopRequestedError(Exception):
    pass


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vigie_embedded.triton",
        description="Run the embedded tritonserver in the foreground until SIGTERM or SIGINT.",
    )
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--http-port", type=int, default=None, help="default: a free port")
    parser.add_argument("--grpc-port", type=int, default=None, help="default: a free port")
    parser.add_argument("--metrics-port", type=int, default=None, help="default: a free port")
    parser.add_argument(
        "--log-file", type=Path, default=None, help="server output (default: a temporary file)"
    )
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for the models")
    args = parser.parse_args(argv)
    out = stdout or sys.stdout
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # Later signals are ignored so that stopping the server is not interrupted.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _StopRequestedError

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    server = EmbeddedTriton(
        args.model_repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_path=args.log_file,
        ready_timeout=args.ready_timeout,
    )
    try:
        server.start()
        print(
            f"tritonserver ready: grpc {server.grpc_url} http {server.http_url} metrics {server.metrics_url}",
            file=out,
            flush=True,
        )
        code = server.wait()
        print(f"tritonserver exited with code {code}:\n{server.log_excerpt()}", file=sys.stderr)
        return code or 1
    except _StopRequestedError:
        return 0
    except TritonError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
