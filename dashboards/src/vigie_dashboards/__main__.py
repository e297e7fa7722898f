"""``python -m vigie_dashboards --out DIR [--check]``: write (or check) the dashboards' JSON files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import render_all


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vigie_dashboards", description=__doc__)
    parser.add_argument(
        "--out", type=Path, required=True, help="the JSON files' folder: charts/vigie/dashboards"
    )
    parser.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    args = parser.parse_args(argv)
    rendered = render_all()
    stale = sorted(
        {name for name, text in rendered.items() if _read(args.out / name) != text}
        | {path.name for path in args.out.glob("*.json") if path.name not in rendered}
    )
    if args.check:
        for name in stale:
            print(
                f"{args.out / name} differs from the dashboards' code: run 'make dashboards'", file=sys.stderr
            )
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.out.glob("*.json"):
        if path.name not in rendered:
            path.unlink()
    for name, text in rendered.items():
        (args.out / name).write_text(text)
        print(args.out / name)
    return 0


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


if __name__ == "__main__":
    sys.exit(main())
