"""The registry's entry of the sources bucket is what ingest reads (a contract test between the two ends of
vigie.v1.CameraSource; both take its schema version from vigie_core.sources): the URL opened with the same
key, whatever it holds."""

from __future__ import annotations

import pytest

from vigie_ingest.registry_sources import SealedUrlOpener, decode_source
from vigie_ingest.settings import RegistrySourcesSettings
from vigie_registry.sources import SourceContent
from vigie_registry.storage.store import SourceCipher

from .conftest import CIPHER_KEY, Api, declaration


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://viewer:s3cret-pass@10.0.0.12:554/stream?token=abc123",
        "rtsps://[2001:db8::12]:322/live",
        "https://cam.ville.example/mjpeg?user=a&password=b",
        "file:///var/videos/parvis%20nord.mp4",
    ],
)
async def test_the_entry_the_registry_writes_is_the_camera_ingest_reads(api: Api, url: str) -> None:
    response = await api.client.post(
        "/cameras",
        json={"id": "north-gate", **declaration(source={"url": url}), "status": "active"},
        headers=api.admin,
    )
    assert response.status_code == 201, response.text
    camera = await api.store.camera("north-gate")
    assert camera is not None
    wanted = await SourceContent(api.store, SourceCipher(CIPHER_KEY)).wanted(camera, api.clock())
    assert wanted.value is not None
    settings = RegistrySourcesSettings(enabled=True, source_key=CIPHER_KEY)  # type: ignore[arg-type]
    source = decode_source("north-gate", wanted.value, SealedUrlOpener(CIPHER_KEY), settings)
    assert source.config.url == url
    assert source.version == camera.version
