"""The printable sign of a camera (docs/privacy.md rule 18, first layer of EDPB guidelines 3/2019).

It shows the controller, purpose, legal basis, retention, rights, DPO contact, and a QR code to the
camera's public page.

One layout (A4 portrait, millimetres, text wrapped with Helvetica's metrics) drawn twice: as SVG (sized
in mm, so it prints at true size) and as PDF (ReportLab's canvas, standard fonts: nothing to install).
The QR code is segno's matrix drawn as one path of module runs: exact, and readable back by tests.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import segno
from reportlab.pdfbase.pdfmetrics import stringWidth  # type: ignore[import-untyped]
from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped]

from vigie_registry.camera import StoredCamera
from vigie_registry.declaration import Contact
from vigie_registry.public.i18n import Catalogue

__all__ = ["SignLayout", "qr_matrix", "sign_layout", "sign_pdf", "sign_svg"]

PAGE_W = 210.0
PAGE_H = 297.0
_MARGIN = 15.0
_TEXT_W = PAGE_W - 2 * _MARGIN
_BAND_H = 34.0
_QR_SIZE = 52.0
_QR_TOP = PAGE_H - 24.0 - _QR_SIZE
_INK = "#111111"
_BAND = "#0b3d91"
_FONT = "Helvetica"
_BOLD = "Helvetica-Bold"
_SVG_FONTS = "Helvetica, Arial, 'Liberation Sans', sans-serif"
mm = 72 / 25.4  # PDF points per millimetre


@dataclass(frozen=True, slots=True)
class TextLine:
    x: float
    # The baseline, from the top of the page.
    y: float
    text: str
    size: float
    bold: bool = False
    fill: str = _INK


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    width: float
    height: float
    fill: str


@dataclass(frozen=True, slots=True)
class QrCode:
    x: float
    y: float
    module: float
    matrix: tuple[tuple[bool, ...], ...]
    url: str


@dataclass(frozen=True, slots=True)
class SignLayout:
    language: str
    title: str
    description: str
    boxes: tuple[Box, ...]
    lines: tuple[TextLine, ...]
    qr: QrCode


def qr_matrix(url: str) -> tuple[tuple[bool, ...], ...]:
    """The QR code of ``url`` (error correction M: a sign gets dirty), without its quiet zone."""
    code = segno.make(url, error="m", micro=False)
    return tuple(tuple(bool(v) for v in row) for row in code.matrix)


def _width(text: str, size: float, bold: bool = False) -> float:
    return float(stringWidth(text, _BOLD if bold else _FONT, size))


def _wrap(text: str, size: float, width: float, bold: bool = False) -> list[str]:
    """Lines of ``text`` no wider than ``width``; a word too long for a line is cut."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if _width(candidate, size, bold) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = word
            while _width(current, size, bold) > width:
                cut = len(current)
                while cut > 1 and _width(current[:cut], size, bold) > width:
                    cut -= 1
                lines.append(current[:cut])
                current = current[cut:]
        lines.append(current)
    return [line for line in lines if line] or [""]


def _contact(contact: Contact) -> str:
    reach = " · ".join(v for v in (contact.email, contact.url) if v)
    return f"{contact.name} — {reach}"


def _blocks(camera: StoredCamera, t: Catalogue) -> list[tuple[str, str]]:
    d = camera.declaration
    basis = t(f"basis.{d.legal.basis}")
    if d.legal.act:
        basis = f"{basis} — {d.legal.act}"
    return [
        (t("sign.purpose"), f"{t(f'purpose.{d.purpose}.title')}. {t(f'purpose.{d.purpose}.description')}"),
        (t("sign.controller"), _contact(d.controller)),
        (t("sign.basis"), basis),
        (
            t("sign.retention"),
            t("sign.retention_text", duration=t.duration(d.retention.statistics_days * 86_400)),
        ),
        (t("sign.rights"), t("sign.rights_text")),
        (t("sign.dpo"), _contact(d.dpo)),
    ]


def sign_layout(camera: StoredCamera, t: Catalogue, page_url: str) -> SignLayout:
    """Where everything goes on the sign of ``camera`` whose public page is ``page_url``."""
    d = camera.declaration
    blocks = _blocks(camera, t)
    boxes = [Box(0, 0, PAGE_W, _BAND_H, _BAND)]
    for body in (4.6, 4.2, 3.8, 3.4, 3.0, 2.7):
        lines = [
            TextLine(_MARGIN, 15.0, t("sign.heading"), 10.0, bold=True, fill="#ffffff"),
            TextLine(_MARGIN, 26.0, t("sign.no_identification"), 4.6, fill="#ffffff"),
        ]
        y = _BAND_H + 11.0
        for text in _wrap(d.name, 7.0, _TEXT_W, bold=True):
            lines.append(TextLine(_MARGIN, y, text, 7.0, bold=True))
            y += 8.0
        for text in _wrap(f"{d.location.address} · {t('sign.camera', id=camera.id)}", 4.2, _TEXT_W):
            lines.append(TextLine(_MARGIN, y, text, 4.2))
            y += 5.2
        y += 3.0
        for label, text in blocks:
            lines.append(TextLine(_MARGIN, y, label, body, bold=True))
            y += body * 1.3
            for wrapped in _wrap(text, body, _TEXT_W):
                lines.append(TextLine(_MARGIN, y, wrapped, body))
                y += body * 1.3
            y += body * 0.6
        if y <= _QR_TOP - 4.0:
            break
    matrix = qr_matrix(page_url)
    # Right under the text, or as low as the page allows.
    qr_top = min(_QR_TOP, y + 4.0)
    qr = QrCode(_MARGIN, qr_top, _QR_SIZE / len(matrix), matrix, page_url)
    text_x = _MARGIN + _QR_SIZE + 8.0
    text_w = PAGE_W - _MARGIN - text_x
    y = qr_top + 8.0
    for wrapped in _wrap(t("sign.more"), 4.6, text_w, bold=True):
        lines.append(TextLine(text_x, y, wrapped, 4.6, bold=True))
        y += 6.0
    y += 2.0
    for wrapped in _wrap(page_url, 4.6, text_w):
        lines.append(TextLine(text_x, y, wrapped, 4.6, fill=_BAND))
        y += 6.0
    title = f"{t('sign.heading')} — {d.name}"
    description = " ".join(f"{label}: {text}" for label, text in blocks)
    return SignLayout(
        t.language,
        title,
        description,
        tuple(boxes),
        tuple(lines),
        qr,
    )


def _runs(matrix: Sequence[Sequence[bool]]) -> list[tuple[int, int, int]]:
    """(row, first column, length) of each horizontal run of dark modules."""
    runs = []
    for row, modules in enumerate(matrix):
        column = 0
        while column < len(modules):
            if modules[column]:
                start = column
                while column < len(modules) and modules[column]:
                    column += 1
                runs.append((row, start, column - start))
            else:
                column += 1
    return runs


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def sign_svg(layout: SignLayout) -> str:
    """The sign as a standalone SVG document, A4 at true size."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{_number(PAGE_W)}mm" '
        f'height="{_number(PAGE_H)}mm" viewBox="0 0 {_number(PAGE_W)} {_number(PAGE_H)}" '
        f'role="img" aria-labelledby="sign-title sign-desc" xml:lang="{layout.language}">',
        f'<title id="sign-title">{escape(layout.title)}</title>',
        f'<desc id="sign-desc">{escape(layout.description)}</desc>',
        f'<rect x="0" y="0" width="{_number(PAGE_W)}" height="{_number(PAGE_H)}" fill="#ffffff"/>',
    ]
    for box in layout.boxes:
        parts.append(
            f'<rect x="{_number(box.x)}" y="{_number(box.y)}" width="{_number(box.width)}" '
            f'height="{_number(box.height)}" fill="{box.fill}"/>'
        )
    parts.append(f'<g font-family="{_SVG_FONTS}">')
    for line in layout.lines:
        weight = ' font-weight="bold"' if line.bold else ""
        parts.append(
            f'<text x="{_number(line.x)}" y="{_number(line.y)}" font-size="{_number(line.size)}"'
            f'{weight} fill="{line.fill}">{escape(line.text)}</text>'
        )
    parts.append("</g>")
    qr = layout.qr
    path = "".join(
        f"M{_number(qr.x + c * qr.module)} {_number(qr.y + r * qr.module)}h{_number(n * qr.module)}"
        f"v{_number(qr.module)}h{_number(-n * qr.module)}z"
        for r, c, n in _runs(qr.matrix)
    )
    parts.append(
        f'<path class="qr" data-modules="{len(qr.matrix)}" data-module="{_number(qr.module)}" '
        f'data-x="{_number(qr.x)}" data-y="{_number(qr.y)}" fill="#000000" '
        f'shape-rendering="crispEdges" d="{path}"/>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def sign_pdf(layout: SignLayout) -> bytes:
    """The sign as a one-page A4 PDF."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=(PAGE_W * mm, PAGE_H * mm), pageCompression=0, invariant=1)
    canvas.setTitle(layout.title)
    canvas.setSubject(layout.description)
    canvas.setCreator("Vigie registry")
    page_h = PAGE_H * mm

    def top(y_mm: float) -> float:
        return page_h - y_mm * mm

    for box in layout.boxes:
        canvas.setFillColor(box.fill)
        canvas.rect(box.x * mm, top(box.y + box.height), box.width * mm, box.height * mm, stroke=0, fill=1)
    for line in layout.lines:
        canvas.setFillColor(line.fill)
        canvas.setFont(_BOLD if line.bold else _FONT, line.size * mm)
        canvas.drawString(line.x * mm, top(line.y), line.text)
    qr = layout.qr
    canvas.setFillColor("#000000")
    for r, c, n in _runs(qr.matrix):
        canvas.rect(
            (qr.x + c * qr.module) * mm,
            top(qr.y + (r + 1) * qr.module),
            n * qr.module * mm,
            qr.module * mm,
            stroke=0,
            fill=1,
        )
    size = qr.module * len(qr.matrix)
    canvas.linkURL(qr.url, (qr.x * mm, top(qr.y + size), (qr.x + size) * mm, top(qr.y)))
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
