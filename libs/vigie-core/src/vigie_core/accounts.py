"""Vigie's NATS accounts, defined once and rendered into the nats-server configuration of the embedded
platform and of the Helm chart (``charts/vigie/files/nats-accounts.conf``, checked for drift).

Why accounts: nats-server sends JetStream API replies, direct-get results, pulled messages and push
deliveries to whatever reply or deliver subject the requester names, whatever its user may publish (a
confused deputy). Inside one account, a service holding its own credentials could thus make the server
write the policy bucket, forge another service's audit events or deliver frames to another service. An
account is NATS's isolation unit: what the server sends on a client's behalf stays in the client's account,
and data crosses accounts only through the exports and imports below.

The design (``docs/threat-model.md`` argues it):

- **One account per service, and one for the provisioner** (:func:`~vigie_core.permissions.account_name`:
  ``INGEST``, ``INFERENCE``, ... ``PROVISIONER``), each with that service's user alone.
- **A stream lives in its reader's account** (:data:`~vigie_core.permissions.STREAM_OWNERS`): FRAMES in
  INFERENCE, TRACKS and the anonymiser's dead letters in ANONYMISER, EVENTS in AGGREGATION, AUDIT in AUDIT,
  the policy bucket (read by three services) and VIEWS (the scene views, read by the registry alone) in
  REGISTRY. A service reading its stream
  stays in its own account.
- **The sources bucket is in an account without users** (SOURCES): the registry writes it and ingest reads
  it, both through imports. Were it in ingest's account, a compromised ingest could make the server write
  in it (a reply aimed at ``$KV.vigie-sources.<camera>``); with no user in the account, nobody can.
- **Producers publish into another account's stream through a service import** of exactly their subjects
  (ingest: ``vigie.frames.*``; each service: its own ``vigie.audit.<service>``), so a stream's
  acknowledgement comes back to them and nothing else does.
- **An account reaches exactly the channels its service already has.** Whatever a compromised service makes
  the server send lands on subjects of its own account, which are its own streams and its imports: the
  very subjects it may publish on anyway. The inside accounts have no import towards a service outside
  the boundary other than their own audit subject (bounded to 64 KiB a message by the AUDIT stream, so no
  frame fits) and, for inference, ``vigie.views.*``: the scene views, into VIEWS, which keeps one message
  per camera of at most 256 KiB, and whose reader, the registry, accepts only the view it asked for.
- **Bucket readers get entries by direct get and changes by notification**: each bucket's stream
  announces every stored write on ``vigie.kv.<bucket>.<key>``, headers only (JetStream's republish), and
  that subject is exported one way to the readers. No consumer is created across accounts, since a push
  consumer's deliver subject would be a subject of the bucket's account, chosen by the reader.
- **JetStream limits per account**: the accounts holding pixels or tracks (INFERENCE, ANONYMISER) may store
  nothing on disk (``max_file: 0``) and hold only their memory streams; INGEST and PROVISIONER have no
  JetStream at all.
  Not even the provisioner can then put frames or tracks on disk, or make a stream copy one of another
  account (nobody exports the consumer API a copy needs).
- **The provisioner's user is a variable** (``$VIGIE_PROVISIONER_USERS``, defined in a separate include):
  the embedded server defines it only while it provisions; the chart's include defines it from the
  provisioner's Secret (:func:`provisioner_users`).

Passwords are never in these files: each user's is the environment variable
``VIGIE_NATS_PASSWORD_<SERVICE>`` of the nats-server process (:func:`password_variable`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

from nats.js.api import StorageType

from vigie_core.permissions import (
    BUCKET_WRITER,
    LOCAL_API,
    POLICY_BUCKET,
    PROVISIONER,
    ROLES,
    SERVICES,
    SOURCES_BUCKET,
    SOURCES_VAULT,
    account_name,
    bucket_readers,
    owner_of,
    permissions_for,
)
from vigie_core.streams import (
    EVENTS_PREFIX,
    FRAMES_PREFIX,
    TRACKS_PREFIX,
    VIEWS_PREFIX,
    audit_subject,
    bucket_notifications,
    provisioned_stream_configs,
    provisioned_stream_names,
)

# Every account: one per service, the provisioner's, and the sources vault (no user).
ACCOUNT_OWNERS: tuple[str, ...] = (*ROLES, SOURCES_VAULT)

__all__ = [
    "ACCOUNT_OWNERS",
    "JETSTREAM_INCLUDE",
    "PROVISIONER_INCLUDE",
    "PROVISIONER_USERS_VARIABLE",
    "Crossing",
    "JetStreamLimits",
    "accounts_conf",
    "crossings",
    "jetstream_conf",
    "jetstream_limits",
    "jetstream_variable",
    "main",
    "password_variable",
    "provisioner_users",
]

# The configuration variable holding the provisioner's users: [] while it is not provisioning.
PROVISIONER_USERS_VARIABLE = "VIGIE_PROVISIONER_USERS"
# The file that defines it, beside the accounts' file (which includes it).
PROVISIONER_INCLUDE = "provisioner.conf"
# The file that defines each account's JetStream limits (``$VIGIE_JETSTREAM_<ACCOUNT>``), beside it too:
# they count every copy of a stream, so they depend on the streams' replicas (jetstream_conf).
JETSTREAM_INCLUDE = "jetstream.conf"

Kind = Literal["service", "stream"]


def password_variable(role: str) -> str:
    """The environment variable of the nats-server process holding a role's password."""
    return f"VIGIE_NATS_PASSWORD_{account_name(role)}"


@dataclass(frozen=True, slots=True)
class Crossing:
    """Something that crosses accounts: an export of ``owner``'s account, imported by each of ``to``.

    ``kind`` "service": requests (a publish into a stream, an API request) go to the owner's account and
    their replies come back to the requester only (the server rewrites the reply subject). "stream": the
    owner's messages on ``subject`` are delivered to subscribers of the importers, one way.
    """

    owner: str
    subject: str
    to: tuple[str, ...]
    kind: Kind
    why: str
    response: Literal["singleton", "stream"] = "singleton"

    @property
    def local_subject(self) -> str:
        """The subject in the importers' accounts: a JetStream API subject under the owner's prefix
        (``$JS.<ACCOUNT>.API``), so that it cannot be confused with the importer's own API; other subjects
        keep their name."""
        if self.subject.startswith(f"{LOCAL_API}."):
            return f"$JS.{account_name(self.owner)}.API." + self.subject.removeprefix(f"{LOCAL_API}.")
        return self.subject


# The streams a service looks up in another account, to wait for them and check them before publishing.
_LOOKED_UP: Mapping[str, tuple[str, ...]] = {
    "FRAMES": ("ingest",),
    "TRACKS": ("inference",),
    "EVENTS": ("anonymiser",),
    f"KV_{SOURCES_BUCKET}": (BUCKET_WRITER,),
}


@cache
def crossings() -> tuple[Crossing, ...]:
    """Everything that crosses Vigie's accounts, and why."""
    found = [
        Crossing(
            "inference", f"{FRAMES_PREFIX}.*", ("ingest",), "service", "ingest publishes frames into FRAMES"
        ),
        Crossing(
            "anonymiser", f"{TRACKS_PREFIX}.*", ("inference",), "service", "inference publishes into TRACKS"
        ),
        Crossing(
            "aggregation",
            f"{EVENTS_PREFIX}.*",
            ("anonymiser",),
            "service",
            "the anonymiser publishes into EVENTS",
        ),
        Crossing(
            "registry",
            f"{VIEWS_PREFIX}.*",
            ("inference",),
            "service",
            "inference publishes scene views into VIEWS (one per camera, size-bounded)",
        ),
        *(
            Crossing(
                "audit", audit_subject(s), (s,), "service", f"{s} records its audit events, as itself only"
            )
            for s in SERVICES
            if s != "audit"
        ),
    ]
    for stream in provisioned_stream_names():
        owner = owner_of(stream)
        found.append(
            Crossing(
                owner,
                f"{LOCAL_API}.STREAM.INFO.{stream}",
                (*_LOOKED_UP.get(stream, ()), PROVISIONER),
                "service",
                f"look {stream} up (its configuration and state, no message)",
            )
        )
        for action in ("CREATE", "UPDATE"):
            found.append(
                Crossing(
                    owner,
                    f"{LOCAL_API}.STREAM.{action}.{stream}",
                    (PROVISIONER,),
                    "service",
                    f"the provisioner configures {stream}",
                )
            )
    for bucket in (POLICY_BUCKET, SOURCES_BUCKET):
        stream = f"KV_{bucket}"
        owner = owner_of(stream)
        readers = tuple(r for r in bucket_readers(bucket) if r != owner)
        gets = tuple(r for r in (*bucket_readers(bucket), BUCKET_WRITER) if r != owner)
        if readers:
            found.append(
                Crossing(
                    owner,
                    f"{bucket_notifications(bucket)}.>",
                    readers,
                    "stream",
                    f"{bucket}'s stored writes announced (headers only: key and revision, no value)",
                )
            )
        if owner != BUCKET_WRITER:
            found.append(
                Crossing(
                    owner, f"$KV.{bucket}.>", (BUCKET_WRITER,), "service", f"the registry writes {bucket}"
                )
            )
        found += [
            Crossing(
                owner,
                f"{LOCAL_API}.DIRECT.GET.{stream}{tail}",
                gets,
                "service",
                f"read {bucket}'s entries (direct gets, one or a batch)",
                response="stream",
            )
            for tail in ("", ".>")
        ]
    return tuple(found)


@dataclass(frozen=True, slots=True)
class JetStreamLimits:
    """What an account may store: the sum of its streams' bounds, by storage; 0 is none."""

    max_mem: int
    max_file: int
    max_streams: int

    def conf(self) -> dict[str, object]:
        return {
            "max_mem": self.max_mem,
            "max_file": self.max_file,
            "max_streams": self.max_streams,
            "max_consumers": -1,
        }


def jetstream_variable(owner: str) -> str:
    """The configuration variable holding an account's JetStream limits (defined in JETSTREAM_INCLUDE)."""
    return f"VIGIE_JETSTREAM_{account_name(owner)}"


@cache
def jetstream_limits(replicas: int = 1) -> Mapping[str, JetStreamLimits]:
    """Each account's JetStream limits (the accounts holding no stream have no JetStream), for streams of
    ``replicas`` copies: in a cluster every copy counts against its account's limits."""
    memory: dict[str, int] = {}
    file: dict[str, int] = {}
    streams: dict[str, int] = {}
    for config in provisioned_stream_configs():
        assert config.name is not None
        assert config.max_bytes is not None, config.name
        assert config.max_bytes > 0, config.name
        owner = owner_of(config.name)
        totals = memory if config.storage == StorageType.MEMORY else file
        totals[owner] = totals.get(owner, 0) + config.max_bytes
        streams[owner] = streams.get(owner, 0) + 1
    return {
        owner: JetStreamLimits(memory.get(owner, 0) * replicas, file.get(owner, 0) * replicas, count)
        for owner, count in streams.items()
    }


def _account(role: str) -> dict[str, object]:
    account: dict[str, object] = {}
    if role == PROVISIONER:
        account["users"] = _Variable(PROVISIONER_USERS_VARIABLE)
    elif role == SOURCES_VAULT:
        account["users"] = []
    else:
        account["users"] = [_user(role, _Variable(password_variable(role)))]
    exports = [c for c in crossings() if c.owner == role]
    if exports:
        account["exports"] = [_export(c) for c in exports]
    imports = [c for c in crossings() if role in c.to]
    if imports:
        account["imports"] = [_import(c) for c in imports]
    if role in jetstream_limits():
        account["jetstream"] = _Variable(jetstream_variable(role))
    return account


def _user(role: str, password: object) -> dict[str, object]:
    permissions = permissions_for(role)
    return {"user": permissions.user, "password": password, "permissions": permissions.nats_permissions()}


def _export(crossing: Crossing) -> dict[str, object]:
    export: dict[str, object] = {
        crossing.kind: crossing.subject,
        "accounts": [account_name(r) for r in crossing.to],
    }
    if crossing.kind == "service" and crossing.response != "singleton":
        export["response_type"] = crossing.response
    return export


def _import(crossing: Crossing) -> dict[str, object]:
    entry: dict[str, object] = {
        crossing.kind: {"account": account_name(crossing.owner), "subject": crossing.subject}
    }
    if crossing.local_subject != crossing.subject:
        entry["to"] = crossing.local_subject
    return entry


def accounts_conf() -> str:
    """The ``accounts`` block of the nats-server configuration: the same text for the chart and the
    embedded server. It includes ``provisioner.conf`` from its own folder, which defines
    ``$VIGIE_PROVISIONER_USERS`` (:func:`provisioner_users`), and ``jetstream.conf``, which defines each
    account's JetStream limits (:func:`jetstream_conf`), and needs each service's password in the
    server's environment (:func:`password_variable`)."""
    header = (
        "# Vigie's NATS accounts, generated by `python -m vigie_core.accounts conf` (vigie_core.accounts):\n"
        "# one account per service and one for the provisioner; what crosses accounts is exported and\n"
        "# imported below, nothing else. Passwords: environment variables VIGIE_NATS_PASSWORD_<ACCOUNT>.\n"
    )
    block = {account_name(owner): _account(owner) for owner in ACCOUNT_OWNERS}
    # A variable is seen by the file that defines it and the files that include it, not by a sibling.
    includes = f"include {PROVISIONER_INCLUDE}\ninclude {JETSTREAM_INCLUDE}\n"
    return header + includes + "accounts " + _render(block, 0) + "\n"


def jetstream_conf(replicas: int = 1) -> str:
    """The include that defines each account's JetStream limits, for streams of ``replicas`` copies: what
    the account's streams may hold at most, every copy counted (``max_file: 0``, nothing on disk, for the
    accounts holding pixels or track ids, whatever the replicas)."""
    lines = [
        f"# Each Vigie account's JetStream limits, every copy counted (streams of {replicas} replica(s)),",
        f"# generated by `python -m vigie_core.accounts jetstream-conf --replicas {replicas}`.",
    ]
    for owner, limits in jetstream_limits(replicas).items():
        lines.append(f"{jetstream_variable(owner)}: {_render(limits.conf(), 0)}")
    return "\n".join(lines) + "\n"


def provisioner_users(password: str | None, *, from_environment: bool = False) -> str:
    """The include that defines ``$VIGIE_PROVISIONER_USERS``: the provisioner's user with ``password``,
    or its environment variable (``from_environment``: the chart), or none (``password`` None and not
    ``from_environment``: the provisioner cannot connect)."""
    if from_environment:
        users: object = [_user(PROVISIONER, _Variable(password_variable(PROVISIONER)))]
    elif password is not None:
        users = [_user(PROVISIONER, password)]
    else:
        users = []
    return (
        "# The provisioner's NATS user (vigie_core.accounts.provisioner_users): defined only while it may\n"
        "# provision.\n"
        f"{PROVISIONER_USERS_VARIABLE}: {_render(users, 0)}\n"
    )


# -- a small writer of the nats-server configuration format ----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Variable:
    """A reference to a configuration or environment variable (``$NAME``)."""

    name: str


_BARE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _render(value: object, depth: int) -> str:
    """``value`` in the configuration format; a map or list on one line where it fits, else indented."""
    if isinstance(value, Mapping | list | tuple):
        inline = _render_inline(value)
        if len(inline) + 2 * depth <= _LINE:
            return inline
        pad, inner = "  " * depth, "  " * (depth + 1)
        if isinstance(value, Mapping):
            items = [f"{inner}{_key(k)}: {_render(v, depth + 1)}" for k, v in value.items()]
            return "{\n" + "\n".join(items) + f"\n{pad}}}"
        return "[\n" + "\n".join(f"{inner}{_render(e, depth + 1)}" for e in value) + f"\n{pad}]"
    return _render_inline(value)


_LINE = 110


def _render_inline(value: object) -> str:
    if isinstance(value, _Variable):
        return f"${value.name}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)}: {_render_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_render_inline(e) for e in value) + "]"
    raise TypeError(f"cannot write {value!r} in a nats-server configuration")


def _key(key: object) -> str:
    text = str(key)
    return text if _BARE_KEY.match(text) else json.dumps(text)


def _as_table() -> str:
    lines = ["| from (exporter) | subject | to (importers) | as | why |", "|---|---|---|---|---|"]
    for c in crossings():
        to = ", ".join(account_name(r) for r in c.to)
        lines.append(
            f"| {account_name(c.owner)} | `{c.subject}` | {to} | {c.kind}: `{c.local_subject}` | {c.why} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vigie_core.accounts", description="Print Vigie's NATS accounts."
    )
    parser.add_argument(
        "what",
        choices=("conf", "provisioner-conf", "jetstream-conf", "table"),
        help="conf: the accounts block (charts/vigie/files/nats-accounts.conf); provisioner-conf: the "
        "chart's provisioner include (charts/vigie/files/nats-provisioner.conf); jetstream-conf: the "
        "accounts' JetStream limits (charts/vigie/files/nats-jetstream-r<replicas>.conf); table: what "
        "crosses accounts, in Markdown",
    )
    parser.add_argument("--replicas", type=int, default=1, help="jetstream-conf: the streams' copies")
    args = parser.parse_args(argv)
    if args.what == "conf":
        sys.stdout.write(accounts_conf())
    elif args.what == "jetstream-conf":
        sys.stdout.write(jetstream_conf(args.replicas))
    elif args.what == "provisioner-conf":
        sys.stdout.write(provisioner_users(None, from_environment=True))
    else:
        sys.stdout.write(_as_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
