"""Darknet (cfg + weights) to ONNX, with numpy and ``onnx.helper`` only."""

from vigie_models.darknet.cfg import DarknetCfgError, DarknetNetwork, parse_cfg
from vigie_models.darknet.graph import BATCH_NORM_EPSILON, OPSET, DetectorIO, darknet_to_onnx, network_to_onnx
from vigie_models.darknet.weights import DarknetWeights, DarknetWeightsError

__all__ = [
    "BATCH_NORM_EPSILON",
    "OPSET",
    "DarknetCfgError",
    "DarknetNetwork",
    "DarknetWeights",
    "DarknetWeightsError",
    "DetectorIO",
    "darknet_to_onnx",
    "network_to_onnx",
    "parse_cfg",
]
