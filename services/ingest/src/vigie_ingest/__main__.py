"""``python -m vigie_ingest [--config FILE]``: run the ingest service."""

import argparse
from pathlib import Path

from vigie_core.lifecycle import run_service
from vigie_ingest.service import serve
from vigie_ingest.settings import IngestSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="vigie-ingest", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file (the environment overrides it)")
    args = parser.parse_args()
    run_service("ingest", IngestSettings.load(args.config), serve)


if __name__ == "__main__":
    main()
