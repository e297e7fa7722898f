"""How many live cameras at 5 frames/s the platform sustains on this machine, and what each one costs.

    make bench-scale     # or: .venv/bin/python bench/scale.py --video V --model-repository R
    .venv/bin/python bench/scale.py --video V --model-repository R --cameras 16,20,24,28 --duration 60

For each number of cameras N, N synthetic live cameras play the sample film at its own pace (ingest's
``realtime`` file cameras, the same file read N times, each decoded on its own thread as a live stream
would be) and are sampled at ``--sample-fps``. ingest, inference and the anonymiser run as processes on a
local nats-server (FRAMES with its production retention: a frame not analysed within seconds expires)
and the embedded tritonserver serves a **stand-in of the model**: a python-backend model with YOLOv4-tiny's
name, config and signature (uint8 images in, the same ``boxes`` and ``scores`` tensors out) that returns
zeros (no detection). The model's own cost is left out; what is measured is the pipeline's: decoding,
resizing, publishing, the broker, parsing, the request to Triton and its answer (the same bytes as the
real model's), tracking, counting.

Measured over ``--duration`` seconds once every service is ready (start-up is not per-frame work), from
the services' /metrics and each process's CPU (psutil, children included: tritonserver's python stub):

- frames published (ingest) and analysed (inference) per camera per second;
- frames dropped: ingest's ``frames_dropped`` (publishing behind) and ``frames_unpublished``, inference's
  ``frames_dropped`` (every reason), and frames published but never analysed once ingest stopped
  (expired in FRAMES);
- the anonymiser's coverage: once ingest stops and the cameras go idle, each camera's window reports
  (EVENTS) must count every frame inference analysed and cover the time between the camera's opening
  and its last analysed frame (``covered_seconds``, gaps longer than ``coverage_max_gap_s`` excluded);
- CPU per camera by process (% of one core), the main thread of ingest and inference apart (one event
  loop each: a Python service cannot use more than one core for its loop), and the broker's bytes.

N is sustained when every camera published and had analysed at least 95 % of the nominal rate, nothing
was dropped or lost, coverage is complete, and frames are not falling behind (mean capture-to-tracks time
at most ``--max-latency-ms``: a pipeline that keeps up shows tens of milliseconds; one that does not
builds a backlog that FRAMES' retention turns into dropped frames in a longer run). The run stops at the
first N not sustained (unless ``--keep-going``) and says what set the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import nats
import psutil

from vigie_core.provision import ProvisionSettings
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.platform import DEMO_GEOMETRY, Samples, scrape, total
from vigie_embedded.processes import ProcessSet, free_port
from vigie_embedded.triton import EmbeddedTriton
from vigie_models import YOLO_MODEL_NAME
from vigie_proto.v1.events_pb2 import WindowReport

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/pipeline.py, as bench.pipeline

from bench.pipeline import cpu_seconds, main_thread_seconds

# The model stand-in: the real model's config (name, inputs, outputs, batching) with this model.py.
STAND_IN_MODEL = '''"""Stand-in of the detector (bench/scale.py): its signature, zeros out (no detection)."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.outputs = [
            (t["name"], tuple(int(d) for d in t["dims"]), pb_utils.triton_string_to_numpy(t["data_type"]))
            for t in config["output"]
        ]

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            batch, height, width, _ = images.shape
            # As many rows as the real model gives for this input: 3 anchors a cell at strides 32 and 16.
            rows = 3 * (height // 32) * (width // 32) + 3 * (height // 16) * (width // 16)
            tensors = [
                pb_utils.Tensor(n, np.zeros((batch, *(rows if d == -1 else d for d in dims)), dtype))
                for n, dims, dtype in self.outputs
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''

SERVICES = ("anonymiser", "inference", "ingest")
# What the anonymiser counts with (the demo's lines); the window's length does not change the cost.
WINDOW_S = 60
COVERAGE_TOLERANCE_S = 0.5
SUSTAINED_SHARE = 0.95


def stand_in_repository(model_repository: Path, root: Path) -> Path:
    """A python-variant repository under ``root`` holding the stand-in under the detector's name."""
    source = model_repository / "python" / YOLO_MODEL_NAME
    target = root / YOLO_MODEL_NAME
    (target / "1").mkdir(parents=True)
    for name in ("config.pbtxt", "labels.txt"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)
    (target / "1" / "model.py").write_text(STAND_IN_MODEL)
    return root


@dataclass
class Step:
    cameras: int
    seconds: float
    published_per_camera_s: float
    analysed_per_camera_s: float
    dropped: dict[str, int]
    coverage_complete: bool
    coverage_detail: str
    cpu_per_camera_percent: dict[str, float]
    cpu_total_percent: float
    main_thread_percent: dict[str, float]
    broker_mb_per_camera_s: dict[str, float]
    capture_to_tracks_ms: float
    sustained: bool = False
    limit: list[str] = field(default_factory=list)


def _camera_ids(n: int) -> list[str]:
    return [f"scale-{n}-{i}" for i in range(n)]


def _per_camera(samples: Samples, name: str, cameras: list[str]) -> dict[str, float]:
    return {camera: total(samples, name, camera=camera) for camera in cameras}


def _sum(samples: Samples, name: str) -> float:
    return total(samples, name)


async def _wait_ready(
    client: httpx.AsyncClient, ports: dict[str, int], processes: ProcessSet, logs: Path
) -> None:
    pending = set(ports)
    deadline = time.monotonic() + 120
    while pending:
        for name in sorted(pending):
            try:
                if (await client.get(f"http://127.0.0.1:{ports[name]}/readyz")).status_code == 200:
                    pending.discard(name)
            except httpx.HTTPError:
                pass
        _check_crashed(processes, logs)
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready within 120 s: {sorted(pending)}")
        await asyncio.sleep(0.1)


def _check_crashed(processes: ProcessSet, logs: Path) -> None:
    for name in processes.crashed():
        log = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} crashed; its log ends with:\n{log}")


def _varz(client: httpx.Client, url: str) -> dict[str, float]:
    data = client.get(f"{url}/varz", timeout=2).json()
    return {"in": float(data["in_bytes"]), "out": float(data["out_bytes"])}


async def run_step(
    n: int,
    args: argparse.Namespace,
    nats_server: EmbeddedNats,
    triton: EmbeddedTriton,
    logs: Path,
) -> Step:
    cameras = _camera_ids(n)
    (logs / f"n{n}").mkdir(parents=True, exist_ok=True)
    processes = ProcessSet(logs / f"n{n}")
    ports = {name: free_port() for name in SERVICES}
    common = {"NATS__URL": nats_server.url, "LOG_LEVEL": "WARNING", "POLICY__ENABLED": "false"}
    settings: dict[str, dict[str, str]] = {
        "anonymiser": {
            "CAMERAS": json.dumps(
                [
                    {
                        "id": camera,
                        "reporting_window_s": WINDOW_S,
                        "reporting_window_justification": "capacity benchmark, nothing published",
                        **DEMO_GEOMETRY,
                    }
                    for camera in cameras
                ]
            ),
            # Above inference's, so that its end-of-tracks message comes first.
            "CAMERA_IDLE_S": "4",
        },
        "inference": {"TRITON_URL": triton.grpc_url, "CAMERA_IDLE_S": "2"},
        "ingest": {
            "CAMERAS": json.dumps(
                [
                    {"id": camera, "url": str(args.video), "sample_fps": args.sample_fps, "realtime": True}
                    for camera in cameras
                ]
            ),
        },
    }
    reports: dict[str, list[WindowReport]] = {camera: [] for camera in cameras}
    observer = await nats.connect(nats_server.url)

    async def on_report(msg) -> None:  # type: ignore[no-untyped-def]
        report = WindowReport()
        report.ParseFromString(msg.data)
        if report.camera_id in reports:
            reports[report.camera_id].append(report)

    await observer.subscribe("vigie.events.*", cb=on_report)
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        for name in SERVICES:
            env = {**common, **settings[name], "HTTP__PORT": str(ports[name])}
            processes.start(name, f"vigie_{name}", {f"VIGIE_{name.upper()}_{k}": v for k, v in env.items()})
        watched = {
            **{name: psutil.Process(s.pid) for name, s in zip(SERVICES, processes.services, strict=True)},
            "tritonserver": psutil.Process(triton.pid),
            "nats-server": psutil.Process(nats_server.pid),
        }
        async with httpx.AsyncClient() as client:
            await _wait_ready(client, ports, processes, logs / f"n{n}")
        with httpx.Client() as sync:
            before = {name: scrape(sync, url) for name, url in urls.items()}
            cpu0 = {name: cpu_seconds(p) for name, p in watched.items()}
            main0 = {name: main_thread_seconds(watched[name]) for name in ("ingest", "inference")}
            bytes0 = _varz(sync, nats_server.monitoring_url)
            started = time.perf_counter()
            while time.perf_counter() - started < args.duration:
                await asyncio.sleep(1.0)
                _check_crashed(processes, logs / f"n{n}")
            seconds = time.perf_counter() - started
            cpu1 = {name: cpu_seconds(p) for name, p in watched.items()}
            main1 = {name: main_thread_seconds(watched[name]) for name in ("ingest", "inference")}
            bytes1 = _varz(sync, nats_server.monitoring_url)
            after = {name: scrape(sync, url) for name, url in urls.items()}
            # ingest stops: what it published must all be analysed, counted and covered.
            published_total = _per_camera(
                scrape(sync, urls["ingest"]), "vigie_ingest_frames_published_total", cameras
            )
            ingest_final = scrape(sync, urls["ingest"])
            processes.stop("ingest")
            deadline = time.monotonic() + 30
            while True:
                inference = scrape(sync, urls["inference"])
                analysed = _per_camera(inference, "vigie_inference_frames_total", cameras)
                reported = {c: sum(r.frames for r in reports[c]) for c in cameras}
                if all(analysed[c] >= published_total[c] and reported[c] >= analysed[c] for c in cameras):
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            opened = _per_camera(ingest_final, "vigie_ingest_camera_opened_timestamp_seconds", cameras)
            last = _per_camera(inference, "vigie_inference_last_frame_captured_timestamp_seconds", cameras)
    finally:
        processes.stop_all()
        await observer.close()

    def delta(service: str, name: str) -> float:
        return _sum(after[service], name) - _sum(before[service], name)

    published_rate = delta("ingest", "vigie_ingest_frames_published_total") / seconds / n
    analysed_rate = delta("inference", "vigie_inference_frames_total") / seconds / n
    lost = sum(max(0, int(published_total[c] - analysed[c])) for c in cameras)
    dropped = {
        "ingest_behind": int(_sum(ingest_final, "vigie_ingest_frames_dropped_total")),
        "ingest_unpublished": int(_sum(ingest_final, "vigie_ingest_frames_unpublished_total")),
        "inference_dropped": int(_sum(inference, "vigie_inference_frames_dropped_total")),
        "never_analysed": lost,
    }
    short: list[str] = []
    for camera in cameras:
        counted = sum(r.frames for r in reports[camera])
        covered = sum(r.covered_seconds for r in reports[camera])
        span = last[camera] - opened[camera]
        if counted < analysed[camera] or covered < span - COVERAGE_TOLERANCE_S:
            short.append(f"{camera}: {counted}/{int(analysed[camera])} frames, {covered:.1f}/{span:.1f} s")
    cpu = {name: 100 * (cpu1[name] - cpu0[name]) / seconds for name in watched}
    latency_count = delta("inference", "vigie_inference_capture_to_tracks_seconds_count")
    latency_sum = delta("inference", "vigie_inference_capture_to_tracks_seconds_sum")
    step = Step(
        cameras=n,
        seconds=round(seconds, 1),
        published_per_camera_s=round(published_rate, 2),
        analysed_per_camera_s=round(analysed_rate, 2),
        dropped=dropped,
        coverage_complete=not short,
        coverage_detail="; ".join(short[:4]) or "every camera: all frames counted, time covered",
        cpu_per_camera_percent={name: round(value / n, 1) for name, value in cpu.items()},
        cpu_total_percent=round(sum(cpu.values()), 1),
        main_thread_percent={
            name: round(100 * (main1[name] - main0[name]) / seconds, 1) for name in ("ingest", "inference")
        },
        broker_mb_per_camera_s={
            direction: round((bytes1[direction] - bytes0[direction]) / seconds / n / 1e6, 2)
            for direction in ("in", "out")
        },
        capture_to_tracks_ms=round(1000 * latency_sum / latency_count, 1) if latency_count else float("nan"),
    )
    step.limit = _limits(step, args.sample_fps, args.max_latency_ms)
    step.sustained = not step.limit
    return step


def _limits(step: Step, sample_fps: float, max_latency_ms: float) -> list[str]:
    """Why N is not sustained, and what was saturated when it was not."""
    why = []
    if step.published_per_camera_s < SUSTAINED_SHARE * sample_fps:
        why.append(f"ingest published {step.published_per_camera_s}/s per camera")
    if step.analysed_per_camera_s < SUSTAINED_SHARE * sample_fps:
        why.append(f"inference analysed {step.analysed_per_camera_s}/s per camera")
    dropped = {k: v for k, v in step.dropped.items() if v}
    if dropped:
        why.append(f"frames dropped {dropped}")
    if not step.capture_to_tracks_ms <= max_latency_ms:
        why.append(f"falling behind: capture to tracks {step.capture_to_tracks_ms:.0f} ms on average")
    if not step.coverage_complete:
        why.append(f"coverage incomplete ({step.coverage_detail})")
    if why:
        busiest = max(step.main_thread_percent.items(), key=lambda kv: kv[1])
        cores = os.cpu_count() or 1
        why.append(
            f"machine at {step.cpu_total_percent:.0f} % of {cores * 100} % CPU; busiest event loop: "
            f"{busiest[0]}'s main thread at {busiest[1]:.0f} % of a core"
        )
    return why


def print_table(steps: list[Step]) -> None:
    processes = list(steps[0].cpu_per_camera_percent)
    print()
    print(
        "| cameras | published /s/cam | analysed /s/cam | dropped | coverage | "
        + " | ".join(f"{p} %/cam" for p in processes)
        + " | total % | ingest loop % | inference loop % | NATS MB/s/cam in, out | capture→tracks ms |"
    )
    print("|" + "---|" * (10 + len(processes)))
    for s in steps:
        print(
            f"| {s.cameras} | {s.published_per_camera_s} | {s.analysed_per_camera_s} | "
            f"{sum(s.dropped.values())} | {'complete' if s.coverage_complete else 'INCOMPLETE'} | "
            + " | ".join(str(s.cpu_per_camera_percent[p]) for p in processes)
            + f" | {s.cpu_total_percent} | {s.main_thread_percent['ingest']} | "
            f"{s.main_thread_percent['inference']} | {s.broker_mb_per_camera_s['in']}, "
            f"{s.broker_mb_per_camera_s['out']} | {s.capture_to_tracks_ms} |"
        )


async def main(argv: list[str] | None = None) -> list[Step]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--model-repository", type=Path, required=True, help="holds python/ (make models)")
    parser.add_argument("--cameras", default="1,4,8,16,24,32", help="numbers of cameras to try, in order")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per number of cameras")
    parser.add_argument("--sample-fps", type=float, default=5.0)
    parser.add_argument(
        "--max-latency-ms",
        type=float,
        default=500.0,
        help="mean capture-to-tracks time above which the platform is falling behind (FRAMES keeps 5 s)",
    )
    parser.add_argument("--keep-going", action="store_true", help="try every number, even past the limit")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.cameras.split(",")]
    print(
        f"{os.cpu_count()} cores; {args.video.name} as N live cameras at {args.sample_fps} frames/s; "
        f"model stand-in on tritonserver; {args.duration:.0f} s per step",
        flush=True,
    )
    steps: list[Step] = []
    with (
        tempfile.TemporaryDirectory(prefix="vigie-scale-") as work,
        EmbeddedNats(provision=ProvisionSettings()) as nats_server,
        EmbeddedTriton(stand_in_repository(args.model_repository, Path(work) / "models")) as triton,
    ):
        for n in counts:
            step = await run_step(n, args, nats_server, triton, Path(work) / "logs")
            steps.append(step)
            print(f"[{n} camera(s)] {json.dumps(asdict(step))}", flush=True)
            if not step.sustained and not args.keep_going:
                break
    print_table(steps)
    sustained = [s.cameras for s in steps if s.sustained]
    print()
    if sustained:
        print(f"largest number of cameras sustained (no frame dropped, coverage complete): {max(sustained)}")
    else:
        print("not even the first number of cameras was sustained")
    for s in steps:
        if not s.sustained:
            print(f"limit at {s.cameras} cameras: " + "; ".join(s.limit))
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in steps], indent=1))
    return steps


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
