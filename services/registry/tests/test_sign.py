"""The printable sign: a valid SVG at true A4 size and a PDF, with the first-layer information in both
languages, and a QR code that a QR reader (OpenCV's) decodes to the camera's public page."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from vigie_registry.public.i18n import catalogue
from vigie_registry.public.sign import PAGE_H, PAGE_W, qr_matrix, sign_layout
from vigie_registry.public.sign import _width as text_width

from .conftest import SITE_URL, Site

SVG = "{http://www.w3.org/2000/svg}"
_RUN = re.compile(r"M([\d.]+) ([\d.]+)h([\d.]+)v([\d.]+)h-([\d.]+)z")


def decode_svg_qr(root: ET.Element) -> str:
    """Rebuild the QR code's modules from the sign's path, draw them with a quiet zone, and read it."""
    [path] = [p for p in root.iter(f"{SVG}path") if p.get("class") == "qr"]
    size = int(path.get("data-modules", "0"))
    module = float(path.get("data-module", "0"))
    x0, y0 = float(path.get("data-x", "0")), float(path.get("data-y", "0"))
    modules = np.zeros((size, size), dtype=bool)
    for x, y, width, _, _ in _RUN.findall(path.get("d", "")):
        row = round((float(y) - y0) / module)
        column = round((float(x) - x0) / module)
        modules[row, column : column + round(float(width) / module)] = True
    picture = np.full((size + 8, size + 8), 255, dtype=np.uint8)
    picture[4:-4, 4:-4][modules] = 0
    picture = np.kron(picture, np.ones((8, 8), dtype=np.uint8))
    text, points, _ = cv2.QRCodeDetector().detectAndDecode(picture)
    assert points is not None, "no QR code found"
    return str(text)


@pytest.mark.parametrize("language", ["fr", "en"])
async def test_the_svg_sign_has_the_first_layer_and_a_qr_code_to_the_page(site: Site, language: str) -> None:
    t = catalogue(language)  # type: ignore[arg-type]
    await site.declare("north-gate", retention={"statistics_days": 90})
    response = await site.client.get(f"/cameras/north-gate/sign.svg?lang={language}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("210mm", "297mm", "0 0 210 297")
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == language
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text == f"{t('sign.heading')} — North gate"
    text = " ".join(" ".join(e.itertext()) for e in root.iter(f"{SVG}text"))
    for expected in (
        t("sign.heading"),
        t("sign.purpose"),
        t("purpose.pedestrian_flow_statistics.title"),
        "Ville de Lyon",
        "mobilite@ville.example",
        t("basis.public_task"),
        t("sign.retention_text", duration=t.duration(90 * 86_400)),
        t("sign.rights"),
        "dpo@ville.example",
        f"{SITE_URL}/cameras/north-gate",
    ):
        assert expected in text, expected
    assert decode_svg_qr(root) == f"{SITE_URL}/cameras/north-gate"
    # Nothing that a viewer would fetch or run.
    assert "<script" not in response.text
    assert "href" not in response.text


async def test_the_qr_code_points_to_the_request_address_without_a_configured_one(site: Site) -> None:
    await site.declare("north-gate")
    camera = await site.store.camera("north-gate")
    assert camera is not None
    layout = sign_layout(camera, catalogue("fr"), "http://test/cameras/north-gate")
    assert layout.qr.matrix == qr_matrix("http://test/cameras/north-gate")
    assert layout.qr.url == "http://test/cameras/north-gate"


async def test_the_pdf_sign_is_one_a4_page_with_the_same_text_and_a_link(site: Site) -> None:
    await site.declare("north-gate")
    response = await site.client.get("/cameras/north-gate/sign.pdf?lang=fr")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    pdf = response.content
    assert pdf.startswith(b"%PDF-1.")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert b"/Count 1" in pdf
    assert b"/MediaBox [ 0 0 595.2756 841.8898 ]" in pdf
    assert b"(Ville de Lyon" in pdf
    assert f"/URI ({SITE_URL}/cameras/north-gate)".encode() in pdf
    assert (await site.client.get("/cameras/nowhere/sign.pdf")).status_code == 404


async def test_long_declared_texts_stay_on_the_page_and_off_the_qr_code(site: Site) -> None:
    long = "Direction de la tranquillité publique et de la mobilité durable " * 3
    await site.declare(
        "north-gate",
        name=("Carrefour " * 19)[:199],
        controller={
            "name": long[:200],
            "email": "mobilite@ville.example",
            "url": "https://ville.example/" + "a" * 200,
        },
        dpo={"name": long[:200], "email": "dpo@ville.example"},
        legal={"basis": "public_task", "act": ("Délibération " * 25)[:300], "dpia_reference": "D-1"},
    )
    camera = await site.store.camera("north-gate")
    assert camera is not None
    for language in ("fr", "en"):
        layout = sign_layout(camera, catalogue(language), f"{SITE_URL}/cameras/north-gate")  # type: ignore[arg-type]
        qr = layout.qr
        side = qr.module * len(qr.matrix)
        assert qr.y + side <= PAGE_H - 10
        for line in layout.lines:
            assert line.x + text_width(line.text, line.size, line.bold) <= PAGE_W - 15 + 0.01, line
            assert line.y <= PAGE_H - 10, line
            if line.x < qr.x + side and line.y > layout.lines[1].y:
                assert line.y < qr.y, line  # the text column ends above the code
        joined = " ".join(line.text for line in layout.lines)
        assert "mobilite@ville.example" in joined
        assert "dpo@ville.example" in joined
