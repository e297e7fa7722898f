"""Faults while the whole embedded platform counts the sample film: what was counted is stored exactly
once, and what could not be analysed is missing from the coverage (``vigie_embedded.chaos``).

Two platforms count the film at the same time, one without faults, one while its processes are killed:
the anonymiser mid-window and again as the film ends (its open windows are restored from their
checkpoints), inference, ingest (it goes on with the film where it stopped), tritonserver, the
aggregation, the audit service, and nats-server itself (its memory streams are lost and provisioned
again; the frames of the outage are lost and the coverage says so). ``bench/chaos.py`` does the same
with twenty kills at random, a broker restart and a PostgreSQL outage.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vigie_embedded.chaos import ChaosRun, Fault, compare, run_film
from vigie_embedded.platform import PlatformOptions

pytestmark = pytest.mark.integration

FAULTS = [
    Fault(12.0, "kill", "anonymiser"),
    Fault(20.0, "kill", "inference"),
    Fault(24.0, "kill", "ingest"),
    Fault(28.0, "kill", "tritonserver"),
    Fault(36.0, "kill", "aggregation"),
    Fault(40.0, "kill", "audit"),
    Fault(46.0, "kill", "nats-server"),
    Fault(59.5, "kill", "anonymiser"),
]


def test_killed_processes_lose_no_count_and_hide_no_loss(
    sample_video: Path, model_repository: Path, tmp_path: Path
) -> None:
    def film(name: str, faults: list[Fault]) -> ChaosRun:
        options = PlatformOptions(
            video=sample_video, model_repository=model_repository, state_dir=tmp_path / name
        )
        return run_film(options, faults, timeout_s=420)

    with ThreadPoolExecutor(2) as pool:
        clean_run = pool.submit(film, "clean", [])
        faulty_run = pool.submit(film, "faulty", FAULTS)
        clean, faulty = clean_run.result(), faulty_run.result()
    summary = f"without faults {clean.counts}, with {len(FAULTS)} faults {faulty.counts}"
    print(summary)  # pytest -s shows it
    assert clean.counts.total > 0, summary
    assert [fault for _, fault in faulty.applied] == FAULTS
    assert compare(clean.counts, faulty.counts) == [], summary
    # The broker's outage costs seconds of frames; nothing else may cost more than a few frames.
    assert faulty.counts.covered_s >= clean.counts.covered_s - 20, summary
