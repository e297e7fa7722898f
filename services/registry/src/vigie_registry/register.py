"""The records of processing activities (GDPR art. 30) and a DPIA starting document, from the registry.

Pure: cameras in, documents out. One register entry per camera (a camera is one processing with one
purpose, docs/privacy.md rule 1), in JSON (:func:`processing_register`), CSV (:func:`register_csv`), and a
Markdown DPIA starting document per camera (:func:`dpia_document`) for the DPO to complete.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from vigie_registry.camera import StoredCamera
from vigie_registry.purposes import OUTPUTS, PURPOSES, SECURITY_EVENT_KINDS
from vigie_registry.rules import effective_classes, effective_outputs

__all__ = ["REGISTER_FORMAT", "dpia_document", "processing_register", "register_csv", "register_entry"]

REGISTER_FORMAT = "vigie.processing-register/1"

_BASES = {
    "public_task": "GDPR art. 6(1)(e): a task carried out in the public interest or in the exercise of "
    "official authority",
    "legitimate_interest": "GDPR art. 6(1)(f): legitimate interests",
    "legal_obligation": "GDPR art. 6(1)(c): a legal obligation",
}

# What Vigie does on every camera, whatever its declaration (docs/architecture.md, docs/privacy.md).
BUILT_IN_MEASURES: tuple[str, ...] = (
    "Frames are processed in memory at the inference boundary and never written to disk (rule 6).",
    "Privacy masks are blanked at ingest before any analysis (rule 9).",
    "Track identifiers are random, never reused, forgotten when the track ends (rules 13 and 14).",
    "Only anonymous aggregates leave the anonymiser: no identifier, box, coordinate or time finer than the "
    "reporting window (rule 13).",
    "Published statistics undergo small-count and secondary suppression (rule 12).",
    "Each service connects to NATS as its own user whose permissions allow only its subjects; Kubernetes "
    "NetworkPolicies deny by default.",
    "Every API needs an OAuth2 token with scopes; every change, read and export is written to an append-only "
    "Merkle journal with signed tree heads (rules 20 to 22).",
    "Source URLs (which may hold credentials) are never returned by the API nor logged, and are encrypted at "
    "rest when a key is configured.",
    "A public objection button pauses the analysis of the camera at once, without identifying anyone "
    "(rule 16).",
)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def register_entry(camera: StoredCamera, *, objections_last_year: int = 0) -> dict[str, Any]:
    """One processing activity: what art. 30(1) asks, plus Vigie's legal and technical particulars."""
    d = camera.declaration
    purpose = PURPOSES[d.purpose]
    outputs = effective_outputs(d, purpose)
    classes = effective_classes(d, purpose)
    subjects = ["people passing in the public space seen by the camera"]
    if any(c != "person" for c in classes):
        subjects.append("drivers and riders of the vehicles seen by the camera")
    entry: dict[str, Any] = {
        "camera_id": camera.id,
        "name": d.name,
        "description": d.description,
        "status": camera.status,
        "location": d.location.model_dump(mode="json"),
        "controller": d.controller.model_dump(mode="json"),
        "dpo": d.dpo.model_dump(mode="json"),
        "purpose": {"name": purpose.name, "title": purpose.title, "description": purpose.description},
        "legal_basis": {
            "basis": d.legal.basis,
            "text": _BASES[d.legal.basis],
            "act": d.legal.act,
            "rights_restriction_legal_text": d.legal.rights_restriction_legal_text,
        },
        "dpia_reference": d.legal.dpia_reference,
        "categories_of_data_subjects": subjects,
        "categories_of_personal_data": [
            "images of the public space, processed in memory only and never stored",
            f"pseudonymous tracks (boxes, classes, random ids) of {', '.join(classes)}, kept at most "
            f"{d.retention.track_max_s} s",
        ],
        "outputs": [{"name": o, "description": OUTPUTS[o]} for o in outputs],
        "object_classes": list(classes),
        "recipients": list(d.recipients),
        "transfers_outside_the_eu": "none",
        "retention": {
            "images": "not stored: processed in memory, deleted within seconds",
            "tracks_seconds": d.retention.track_max_s,
            "statistics_days": d.retention.statistics_days,
            "audit_journal": "per the audit service (1 year by default, docs/privacy.md rule 21)",
        },
        "security_measures": [*BUILT_IN_MEASURES, *d.security_measures],
        "minimisation": {
            "sample_fps": d.sample_fps,
            "reporting_window_s": d.reporting_window_s,
            "privacy_masks": len(d.masks),
            "counting_lines": len(d.lines),
            "zones": len(d.zones),
        },
        "right_to_object": (
            {
                "mechanism": "objection button on the camera's public page: pauses its analysis",
                "restricted_by": "",
            }
            if d.objection.enabled
            else {"mechanism": "none", "restricted_by": d.legal.rights_restriction_legal_text}
        ),
        "objections_last_365_days": objections_last_year,
        "security_events": None,
        "created_at": _iso(camera.created_at),
        "updated_at": _iso(camera.updated_at),
    }
    if d.security_events is not None and purpose.needs_authorisation:
        events = d.security_events
        entry["security_events"] = {
            "detections": list(events.detections),
            "legal_text": events.legal_text,
            "authorisation_reference": events.authorisation_reference,
            "authorised_from": events.authorised_from.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "authorised_until": events.authorised_until.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
    return entry


def processing_register(
    cameras: Iterable[StoredCamera], *, generated_at: float, objections: Mapping[str, int] | None = None
) -> dict[str, Any]:
    counts = objections or {}
    return {
        "format": REGISTER_FORMAT,
        "generated_at": _iso(generated_at),
        "entries": [register_entry(c, objections_last_year=counts.get(c.id, 0)) for c in cameras],
    }


REGISTER_COLUMNS: tuple[str, ...] = (
    "camera_id",
    "name",
    "status",
    "address",
    "latitude",
    "longitude",
    "controller",
    "controller_contact",
    "dpo",
    "dpo_contact",
    "purpose",
    "legal_basis",
    "legal_act",
    "rights_restriction_legal_text",
    "dpia_reference",
    "categories_of_data_subjects",
    "categories_of_personal_data",
    "outputs",
    "recipients",
    "transfers_outside_the_eu",
    "retention_images",
    "retention_tracks_seconds",
    "retention_statistics_days",
    "security_measures",
    "right_to_object",
    "objections_last_365_days",
    "security_events_legal_text",
    "security_events_authorisation",
    "security_events_window",
)


def _csv_safe(value: object) -> object:
    # Spreadsheets run cells that start with these as formulas.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def _contact(contact: Mapping[str, Any]) -> str:
    return " ".join(str(contact[k]) for k in ("email", "url") if contact.get(k))


def register_csv(register: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REGISTER_COLUMNS)
    for e in register["entries"]:
        events = e["security_events"] or {}
        row: Sequence[object] = (
            e["camera_id"],
            e["name"],
            e["status"],
            e["location"]["address"],
            e["location"]["latitude"],
            e["location"]["longitude"],
            e["controller"]["name"],
            _contact(e["controller"]),
            e["dpo"]["name"],
            _contact(e["dpo"]),
            e["purpose"]["name"],
            e["legal_basis"]["text"],
            e["legal_basis"]["act"],
            e["legal_basis"]["rights_restriction_legal_text"],
            e["dpia_reference"],
            "; ".join(e["categories_of_data_subjects"]),
            "; ".join(e["categories_of_personal_data"]),
            "; ".join(o["name"] for o in e["outputs"]),
            "; ".join(e["recipients"]),
            e["transfers_outside_the_eu"],
            e["retention"]["images"],
            e["retention"]["tracks_seconds"],
            e["retention"]["statistics_days"],
            " ".join(e["security_measures"]),
            e["right_to_object"]["mechanism"],
            e["objections_last_365_days"],
            events.get("legal_text", ""),
            events.get("authorisation_reference", ""),
            f"{events['authorised_from']}/{events['authorised_until']}" if events else "",
        )
        writer.writerow([_csv_safe(v) for v in row])
    return out.getvalue()


def _md(value: object) -> str:
    """Text from a declaration, safe in a Markdown table cell or paragraph."""
    text = " ".join(str(value).split())
    for special in ("\\", "|", "*", "_", "`", "[", "]", "<", ">", "#"):
        text = text.replace(special, "\\" + special)
    return text or "*(not recorded)*"


def dpia_document(entry: Mapping[str, Any], *, generated_at: float) -> str:
    """A DPIA starting document (Markdown) for one camera, following the CNIL's PIA method's outline."""
    e = entry
    legal = e["legal_basis"]
    retention = e["retention"]
    minimisation = e["minimisation"]
    events = e["security_events"]
    outputs = "; ".join(f"{o['name']}: {o['description']}" for o in e["outputs"])
    lines = [
        f"# Data protection impact assessment — {_md(e['name'])} (`{e['camera_id']}`)",
        "",
        f"> Starting document generated by the Vigie registry on {_iso(generated_at)} from the processing "
        "register. It is a draft for the data protection officer to complete, assess and validate; it is "
        "not an assessment by itself.",
        "",
        "## 1. Context",
        "",
        "| | |",
        "|---|---|",
        f"| Processing | {_md(e['purpose']['title'])} at {_md(e['location']['address'])} |",
        f"| Controller | {_md(e['controller']['name'])} ({_md(_contact(e['controller']))}) |",
        f"| Data protection officer | {_md(e['dpo']['name'])} ({_md(_contact(e['dpo']))}) |",
        f"| Purpose | {_md(e['purpose']['description'])} |",
        f"| Legal basis | {_md(legal['text'])} |",
        f"| Act deciding the processing | {_md(legal['act'])} |",
        f"| DPIA reference | {_md(e['dpia_reference'])} |",
        f"| Status in the registry | {_md(e['status'])} |",
        "",
        "Why a DPIA: systematic monitoring of a publicly accessible area on a large scale "
        "(GDPR art. 35(3)(c)); the camera cannot be activated in Vigie without a DPIA reference "
        "(docs/privacy.md rule 3).",
        "",
        "## 2. Data, processes and supporting assets",
        "",
        f"- Data subjects: {_md('; '.join(e['categories_of_data_subjects']))}.",
        f"- Data: {_md('; '.join(e['categories_of_personal_data']))}.",
        f"- Outputs (anonymous): {_md(outputs)}.",
        f"- Recipients: {_md('; '.join(e['recipients']))}. Transfers outside the EU: "
        f"{_md(e['transfers_outside_the_eu'])}.",
        "- Life cycle: the camera's stream is decoded in memory, sampled at "
        f"{minimisation['sample_fps']:g} frames per second, its {minimisation['privacy_masks']} privacy "
        "mask(s) blanked; people and vehicles are detected and tracked with random ids; the tracks become "
        f"anonymous counts per {minimisation['reporting_window_s']} s window over "
        f"{minimisation['counting_lines']} counting line(s) and {minimisation['zones']} zone(s); published "
        "figures undergo small-count suppression.",
        "",
        "## 3. Necessity and proportionality",
        "",
        "- Purpose: explicit, from Vigie's closed list; the outputs are those the purpose allows and no "
        "other (docs/privacy.md rules 1 and 7).",
        f"- Legal basis: {_md(legal['text'])}.",
        f"- Minimisation: classes counted: {_md(', '.join(e['object_classes']))}; no identification, "
        "characterisation, re-identification or sound (rules 24 to 26, refused by the registry).",
        f"- Retention: images: {_md(retention['images'])}; tracks: {retention['tracks_seconds']} s at most; "
        f"statistics: {retention['statistics_days']} days; audit journal: {_md(retention['audit_journal'])}.",
        "- Information: a sign at the camera and a public page with the full information (rule 18).",
        f"- Right to object: {_md(e['right_to_object']['mechanism'])}"
        + (
            f"; restricted by {_md(e['right_to_object']['restricted_by'])}."
            if e["right_to_object"]["restricted_by"]
            else "."
        ),
    ]
    if events:
        lines += [
            "",
            "### Security events (docs/privacy.md rule 5)",
            "",
            f"- Legal text: {_md(events['legal_text'])}.",
            f"- Authorising decision: {_md(events['authorisation_reference'])}, from "
            f"{events['authorised_from']} to {events['authorised_until']}; the camera switches off when it "
            "ends.",
            "- Detections: "
            + _md("; ".join(f"{k}: {SECURITY_EVENT_KINDS.get(k, k)}" for k in events["detections"]))
            + ".",
            "- Every alert is confirmed or dismissed by an authorised operator and logged (rule 23).",
        ]
    lines += [
        "",
        "## 4. Risks and measures",
        "",
        "Measures in place:",
        "",
        *(f"- {_md(m)}" for m in e["security_measures"]),
        "",
        "| Risk | Main threats | Severity | Likelihood |",
        "|---|---|---|---|",
        "| Illegitimate access to data | compromise of the inference boundary; misuse of the statistics | "
        "*to assess* | *to assess* |",
        "| Unwanted modification of data | falsified counts; changed configuration | *to assess* "
        "| *to assess* |",
        "| Disappearance of data | loss of statistics or of the audit journal | *to assess* | *to assess* |",
        "",
        "## 5. To complete by the DPO",
        "",
        "- [ ] Views of the data subjects or their representatives (GDPR art. 35(9)).",
        "- [ ] Assessment of each risk's severity and likelihood, and of residual risks.",
        "- [ ] Processors and their contracts (GDPR art. 28).",
        "- [ ] The DPO's opinion and the controller's decision, with the date; record the DPIA reference "
        "in the registry.",
        "",
    ]
    return "\n".join(lines)
