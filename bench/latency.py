"""Latency from a frame's capture to its count being queryable through the statistics API.

    .venv/bin/python bench/latency.py                      # the sample film, paced as a live camera
    .venv/bin/python bench/latency.py --window-s 120 --sample-fps 5

The whole embedded platform (``vigie_embedded.platform``: nats-server, tritonserver, ingest, inference,
anonymiser, aggregation, audit as processes) analyses the sample film read at its own pace
(``realtime``), so that capture times are wall-clock times as with a live camera, from the start of a
reporting window. The bench polls the aggregation's ``/metrics`` every 0.1 s and notes when each window
is published (it appears there just after the API can answer with it).

A frame's count is queryable when its window is published, so its latency is *published(window) -
capture*. Frames are captured every 1/sample_fps s from the film's opening (ingest's
``vigie_ingest_camera_opened_timestamp_seconds``); p50 and p99 are over those frames. Most of it is the
reporting window itself, by design (docs/privacy.md rule 11: nothing is published before its window ends); the
rest, *published - window end*, is what the platform adds: the last frames' analysis, the anonymiser
closing the window (on the first frame past it; on the camera going idle for the film's last window), the
aggregation's release delay (``release_delay_s``, above that idle closure) and its check interval (1 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from vigie_embedded.platform import SITE_ID, EmbeddedPlatform, PlatformOptions, film_duration_s, scrape, total

REPOSITORY = Path(__file__).resolve().parents[1]


def measure(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="vigie-bench-latency-") as state:
        options = PlatformOptions(
            video=args.video,
            model_repository=args.model_repository,
            state_dir=Path(state),
            sample_fps=args.sample_fps,
            realtime=True,
            window_s=args.window_s,
            release_delay_s=args.release_delay_s,
            align_to_window=True,
        )
        published: dict[int, float] = {}
        with EmbeddedPlatform(options) as platform, httpx.Client(timeout=5) as client:
            opened_at = 0.0
            duration = film_duration_s(args.video)
            deadline = time.monotonic() + duration + 3 * args.window_s + 180
            last_window = None
            while time.monotonic() < deadline:
                platform.check_running()
                now = time.time()
                ingest = scrape(client, platform.urls["ingest"])
                if not opened_at and total(ingest, "vigie_ingest_camera_opened_timestamp_seconds"):
                    opened_at = total(ingest, "vigie_ingest_camera_opened_timestamp_seconds")
                    last_window = platform.last_window_start(opened_at)
                start = total(
                    scrape(client, platform.urls["aggregation"]),
                    "vigie_published_window_start_seconds",
                    site=SITE_ID,
                )
                if start and int(start) not in published:
                    published[int(start)] = now
                if last_window is not None and last_window in published:
                    break
                time.sleep(0.1)
            else:
                raise SystemExit(f"the film's last window was not published in time: {sorted(published)}")
    window_s = args.window_s
    frames = int(duration * args.sample_fps)
    latencies = []
    for i in range(frames):
        captured = opened_at + i / args.sample_fps
        window = int(captured // window_s) * window_s
        if window in published:
            latencies.append(published[window] - captured)
    after_end = {str(w): round(t - (w + window_s), 2) for w, t in sorted(published.items())}
    return {
        "window_s": window_s,
        "sample_fps": args.sample_fps,
        "release_delay_s": args.release_delay_s,
        "frames": len(latencies),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 2),
        "latency_p99_s": round(float(np.percentile(latencies, 99)), 2),
        "latency_mean_s": round(statistics.fmean(latencies), 2),
        # Per window: published this long after its end (the platform's own share).
        "published_after_window_end_s": after_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, default=REPOSITORY / "var" / "videos" / "sample.mp4")
    parser.add_argument(
        "--model-repository", type=Path, default=REPOSITORY / "var" / "model_repository" / "python"
    )
    parser.add_argument("--sample-fps", type=float, default=5.0)
    parser.add_argument("--window-s", type=int, default=60, help="the reporting window (60 s at least)")
    parser.add_argument(
        "--release-delay-s",
        type=float,
        default=PlatformOptions.release_delay_s,
        help="above the anonymiser's idle closure, or the film's last window is published without it",
    )
    args = parser.parse_args()
    if not args.video.is_file() or not args.model_repository.is_dir():
        sys.exit("run 'make models videos' first")
    print(json.dumps(measure(args), indent=2))


if __name__ == "__main__":
    main()
