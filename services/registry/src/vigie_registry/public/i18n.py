"""The page's languages: one catalogue of strings per language (``locales/<lang>.toml``), chosen from the
URL (``?lang=``) or the browser's ``Accept-Language``, and the way times and durations are written.

Admin-entered text (a camera's name, address, description, contacts) is shown as it was declared: the
catalogues translate what Vigie itself says.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["LANGUAGES", "Catalogue", "Language", "catalogue", "negotiate", "request_catalogue"]

Language = Literal["fr", "en"]
LANGUAGES: tuple[Language, ...] = ("fr", "en")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, str):
            flat[name] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            for index, item in enumerate(value):
                flat[f"{name}.{index}"] = item
        else:
            raise TypeError(f"locale key {name}: a string or a list of strings is expected")
    return flat


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What Vigie says in one language: ``catalogue("camera.heading")`` or with ``{values}`` to format."""

    language: Language
    strings: Mapping[str, str]

    def __call__(self, key: str, /, **values: object) -> str:
        text = self.strings[key]  # a missing key is a bug the rendering tests catch in both languages
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self.strings

    def datetime(self, epoch: float, zone: ZoneInfo) -> str:
        """A date and time as people of this language write it, in the city's time zone."""
        moment = datetime.fromtimestamp(epoch, zone)
        return self(
            "format.datetime",
            day=moment.day,
            month=self(f"format.months.{moment.month - 1}"),
            year=moment.year,
            time=self.time(epoch, zone),
        )

    def time(self, epoch: float, zone: ZoneInfo) -> str:
        moment = datetime.fromtimestamp(epoch, zone)
        return self("format.time", hour=moment.hour, minute=f"{moment.minute:02d}")

    def duration(self, seconds: int) -> str:
        """15 minutes, 1 hour, 365 days: the largest whole unit."""
        for unit, size in (("days", 86_400), ("hours", 3600), ("minutes", 60)):
            if seconds >= size and seconds % size == 0:
                count = seconds // size
                return self(f"format.{unit}.{'one' if count == 1 else 'other'}", n=count)
        return self("format.seconds", n=seconds)


@cache
def catalogue(language: Language, package: str = "vigie_registry.public") -> Catalogue:
    """The strings of ``package``'s ``locales/<language>.toml`` (the console has its own)."""
    text = resources.files(package).joinpath("locales").joinpath(f"{language}.toml").read_text("utf-8")
    return Catalogue(language, _flatten(tomllib.loads(text)))


def negotiate(query: str | None, accept_language: str | None, default: Language) -> Language:
    """``?lang=`` if it names a language of the page; else the best of ``Accept-Language``; else default."""
    if query in LANGUAGES:
        return query
    best: tuple[float, int, Language] | None = None
    for position, part in enumerate((accept_language or "").split(",")[:32]):
        fields = part.strip().split(";")
        tag = fields[0].strip().lower().split("-")[0]
        weight = 1.0
        for parameter in fields[1:]:
            name, _, value = parameter.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if tag == "*":
            tag = default
        if tag in LANGUAGES and weight > 0:
            candidate = (-weight, position, tag)
            if best is None or candidate < best:
                best = candidate
    return best[2] if best is not None else default


def request_catalogue(
    request: Request, default: Language, chosen: str | None = None, package: str = "vigie_registry.public"
) -> Catalogue:
    """The catalogue a page answers ``request`` in: ``chosen`` (a form's field) or ``?lang=``, else the
    browser's Accept-Language, else ``default``."""
    code = negotiate(
        chosen if chosen is not None else request.query_params.get("lang"),
        request.headers.get("accept-language"),
        default,
    )
    return catalogue(code, package)
