"""``python -m vigie_anonymiser [--config FILE]``: run the anonymiser service."""

import argparse
from pathlib import Path

from vigie_anonymiser.service import serve
from vigie_anonymiser.settings import AnonymiserSettings
from vigie_core.lifecycle import run_service


def main() -> None:
    parser = argparse.ArgumentParser(prog="vigie-anonymiser", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file (the environment overrides it)")
    args = parser.parse_args()
    run_service("anonymiser", AnonymiserSettings.load(args.config), serve)


if __name__ == "__main__":
    main()
