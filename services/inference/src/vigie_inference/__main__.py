"""``python -m vigie_inference [--config FILE]``: run the inference service."""

import argparse
from pathlib import Path

from vigie_core.lifecycle import run_service
from vigie_inference.service import serve
from vigie_inference.settings import InferenceSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="vigie-inference", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file (the environment overrides it)")
    args = parser.parse_args()
    run_service("inference", InferenceSettings.load(args.config), serve)


if __name__ == "__main__":
    main()
