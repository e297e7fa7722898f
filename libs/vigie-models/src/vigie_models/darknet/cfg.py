"""Darknet ``.cfg`` files: an INI-like list of ``[section]`` blocks, parsed into typed layers.

Only what inference needs is kept; training options (learning rate, jitter, losses...) are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

Activation = Literal["leaky", "linear", "logistic", "relu"]
_T = TypeVar("_T")
_ACTIVATIONS: tuple[Activation, ...] = ("leaky", "linear", "logistic", "relu")


class DarknetCfgError(ValueError):
    """A cfg file that cannot be parsed or uses something the converter does not support."""


@dataclass(frozen=True)
class Section:
    """One ``[kind]`` block with its ``key=value`` options, as written."""

    kind: str
    options: dict[str, str]
    line: int  # where the block starts, for error messages

    def _raw(self, key: str, default: str | None) -> str:
        if key in self.options:
            return self.options[key]
        if default is None:
            raise DarknetCfgError(f"[{self.kind}] at line {self.line}: missing option {key!r}")
        return default

    def _convert(self, key: str, raw: str, convert: Callable[[str], _T]) -> _T:
        try:
            return convert(raw.strip())
        except ValueError:
            raise DarknetCfgError(
                f"[{self.kind}] at line {self.line}: option {key}={raw!r} is not a valid number"
            ) from None

    def get_int(self, key: str, default: int | None = None) -> int:
        return self._convert(key, self._raw(key, None if default is None else str(default)), int)

    def get_float(self, key: str, default: float | None = None) -> float:
        return self._convert(key, self._raw(key, None if default is None else str(default)), float)

    def get_str(self, key: str, default: str | None = None) -> str:
        return self._raw(key, default).strip()

    def get_ints(self, key: str, default: tuple[int, ...] | None = None) -> tuple[int, ...]:
        if key not in self.options and default is not None:
            return default
        return tuple(
            self._convert(key, part, int) for part in self._raw(key, None).split(",") if part.strip()
        )

    def get_floats(self, key: str) -> tuple[float, ...]:
        return tuple(
            self._convert(key, part, float) for part in self._raw(key, None).split(",") if part.strip()
        )


def parse_sections(text: str) -> list[Section]:
    """Split cfg text into sections; ``#`` and ``;`` start comments."""
    sections: list[Section] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise DarknetCfgError(f"line {number}: malformed section header {raw_line.strip()!r}")
            sections.append(Section(kind=line[1:-1].strip().lower(), options={}, line=number))
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise DarknetCfgError(f"line {number}: expected key=value, got {raw_line.strip()!r}")
        if not sections:
            raise DarknetCfgError(f"line {number}: option {key.strip()!r} before the first [section]")
        sections[-1].options[key.strip()] = value.strip()
    return sections


@dataclass(frozen=True)
class Convolutional:
    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: Activation


@dataclass(frozen=True)
class MaxPool:
    size: int
    stride: int
    # Darknet's total padding; it pads padding // 2 before and the rest after, so a stride-1 size-2
    # pool keeps the spatial size by padding one row and column at the end.
    padding: int


@dataclass(frozen=True)
class Route:
    layers: tuple[int, ...]  # as written: negative values are relative to this layer
    groups: int
    group_id: int


@dataclass(frozen=True)
class Upsample:
    stride: int
    scale: float


@dataclass(frozen=True)
class Yolo:
    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]  # all the cfg's anchors, in input pixels (width, height)
    classes: int
    scale_x_y: float

    @property
    def masked_anchors(self) -> tuple[tuple[float, float], ...]:
        return tuple(self.anchors[index] for index in self.mask)


Layer = Convolutional | MaxPool | Route | Upsample | Yolo


@dataclass(frozen=True)
class DarknetNetwork:
    width: int
    height: int
    channels: int
    layers: tuple[Layer, ...]


def _convolutional(section: Section) -> Convolutional:
    size = section.get_int("size", 1)
    activation = section.get_str("activation", "logistic")
    if activation not in _ACTIVATIONS:
        raise DarknetCfgError(
            f"[convolutional] at line {section.line}: activation {activation!r} is not supported "
            f"(supported: {', '.join(_ACTIVATIONS)})"
        )
    # pad=1 means "same" padding and overrides an explicit padding, as in darknet's parser.
    padding = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
    return Convolutional(
        filters=section.get_int("filters", 1),
        size=size,
        stride=section.get_int("stride", 1),
        padding=padding,
        groups=section.get_int("groups", 1),
        batch_normalize=bool(section.get_int("batch_normalize", 0)),
        activation=activation,
    )


def _maxpool(section: Section) -> MaxPool:
    if section.get_int("maxpool_depth", 0):
        raise DarknetCfgError(f"[maxpool] at line {section.line}: maxpool_depth is not supported")
    stride = section.get_int("stride", 1)
    size = section.get_int("size", stride)
    return MaxPool(size=size, stride=stride, padding=section.get_int("padding", size - 1))


def _route(section: Section) -> Route:
    groups = section.get_int("groups", 1)
    group_id = section.get_int("group_id", 0)
    if groups < 1 or not 0 <= group_id < groups:
        raise DarknetCfgError(f"[route] at line {section.line}: group_id={group_id} with groups={groups}")
    layers = section.get_ints("layers")
    if not layers:
        raise DarknetCfgError(f"[route] at line {section.line}: empty layers")
    return Route(layers=layers, groups=groups, group_id=group_id)


def _yolo(section: Section) -> Yolo:
    values = section.get_floats("anchors")
    if len(values) % 2:
        raise DarknetCfgError(f"[yolo] at line {section.line}: anchors must be width,height pairs")
    anchors = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
    mask = section.get_ints("mask", tuple(range(len(anchors))))
    if any(not 0 <= index < len(anchors) for index in mask):
        raise DarknetCfgError(
            f"[yolo] at line {section.line}: mask {mask} outside the {len(anchors)} anchors"
        )
    if section.get_int("new_coords", 0):
        raise DarknetCfgError(f"[yolo] at line {section.line}: new_coords=1 (scaled YOLOv4) is not supported")
    return Yolo(
        mask=mask,
        anchors=anchors,
        classes=section.get_int("classes", 20),
        scale_x_y=section.get_float("scale_x_y", 1.0),
    )


def _upsample(section: Section) -> Upsample:
    return Upsample(stride=section.get_int("stride", 2), scale=section.get_float("scale", 1.0))


_LAYER_PARSERS: dict[str, Callable[[Section], Layer]] = {
    "convolutional": _convolutional,
    "conv": _convolutional,
    "maxpool": _maxpool,
    "max": _maxpool,
    "route": _route,
    "upsample": _upsample,
    "yolo": _yolo,
}


def parse_cfg(text: str) -> DarknetNetwork:
    """Parse a cfg file whose first section is ``[net]`` (or ``[network]``)."""
    sections = parse_sections(text)
    if not sections or sections[0].kind not in ("net", "network"):
        raise DarknetCfgError("the cfg must start with a [net] section")
    net, *rest = sections
    layers: list[Layer] = []
    for section in rest:
        parser = _LAYER_PARSERS.get(section.kind)
        if parser is None:
            raise DarknetCfgError(
                f"[{section.kind}] at line {section.line}: layer type not supported "
                f"(supported: {', '.join(sorted(set(_LAYER_PARSERS)))})"
            )
        layers.append(parser(section))
    return DarknetNetwork(
        width=net.get_int("width", 416),
        height=net.get_int("height", 416),
        channels=net.get_int("channels", 3),
        layers=tuple(layers),
    )
