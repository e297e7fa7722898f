"""The statistics HTTP API: released, disclosure-controlled figures by site, camera, line or zone.

Thin edge: each route checks its parameters (a 4xx naming the field for anything wrong), reads released
cells (:mod:`.queries`), records the read in the audit journal, and encodes JSON or CSV. It never computes
a figure: everything it can return was fixed when its period was released, which is what makes the
disclosure control hold for any combination of queries.

- Authentication: OAuth2 bearer JWTs through :mod:`vigie_core.auth`; every route needs ``read_scope``
  (``stats:read`` by default): no or a bad token gives 401, a token without the scope 403.
- Audit: every read is an audit event (``data_read``; ``data_export`` for CSV) naming the operator, the
  motive (``motive=`` or the ``X-Vigie-Motive`` header, required), the cameras and the time range. A read
  that cannot be audited is refused (503).
- Times are ISO 8601 with an offset (``2026-05-01T08:00:00Z``, ``...+02:00``); a time without one is
  refused, since it would be ambiguous. A period is returned when it *starts* in ``[from, to)``.
- Pages: ``limit`` items at most; ``next_cursor`` (and the ``Link: <...>; rel="next"`` header) continue.
"""

# No "from __future__ import annotations": FastAPI must see the routes' annotations as objects, and they
# refer to the factory's locals (the scope the token needs).
import contextlib
import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncEngine

from vigie_aggregation.api.models import CrossingsPage, DwellPage, OccupancyPage, Site, SitesPage
from vigie_aggregation.api.queries import (
    CellQuery,
    CoverageFigures,
    InvalidCursorError,
    StoredCell,
    decode_cursor,
    encode_cursor,
    fetch_cells,
    fetch_coverage,
)
from vigie_aggregation.metrics import AggregationMetrics
from vigie_aggregation.settings import DAY_S, AggregationSettings
from vigie_aggregation.sites import SiteDirectory
from vigie_aggregation.storage.cells import Granularity
from vigie_aggregation.vocabulary import (
    ALL,
    DIRECTION_CODES,
    DIRECTION_NAMES,
    OBJECT_CLASS_CODES,
    OBJECT_CLASS_NAMES,
)
from vigie_core.api_docs import install_docs
from vigie_core.audit import (
    AuditAction,
    AuditOutcome,
    AuditPublisher,
    AuditUnavailableError,
    InvalidAuditEventError,
)
from vigie_core.auth import Principal, TokenVerifier, install_authentication, require_authorization
from vigie_core.database import answer_outages_with_503

__all__ = ["statistics_app"]

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BUCKET = re.compile(r"^[0-9]{1,7}-[0-9]{0,7}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_CAMERAS = 100
_MAX_ITEMS = 100
_GRANULARITY_NAMES = {Granularity.WINDOW: "window", Granularity.DAY: "day"}
_MAX_SPAN_S = {"window": 31 * DAY_S, "day": 400 * DAY_S}
_JSON = "application/json"
_CSV = "text/csv"

ClassSelector = Literal["all", "each", "person", "bicycle", "car", "motorcycle", "bus", "truck"]
DirectionSelector = Literal["all", "each", "left_to_right", "right_to_left"]
GranularityName = Literal["window", "day"]
FormatName = Literal["json", "csv"]

Start = Annotated[
    AwareDatetime,
    Query(
        alias="from",
        description="ISO 8601 time with an offset: periods starting at or after it",
        examples=["2026-05-01T08:00:00Z"],
        openapi_examples={"utc": {"summary": "UTC", "value": "2026-05-01T08:00:00Z"}},
    ),
]
End = Annotated[
    AwareDatetime,
    Query(
        alias="to",
        description="ISO 8601 time with an offset: periods starting before it",
        examples=["2026-05-01T09:00:00+00:00"],
        openapi_examples={"offset": {"summary": "with an offset", "value": "2026-05-01T11:00:00+02:00"}},
    ),
]
SiteParam = Annotated[
    str | None,
    Query(
        description="a site: its cameras' figures and its totals",
        examples=["centre"],
        openapi_examples={"site": {"summary": "a site", "value": "centre"}},
    ),
]
CameraParam = Annotated[list[str] | None, Query(description="one or more cameras (repeat the parameter)")]
Limit = Annotated[int, Query(ge=1, description="items per page (at most the service's max_page_size)")]
Cursor = Annotated[str | None, Query(description="the next_cursor of the previous page")]
Motive = Annotated[
    str | None,
    Query(
        description="why you read these statistics (recorded in the audit journal)",
        openapi_examples={"motive": {"summary": "a motive", "value": "monthly mobility report"}},
    ),
]
MotiveHeader = Annotated[str | None, Header(alias="X-Vigie-Motive", description="the motive, as a header")]
Format = Annotated[
    FormatName | None, Query(alias="format", description="json or csv; else the Accept header")
]
Classes = Annotated[ClassSelector, Query(description="all (the default), each, or one class")]
Granularities = Annotated[GranularityName, Query(description="window or day")]
Zones = Annotated[list[str] | None, Query(description="only these zones")]

_ERROR = {"content": {_JSON: {"example": {"detail": "..."}}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {_CSV: {"schema": {"type": "string"}, "example": "site,camera,line,...\r\n"}}},
    401: {"description": "no bearer token, or an invalid one", **_ERROR},
    403: {"description": "the token lacks the scope, or its subject is not a pseudonymous id", **_ERROR},
    404: {"description": "unknown site or camera", **_ERROR},
    406: {"description": "the Accept header allows neither JSON nor CSV", **_ERROR},
    422: {"description": "a parameter is wrong; the message names it"},
    503: {
        "description": (
            "the read cannot be audited now, or the database or the identity provider is unreachable: "
            "refused, retry later"
        ),
        **_ERROR,
    },
}

_DESCRIPTION = """
Anonymous statistics from Vigie's cameras, published under the rules of the French data protection
authority (CNIL) for augmented cameras and the GDPR: counts of line crossings, zone occupancy and stay
durations, per reporting window (20 minutes by default) or per UTC day, for a camera, its lines or zones,
or a whole site.

**Disclosure control.** Every figure was fixed when its period was released. Counts from 1 to the
threshold minus one are suppressed, and so are enough other figures that no suppressed count can be
computed from any totals, days or other queries. A suppressed figure has `suppressed: true`, a null value
and a reason. Every figure carries the share of the period its cameras were actually analysed
(`coverage.ratio`): a partly analysed period has partial counts.

**Access.** OAuth2 bearer token with the `stats:read` scope (every site), or one or more
`stats:read:site:<site>` scopes (only those sites; another site gives 403, recorded as a permission
violation). Every read is recorded in the audit journal
with the operator, the cameras, the time range and the motive you give (`motive=` or the `X-Vigie-Motive`
header; required).

**Format.** JSON by default; CSV with `Accept: text/csv` or `format=csv`. Times are ISO 8601 with an offset.
"""


def _invalid(field: str, message: str, value: object = None) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("query", field), "msg": message, "type": "value_error", "input": value}]
    )


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _choose_format(format_: FormatName | None, accept: str | None) -> str:
    if format_ is not None:
        return _CSV if format_ == "csv" else _JSON
    if not accept:
        return _JSON
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        quality = 1.0
        for parameter in fields[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        for candidate in (_JSON, _CSV):
            kind = candidate.split("/")[0]
            if media in (candidate, f"{kind}/*", "*/*"):
                # Exact types first, then the earlier one listed; JSON wins a plain */*.
                rank = (quality, -position if media == candidate else -100 - position, candidate)
                if best is None or rank[:2] > best[:2]:
                    best = rank
                break
    if best is None:
        raise HTTPException(406, "the Accept header allows neither application/json nor text/csv")
    return best[2]


def _csv_safe(value: object) -> object:
    # Spreadsheets run cells that start with these as formulas.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def _csv(columns: Sequence[str], items: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for item in items:
        row = []
        for column in columns:
            value = item
            for part in column.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None  # type: ignore[assignment]
            row.append("" if value is None else _csv_safe(value))
        writer.writerow(row)
    return out.getvalue()


def statistics_app(
    *,
    engine: AsyncEngine,
    sites: SiteDirectory,
    audit: AuditPublisher,
    verifier: TokenVerifier,
    settings: AggregationSettings,
    metrics: AggregationMetrics | None = None,
) -> FastAPI:
    """The API as a FastAPI application (the service mounts it under ``/v1``)."""
    app = FastAPI(
        title="Vigie statistics API",
        version="1.0.0",
        description=_DESCRIPTION,
        openapi_tags=[{"name": "statistics", "description": "released, disclosure-controlled figures"}],
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)  # /docs, with nothing loaded from a CDN
    install_authentication(app, verifier)
    answer_outages_with_503(app)
    # stats:read reads every site; stats:read:site:<site> (one or more) only those sites: a department
    # sees its own sites' figures.
    site_scope = f"{settings.read_scope}:site:"

    def lacking(granted: frozenset[str]) -> str | None:
        if settings.read_scope in granted or any(scope.startswith(site_scope) for scope in granted):
            return None
        return f"the token lacks the scope {settings.read_scope} (or {site_scope}<site>)"

    read = require_authorization(lacking, settings.read_scope)

    def readable_sites(principal: Principal) -> frozenset[str] | None:
        """The sites the principal may read; None: every site."""
        if settings.read_scope in principal.scopes:
            return None
        return frozenset(s.removeprefix(site_scope) for s in principal.scopes if s.startswith(site_scope))

    window_s = settings.disclosure.window_s
    max_page = settings.max_page_size
    disclosure = {
        "threshold": settings.disclosure.threshold,
        "window_seconds": window_s,
        "noise": (
            {"mechanism": "two_sided_geometric", "epsilon_per_window": settings.noise.epsilon_per_window}
            if settings.noise.enabled
            else None
        ),
    }

    def known_parameters(*names: str) -> Callable[[Request], None]:
        allowed = set(names) | {"from", "to", "limit", "cursor", "format", "motive", "granularity"}

        def check(request: Request) -> None:
            unknown = sorted(set(request.query_params) - allowed)
            if unknown:
                raise _invalid(
                    unknown[0], f"unknown parameter; known: {', '.join(sorted(allowed))}", unknown[0]
                )

        return check

    def motive_of(motive: str | None, header: str | None) -> str:
        text = (motive if motive is not None else header or "").strip()
        if not text:
            raise _invalid(
                "motive", "say why you read these statistics (motive= or the X-Vigie-Motive header)"
            )
        if len(text) > 1000 or _CONTROL.search(text):
            raise _invalid("motive", "at most 1000 characters, no control characters")
        return text

    async def scope_of(
        principal: Principal, site: str | None, cameras: list[str] | None
    ) -> tuple[str | None, tuple[str, ...], list[str]]:
        """The site or cameras asked for, and every camera the read concerns (for the audit); 403 (and a
        permission violation in the audit journal) for a site the token may not read."""
        site_id, camera_ids, concerned = requested(site, cameras)
        allowed = readable_sites(principal)
        wanted = {site_id} if site_id is not None else {sites.site_of(c) or "" for c in camera_ids}
        if allowed is None or wanted <= allowed:
            return site_id, camera_ids, concerned
        refused = sorted(wanted - allowed)
        with contextlib.suppress(AuditUnavailableError, InvalidAuditEventError):
            await audit.record(
                AuditAction.AUDIT_ACTION_PERMISSION_VIOLATION,
                actor=principal.subject,
                motive="statistics of a site the token may not read",
                camera_ids=concerned,
                outcome=AuditOutcome.AUDIT_OUTCOME_DENIED,
                details={"sites": ",".join(refused)},
            )
        raise HTTPException(403, f"the token may not read site(s) {', '.join(refused)}")

    def requested(
        site: str | None, cameras: list[str] | None
    ) -> tuple[str | None, tuple[str, ...], list[str]]:
        if (site is None) == (not cameras):
            raise _invalid("site", "give either site= or one or more camera=, not both")
        if site is not None:
            if not _TOKEN.fullmatch(site):
                raise _invalid("site", "a site id is 1 to 64 letters, digits, '-' or '_'", site)
            members = sites.cameras_of(site)
            if not members:
                raise HTTPException(404, f"site {site!r} is not known")
            return site, (), sorted(members)
        assert cameras
        if len(cameras) > _MAX_CAMERAS:
            raise _invalid("camera", f"at most {_MAX_CAMERAS} cameras per request")
        for camera in cameras:
            if not _TOKEN.fullmatch(camera):
                raise _invalid("camera", "a camera id is 1 to 64 letters, digits, '-' or '_'", camera)
            if sites.site_of(camera) is None:
                raise HTTPException(404, f"camera {camera!r} is not known")
        unique = tuple(sorted(set(cameras)))
        return None, unique, list(unique)

    def items_of(field: str, values: list[str] | None) -> tuple[str, ...]:
        values = values or []
        if len(values) > _MAX_ITEMS:
            raise _invalid(field, f"at most {_MAX_ITEMS} values")
        for value in values:
            if not _TOKEN.fullmatch(value):
                raise _invalid(field, "an id is 1 to 64 letters, digits, '-' or '_'", value)
        return tuple(sorted(set(values)))

    def period_of(start: datetime, end: datetime, granularity: GranularityName) -> tuple[int, int]:
        begin, finish = math.ceil(start.timestamp()), math.ceil(end.timestamp())
        if finish <= begin:
            raise _invalid("to", "must be after from", end.isoformat())
        if finish - begin > _MAX_SPAN_S[granularity]:
            days = _MAX_SPAN_S[granularity] // DAY_S
            raise _invalid(
                "to", f"at most {days} days after from with granularity={granularity}", end.isoformat()
            )
        return begin, finish

    async def respond(
        request: Request,
        principal: Principal,
        *,
        family: str,
        query: CellQuery,
        cursor: str | None,
        limit: int,
        output: str,
        motive: str,
        cameras: list[str],
        item: Callable[[StoredCell, CoverageFigures], dict[str, Any]],
        columns: Sequence[str],
        level: str,
        granularity: GranularityName,
    ) -> Response:
        if limit > max_page:
            raise _invalid("limit", f"at most {max_page} items per page", limit)
        try:
            after = decode_cursor(cursor) if cursor else None
        except InvalidCursorError as error:
            raise _invalid("cursor", str(error), cursor) from None
        rows = await fetch_cells(engine, query, after=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        coverage = await fetch_coverage(
            engine, query.granularity, [(r.site_id, r.period_start) for r in rows]
        )
        empty = CoverageFigures(0, 0.0, 0)
        items = [
            item(row, coverage.get((row.site_id, row.period_start, row.camera_id), empty)) for row in rows
        ]
        next_cursor = encode_cursor(rows[-1].key) if more and rows else None
        next_link = str(request.url.include_query_params(cursor=next_cursor)) if next_cursor else None
        await record_read(principal, family, query, output, motive, cameras, len(items))
        if metrics is not None:
            metrics.reads.labels(family, "csv" if output == _CSV else "json").inc()
        if output == _CSV:
            headers = {"Content-Disposition": f'attachment; filename="vigie-{family}.csv"'}
            if next_link:
                headers["Link"] = f'<{next_link}>; rel="next"'
                headers["X-Next-Cursor"] = next_cursor or ""
            return Response(_csv(columns, items), media_type="text/csv; charset=utf-8", headers=headers)
        return JSONResponse(
            {
                "family": family,
                "granularity": granularity,
                "level": level,
                "start": _iso(query.start),
                "end": _iso(query.end),
                "disclosure": disclosure,
                "items": items,
                "next_cursor": next_cursor,
                "links": {"self": str(request.url), "next": next_link},
            },
            headers={"Link": f'<{next_link}>; rel="next"'} if next_link else None,
        )

    async def record_read(
        principal: Principal,
        family: str,
        query: CellQuery,
        output: str,
        motive: str,
        cameras: list[str],
        items: int,
    ) -> None:
        export = output == _CSV
        try:
            await audit.record(
                AuditAction.AUDIT_ACTION_DATA_EXPORT if export else AuditAction.AUDIT_ACTION_DATA_READ,
                actor=principal.subject,
                motive=motive,
                camera_ids=cameras,
                records=[
                    ("statistics", f"{family}:{'window' if query.granularity == 0 else 'day'}:{query.level}")
                ],
                data_start=datetime.fromtimestamp(query.start, UTC),
                data_end=datetime.fromtimestamp(query.end, UTC),
                details={
                    "format": "csv" if export else "json",
                    "items": str(items),
                    "site": query.site_id or "",
                },
                # An export leaves only once the journal has it.
                confirm=export,
            )
        except InvalidAuditEventError as error:
            if error.field == "actor":
                raise HTTPException(403, "the token's subject is not a pseudonymous operator id") from None
            raise _invalid("motive", str(error)) from None
        except AuditUnavailableError:
            raise HTTPException(
                503, "the read cannot be recorded in the audit journal now: refused, retry later"
            ) from None

    def coverage_json(figures: CoverageFigures) -> dict[str, Any]:
        return {
            "ratio": round(figures.ratio, 4),
            "covered_seconds": round(figures.covered_seconds, 3),
            "period_seconds": figures.period_seconds,
            "cameras": figures.cameras,
            "withheld_cameras": list(figures.withheld_cameras),
        }

    def period_seconds(granularity: int) -> int:
        return window_s if granularity == Granularity.WINDOW else DAY_S

    def common(row: StoredCell, coverage: CoverageFigures, granularity: int) -> dict[str, Any]:
        return {
            "site": row.site_id,
            "camera": row.camera_id or None,
            "period_start": _iso(row.period_start),
            "period_end": _iso(row.period_start + period_seconds(granularity)),
            "suppressed": row.suppressed,
            "reason": row.reason,
            "coverage": coverage_json(coverage),
        }

    coverage_columns = ("coverage.ratio", "coverage.covered_seconds", "coverage.period_seconds")

    Authorized = Annotated[Principal, Depends(read)]  # noqa: N806 (a type alias: the route needs its scope)

    @app.get(
        "/crossings",
        tags=["statistics"],
        summary="Line crossings",
        response_model=CrossingsPage,
        responses=_RESPONSES,
        dependencies=[
            Depends(known_parameters("site", "camera", "level", "line", "direction", "object_class"))
        ],
    )
    async def crossings(
        request: Request,
        principal: Authorized,
        start: Start,
        end: End,
        site: SiteParam = None,
        camera: CameraParam = None,
        level: Annotated[
            Literal["line", "camera", "site"],
            Query(
                description="line: each line; camera: all lines of a camera; site: all cameras of the site"
            ),
        ] = "line",
        line: Annotated[list[str] | None, Query(description="only these lines (level=line)")] = None,
        direction: Annotated[
            DirectionSelector,
            Query(description="all (both, the default), each, or one direction (level=line)"),
        ] = "all",
        object_class: Annotated[
            ClassSelector, Query(description="all (the default), each, or one class")
        ] = "all",
        granularity: Granularities = "window",
        limit: Limit = 100,
        cursor: Cursor = None,
        format_: Format = None,
        motive: Motive = None,
        x_vigie_motive: MotiveHeader = None,
    ) -> Response:
        output = _choose_format(format_, request.headers.get("accept"))
        reason = motive_of(motive, x_vigie_motive)
        site_id, camera_ids, cameras = await scope_of(principal, site, camera)
        lines = items_of("line", line)
        if level != "line" and direction != "all":
            raise _invalid("direction", "directions exist per line only: use level=line", direction)
        if level != "line" and lines:
            raise _invalid("line", "a line filter needs level=line", list(lines))
        if level == "site" and site_id is None:
            raise _invalid("level", "level=site needs site=", level)
        begin, finish = period_of(start, end, granularity)
        query = CellQuery(
            family="crossings",
            granularity=Granularity.WINDOW if granularity == "window" else Granularity.DAY,
            level="item" if level == "line" else level,
            start=begin,
            end=finish,
            site_id=site_id,
            camera_ids=camera_ids,
            items=lines,
            direction=direction if direction in (ALL, "each") else DIRECTION_CODES[direction],  # type: ignore[arg-type]
            object_class=object_class if object_class in (ALL, "each") else OBJECT_CLASS_CODES[object_class],  # type: ignore[arg-type]
        )

        def item(row: StoredCell, coverage: CoverageFigures) -> dict[str, Any]:
            return {
                **common(row, coverage, query.granularity),
                "line": row.item_id or None,
                "direction": DIRECTION_NAMES.get(row.direction, ALL),
                "object_class": OBJECT_CLASS_NAMES.get(row.object_class, ALL),
                "count": None if row.suppressed else round(row.value),
            }

        return await respond(
            request,
            principal,
            family="crossings",
            query=query,
            cursor=cursor,
            limit=limit,
            output=output,
            motive=reason,
            cameras=cameras,
            item=item,
            columns=(
                "site",
                "camera",
                "line",
                "direction",
                "object_class",
                "period_start",
                "period_end",
                "count",
                "suppressed",
                "reason",
                *coverage_columns,
            ),
            level=level,
            granularity=granularity,
        )

    @app.get(
        "/occupancy",
        tags=["statistics"],
        summary="Zone occupancy",
        response_model=OccupancyPage,
        responses=_RESPONSES,
        dependencies=[Depends(known_parameters("site", "camera", "zone", "object_class"))],
    )
    async def occupancy(
        request: Request,
        principal: Authorized,
        start: Start,
        end: End,
        site: SiteParam = None,
        camera: CameraParam = None,
        zone: Zones = None,
        object_class: Annotated[
            ClassSelector, Query(description="all (the default), each, or one class")
        ] = "all",
        granularity: Granularities = "window",
        limit: Limit = 100,
        cursor: Cursor = None,
        format_: Format = None,
        motive: Motive = None,
        x_vigie_motive: MotiveHeader = None,
    ) -> Response:
        output = _choose_format(format_, request.headers.get("accept"))
        reason = motive_of(motive, x_vigie_motive)
        site_id, camera_ids, cameras = await scope_of(principal, site, camera)
        zones = items_of("zone", zone)
        begin, finish = period_of(start, end, granularity)
        query = CellQuery(
            family="occupancy",
            granularity=Granularity.WINDOW if granularity == "window" else Granularity.DAY,
            level="item",
            start=begin,
            end=finish,
            site_id=site_id,
            camera_ids=camera_ids,
            items=zones,
            object_class=object_class if object_class in (ALL, "each") else OBJECT_CLASS_CODES[object_class],  # type: ignore[arg-type]
        )

        def item(row: StoredCell, coverage: CoverageFigures) -> dict[str, Any]:
            mean = None
            if not row.suppressed and coverage.covered_seconds > 0:
                mean = round(row.value / coverage.covered_seconds, 3)
            return {
                **common(row, coverage, query.granularity),
                "zone": row.item_id,
                "object_class": OBJECT_CLASS_NAMES.get(row.object_class, ALL),
                "mean_objects": mean,
                "max_objects": None if row.suppressed or not row.object_class else row.max_objects,
            }

        return await respond(
            request,
            principal,
            family="occupancy",
            query=query,
            cursor=cursor,
            limit=limit,
            output=output,
            motive=reason,
            cameras=cameras,
            item=item,
            columns=(
                "site",
                "camera",
                "zone",
                "object_class",
                "period_start",
                "period_end",
                "mean_objects",
                "max_objects",
                "suppressed",
                "reason",
                *coverage_columns,
            ),
            level="zone",
            granularity=granularity,
        )

    @app.get(
        "/dwell",
        tags=["statistics"],
        summary="Stay durations in zones",
        response_model=DwellPage,
        responses=_RESPONSES,
        dependencies=[Depends(known_parameters("site", "camera", "zone", "object_class", "dwell"))],
    )
    async def dwell(
        request: Request,
        principal: Authorized,
        start: Start,
        end: End,
        site: SiteParam = None,
        camera: CameraParam = None,
        zone: Zones = None,
        object_class: Annotated[
            ClassSelector, Query(description="all (the default), each, or one class")
        ] = "all",
        dwell: Annotated[
            str, Query(description="all (the default), each, or one bucket like 60-300", examples=["each"])
        ] = "all",
        granularity: Granularities = "window",
        limit: Limit = 100,
        cursor: Cursor = None,
        format_: Format = None,
        motive: Motive = None,
        x_vigie_motive: MotiveHeader = None,
    ) -> Response:
        output = _choose_format(format_, request.headers.get("accept"))
        reason = motive_of(motive, x_vigie_motive)
        site_id, camera_ids, cameras = await scope_of(principal, site, camera)
        zones = items_of("zone", zone)
        if dwell not in (ALL, "each") and not _BUCKET.fullmatch(dwell):
            raise _invalid("dwell", "all, each, or a bucket like 60-300 or 300-", dwell)
        begin, finish = period_of(start, end, granularity)
        query = CellQuery(
            family="dwell",
            granularity=Granularity.WINDOW if granularity == "window" else Granularity.DAY,
            level="item",
            start=begin,
            end=finish,
            site_id=site_id,
            camera_ids=camera_ids,
            items=zones,
            object_class=object_class if object_class in (ALL, "each") else OBJECT_CLASS_CODES[object_class],  # type: ignore[arg-type]
            dwell_bucket=dwell,
        )

        def item(row: StoredCell, coverage: CoverageFigures) -> dict[str, Any]:
            return {
                **common(row, coverage, query.granularity),
                "zone": row.item_id,
                "object_class": OBJECT_CLASS_NAMES.get(row.object_class, ALL),
                "dwell": row.dwell_bucket or ALL,
                "count": None if row.suppressed else round(row.value),
            }

        return await respond(
            request,
            principal,
            family="dwell",
            query=query,
            cursor=cursor,
            limit=limit,
            output=output,
            motive=reason,
            cameras=cameras,
            item=item,
            columns=(
                "site",
                "camera",
                "zone",
                "object_class",
                "dwell",
                "period_start",
                "period_end",
                "count",
                "suppressed",
                "reason",
                *coverage_columns,
            ),
            level="zone",
            granularity=granularity,
        )

    @app.get(
        "/sites",
        tags=["statistics"],
        summary="Sites and their cameras",
        response_model=SitesPage,
        responses={k: v for k, v in _RESPONSES.items() if k in (401, 403)},
    )
    async def list_sites(principal: Authorized) -> SitesPage:
        # Configuration, not statistics: not an audited read. Only the sites the token may read.
        allowed = readable_sites(principal)
        return SitesPage(
            sites=[
                Site(site=site, cameras=sorted(cameras))
                for site, cameras in sorted(sites.sites().items())
                if allowed is None or site in allowed
            ]
        )

    return app
