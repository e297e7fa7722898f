"""The privacy rules a camera's declaration must follow, each refusal naming its rule in docs/privacy.md.

:func:`check_declaration` is pure: a declaration, the status asked for and the time in, the list of
:class:`RuleViolation` out (empty: accepted). The API turns them into a 422 whose items carry the field
(``loc``), a message and the rule (``rule``: e.g. ``"docs/privacy.md rule 24"``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from vigie_registry.declaration import (
    DEFAULT_REPORTING_WINDOW_S,
    DEFAULT_SAMPLE_FPS,
    DEFAULT_STATISTICS_DAYS,
    DEFAULT_TRACK_MAX_S,
    CameraDeclaration,
    CameraStatusName,
)
from vigie_registry.purposes import (
    OBJECT_CLASSES,
    OUTPUTS,
    PURPOSES,
    SECURITY_EVENT_KINDS,
    ZONE_OUTPUTS,
    PurposeDefinition,
)

__all__ = [
    "MAX_AUTHORISATION",
    "MAX_STATISTICS_DAYS",
    "MAX_TRACK_S",
    "RULES",
    "RuleViolation",
    "check_declaration",
    "check_transition",
    "effective_classes",
    "effective_outputs",
    "forbidden_processing",
]

# What each rule says, short; the full text is in docs/privacy.md.
RULES: dict[int, str] = {
    1: "one declared purpose from a closed list; the purpose decides which outputs exist",
    3: "a camera cannot be activated without a DPIA reference",
    5: "security_events: the decree's closed list, a recorded legal text and an authorisation window",
    6: "frames are processed in memory, never stored or transmitted",
    7: "outputs are limited to what the purpose needs",
    8: "most protective settings by default; anything more needs a written justification",
    11: "reporting window of 20 minutes by default; shorter only with a justification",
    13: "no trajectories and no origin-destination data",
    14: "pseudonymous data becomes anonymous within minutes, at worst within 24 hours",
    15: "the right to object applies unless a legal text restricts it",
    24: "no biometric identification, facial recognition, face templates or linking with other files",
    25: "no characterisation of people, no cross-camera re-identification, no sound",
}

MAX_TRACK_S = 24 * 3600  # rule 14: at worst within 24 hours
# Anonymous statistics: ten years at most, the aggregation's own bound (interpretation).
MAX_STATISTICS_DAYS = 3660
# Loi 2023-380 art. 10 limited each authorisation to one month, renewable (interpretation: 31 days).
MAX_AUTHORISATION = timedelta(days=31)


@dataclass(frozen=True, slots=True)
class RuleViolation:
    """A refused part of a declaration: the field at fault, the rule, and what to do."""

    field: tuple[str | int, ...]
    rule: int | None
    message: str

    @property
    def rule_name(self) -> str:
        return f"docs/privacy.md rule {self.rule}" if self.rule is not None else "registry"

    def as_error(self) -> dict[str, object]:
        """The item of a 422's ``detail`` list (FastAPI's shape, plus ``rule``)."""
        return {
            "loc": ["body", *self.field],
            "msg": f"{self.message} ({self.rule_name}: {RULES[self.rule]})" if self.rule else self.message,
            "type": "privacy_rule" if self.rule else "value_error",
            "rule": self.rule_name,
        }


# -- processing docs/privacy.md section H refuses, recognised in any list of names ---------------------

_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
# (rule, what it is, words that name it, phrases of several words that name it)
_FORBIDDEN: tuple[tuple[int, str, frozenset[str], tuple[str, ...]], ...] = (
    (
        25,
        "re-identification",
        frozenset({"reidentification", "reid", "reidentify"}),
        ("re identification", "cross camera", "multi camera tracking", "person search"),
    ),
    (
        24,
        "biometric identification",
        frozenset(
            {
                "face",
                "faces",
                "facial",
                "biometric",
                "biometrics",
                "identification",
                "identify",
                "identity",
                "identities",
                "recognition",
                "recognise",
                "recognize",
                "faceprint",
                "template",
                "templates",
                "anpr",
                "lapi",
                "alpr",
                "watchlist",
                "gait",
                "iris",
                "fingerprint",
                # French
                "faciale",
                "faciaux",
                "reconnaissance",
                "biometrique",
                "immatriculation",
            }
        ),
        ("licence plate", "license plate", "number plate", "plate reading", "personal file"),
    ),
    (
        25,
        "characterisation of people",
        frozenset(
            {
                "age",
                "ages",
                "gender",
                "sex",
                "emotion",
                "emotions",
                "mood",
                "sentiment",
                "ethnicity",
                "ethnic",
                "race",
                "skin",
                "clothing",
                "clothes",
                "demographic",
                "demographics",
                "advertising",
                "advert",
                "adverts",
                "marketing",
                "child",
                "children",
                "adult",
                "adults",
                "elderly",
                "man",
                "men",
                "woman",
                "women",
                "attribute",
                "attributes",
                # French
                "genre",
                "sexe",
                "ethnie",
                "ethnique",
                "vetement",
                "vetements",
                "enfant",
                "enfants",
                "publicite",
            }
        ),
        ("clothing colour", "clothing color", "hair colour"),
    ),
    (
        25,
        "sound capture",
        frozenset(
            {
                "audio",
                "sound",
                "sounds",
                "voice",
                "microphone",
                "speech",
                "noise",
                "acoustic",
                "voix",
                "sonore",
            }
        ),
        (),
    ),
    (
        13,
        "trajectories",
        frozenset(
            {
                "trajectory",
                "trajectories",
                "track",
                "tracks",
                "path",
                "paths",
                "od",
                "trajectoire",
                "trajectoires",
            }
        ),
        ("origin destination",),
    ),
    (
        6,
        "storage or transmission of images",
        frozenset(
            {"image", "images", "frame", "frames", "snapshot", "snapshots", "video", "recording", "raw"}
        ),
        (),
    ),
)


def _words(term: str) -> list[str]:
    # "FaceRecognition" -> "Face Recognition"; "Âge" -> "age".
    spaced = _CAMEL.sub(" ", term)
    plain = unicodedata.normalize("NFKD", spaced).encode("ascii", "ignore").decode()
    return _WORD.findall(plain.lower())


def forbidden_processing(term: str) -> tuple[int, str] | None:
    """The rule that refuses what ``term`` names (e.g. ``"face_recognition"``), or None."""
    words = _words(term)
    phrase = " ".join(words)
    for rule, what, names, phrases in _FORBIDDEN:
        if names.intersection(words) or any(f" {p} " in f" {phrase} " for p in phrases):
            return rule, what
    return None


# -- the checks -------------------------------------------------------------------------------------------


def effective_outputs(declaration: CameraDeclaration, purpose: PurposeDefinition) -> tuple[str, ...]:
    if declaration.outputs is None:
        return purpose.outputs
    return tuple(dict.fromkeys(o for o in declaration.outputs if o in purpose.outputs))


def effective_classes(declaration: CameraDeclaration, purpose: PurposeDefinition) -> tuple[str, ...]:
    if declaration.object_classes is None:
        return purpose.object_classes
    return tuple(dict.fromkeys(c for c in declaration.object_classes if c in purpose.object_classes))


def _closed_list(
    field: tuple[str | int, ...],
    terms: Sequence[str],
    known: Iterable[str],
    allowed: Sequence[str],
    *,
    what: str,
    rule: int,
    owner: str,
) -> list[RuleViolation]:
    """Each term must be a known one the owner allows; a forbidden processing is named by its rule."""
    problems = []
    known = set(known)
    for index, term in enumerate(terms):
        where = (*field, index)
        refused = forbidden_processing(term)
        if refused is not None:
            found_rule, kind = refused
            problems.append(RuleViolation(where, found_rule, f"{term!r} is {kind}: refused"))
        elif term not in known:
            problems.append(
                RuleViolation(
                    where, rule, f"{term!r} is not a known {what}; known: {', '.join(sorted(known))}"
                )
            )
        elif term not in allowed:
            problems.append(
                RuleViolation(
                    where, rule, f"{owner} does not allow {what} {term!r}; it allows: {', '.join(allowed)}"
                )
            )
    if len(set(terms)) != len(terms):
        problems.append(RuleViolation(field, None, f"a {what} is listed twice"))
    return problems


def _justified(text: str) -> bool:
    return len(text.strip()) >= 10


def check_declaration(
    declaration: CameraDeclaration, status: CameraStatusName, now: datetime
) -> list[RuleViolation]:
    """Every rule the declaration breaks for a camera in ``status`` at ``now``; empty when it is accepted."""
    problems: list[RuleViolation] = []
    d = declaration

    # H (rules 24, 25): sound is never captured.
    if d.audio:
        problems.append(RuleViolation(("audio",), 25, "sound capture is refused"))

    # A (rule 1): one purpose from the closed list.
    purpose = PURPOSES.get(d.purpose)
    if purpose is None:
        refused = forbidden_processing(d.purpose)
        if refused is not None:
            problems.append(
                RuleViolation(("purpose",), refused[0], f"{d.purpose!r} is {refused[1]}: refused")
            )
        else:
            problems.append(
                RuleViolation(
                    ("purpose",), 1, f"{d.purpose!r} is not a declared purpose; one of: {', '.join(PURPOSES)}"
                )
            )
        return problems
    owner = f"purpose {purpose.name}"

    # Rules 1 and 7: the purpose decides the outputs and the classes.
    outputs = list(d.outputs) if d.outputs is not None else list(purpose.outputs)
    problems += _closed_list(
        ("outputs",), outputs, OUTPUTS, purpose.outputs, what="output", rule=1, owner=owner
    )
    if d.outputs is not None and not d.outputs:
        problems.append(
            RuleViolation(("outputs",), 1, "a camera produces at least one output of its purpose")
        )
    classes = list(d.object_classes) if d.object_classes is not None else list(purpose.object_classes)
    problems += _closed_list(
        ("object_classes",),
        classes,
        OBJECT_CLASSES,
        purpose.object_classes,
        what="class",
        rule=7,
        owner=owner,
    )
    if d.object_classes is not None and not d.object_classes:
        problems.append(RuleViolation(("object_classes",), 7, "a camera counts at least one class"))
    effective = set(effective_classes(d, purpose))
    members: list[tuple[str, int, list[str]]] = [
        *(("lines", i, line.classes) for i, line in enumerate(d.lines)),
        *(("zones", i, zone.classes) for i, zone in enumerate(d.zones)),
    ]
    for kind, index, member_classes in members:
        problems += _closed_list(
            (kind, index, "classes"),
            member_classes,
            OBJECT_CLASSES,
            sorted(effective),
            what="class",
            rule=7,
            owner="the camera's object_classes",
        )
    chosen = set(effective_outputs(d, purpose))
    if d.lines and "line_crossings" not in chosen:
        problems.append(
            RuleViolation(
                ("lines",), 7, f"counting lines need the output line_crossings, which {owner} lacks"
            )
        )
    if d.zones and not chosen & ZONE_OUTPUTS:
        problems.append(
            RuleViolation(("zones",), 7, f"zones need an output measured in zones, which {owner} lacks")
        )

    # Rule 5: security_events, and only it, with the decree's list, a legal text and a window.
    events = d.security_events
    if purpose.needs_authorisation:
        if events is None:
            problems.append(
                RuleViolation(
                    ("security_events",),
                    5,
                    "security_events needs its detections, legal text, authorising decision and dates",
                )
            )
        else:
            problems += _closed_list(
                ("security_events", "detections"),
                events.detections,
                SECURITY_EVENT_KINDS,
                list(SECURITY_EVENT_KINDS),
                what="detection",
                rule=5,
                owner="the decree",
            )
            if not events.legal_text.strip():
                problems.append(
                    RuleViolation(("security_events", "legal_text"), 5, "the legal text must be recorded")
                )
            if not events.authorisation_reference.strip():
                problems.append(
                    RuleViolation(
                        ("security_events", "authorisation_reference"),
                        5,
                        "the authorising decision must be recorded",
                    )
                )
            if events.authorised_until <= events.authorised_from:
                problems.append(
                    RuleViolation(
                        ("security_events", "authorised_until"),
                        5,
                        "the authorisation must end after it starts",
                    )
                )
            elif events.authorised_until - events.authorised_from > MAX_AUTHORISATION:
                problems.append(
                    RuleViolation(
                        ("security_events", "authorised_until"),
                        5,
                        f"an authorisation lasts at most {MAX_AUTHORISATION.days} days; record its renewal "
                        "as a new window",
                    )
                )
            if status == "active" and events.authorised_until <= now:
                problems.append(
                    RuleViolation(
                        ("status",),
                        5,
                        "the authorisation has ended: security_events switches off and cannot be activated",
                    )
                )
    elif events is not None:
        problems.append(
            RuleViolation(("security_events",), 5, f"detections of security events are not part of {owner}")
        )

    # Rules 8, 11 and 14: protective defaults; more needs a written justification; hard limits.
    if d.reporting_window_s < DEFAULT_REPORTING_WINDOW_S and not _justified(d.reporting_window_justification):
        problems.append(
            RuleViolation(
                ("reporting_window_justification",),
                11,
                f"a reporting window shorter than {DEFAULT_REPORTING_WINDOW_S} s needs a written "
                "justification",
            )
        )
    if d.sample_fps > DEFAULT_SAMPLE_FPS and not _justified(d.sample_fps_justification):
        problems.append(
            RuleViolation(
                ("sample_fps_justification",),
                8,
                f"analysing more than {DEFAULT_SAMPLE_FPS:g} frames per second needs a written justification",
            )
        )
    retention = d.retention
    if retention.track_max_s > MAX_TRACK_S:
        problems.append(
            RuleViolation(
                ("retention", "track_max_s"), 14, f"a track may live {MAX_TRACK_S} s (24 hours) at most"
            )
        )
    elif retention.track_max_s > DEFAULT_TRACK_MAX_S and not _justified(retention.track_justification):
        problems.append(
            RuleViolation(
                ("retention", "track_justification"),
                14,
                f"keeping a track more than {DEFAULT_TRACK_MAX_S} s needs a written justification",
            )
        )
    if retention.statistics_days > MAX_STATISTICS_DAYS:
        problems.append(
            RuleViolation(
                ("retention", "statistics_days"),
                8,
                f"statistics are kept {MAX_STATISTICS_DAYS} days at most",
            )
        )
    elif retention.statistics_days > DEFAULT_STATISTICS_DAYS and not _justified(
        retention.statistics_justification
    ):
        problems.append(
            RuleViolation(
                ("retention", "statistics_justification"),
                8,
                f"keeping statistics more than {DEFAULT_STATISTICS_DAYS} days needs a written justification",
            )
        )

    # Rules 15 and 17: objection available unless a legal text restricts it.
    if not d.objection.enabled and not d.legal.rights_restriction_legal_text.strip():
        problems.append(
            RuleViolation(
                ("objection", "enabled"),
                15,
                "the objection button can only be turned off under a legal text restricting the right to "
                "object (legal.rights_restriction_legal_text, GDPR art. 23)",
            )
        )

    # Rule 3: no activation without a DPIA reference.
    if status == "active" and not d.legal.dpia_reference.strip():
        problems.append(
            RuleViolation(
                ("legal", "dpia_reference"), 3, "record the DPIA reference before activating the camera"
            )
        )
    return problems


# draft -> active | paused | retired; active <-> paused; anything -> retired; retired is final.
_TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"draft", "active", "paused", "retired"}),
    "active": frozenset({"active", "paused", "retired"}),
    "paused": frozenset({"paused", "active", "retired"}),
    "retired": frozenset({"retired"}),
}


def check_transition(current: CameraStatusName, wanted: CameraStatusName) -> RuleViolation | None:
    if wanted in _TRANSITIONS[current]:
        return None
    if current == "retired":
        message = "a retired camera stays retired (it is kept in the register): declare a new camera"
    else:
        message = f"a camera cannot go from {current} back to {wanted}"
    return RuleViolation(("status",), None, message)
