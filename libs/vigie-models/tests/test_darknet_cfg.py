from __future__ import annotations

import struct

import numpy as np
import pytest

from vigie_models.darknet import DarknetCfgError, DarknetWeights, DarknetWeightsError, parse_cfg
from vigie_models.darknet.cfg import Convolutional, MaxPool, Route, Upsample, Yolo, parse_sections


def test_sections_ignore_comments_blank_lines_and_spaces() -> None:
    sections = parse_sections(
        "# header\n[net]\nwidth = 608 ; trailing\n\n[Convolutional]\n#filters=1\nfilters=4\n"
    )
    assert [(s.kind, s.options, s.line) for s in sections] == [
        ("net", {"width": "608"}, 2),
        ("convolutional", {"filters": "4"}, 5),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("width=1\n[net]", "line 1: option 'width' before the first"),
        ("[net]\nwidth\n", "line 2: expected key=value"),
        ("[net\n", "line 1: malformed section header"),
        ("[convolutional]\n", "must start with a \\[net\\] section"),
        ("[net]\n[shortcut]\nfrom=-3\n", "\\[shortcut\\] at line 2: layer type not supported"),
        ("[net]\n[convolutional]\nactivation=mish\n", "activation 'mish' is not supported"),
        ("[net]\n[convolutional]\nfilters=x\n", "option filters='x' is not a valid number"),
        ("[net]\n[route]\nlayers=-1\ngroups=2\ngroup_id=2\n", "group_id=2 with groups=2"),
        ("[net]\n[route]\n", "missing option 'layers'"),
        ("[net]\n[yolo]\nanchors=1,2,3\n", "anchors must be width,height pairs"),
        ("[net]\n[yolo]\nanchors=1,2,3,4\nmask=2\n", "mask \\(2,\\) outside the 2 anchors"),
        ("[net]\n[yolo]\nanchors=1,2\nnew_coords=1\n", "new_coords=1"),
        ("[net]\n[maxpool]\nmaxpool_depth=1\n", "maxpool_depth is not supported"),
    ],
)
def test_errors_name_the_line_and_the_rule(text: str, message: str) -> None:
    with pytest.raises(DarknetCfgError, match=message):
        parse_cfg(text)


def test_layers_follow_darknet_defaults() -> None:
    network = parse_cfg(
        "[net]\nwidth=320\nheight=256\n"
        "[convolutional]\nfilters=16\nsize=3\npad=1\npadding=7\n"  # pad=1 wins over padding
        "[convolutional]\nfilters=8\nsize=3\npadding=2\nbatch_normalize=1\nactivation=leaky\n"
        "[maxpool]\nsize=2\nstride=1\n"
        "[maxpool]\nstride=2\n"
        "[route]\nlayers = -1, 0\n"
        "[upsample]\n"
        "[yolo]\nmask = 1,2\nanchors = 10,14,  23,27,  37,58\nclasses=3\nscale_x_y = 1.05\n"
    )
    assert (network.width, network.height, network.channels) == (320, 256, 3)
    assert network.layers == (
        Convolutional(
            filters=16, size=3, stride=1, padding=1, groups=1, batch_normalize=False, activation="logistic"
        ),
        Convolutional(
            filters=8, size=3, stride=1, padding=2, groups=1, batch_normalize=True, activation="leaky"
        ),
        MaxPool(size=2, stride=1, padding=1),
        MaxPool(size=2, stride=2, padding=1),
        Route(layers=(-1, 0), groups=1, group_id=0),
        Upsample(stride=2, scale=1.0),
        Yolo(mask=(1, 2), anchors=((10, 14), (23, 27), (37, 58)), classes=3, scale_x_y=1.05),
    )
    yolo = network.layers[-1]
    assert isinstance(yolo, Yolo)
    assert yolo.masked_anchors == ((23, 27), (37, 58))


def _weights_file(major: int, minor: int, values: list[float]) -> bytes:
    seen = struct.pack("<q", 12345) if major * 10 + minor >= 2 else struct.pack("<i", 12345)
    return struct.pack("<3i", major, minor, 0) + seen + np.array(values, "<f4").tobytes()


@pytest.mark.parametrize(("major", "minor"), [(0, 1), (0, 2), (1, 0)])
def test_weights_header_size_depends_on_the_version(major: int, minor: int) -> None:
    weights = DarknetWeights(_weights_file(major, minor, [1.5, -2.0, 3.25]))
    np.testing.assert_array_equal(weights.take(2, "biases"), [1.5, -2.0])
    np.testing.assert_array_equal(weights.take(1, "kernel"), [3.25])
    weights.ensure_consumed()


def test_weights_errors_say_what_is_missing_or_left() -> None:
    weights = DarknetWeights(_weights_file(0, 2, [1.0, 2.0]))
    with pytest.raises(DarknetWeightsError, match="layer 3 kernel needs 3 values, 2 left"):
        weights.take(3, "layer 3 kernel")
    with pytest.raises(DarknetWeightsError, match="8 bytes of weights left"):
        weights.ensure_consumed()
    with pytest.raises(DarknetWeightsError, match="too short"):
        DarknetWeights(b"\0" * 8)
    with pytest.raises(DarknetWeightsError, match=r"unsupported weights format version 1001\.0"):
        DarknetWeights(_weights_file(1001, 0, []))
