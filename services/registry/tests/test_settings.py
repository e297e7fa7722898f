"""The service's settings: the environment, the abuse limits, the keys."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from vigie_registry.settings import ObjectionSettings, PublicSiteSettings, RegistrySettings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIE_REGISTRY_OBJECTION__MAX_PAUSE_S", "1800")
    monkeypatch.setenv("VIGIE_REGISTRY_ADMIN_SCOPE", "city:registry-admin")
    settings = RegistrySettings.load()
    assert settings.objection.max_pause_s == 1800
    assert settings.objection.default_pause_s == 900
    assert settings.admin_scope == "city:registry-admin"
    monkeypatch.setenv("VIGIE_REGISTRY_OBJECTIONS__MAX_PAUSE_S", "10")
    with pytest.raises(ValueError, match="VIGIE_REGISTRY_OBJECTIONS__MAX_PAUSE_S"):
        RegistrySettings.load()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate_limit": "lots"}, "not a rate limit"),
        ({"default_pause_s": 3000, "max_pause_s": 600}, "cannot exceed"),
        ({"max_pause_s": 10 * 86_400}, "less than or equal"),
        ({"forwarded_hops": 1}, "needs objection.trusted_proxies"),
        ({"trusted_proxies": ["10.0.0.0/8"]}, "needs objection.forwarded_hops"),
        ({"forwarded_hops": 1, "trusted_proxies": ["10.0.0.1/8"]}, "IPv4 or IPv6 network"),  # host bits
        ({"forwarded_hops": 1, "trusted_proxies": ["ingress"]}, "IPv4 or IPv6 network"),
    ],
)
def test_objection_limits_are_checked(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ObjectionSettings.model_validate(changes)


def test_keys_are_checked_and_never_echoed() -> None:
    with pytest.raises(ValidationError, match="at least 32 characters") as short:
        RegistrySettings(receipt_key="short-secret")  # type: ignore[arg-type]
    assert "short-secret" not in str(short.value)
    with pytest.raises(ValidationError, match="not a Fernet key") as bad:
        RegistrySettings(source_key="not-a-key-secret")  # type: ignore[arg-type]
    assert "not-a-key-secret" not in str(bad.value)
    key = subprocess.run(
        [sys.executable, "-m", "vigie_registry", "keygen"], check=True, capture_output=True, text=True
    ).stdout.strip()
    Fernet(key.encode())
    assert RegistrySettings(source_key=key).source_key is not None  # type: ignore[arg-type]


def test_the_public_page_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIE_REGISTRY_PUBLIC__BASE_URL", "https://cameras.ville.example/")
    monkeypatch.setenv("VIGIE_REGISTRY_PUBLIC__DEFAULT_LANGUAGE", "en")
    settings = RegistrySettings.load()
    assert settings.public.base_url == "https://cameras.ville.example"
    assert settings.public.default_language == "en"
    assert settings.public.timezone == "Europe/Paris"
    for bad in (
        {"timezone": "Mars/Olympus"},
        {"base_url": "cameras.ville.example"},
        {"default_language": "de"},
    ):
        with pytest.raises(ValidationError):
            PublicSiteSettings.model_validate(bad)


def test_trusted_proxies_come_from_the_environment_as_the_chart_sets_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ObjectionSettings().trusted_proxies == ()  # no proxy is believed by default
    monkeypatch.setenv("VIGIE_REGISTRY_OBJECTION__FORWARDED_HOPS", "1")
    monkeypatch.setenv("VIGIE_REGISTRY_OBJECTION__TRUSTED_PROXIES", '["10.0.0.0/8", "fc00::/7"]')
    settings = RegistrySettings.load()
    assert [str(n) for n in settings.objection.trusted_proxies] == ["10.0.0.0/8", "fc00::/7"]
