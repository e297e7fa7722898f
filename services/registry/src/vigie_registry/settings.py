"""Settings of the registry service, built once at start-up (env prefix ``VIGIE_REGISTRY_``)."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)

from vigie_core.audit import AuditPublishSettings
from vigie_core.auth import AuthSettings
from vigie_core.settings import ServiceSettings
from vigie_core.sources import check_fernet_key
from vigie_registry.camera import SAMPLE_SECONDS_MAX, SAMPLE_SECONDS_MIN

__all__ = [
    "ConsoleSettings",
    "ObjectionSettings",
    "OidcSettings",
    "PolicyPublishSettings",
    "PublicSiteSettings",
    "RegistrySettings",
    "SceneViewSettings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectionSettings(_Section):
    """The public objection endpoint (docs/privacy.md rules 15 and 16) and its abuse limits."""

    default_pause_s: int = Field(900, ge=60, le=86_400, description="how long one objection pauses a camera")
    max_pause_s: int = Field(
        3600,
        ge=60,
        le=86_400,
        description="the longest pause: objections extend a pause in progress up to this, never stack",
    )
    rate_limit: str = Field(
        "5/minute;20/hour",
        description=(
            "objections one client may make, over all cameras ('limits' syntax: N/second|minute|hour|day)"
        ),
    )
    forwarded_hops: int = Field(
        0,
        ge=0,
        le=5,
        description=(
            "proxies in front of the registry that append to X-Forwarded-For: the client is the address they "
            "saw (0: the TCP peer; behind one ingress, 1). Read only from a peer in trusted_proxies"
        ),
    )
    trusted_proxies: tuple[IPvAnyNetwork, ...] = Field(
        (),
        max_length=64,
        description=(
            "networks of the proxies whose X-Forwarded-For is believed (CIDRs, e.g. the ingress "
            "controller's pod network); none by default: the client is the TCP peer, whatever the header "
            "says, so that no one can forge an address around the rate limit"
        ),
    )
    retention_days: int = Field(
        365,
        ge=1,
        le=3 * 366,
        description="objection records (receipt id, camera, times) are deleted after this",
    )

    @field_validator("rate_limit")
    @classmethod
    def _parse(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError as error:
            raise ValueError(f"not a rate limit such as '5/minute;20/hour': {error}") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.default_pause_s > self.max_pause_s:
            raise ValueError("objection.default_pause_s cannot exceed objection.max_pause_s")
        # Either alone would silently put every client behind the proxy under one shared limit (the
        # proxy's address), or trust nobody's header while the operator thinks it is read.
        if self.forwarded_hops and not self.trusted_proxies:
            raise ValueError(
                "objection.forwarded_hops needs objection.trusted_proxies: the networks of the proxies whose "
                "X-Forwarded-For is believed"
            )
        if self.trusted_proxies and not self.forwarded_hops:
            raise ValueError(
                "objection.trusted_proxies needs objection.forwarded_hops (at least 1): how many proxies "
                "append to X-Forwarded-For"
            )
        return self


class PolicyPublishSettings(_Section):
    """How the registry keeps the NATS KV bucket ``vigie-policy`` equal to its database."""

    reconcile_interval_s: float = Field(
        10.0, gt=0, description="how often policies not yet in the bucket are published again"
    )
    history: int = Field(5, ge=1, le=64, description="revisions the bucket keeps per camera")
    publish_timeout_s: float = Field(2.0, gt=0)


class PublicSiteSettings(_Section):
    """The public transparency page (``/``, ``/cameras/{id}``) and the cameras' signs."""

    base_url: str | None = Field(
        None,
        max_length=200,
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="the page's public address (e.g. https://cameras.ville.example): the signs' QR codes "
        "point to BASE/cameras/ID and form posts from it are accepted; none: taken from each request "
        "(set it before printing signs)",
    )
    default_language: Literal["fr", "en"] = Field(
        "fr", description="the page's language when neither ?lang= nor Accept-Language chooses one"
    )
    timezone: str = Field("Europe/Paris", description="times on the page and the signs (IANA name)")
    form_token_ttl_s: int = Field(
        3600,
        ge=60,
        le=86_400,
        description="how long the object button's form stays valid after the page was loaded",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not a known IANA time zone: {value!r}") from None
        return value

    @field_validator("base_url")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class SceneViewSettings(_Section):
    """Views of a camera's scene without its people, asked for by an administrator to draw lines on."""

    default_sample_seconds: int = Field(
        60,
        ge=SAMPLE_SECONDS_MIN,
        le=SAMPLE_SECONDS_MAX,
        description="how long frames are sampled for a view when the request does not say (10 to 600 s)",
    )
    min_interval_s: int = Field(
        30,
        ge=10,
        le=86_400,
        description="the shortest time between two requests for one camera: views are not a way to sample "
        "the street continuously",
    )
    read_timeout_s: float = Field(2.0, gt=0, le=30, description="how long a view is waited for from NATS")


class OidcSettings(_Section):
    """The city's OpenID Connect provider, for signing in to the console (authorization code flow, PKCE)."""

    issuer: str = Field(
        max_length=300,
        pattern=r"^https://[^?#\s]+$",
        description="the provider's issuer URL (its metadata is at ISSUER/.well-known/openid-configuration)",
    )
    client_id: str = Field(min_length=1, max_length=300, description="the console's client id")
    client_secret: SecretStr | None = Field(
        None, description="the console's client secret (client_secret_basic); none: a public client (PKCE)"
    )
    scopes: str = Field("openid", pattern=r"^openid( [A-Za-z0-9_:.-]+)*$", description="scopes asked for")
    operator_claim: str = Field("sub", min_length=1, description="the ID token's claim naming the operator")
    admin_claim: str = Field(
        "roles", min_length=1, description="the ID token's claim holding roles (a list or a spaced string)"
    )
    admin_value: str = Field(
        "vigie-admin", min_length=1, description="the role in admin_claim that grants registry:admin"
    )
    timeout_s: float = Field(5.0, gt=0, le=30, description="how long the provider is waited for")


class ConsoleSettings(_Section):
    """The operator console (``/console``): one-time sign-in links and the sessions they open."""

    link_ttl_s: int = Field(
        600,
        ge=60,
        le=3600,
        description="how long a sign-in link (python -m vigie_registry console-link) works",
    )
    session_ttl_s: int = Field(
        8 * 3600, ge=300, le=86_400, description="how long a console session lasts before signing in again"
    )
    oidc: OidcSettings | None = Field(
        None, description="sign-in through the city's OpenID Connect provider; none: one-time links only"
    )


class RegistrySettings(ServiceSettings, env_prefix="VIGIE_REGISTRY_", hide_input_in_errors=True):
    database_url: SecretStr = Field(
        SecretStr("sqlite+aiosqlite:///var/registry/registry.sqlite3"),
        description="SQLAlchemy async URL: sqlite+aiosqlite:///PATH or postgresql+asyncpg://...",
    )
    database_schema: str | None = Field(
        None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema (search_path); none: the default",
    )
    source_key: SecretStr | None = Field(
        None,
        description="Fernet key sealing the cameras' source URLs at rest (python -m vigie_registry keygen); "
        "none: stored as given",
    )
    receipt_key: SecretStr | None = Field(
        None,
        description="HMAC key (at least 32 characters) signing objection receipts; none: one is generated at "
        "start (receipts of earlier runs then no longer verify)",
    )
    admin_scope: str = Field("registry:admin", min_length=1, description="declares and changes cameras")
    read_scope: str = Field("registry:read", min_length=1, description="reads the declarations")
    dpo_scope: str = Field(
        "registry:dpo", min_length=1, description="exports the register and DPIA documents"
    )
    authorisation_check_interval_s: float = Field(
        30.0, gt=0, description="how often ended security_events authorisations are looked for"
    )
    retention_check_interval_s: float = Field(3600.0, gt=0)
    objection: ObjectionSettings = ObjectionSettings()
    policy: PolicyPublishSettings = PolicyPublishSettings()
    public: PublicSiteSettings = PublicSiteSettings()
    views: SceneViewSettings = SceneViewSettings()
    console: ConsoleSettings = ConsoleSettings()
    auth: AuthSettings = AuthSettings()
    audit: AuditPublishSettings = AuditPublishSettings()

    @field_validator("receipt_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("receipt_key: at least 32 characters")
        return value

    @field_validator("source_key")
    @classmethod
    def _fernet(cls, value: SecretStr | None) -> SecretStr | None:
        return check_fernet_key(value, "source_key (python -m vigie_registry keygen)")
