"""Chaos: the sample film counted while processes are killed at random, against a run without faults.

    .venv/bin/python bench/chaos.py           # 20 kills, a broker restart, a 60 s PostgreSQL outage
    .venv/bin/python bench/chaos.py --kills 5 --seed 7 --database-outage-s 0
    make bench-chaos

The whole embedded platform (``vigie_embedded.platform``) counts the sample film paced as a live camera,
twice: once without faults, then with ``--kills`` SIGKILLs of processes drawn at random among every
service, tritonserver and nats-server (each started again at once, as Kubernetes restarts a container),
plus a graceful broker restart and a PostgreSQL outage (the statistics and audit databases behind a proxy
that resets every connection and refuses new ones for ``--database-outage-s``), all at random moments of
the film (``vigie_embedded.chaos``). It prints what the aggregation stored in each run (crossings by line
and direction, covered seconds, frames) and what the faulty run got wrong: a count above the clean run's
(counted twice), coverage above it, or different counts with the same coverage (a loss coverage does not
show). A fault may cost coverage, honestly shown; the exit status is 1 if anything else went wrong.

PostgreSQL: ``--postgres-url`` (default ``VIGIE_BENCH_POSTGRES_URL``, else
postgresql+asyncpg://postgres@127.0.0.1:5432/test); fresh databases are created for each run and dropped.
``--database-outage-s 0`` runs on SQLite files instead.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from vigie_embedded.chaos import KILLABLE, ChaosRun, Fault, FilmCounts, compare, random_faults, run_film
from vigie_embedded.platform import PlatformOptions, film_duration_s

REPOSITORY = Path(__file__).resolve().parents[1]


def _film(args: argparse.Namespace, faults: list[Fault], postgres_url: str | None) -> ChaosRun:
    with tempfile.TemporaryDirectory(prefix="vigie-bench-chaos-") as state:
        options = PlatformOptions(
            video=args.video, model_repository=args.model_repository / "python", state_dir=Path(state)
        )
        return run_film(options, faults, postgres_url=postgres_url, say=lambda line: print(line, flush=True))


def _row(name: str, counts: FilmCounts) -> str:
    lines = " ".join(f"{line}/{direction}:{n}" for (line, direction), n in sorted(counts.crossings.items()))
    return f"| {name} | {counts.total} | {lines} | {counts.covered_s:.1f} | {counts.frames} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, default=REPOSITORY / "var" / "videos" / "sample.mp4")
    parser.add_argument("--model-repository", type=Path, default=REPOSITORY / "var" / "model_repository")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs at random moments")
    parser.add_argument("--targets", default=",".join(KILLABLE), help="the processes that may be killed")
    parser.add_argument("--no-broker-restart", action="store_true", help="no graceful broker restart")
    parser.add_argument("--database-outage-s", type=float, default=60.0, help="0: SQLite, no outage")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "VIGIE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--seed", type=int, default=None, help="the faults' draw (default: random)")
    parser.add_argument("--json", type=Path, help="also write the results there")
    args = parser.parse_args()

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    within_s = film_duration_s(args.video) + 5.0  # the film, and the closing of its last window
    faults = random_faults(
        random.Random(seed),
        kills=args.kills,
        within_s=within_s,
        targets=tuple(args.targets.split(",")),
        broker_restart=not args.no_broker_restart,
        database_outage_s=args.database_outage_s,
    )
    postgres_url = args.postgres_url if args.database_outage_s else None
    print(f"seed {seed}; faults:\n" + "\n".join(f"  {fault}" for fault in faults), flush=True)
    print("\nwithout faults:", flush=True)
    clean = _film(args, [], postgres_url)
    print("\nwith faults:", flush=True)
    faulty = _film(args, faults, postgres_url)
    problems = compare(clean.counts, faulty.counts)

    print("\n| run | crossings | by line/direction | covered s | frames |")
    print("|---|---|---|---|---|")
    print(_row("without faults", clean.counts))
    print(_row(f"{len(faults)} faults (seed {seed})", faulty.counts))
    lost = clean.counts.covered_s - faulty.counts.covered_s
    print(
        f"\ncoverage lost to the faults: {lost:.1f} s; "
        f"runs took {clean.duration_s:.0f} s and {faulty.duration_s:.0f} s"
    )
    print("problems:" if problems else "no count doubled, no loss hidden", *problems, sep="\n  ")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seed": seed,
                    "faults": [str(f) for _, f in faulty.applied],
                    "clean": clean.counts.__dict__ | {"crossings": sorted(clean.counts.crossings.items())},
                    "faulty": faulty.counts.__dict__ | {"crossings": sorted(faulty.counts.crossings.items())},
                    "problems": problems,
                },
                indent=2,
            )
        )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
