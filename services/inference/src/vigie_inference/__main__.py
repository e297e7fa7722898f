"""``python -m vigie_inference [--config FILE]``: run the inference service."""

from vigie_core.lifecycle import service_main
from vigie_inference.service import serve
from vigie_inference.settings import InferenceSettings

if __name__ == "__main__":
    service_main("inference", InferenceSettings, serve)
